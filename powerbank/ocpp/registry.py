"""The connection registry: charger identity → live connection, plus liveness bookkeeping.

Other parts of the hub reach chargers only through it (the app holds it while it serves:
``registry_of(app)``; routes go through the dispatch gateway instead):

    connection = registry.get("CP-1")            # HubConnection | None
    answer = await connection.call(v16.call.ClearChargingProfile(...), timeout=10)

    # Grid fan-out: one frame serialised once, written to every charger without awaiting each;
    # answers matched by (charger, message id).
    futures = registry.broadcast(frame_text, message_id, identities)   # {identity: Future}

    registry.boot_listeners.append(coroutine_function)   # called with the connection after a boot
    # ... and with one that did not boot within ``boot_grace_s`` of connecting (it only reconnected).
    registry.reconnect_listeners.append(coroutine_function)

    # What chargers report is stored in batches, one transaction for many chargers (group commit);
    # other OCPP writes take their turn on the same lock (SQLite has one writer).
    await registry.reports.submit(Report(meter_rows=rows))
    async with registry.writing() as session: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from datetime import datetime, timedelta
from typing import Any

from quart import Quart
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.db.bus import Bus
from powerbank.ocpp.connection import HubConnection
from powerbank.ocpp.frame_sharing import FrameSharing
from powerbank.ocpp.logins import LoginLookups
from powerbank.ocpp.reports import GroupCommit, in_session, store_reports
from powerbank.ocpp.sqlite_reports import SqliteReportWriter
from powerbank.services import chargers, cluster
from powerbank.services.chargers import Capability, PasswordChecker
from powerbank.services.frame_log import FrameLog
from powerbank.tasks import BackgroundTasks

logger = logging.getLogger("powerbank.ocpp")

# Last-seen times written per transaction, so a flush for 10,000 chargers does not hold the
# database's write lock for long.
LAST_SEEN_CHUNK = 1000
# The bus message a node sends when a charger connects to it (the newest connection wins cluster-wide).
CHARGER_CONNECTED = "charger-connected"
# The bus message a node sends when chargers must log in again (or not at all): their node closes them.
CHARGERS_DISCONNECTED = "chargers-disconnected"
# Boots or capability answers stored per transaction at most (about 0.5 ms of ORM work each).
ORM_BATCH = 200

# Where the app holds its registry while it serves (read through ``registry_of``).
_REGISTRY = "powerbank.ocpp_registry"
# How long stopping waits for connections still open to close.
STOP_CLOSE_GRACE_S = 5.0
# A charger that reboots sends BootNotification first thing after connecting; one that has not
# within this time only lost its connection (the hub restarted) and carries on without booting.
BOOT_GRACE_S = 10.0


class Registry:
    """Hold every live charger connection of this process."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        frame_log: FrameLog,
        *,
        demo_mode: bool,
        heartbeat_interval: int = 300,
        call_timeout: float = 30.0,
        last_seen_flush_s: float = 5.0,
        message_rate: float = 20.0,
        message_burst: int = 200,
        prune_every: int = 20,
        boot_grace_s: float = BOOT_GRACE_S,
        node_name: str = "powerbank",
        heartbeat_every: timedelta = cluster.HEARTBEAT_EVERY,
        lease: timedelta = cluster.LEASE,
    ) -> None:
        self.sessionmaker = sessionmaker
        # This process as a node of the installation (services/cluster.py): its chargers name it.
        self.node_name = node_name
        self.node_id: int | None = None
        self.heartbeat_every = heartbeat_every
        self.lease = lease
        self.frame_log = frame_log
        self.demo_mode = demo_mode
        self.heartbeat_interval = heartbeat_interval
        self.call_timeout = call_timeout
        self.last_seen_flush_s = last_seen_flush_s
        self.message_rate = message_rate
        self.message_burst = message_burst
        self.prune_every = prune_every
        self.boot_grace_s = boot_grace_s
        self.password_checker = PasswordChecker()
        # Log-ins of chargers connecting together, looked up together.
        self.logins = LoginLookups(sessionmaker)
        # SQLite has one writer: the hub's OCPP writes queue on this lock, in Python, instead of
        # in SQLite's busy handler (which sleeps up to 100 ms a try). Other databases write in parallel.
        bind = sessionmaker.kw.get("bind")
        # Messages between the nodes sharing the database (db/bus.py); this node hears its own too.
        self.bus = Bus(bind.url.render_as_string(hide_password=False) if bind is not None else "sqlite://", node_name)
        self.bus.subscribe(CHARGER_CONNECTED, self._connected_elsewhere)
        self.bus.subscribe(CHARGERS_DISCONNECTED, self._disconnected_elsewhere)
        # A charger's frames on pages served by other nodes.
        self.frame_sharing = FrameSharing(self)
        # When each live connection was made (wall clock: compared with other nodes' connections).
        self._connected_at: dict[str, float] = {}
        serialise = bind is None or bind.dialect.name == "sqlite"
        self.write_lock: contextlib.AbstractAsyncContextManager[object] = (
            asyncio.Lock() if serialise else contextlib.nullcontext()
        )
        # What chargers report, stored in batches (group commit; see ``reports``): on a SQLite file
        # past the ORM's async layer (see ``sqlite_reports``), elsewhere in a session.
        self.report_writer = SqliteReportWriter.for_url(bind.url) if bind is not None else None
        self.reports = GroupCommit(
            self.write_lock,
            self.report_writer.store if self.report_writer else in_session(sessionmaker, store_reports),
            "OCPP reports",
        )
        # Boots and capability answers go through the ORM (audit, re-evaluation): smaller batches.
        self.boots = GroupCommit(
            self.write_lock, in_session(sessionmaker, chargers.store_boots), "boot notifications", max_batch=ORM_BATCH
        )
        self.capabilities = GroupCommit(
            self.write_lock, self._store_capabilities, "capability answers", max_batch=ORM_BATCH
        )
        self._connections: dict[str, HubConnection] = {}
        # Chargers whose meter samples are kept until then (monotonic time; see ``keep_samples``).
        self._evidence: dict[int, float] = {}
        self._seen: dict[int, datetime] = {}
        # Charger → (protocol it spoke, still connected), written in batches.
        self._presence: dict[int, tuple[str, bool]] = {}
        self._background = BackgroundTasks(logger, "OCPP background work")
        self._flusher: asyncio.Task[None] | None = None
        self._heart: asyncio.Task[None] | None = None
        self._closing = False
        # How many times chargers were disconnected for changed credentials, and when each was last.
        self._disconnects = 0
        self._disconnected: dict[int, int] = {}
        # Charger → work that must reach it before it is disconnected (a release being looked up).
        self._holds: dict[int, set[asyncio.Future[Any]]] = {}
        # Called with the connection after each boot, once the capability probe has answered.
        self.boot_listeners: list[Callable[[HubConnection], Coroutine[Any, Any, None]]] = []
        # Called with a connection that did not boot within ``boot_grace_s`` of connecting (S4 must
        # reach a charger that only reconnected as it reaches one that booted).
        self.reconnect_listeners: list[Callable[[HubConnection], Coroutine[Any, Any, None]]] = []

    def __len__(self) -> int:
        return len(self._connections)

    async def _store_capabilities(self, answers: list[tuple[int, Capability]]) -> None:
        """Store capability probe answers; the boot listeners hear again of chargers whose participation
        they changed (signed up by it, suspended): they were told of the boot before it was stored."""
        async with self.sessionmaker() as session:
            changes = await chargers.store_capabilities(session, answers)
            await session.commit()
        if not changes:
            return
        logger.info("participation changed after capability probes: %s", changes)
        changed = {charge_point_id for charge_point_id, _ in changes}
        for connection in [c for c in self._connections.values() if c.charge_point_id in changed]:
            if not connection.closed:
                for listener in list(self.boot_listeners):
                    try:
                        await listener(connection)
                    except Exception:
                        logger.exception("%s: a boot listener failed", connection.id)

    # Evidence of delivery ---------------------------------------------------------------------

    def keep_samples(self, charge_point_ids: Iterable[int], seconds: float) -> None:
        """Keep every meter sample of these chargers for ``seconds`` (none pruned): an activation's
        evidence, copied once its window is over (services/delivery.py)."""
        until = time.monotonic() + seconds
        for charge_point_id in charge_point_ids:
            if self._evidence.get(charge_point_id, 0.0) < until:
                self._evidence[charge_point_id] = until

    def keeps_samples(self, charge_point_id: int) -> bool:
        """Whether this charger's meter samples are being kept (not pruned) now."""
        until = self._evidence.get(charge_point_id)
        if until is None:
            return False
        if time.monotonic() > until:
            del self._evidence[charge_point_id]
            return False
        return True

    def get(self, identity: str) -> HubConnection | None:
        """Return the live connection of a charger, or None when it is not connected."""
        return self._connections.get(identity)

    def connections(self) -> list[HubConnection]:
        return list(self._connections.values())

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """Open one short database session (never one per connection); OCPP writes use ``writing``."""
        async with self.sessionmaker() as session:
            yield session

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """Open a short session for a write, taking its turn with the hub's other OCPP writes."""
        async with self.write_lock, self.sessionmaker() as session:
            yield session

    # Connections ----------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """Whether the hub is shutting down (a charger that connects now is turned away)."""
        return self._closing

    async def close_all(self, grace_s: float) -> None:
        """Close every connection (1001, going away) and wait, at most ``grace_s``, until each has ended.

        For a shutdown: a charger sees a proper close and reconnects to the next process, rather
        than a dropped TCP connection; none connects again meanwhile (``closing``).
        """
        self._closing = True
        await self._close_together(list(self._connections.values()), grace_s)

    @staticmethod
    async def _close_together(connections: list[HubConnection], grace_s: float) -> None:
        """Close connections at the same time; wait at most ``grace_s`` for the closes and their ends.

        A charger that stopped reading can hold its close forever (the close frame waits behind
        frames it never reads): that close is given up after the grace period.
        """
        closing = [
            asyncio.create_task(connection.close(1001, "The hub is shutting down")) for connection in connections
        ]
        serving = [task for task in (connection.serving_task for connection in connections) if task is not None]
        if not closing and not serving:
            return
        _done, pending = await asyncio.wait([*closing, *serving], timeout=grace_s)
        for task in pending:
            if task in closing:
                task.cancel()
        await asyncio.gather(*closing, return_exceptions=True)

    def ticket(self) -> int:
        """Return a mark to give ``add``: taken before a charger's credentials are checked."""
        return self._disconnects

    async def add(self, connection: HubConnection, ticket: int | None = None) -> None:
        """Register a new connection; one already there for the identity is closed (replaced).

        With ``ticket`` (see ``ticket``): a charger whose credentials changed while they were being
        checked, or that connects while the hub shuts down, is closed rather than registered.
        """
        if self._closing:
            await connection.close(1001, "The hub is shutting down")
            return
        if ticket is not None and self._disconnected.get(connection.charge_point_id, -1) > ticket:
            await connection.close(1000, "Credentials changed while connecting; connect again")
            return
        previous = self._connections.get(connection.id)
        self._connections[connection.id] = connection
        connected_at = self._connected_at[connection.id] = time.time()
        # The newest connection wins on every node: one another node holds for this charger is closed there.
        self.bus.send(
            CHARGER_CONNECTED, identity=connection.id, charge_point_id=connection.charge_point_id, at=connected_at
        )
        self._presence[connection.charge_point_id] = (connection.protocol, True)
        asyncio.get_running_loop().call_later(self.boot_grace_s, self._unless_booted, connection)
        if previous is not None and previous is not connection:
            logger.info("%s connected again; closing its previous connection", connection.id)
            await previous.close(1000, "Replaced by a new connection")

    def _connected_elsewhere(self, message: dict[str, Any]) -> None:
        """Close this node's connection of a charger that connected to another node since."""
        if message.get("from") == self.node_name:
            return
        identity = message.get("identity")
        connection = self._connections.get(identity) if isinstance(identity, str) else None
        at = message.get("at")
        if connection is None or connection.closed or not isinstance(at, int | float):
            return
        if self._connected_at.get(connection.id, 0.0) >= at:
            return  # this node's connection is the newer one
        logger.info("%s connected to node %s; closing its connection here", connection.id, message.get("from"))
        self.spawn(connection.close(1000, "Replaced by a new connection on another node"))

    def _unless_booted(self, connection: HubConnection) -> None:
        """Tell the reconnect listeners about a connection that is still there and never booted."""
        if self._closing or connection.has_booted or self._connections.get(connection.id) is not connection:
            return
        if connection.closed:
            return
        for listener in list(self.reconnect_listeners):
            self.spawn(listener(connection))

    def discard(self, connection: HubConnection) -> None:
        """Forget a closed connection; the charger goes offline unless a newer one replaced it."""
        if self._connections.get(connection.id) is not connection:
            return
        del self._connections[connection.id]
        self._connected_at.pop(connection.id, None)
        self._presence[connection.charge_point_id] = (connection.protocol, False)

    def hold_open(self, charge_point_ids: Iterable[int], until: asyncio.Future[Any]) -> None:
        """Should these chargers be disconnected before ``until`` is done, close them only after it.

        A deletion's release is looked up in the database after the deletion is committed, while
        the charger is disconnected at once: the release must still reach it first.
        """
        if until.done():
            return
        held = list(charge_point_ids)
        for charge_point_id in held:
            self._holds.setdefault(charge_point_id, set()).add(until)

        def let_go(_done: asyncio.Future[Any]) -> None:
            for charge_point_id in held:
                holds = self._holds.get(charge_point_id)
                if holds is not None:
                    holds.discard(until)
                    if not holds:
                        del self._holds[charge_point_id]

        until.add_done_callback(let_go)

    def disconnect(self, charge_point_ids: Iterable[int], reason: str, identity_gone: bool = False) -> int:
        """Close the connections of these chargers once they have answered what was sent to them.

        For a charger whose OCPP identity or password changed, or that was deleted, after the change
        is committed: it must connect again with what the hub knows now. With ``identity_gone`` (deleted
        or renamed) its frames are forgotten, and none it exchanges until it is gone is logged: whoever
        registers the identity next sees none of them. Returns how many were connected here; in a
        cluster every other node closes those it holds as well.
        """
        wanted = set(charge_point_ids)
        if self.bus.shared and wanted:
            self.bus.send_all(CHARGERS_DISCONNECTED, "charge_points", sorted(wanted), reason=reason, gone=identity_gone)
            if identity_gone:
                self.spawn(self.frame_sharing.delete(sorted(wanted)))
        return self._disconnect_here(wanted, reason, identity_gone)

    def _disconnected_elsewhere(self, message: dict[str, Any]) -> None:
        """Close this node's connections of chargers another node disconnected (credentials changed, deleted)."""
        if message.get("from") == self.node_name:
            return
        ids = message.get("charge_points")
        wanted = {item for item in ids if type(item) is int} if isinstance(ids, list) else set()
        if wanted:
            reason = str(message.get("reason") or "disconnected")[:200]
            self._disconnect_here(wanted, reason, message.get("gone") is True)

    def _disconnect_here(self, wanted: set[int], reason: str, identity_gone: bool) -> int:
        if identity_gone:
            self.frame_log.forget_charge_points(wanted)
            self.frame_sharing.forget(wanted)
        # Chargers still being authenticated with what is now stale are refused by ``add``.
        self._disconnects += 1
        self._disconnected.update(dict.fromkeys(wanted, self._disconnects))
        found = [
            connection
            for connection in self._connections.values()
            if connection.charge_point_id in wanted and not connection.closed
        ]
        for connection in found:
            logger.info("disconnecting %s: %s", connection.id, reason)
            if identity_gone:
                connection.logs_frames = False
            held = set(self._holds.get(connection.charge_point_id or 0, ()))
            self.spawn(connection.close_after_answers(1000, reason, after=held))
        return len(found)

    def broadcast(self, frame: str, message_id: str, identities: Iterable[str]) -> dict[str, asyncio.Future[Any]]:
        """Queue one serialised CALL frame to every connected charger of ``identities``.

        Nothing is awaited: each future gives that charger's CALLRESULT payload, or raises
        CallErrorReceived or ConnectionLost. Chargers that are not connected are left out.
        """
        futures: dict[str, asyncio.Future[Any]] = {}
        for identity in identities:
            connection = self._connections.get(identity)
            if connection is None or connection.closed:
                continue
            futures[identity] = connection.expect(message_id)
            connection.send_raw(frame)
        return futures

    # Liveness -------------------------------------------------------------------------------

    def seen(self, charge_point_id: int) -> None:
        """Note that a charger was heard from now (written in batches)."""
        self._seen[charge_point_id] = utcnow()

    async def flush_last_seen(self) -> None:
        """Write pending connects, disconnects and last-seen times, a few statements for all.

        Thousands of chargers connect together after a restart: one write each would queue
        on the database; the page shows them Online within one flush interval.
        """
        if not self._seen and not self._presence:
            return
        seen, self._seen = self._seen, {}
        presence, self._presence = self._presence, {}
        try:
            # Presence sets the last-seen time too. A chunk per transaction: other writes get turns.
            await self._write_in_chunks(
                lambda session, rows: chargers.store_presence(session, rows, self.node_id), list(presence.items())
            )
            await self._write_in_chunks(
                chargers.touch_last_seen, [(cp_id, at) for cp_id, at in seen.items() if cp_id not in presence]
            )
        except BaseException:
            # The database may be away: keep what was not stored for the next flush (rewriting a
            # chunk stored already does no harm), under anything newer noted meanwhile.
            self._presence = {**presence, **self._presence}
            self._seen = {**seen, **self._seen}
            raise

    async def _write_in_chunks(
        self, write: Callable[[AsyncSession, dict[int, Any]], Awaitable[None]], items: list[tuple[int, Any]]
    ) -> None:
        for start in range(0, len(items), LAST_SEEN_CHUNK):
            async with self.writing() as session:
                await write(session, dict(items[start : start + LAST_SEEN_CHUNK]))
                await session.commit()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.last_seen_flush_s)
            try:
                await self.flush_last_seen()
            except Exception:
                logger.exception("could not store last-seen times")

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run hub-side work in a tracked task (awaited at shutdown)."""
        return self._background.spawn(coroutine)

    async def start(self) -> None:
        """Start serving as a node that holds no charger yet (those it held before a restart go offline)."""
        async with self.session() as session:
            self.node_id = (await cluster.register_node(session, self.node_name)).id
        await self.bus.start()
        self._flusher = asyncio.create_task(self._flush_forever(), name="ocpp last-seen flusher")
        self._heart = asyncio.create_task(self._beat_forever(), name="node heartbeat")

    async def _beat_forever(self) -> None:
        """Heart-beat, and declare dead the nodes that stopped heart-beating (their chargers go offline)."""
        while True:
            await asyncio.sleep(self.heartbeat_every.total_seconds())
            try:
                async with self.session() as session:
                    alive = await cluster.heartbeat(session, self.node_id or 0)
                    if not alive:
                        # Declared dead while it could not reach the database: start again as a node,
                        # and show the chargers it still holds online.
                        logger.warning("node %s was declared dead; registering it again", self.node_name)
                        self.node_id = (await cluster.register_node(session, self.node_name)).id
                        for connection in self._connections.values():
                            self._presence[connection.charge_point_id] = (connection.protocol, True)
                    dead = await cluster.declare_dead(session, lease=self.lease, caller_id=self.node_id)
                for name in dead:
                    logger.warning("node %s stopped heart-beating: its chargers are shown offline", name)
            except Exception:
                logger.exception("could not heart-beat node %s", self.node_name)

    async def stop(self) -> None:
        """Close every connection, store what is pending and mark this node's chargers offline."""
        for task in (self._flusher, self._heart):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.frame_sharing.stop()
        self._closing = True
        await self._close_together(list(self._connections.values()), STOP_CLOSE_GRACE_S)
        await self._background.wait()
        for writer in (self.boots, self.capabilities, self.reports):
            await writer.wait()
        if self.report_writer is not None:
            await self.report_writer.close()
        try:
            await self.flush_last_seen()
            async with self.session() as session:
                await cluster.stop_node(session, self.node_id or 0)
        except (OSError, SQLAlchemyError) as error:
            # The database is away, or locked past its timeout, as the node stops: the node stops
            # heart-beating, so it is declared dead and its chargers shown offline (services/cluster.py).
            logger.warning("could not store this node's chargers as offline as it stopped: %s", error)
        await self.bus.stop()


def hold_registry(app: Quart, registry: Registry) -> None:
    """Keep the app's registry while it serves."""
    app.extensions[_REGISTRY] = registry


def find_registry(app: Quart) -> Registry | None:
    """Return the app's registry, or None when the app has not served yet."""
    registry: Registry | None = app.extensions.get(_REGISTRY)
    return registry


def registry_of(app: Quart) -> Registry:
    """Return the app's registry (it runs while the app serves)."""
    registry = find_registry(app)
    if registry is None:
        raise RuntimeError("The OCPP registry runs only while the app serves")
    return registry
