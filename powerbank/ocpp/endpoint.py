"""The OCPP-J websocket endpoint ``/ocpp/<identity>`` (security profiles 1-3, see ``powerbank.ocpp.security``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from datetime import timedelta
from typing import Any

import ocpp.messages
from quart import Blueprint, Quart, Response, current_app, websocket
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.ocpp import security
from powerbank.ocpp.registry import BOOT_GRACE_S, Registry, hold_registry, registry_of
from powerbank.ocpp.security import Transport, hold_security, security_of
from powerbank.ocpp.v16 import ChargePoint16
from powerbank.ocpp.v201 import ChargePoint201
from powerbank.services import chargers
from powerbank.services.frame_log import FrameLog

logger = logging.getLogger("powerbank.ocpp")

blueprint = Blueprint("ocpp", __name__)

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


@blueprint.websocket("/ocpp/<identity>")
async def ocpp_socket(identity: str) -> Response | None:
    """Authenticate a charger before the upgrade, then serve its OCPP messages."""
    registry = registry_of(current_app)
    if registry.closing:
        return Response("The hub is shutting down", 503, {"Retry-After": "10"})
    # The websocket of this connection itself, not the context-local proxy (the registry keeps it).
    socket = websocket._get_current_object()  # type: ignore[attr-defined]
    ticket = registry.ticket()
    remote_address = socket.remote_addr or ""
    credentials = socket.authorization
    username = password = None
    if credentials is not None and credentials.type == "basic":
        username, password = credentials.username, credentials.password
    protocol = choose_subprotocol(socket.requested_subprotocols)
    transport = security_of(current_app).transport(remote_address, socket.scheme, socket.headers)
    try:
        outcome, reason = await _authenticate(registry, socket, identity, username, password, protocol, transport)
    except (OSError, SQLAlchemyError) as exc:
        # The database is away: chargers retry (one line each, not a traceback per attempt).
        logger.warning("charger %r not served, the database is unavailable: %s", identity, type(exc).__name__)
        return Response("The hub's database is unavailable", 503, {"Retry-After": "10"})
    if outcome.charge_point_id is None:
        logger.info("refused charger %r from %s: %s", identity, remote_address, reason)
        return Response("Unauthorized", 401, UNAUTHORIZED_HEADERS)
    if protocol is None:
        # OCPP-J: complete the handshake without a subprotocol, then close at once.
        logger.info("charger %r offered no supported OCPP version", identity)
        await socket.accept()
        await socket.close(1002, "No supported OCPP subprotocol")
        return None
    await socket.accept(subprotocol=protocol)
    connection = PROTOCOLS[protocol](identity, socket, registry, outcome.charge_point_id)
    connection.security = security_of(current_app)
    logger.info("charger %s connected from %s (%s)", identity, remote_address, protocol)
    try:
        await registry.add(connection, ticket)
        await connection.serve()
    except asyncio.CancelledError:
        logger.info("charger %s disconnected", identity)
        raise
    finally:
        registry.discard(connection)
    return None


async def _authenticate(
    registry: Registry,
    socket: Any,
    identity: str,
    username: str | None,
    password: str | None,
    protocol: str | None,
    transport: Transport,
) -> tuple[chargers.Authentication, str | None]:
    """Check a charger's credentials and offered protocol; note a refusal (throttled). Returns the reason."""
    remote_address = socket.remote_addr or ""
    async with registry.session() as session:
        # At the charge point's security profile or above (HTTP Basic, TLS, a client certificate).
        outcome = await security.authenticate(
            session,
            registry.password_checker,
            security_of(current_app),
            identity,
            username,
            password,
            transport,
            demo_mode=registry.demo_mode,
        )
        reason = outcome.reason
        if reason is None and protocol is None:
            offered = ", ".join(socket.requested_subprotocols) or "none"
            reason = f"No supported OCPP version offered ({offered})"
        if reason is not None:
            # Anyone can try an upgrade: the throttle decides, in memory, what a refusal may write.
            throttle = attempt_throttle_of(current_app)
            count = throttle.admit(identity, remote_address)
            if count:
                await chargers.record_attempt(
                    session, identity, remote_address, reason, outcome.operator_id, count, prune=throttle.prune_due()
                )
                await session.commit()
    return outcome, reason


def init_app(app: Quart, sessions: Callable[[], async_sessionmaker[AsyncSession]]) -> None:
    """Register the endpoint and run the registry while the app serves, on the database of ``sessions()``."""
    app.register_blueprint(blueprint)
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
