"""Helpers the tests share: waiting for the hub's asynchronous work, and the hub served over a real socket."""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from hypercorn.asyncio import serve
from quart import Quart

from powerbank import create_app
from powerbank.runtime.server import closing_chargers_first, hypercorn_config, wait_until_listening

# What every test app runs with, whatever serves it.
TEST_CONFIG: dict[str, Any] = {
    "DEMO": True,
    "SECRET_KEY": "test-secret",
    "TESTING": True,
    # The test client speaks plain HTTP, as a developer machine does.
    "QUART_AUTH_COOKIE_SECURE": False,
    "SESSION_COOKIE_SECURE": False,
}
# What a hub served over a socket adds: last-seen times kept at once, calls to chargers given up sooner.
SERVED_CONFIG: dict[str, Any] = {"OCPP_LAST_SEEN_FLUSH_S": 0.2, "OCPP_CALL_TIMEOUT_S": 5}

Condition = Callable[[], bool | Awaitable[bool]]


async def eventually(condition: Condition, timeout: float = 5.0, message: str = "condition not met in time") -> None:
    """Wait until ``condition`` (sync or async) holds, failing with ``message`` after ``timeout`` seconds.

    The hub works asynchronously (its tasks, its chargers' answers): this polls, it does not time anything.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.02)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def served(
    config: Mapping[str, Any], *, port: int | None = None, hypercorn_settings: Mapping[str, Any] | None = None
) -> AsyncIterator[Quart]:
    """Serve a new app with Hypercorn on 127.0.0.1, as `powerbank serve` does; stop it on exit.

    The app's config gets ``TEST_OCPP_URL`` (chargers connect to it plus their identity), ``TEST_PORT``
    and ``TEST_SHUTDOWN`` (an event: set, the hub closes its chargers and stops, as on SIGTERM).
    """
    app = create_app(dict(config))
    port = port or free_port()
    shutdown = asyncio.Event()
    settings = hypercorn_config("127.0.0.1", port)
    # Hypercorn keeps a closed socket's ping task until its next tick; short ticks end tests fast.
    settings.websocket_ping_interval = 0.2
    for name, value in (hypercorn_settings or {}).items():
        setattr(settings, name, value)
    server = asyncio.create_task(serve(app, settings, shutdown_trigger=closing_chargers_first(app, shutdown)))
    try:
        await wait_until_listening("127.0.0.1", port)
        app.config["TEST_OCPP_URL"] = f"ws://127.0.0.1:{port}/ocpp"
        app.config["TEST_PORT"] = port
        app.config["TEST_SHUTDOWN"] = shutdown
        yield app
    finally:
        shutdown.set()
        await server
