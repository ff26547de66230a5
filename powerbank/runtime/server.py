"""Serve PowerBank with Hypercorn inside our own event loop (one process: pages, API and OCPP)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from ssl import SSLError
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.asyncio.tcp_server import MAX_RECV, TCPServer
from hypercorn.config import Config
from hypercorn.events import Closed, RawData
from quart import Quart

from powerbank.config import ca_directory
from powerbank.dispatch.gateway import find_gateway
from powerbank.ocpp.registry import find_registry
from powerbank.ocpp.security import TlsConfig, configure_tls
from powerbank.runtime.gc_policy import GcPolicy

# How long a shutdown waits for the chargers to answer their close frames.
CHARGERS_CLOSE_GRACE_S = 5.0


async def _read_data(self: TCPServer) -> None:
    """Hypercorn's ``TCPServer._read_data``, the read timeout kept without a task per read.

    On Python 3.11 ``asyncio.wait_for`` wraps every read of every socket in a task of its own:
    one more task held by each idle charger, and one created per frame received.
    ``asyncio.timeout`` cancels the read the same way, in the connection's own task.
    """
    while not self.reader.at_eof():
        try:
            async with asyncio.timeout(self.config.read_timeout):
                data = await self.reader.read(MAX_RECV)
        except (ConnectionError, OSError, TimeoutError, SSLError):
            break
        else:
            await self.protocol.handle(RawData(data))
    await self.protocol.handle(Closed())


def read_without_a_task_per_read() -> None:
    """Make Hypercorn's connections read as ``_read_data`` does (its version is pinned in pyproject.toml)."""
    TCPServer._read_data = _read_data  # type: ignore[method-assign]


def hypercorn_config(host: str, port: int) -> Config:
    """Return the Hypercorn settings PowerBank runs with."""
    read_without_a_task_per_read()
    # Hypercorn's settings, with the client certificate of a TLS connection passed to the app.
    config = TlsConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    # Hypercorn's pings never check for a pong; the read timeout closes a silent charger's socket.
    config.websocket_ping_interval = 30
    config.read_timeout = 90
    config.keep_alive_timeout = 75
    config.websocket_max_message_size = 64 * 1024
    config.backlog = 4096
    return config


async def wait_until_listening(host: str, port: int, timeout: float = 30.0) -> None:
    """Return once a TCP connection to host:port succeeds."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                _reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


def closing_chargers_first(app: Quart, shutdown: asyncio.Event) -> Callable[[], Awaitable[None]]:
    """Return Hypercorn's shutdown trigger: once ``shutdown`` is set, the chargers are closed first.

    Hypercorn waits ``graceful_timeout`` for open connections, then cancels them; chargers stay
    connected, so without this each would be dropped (and Python 3.11 logs a traceback for each).
    """

    async def trigger() -> None:
        await shutdown.wait()
        registry = find_registry(app)
        if registry is not None:
            await registry.close_all(grace_s=CHARGERS_CLOSE_GRACE_S)

    return trigger


def report_loop_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The event loop's error handler: as asyncio's, without cancelled connections.

    Hypercorn keeps a websocket's connection task for up to one ping interval after the socket
    closed, and cancels what is left at shutdown. Python 3.11's streams then log a CancelledError
    traceback for each of them (thousands after a benchmark run), though nothing went wrong.
    """
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


def activations_may_be_active(app: Quart) -> bool:
    """Whether an activation may be active (or the runner has not looked yet)."""
    gateway = find_gateway(app)
    return gateway is None or gateway.may_be_active


async def serve_app(app: Quart, host: str, port: int, *, simulate: bool = False) -> None:
    """Serve until SIGINT or SIGTERM; with ``simulate``, also run the demo chargers in a child process."""
    shutdown = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(report_loop_errors)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shutdown.set)
    settings = hypercorn_config(host, port)
    # POWERBANK_TLS_CERT/_KEY: the hub terminates TLS (wss://), _CLIENT_CA: it asks for client certificates.
    tls = configure_tls(settings, app.config)
    server = asyncio.create_task(
        serve(
            app,
            settings,
            shutdown_trigger=closing_chargers_first(app, shutdown),
        )
    )
    policy = GcPolicy(
        full_every_s=float(app.config["GC_FULL_EVERY_S"]),
        growth=float(app.config["GC_FULL_AFTER_GROWTH"]),
        postpone=lambda: activations_may_be_active(app),
    )
    collector = asyncio.create_task(policy.run(), name="garbage collection policy")
    simulator: asyncio.subprocess.Process | None = None
    operator_ca = ca_directory(app.config) / "ca.pem"
    try:
        if simulate:
            await wait_until_listening(host, port)
            # A separate process, so simulated chargers never share the hub's event loop.
            simulator = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "powerbank.cli",
                "simulate",
                "--from-db",
                "--url",
                f"{'wss' if tls else 'ws'}://{host}:{port}/ocpp",
                "--password",
                "demo-charger",
                # Over TLS the simulated chargers also trust the operator CA (powerbank ca server-cert).
                *(["--ca-file", str(operator_ca)] if tls and operator_ca.exists() else []),
            )
        await server
    finally:
        collector.cancel()
        if simulator is not None and simulator.returncode is None:
            simulator.terminate()
            await simulator.wait()
