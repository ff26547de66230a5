"""The OCPP-J websocket endpoint ``/ocpp/<identity>`` (security profiles 1-3, see ``powerbank.ocpp.security``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import ocpp.messages
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable
from quart import Quart
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from werkzeug.datastructures import Authorization, Headers

from powerbank.ocpp import security
from powerbank.ocpp.connection import Disconnected
from powerbank.ocpp.log_context import new_or_given, request_id
from powerbank.ocpp.registry import BOOT_GRACE_S, Registry, hold_registry, registry_of
from powerbank.ocpp.security import Transport, hold_security, security_of
from powerbank.ocpp.v16 import ChargePoint16
from powerbank.ocpp.v201 import ChargePoint201
from powerbank.services import chargers
from powerbank.services.frame_log import FrameLog

logger = logging.getLogger("powerbank.ocpp")

OCPP_PREFIX = "/ocpp/"

# Newest first: the hub speaks the newest version both sides offer.
PROTOCOLS: dict[str, type[ChargePoint201] | type[ChargePoint16]] = {
    "ocpp2.0.1": ChargePoint201,
    "ocpp1.6": ChargePoint16,
}
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Basic realm="PowerBank OCPP", charset="UTF-8"'}
_ATTEMPT_THROTTLE = "powerbank.ocpp.attempt_throttle"


def attempt_throttle_of(app: Quart) -> chargers.AttemptThrottle:
    """Return the app's throttle of refused connection attempts (one per process)."""
    throttle: chargers.AttemptThrottle = app.extensions[_ATTEMPT_THROTTLE]
    return throttle


def choose_subprotocol(offered: list[str]) -> str | None:
    """Return the newest OCPP version the charger offers, or None."""
    return next((protocol for protocol in PROTOCOLS if protocol in offered), None)


class OcppSocket:
    """One charger's websocket, spoken straight to the ASGI server.

    Quart's websocket would hold two tasks, a queue and a request context per charger, and pass
    every frame through them and two signals; a hub holds tens of thousands of chargers.
    """

    __slots__ = ("_receive", "_send", "_closed")

    def __init__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        self._receive = receive
        self._send = send
        self._closed = False

    async def receive(self) -> str | bytes:
        """Return the next frame; raise Disconnected once the charger is gone."""
        while True:
            event: Any = await self._receive()
            kind = event["type"]
            if kind == "websocket.receive":
                text = event.get("text")
                return text if text is not None else bytes(event.get("bytes") or b"")
            if kind == "websocket.disconnect":
                self._closed = True
                raise Disconnected("the charger closed its socket")

    async def send(self, frame: str) -> None:
        """Write one text frame (nothing once the socket is closing)."""
        if not self._closed:
            await self._send({"type": "websocket.send", "text": frame, "bytes": None})

    async def accept(self, subprotocol: str | None = None) -> None:
        """Complete the handshake, with the chosen subprotocol (None: without one)."""
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": []})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (once); the charger's answer ends ``receive``."""
        if not self._closed:
            self._closed = True
            await self._send({"type": "websocket.close", "code": code, "reason": reason})


async def _refuse(scope: Any, send: ASGISendCallable, status: int, text: str, headers: dict[str, str]) -> None:
    """Answer the upgrade request with a plain HTTP response instead of a websocket."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008, "reason": ""})
        return
    body = text.encode()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *((name.lower().encode(), value.encode()) for name, value in headers.items()),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body, "more_body": False})


def _credentials(headers: Headers) -> tuple[str | None, str | None]:
    """Return the HTTP Basic username and password of the upgrade request, if any."""
    credentials = Authorization.from_header(headers.get("Authorization"))
    if credentials is None or credentials.type != "basic":
        return None, None
    return credentials.username, credentials.password


class OcppRoute:
    """ASGI middleware: websockets to ``/ocpp/<identity>`` are served here, the rest by Quart."""

    def __init__(self, app: Quart, inner: Callable[[Any, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]):
        self.app = app
        self.inner = inner

    async def __call__(self, scope: Any, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "websocket" or not path.startswith(OCPP_PREFIX):
            await self.inner(scope, receive, send)
            return
        identity = path[len(OCPP_PREFIX) :]
        if not identity or "/" in identity:
            await receive()  # websocket.connect
            await _refuse(scope, send, 404, "Not Found", {})
            return
        await receive()  # websocket.connect
        await ocpp_socket(self.app, scope, OcppSocket(receive, send), send, identity)


async def ocpp_socket(app: Quart, scope: Any, socket: OcppSocket, send: ASGISendCallable, identity: str) -> None:
    """Authenticate a charger before the upgrade, then serve its OCPP messages."""
    registry = registry_of(app)
    if registry.closing:
        await _refuse(scope, send, 503, "The hub is shutting down", {"Retry-After": "10"})
        return
    ticket = registry.ticket()
    # What the upgrade said (headers, credentials) is dropped once it is admitted: the serving
    # task lives as long as the charger stays connected.
    connection = await _admit(app, registry, scope, socket, send, identity)
    if connection is None:
        return
    try:
        await registry.add(connection, ticket)
        await connection.serve()
        logger.info("charger %s disconnected", identity)
    except asyncio.CancelledError:
        logger.info("charger %s disconnected", identity)
        raise
    finally:
        registry.discard(connection)


async def _admit(
    app: Quart, registry: Registry, scope: Any, socket: OcppSocket, send: ASGISendCallable, identity: str
) -> ChargePoint16 | ChargePoint201 | None:
    """Accept the upgrade of a charger that may connect and return its connection; else refuse it."""
    remote_address = (scope.get("client") or ("",))[0] or ""
    headers = Headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]])
    # The upgrade is a request: its id stays on the connection's log lines.
    request_id.set(new_or_given(headers.get("X-Request-ID")))
    username, password = _credentials(headers)
    offered = list(scope.get("subprotocols") or [])
    protocol = choose_subprotocol(offered)
    security = security_of(app)
    transport = security.transport(remote_address, scope.get("scheme", "ws"), headers)
    try:
        outcome, reason = await _authenticate(
            app, registry, remote_address, offered, identity, username, password, protocol, transport
        )
    except (OSError, SQLAlchemyError) as exc:
        # The database is away: chargers retry (one line each, not a traceback per attempt).
        logger.warning("charger %r not served, the database is unavailable: %s", identity, type(exc).__name__)
        await _refuse(scope, send, 503, "The hub's database is unavailable", {"Retry-After": "10"})
        return None
    if outcome.charge_point_id is None:
        logger.info("refused charger %r from %s: %s", identity, remote_address, reason)
        await _refuse(scope, send, 401, "Unauthorized", UNAUTHORIZED_HEADERS)
        return None
    if protocol is None:
        # OCPP-J: complete the handshake without a subprotocol, then close at once.
        logger.info("charger %r offered no supported OCPP version", identity)
        await socket.accept()
        await socket.close(1002, "No supported OCPP subprotocol")
        return None
    await socket.accept(subprotocol=protocol)
    connection = PROTOCOLS[protocol](identity, socket, registry, outcome.charge_point_id)
    connection.security = security
    logger.info("charger %s connected from %s (%s)", identity, remote_address, protocol)
    return connection


async def _authenticate(
    app: Quart,
    registry: Registry,
    remote_address: str,
    offered: list[str],
    identity: str,
    username: str | None,
    password: str | None,
    protocol: str | None,
    transport: Transport,
) -> tuple[chargers.Authentication, str | None]:
    """Check a charger's credentials and offered protocol; note a refusal (throttled). Returns the reason."""
    # At the charge point's security profile or above (HTTP Basic, TLS, a client certificate).
    outcome = await security.authenticate(
        await registry.logins.find(identity),
        registry.session,
        registry.password_checker,
        security_of(app),
        identity,
        username,
        password,
        transport,
        demo_mode=registry.demo_mode,
    )
    reason = outcome.reason
    if reason is None and protocol is None:
        reason = f"No supported OCPP version offered ({', '.join(offered) or 'none'})"
    if reason is not None:
        # Anyone can try an upgrade: the throttle decides, in memory, what a refusal may write.
        throttle = attempt_throttle_of(app)
        count = throttle.admit(identity, remote_address)
        if count:
            async with registry.session() as session:
                await chargers.record_attempt(
                    session, identity, remote_address, reason, outcome.operator_id, count, prune=throttle.prune_due()
                )
                await session.commit()
    return outcome, reason


def init_app(app: Quart, sessions: Callable[[], async_sessionmaker[AsyncSession]]) -> None:
    """Register the endpoint and run the registry while the app serves, on the database of ``sessions()``."""
    # Chargers' websockets are served before Quart sees them (see ``OcppSocket``).
    app.asgi_app = OcppRoute(app, app.asgi_app)  # type: ignore[method-assign]
    # The library validates each payload in a thread pool: with the GIL that is no parallelism,
    # only two thread hand-offs per message (10 % of the hub's CPU under load, bench/RESULTS.md).
    # Validating a few kilobytes of JSON on the loop costs less.
    ocpp.messages.ASYNC_VALIDATION = False
    # The library logs every frame at INFO; the hub keeps its own frame log per charger.
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    # One frame log for the app's life: the registry writes to it, the charge point page reads it.
    frame_log = FrameLog(int(app.config.get("OCPP_FRAME_LOG_SIZE", 100)))
    app.extensions[_ATTEMPT_THROTTLE] = chargers.AttemptThrottle()
    hold_security(app)

    @app.while_serving
    async def run_registry() -> AsyncGenerator[None, None]:
        registry = Registry(
            sessions(),
            frame_log,
            demo_mode=bool(app.config["DEMO"]),
            heartbeat_interval=int(app.config.get("OCPP_HEARTBEAT_INTERVAL_S", 300)),
            call_timeout=float(app.config.get("OCPP_CALL_TIMEOUT_S", 30)),
            last_seen_flush_s=float(app.config.get("OCPP_LAST_SEEN_FLUSH_S", 5)),
            boot_grace_s=float(app.config.get("OCPP_BOOT_GRACE_S", BOOT_GRACE_S)),
            node_name=str(app.config["NODE_ID"]),
            heartbeat_every=timedelta(seconds=float(app.config["CLUSTER_HEARTBEAT_S"])),
            lease=timedelta(seconds=float(app.config["CLUSTER_LEASE_S"])),
        )
        hold_registry(app, registry)
        await registry.start()
        chargers.register_disconnect_hook(registry.disconnect)
        try:
            yield
        finally:
            chargers.unregister_disconnect_hook(registry.disconnect)
            await registry.stop()
