"""What chargers report over OCPP, and what it changes: boot info, status, meter values, capability.

Called by the OCPP handlers (frequent reports in batches, see ``powerbank.ocpp.reports``; the
rest one short session per message) and read by the pages. Plain values
in, no websocket or request in sight.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import after_commit, utcnow
from powerbank.models import (
    ChargePoint,
    ChargerCapability,
    ChargingTransaction,
    ConnectionAttempt,
    ConnectorStatus,
    MeterSample,
    Team,
)
from powerbank.rules.demo_credentials import DEMO_CHARGER_PASSWORD
from powerbank.rules.validators import IDENTITY_RE
from powerbank.services.audit import SYSTEM, record
from powerbank.services.enrollment import reevaluate
from powerbank.services.passwords import is_secret_hash, verify_password, verify_secret

# Recent meter samples kept per charge point (the page shows the newest; older ones are pruned).
METER_SAMPLES_KEPT = 120
# Repeats of one refused attempt within this window are counted on one row, not stored again.
ATTEMPT_MERGE_WINDOW = timedelta(hours=1)
ATTEMPTS_SHOWN = 200
# What refused connections may write per window (ATTEMPT_MERGE_WINDOW), however many arrive: anyone
# on the network can try an upgrade, and the hub's reports need the database. Rows are different
# (identity, address) pairs; writes are rows and the repeats added to them.
ATTEMPT_ROWS_PER_ADDRESS = 100
ATTEMPT_ROWS_PER_WINDOW = 1000
ATTEMPT_WRITES_PER_ADDRESS = 200
ATTEMPT_WRITES_PER_WINDOW = 2000
# A charger retrying has its first repeats counted at once; later ones are written at most this
# often, added up, so a retry loop costs one write a minute.
ATTEMPT_REPEATS_AT_ONCE = 5
ATTEMPT_REPEAT_INTERVAL = timedelta(minutes=1)
# Refused attempts older than this are deleted (once a window), so the table stays small.
ATTEMPTS_KEPT = timedelta(days=7)
# Power older than this is not "current" any more.
CURRENT_POWER_MAX_AGE = timedelta(minutes=5)
METER_TABLE = MeterSample.__table__  # type: ignore[attr-defined]
STATUS_TABLE = ConnectorStatus.__table__  # type: ignore[attr-defined]


class PasswordChecker:
    """Verify charger passwords in constant time, off the event loop, remembering successes.

    Passwords PowerBank generates are stored with ``hash_secret`` and checked directly. An
    argon2 hash (a password stored before that, or by hand) is slow on purpose (about 0.1 s of
    both cores here); thousands of chargers
    reconnecting would queue for minutes. A verified password is remembered as a keyed digest
    next to the stored hash it matched, so a reconnect with the same password costs one HMAC
    (and chargers sharing a hash, like the demo's, cost one argon2 run together); a new
    password means a new hash, which is verified afresh.
    """

    def __init__(self, concurrency: int = 2) -> None:
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        self._running: dict[tuple[str, bytes], asyncio.Future[bool]] = {}
        # argon2 runs on threads; a burst of connections must not take every core from the loop.
        self._slots = asyncio.Semaphore(concurrency)

    def _digest(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode(), hashlib.sha256).digest()

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Return whether ``password`` matches ``password_hash`` (None: unknown charger, never)."""
        if password_hash is None or is_secret_hash(password_hash):
            return verify_secret(password_hash, password)
        digest = self._digest(password)
        remembered = self._verified.get(password_hash) if password_hash is not None else None
        if remembered is not None and hmac.compare_digest(remembered, digest):
            return True
        if password_hash is None:
            async with self._slots:
                return await asyncio.to_thread(verify_password, None, password)
        # Chargers reconnecting together with the same credentials share one argon2 run.
        key = (password_hash, digest)
        running = self._running.get(key)
        if running is None:
            running = self._running[key] = asyncio.ensure_future(self._verify_slowly(password_hash, password))
            running.add_done_callback(lambda _: self._running.pop(key, None))
        ok = await asyncio.shield(running)
        if ok:
            self._verified[password_hash] = digest
        return ok

    async def _verify_slowly(self, password_hash: str, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(verify_password, password_hash, password)


@dataclass(frozen=True)
class Authentication:
    """The outcome of a charger's log-in: its charge point, or why it was refused."""

    charge_point_id: int | None
    reason: str | None
    operator_id: int | None = None


async def authenticate(
    session: AsyncSession,
    checker: PasswordChecker,
    identity: str,
    username: str | None,
    password: str | None,
    *,
    demo_mode: bool,
) -> Authentication:
    """Check a charger's HTTP Basic credentials (security profile 1)."""
    login = await find_login(session, identity)
    return await check_password(checker, login, identity, username, password, demo_mode=demo_mode)


@dataclass(frozen=True)
class Login:
    """What a charger's log-in is checked against: its charge point, password hash, profile."""

    charge_point_id: int
    password_hash: str
    operator_id: int
    security_profile: int


async def find_login(session: AsyncSession, identity: str) -> Login | None:
    """Return what the charge point with this identity logs in with, or None (one query)."""
    # Only an identity a charge point could have is looked up: any other (a NUL, which PostgreSQL
    # refuses in text, or megabytes of path) is unknown without a query.
    if not IDENTITY_RE.match(identity):
        return None
    row = (
        await session.exec(
            select(ChargePoint.id, ChargePoint.ocpp_password_hash, Team.operator_id, ChargePoint.security_profile)
            .join(Team, col(Team.id) == col(ChargePoint.team_id))
            .where(ChargePoint.identity == identity)
        )
    ).first()
    return Login(row[0] or 0, row[1], row[2], row[3]) if row is not None else None


async def find_logins(session: AsyncSession, identities: Iterable[str]) -> dict[str, Login]:
    """Return what each of these identities logs in with, by identity (unknown ones left out; one query)."""
    wanted = sorted({identity for identity in identities if IDENTITY_RE.match(identity)})
    if not wanted:
        return {}
    # Five columns: sqlmodel's typed overloads stop at four (its select takes any number).
    statement = select(  # type: ignore[call-overload]
        ChargePoint.identity,
        ChargePoint.id,
        ChargePoint.ocpp_password_hash,
        Team.operator_id,
        ChargePoint.security_profile,
    )
    rows = await session.exec(
        statement.join(Team, col(Team.id) == col(ChargePoint.team_id)).where(col(ChargePoint.identity).in_(wanted))
    )
    return {row[0]: Login(row[1] or 0, row[2], row[3], row[4]) for row in rows}


async def check_password(
    checker: PasswordChecker,
    login: Login | None,
    identity: str,
    username: str | None,
    password: str | None,
    *,
    demo_mode: bool,
) -> Authentication:
    """Check HTTP Basic credentials against a charge point's log-in (None: an unknown identity)."""
    charge_point_id, password_hash, operator_id = (
        (login.charge_point_id, login.password_hash, login.operator_id) if login is not None else (None, None, None)
    )
    # Verify even when the answer is already known, so timing does not tell which identities exist.
    ok = await checker.verify(password_hash, password or "")
    if charge_point_id is None:
        return Authentication(None, "Unknown identity")
    if password is None:
        return Authentication(None, "No password (HTTP Basic authentication missing)", operator_id)
    if username != identity:
        return Authentication(None, "User name differs from the identity", operator_id)
    if not ok:
        return Authentication(None, "Wrong password", operator_id)
    if password == DEMO_CHARGER_PASSWORD and not demo_mode:
        return Authentication(None, "Published demo password refused outside demo mode", operator_id)
    return Authentication(charge_point_id, None, operator_id)


# Called with (charge point ids, reason, identity gone) to end live connections: the OCPP registry
# registers here.
DisconnectHook = Callable[[list[int], str, bool], object]
_disconnect_hooks: list[DisconnectHook] = []


def register_disconnect_hook(hook: DisconnectHook) -> None:
    """Call ``hook(charge_point_ids, reason, identity_gone)`` when chargers must connect again (or not at all)."""
    _disconnect_hooks.append(hook)


def unregister_disconnect_hook(hook: DisconnectHook) -> None:
    """Stop calling a hook registered with ``register_disconnect_hook``."""
    _disconnect_hooks.remove(hook)


def disconnect_after_commit(
    session: AsyncSession, charge_point_ids: Iterable[int], reason: str, *, identity_kept: bool = False
) -> None:
    """End these chargers' live connections once this transaction commits (nothing if it rolls back).

    After a new OCPP password or identity the charger must log in again with what the hub knows
    now; after a deletion it cannot log in at all. Unless ``identity_kept`` (a new password), the
    identity no longer names this charge point: what the hub keeps under it (the OCPP frames) is
    forgotten, as another tenant may register it next.
    """
    ids = list(charge_point_ids)

    def disconnect() -> None:
        for hook in list(_disconnect_hooks):
            hook(ids, reason, not identity_kept)

    if ids:
        after_commit(session, disconnect)


@dataclass
class _AttemptsSeen:
    """What the throttle remembers of one (identity, address) pair this window."""

    writes: int = 0
    last_write: float = 0.0
    unwritten: int = 0


class AttemptThrottle:
    """Decide, in memory and before any query, which refused connections are written to the database.

    Per window: one row per (identity, address), repeats added to it (the first few at once, then
    once a minute), and caps on rows and on writes per address and overall. Only admitted pairs are
    remembered, so the memory is bounded by the overall cap too. The decision is taken without an
    await, so a parallel burst cannot slip past a cap. Each node counts its own; ``record_attempt``
    still checks the stored rows per address, across restarts and nodes.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start_window(clock())

    def _start_window(self, now: float) -> None:
        self._window_started = now
        self._prune_due = True
        self._pairs: dict[tuple[str, str], _AttemptsSeen] = {}
        self._rows_by_address: Counter[str] = Counter()
        self._writes_by_address: Counter[str] = Counter()
        self._writes = 0

    def admit(self, identity: str, remote_address: str) -> int:
        """Count a refused attempt; return how many attempts to write now (0: write nothing)."""
        now = self._clock()
        if now - self._window_started >= ATTEMPT_MERGE_WINDOW.total_seconds():
            # Repeats held back at the turn of the window are not written: a count may be low, never high.
            self._start_window(now)
        key = (identity[:100], remote_address[:64])
        address = key[1]
        seen = self._pairs.get(key)
        if seen is None:
            if (
                self._rows_by_address[address] >= ATTEMPT_ROWS_PER_ADDRESS
                or len(self._pairs) >= ATTEMPT_ROWS_PER_WINDOW
            ):
                return 0
            seen = self._pairs[key] = _AttemptsSeen()
            self._rows_by_address[address] += 1
        seen.unwritten += 1
        due = seen.writes < ATTEMPT_REPEATS_AT_ONCE or now - seen.last_write >= ATTEMPT_REPEAT_INTERVAL.total_seconds()
        if (
            not due
            or self._writes_by_address[address] >= ATTEMPT_WRITES_PER_ADDRESS
            or self._writes >= ATTEMPT_WRITES_PER_WINDOW
        ):
            return 0
        count, seen.unwritten = seen.unwritten, 0
        seen.writes += 1
        seen.last_write = now
        self._writes_by_address[address] += 1
        self._writes += 1
        return count

    def prune_due(self) -> bool:
        """Return True once a window: the next write should also delete attempts kept long enough."""
        due, self._prune_due = self._prune_due, False
        return due


async def record_attempt(
    session: AsyncSession,
    identity: str,
    remote_address: str,
    reason: str,
    operator_id: int | None,
    count: int = 1,
    *,
    prune: bool = False,
) -> ConnectionAttempt | None:
    """Keep ``count`` refused connections for the admins: one row per identity and address an hour.

    A repeat within the hour is added to the row, which keeps the newest reason and operator.
    Return None when the address already left too many different attempts this hour. With
    ``prune``, also delete the attempts older than ``ATTEMPTS_KEPT``. Callers ask an
    ``AttemptThrottle`` first, so a flood never reaches this function.
    """
    now = utcnow()
    if prune:
        await session.exec(delete(ConnectionAttempt).where(col(ConnectionAttempt.at) < now - ATTEMPTS_KEPT))
    # Shown to admins as the charger sent it, but without control characters (NUL cannot be stored).
    identity = "".join("\ufffd" if unicodedata.category(char) == "Cc" else char for char in identity[:100])
    remote_address = remote_address[:64]
    attempt = (
        await session.exec(
            select(ConnectionAttempt)
            .where(
                ConnectionAttempt.identity == identity,
                ConnectionAttempt.remote_address == remote_address,
                col(ConnectionAttempt.at) >= now - ATTEMPT_MERGE_WINDOW,
            )
            .order_by(col(ConnectionAttempt.at).desc())
            .limit(1)
        )
    ).first()
    if attempt is None:
        recent_from_address = (
            await session.exec(
                select(func.count())
                .select_from(ConnectionAttempt)
                .where(
                    ConnectionAttempt.remote_address == remote_address,
                    col(ConnectionAttempt.at) >= now - ATTEMPT_MERGE_WINDOW,
                )
            )
        ).one()
        if recent_from_address >= ATTEMPT_ROWS_PER_ADDRESS:
            # A scanner trying identity after identity must not fill the table (or the page).
            return None
        attempt = ConnectionAttempt(
            identity=identity, at=now, remote_address=remote_address, reason=reason[:120], operator_id=operator_id
        )
        attempt.count = count
    else:
        attempt.at = now
        attempt.count += count
        attempt.reason = reason[:120]
        attempt.operator_id = operator_id
    session.add(attempt)
    return attempt


@dataclass(frozen=True)
class AttemptRow:
    """A refused connection as the Connection attempts page shows it to one operator."""

    id: int
    identity: str
    at: datetime
    reason: str
    count: int
    # None when this operator may not see it (an unknown identity): see ``list_attempts``.
    remote_address: str | None
    # True when no charge point has this identity (yet): the page offers to register it.
    unknown: bool


async def list_attempts(session: AsyncSession, operator_id: int) -> list[AttemptRow]:
    """Return the refused connections an operator's admins may see, newest first.

    Their own charge points' attempts, with the address they came from; and those of identities
    no charge point has, without it. An unknown identity belongs to no tenant, and admins need it
    to register a new charger: the identity (with when, why and how often) is enough for whoever
    installed the charger to recognise it. But the charger may as well be another operator's, not
    registered yet or mistyped, and its address tells where it is (a depot's or a customer's
    network): every operator sees the row, so none sees the address. Other operators' charge
    points' attempts, and unknown identities registered since, are never shown.
    """
    attempts = list(
        await session.exec(
            select(ConnectionAttempt)
            .where((col(ConnectionAttempt.operator_id) == operator_id) | col(ConnectionAttempt.operator_id).is_(None))
            .order_by(col(ConnectionAttempt.at).desc(), col(ConnectionAttempt.id).desc())
            .limit(ATTEMPTS_SHOWN)
        )
    )
    identities = {attempt.identity for attempt in attempts if attempt.operator_id is None}
    registered = (
        set(await session.exec(select(ChargePoint.identity).where(col(ChargePoint.identity).in_(identities))))
        if identities
        else set()
    )
    return [
        AttemptRow(
            id=attempt.id or 0,
            identity=attempt.identity,
            at=attempt.at,
            reason=attempt.reason,
            count=attempt.count,
            remote_address=attempt.remote_address if attempt.operator_id == operator_id else None,
            unknown=attempt.operator_id is None,
        )
        for attempt in attempts
        # An identity that has since been registered with another operator is no longer anonymous.
        if attempt.operator_id is not None or attempt.identity not in registered
    ]


def _update_by_id(**columns: str) -> Any:
    """Return an UPDATE of charge points by id, run once per parameter row (executemany).

    A plain table statement: a charge point deleted meanwhile is skipped, not an error.
    """
    table = ChargePoint.__table__  # type: ignore[attr-defined]
    return (
        update(table)
        .where(table.c.id == bindparam("charge_point_id"))
        .values({column: bindparam(parameter) for column, parameter in columns.items()})
    )


async def store_presence(
    session: AsyncSession, presence: dict[int, tuple[str, bool]], node_id: int | None = None
) -> None:
    """Store, as of now, each charger's OCPP version and whether it is connected to node ``node_id``.

    A charger that left this node is marked offline only if no other node holds it now: with
    several nodes, it may already have connected to another one.
    """
    now = utcnow()
    # Rows in id order, in every writer: two nodes updating the same chargers never deadlock.
    ordered = sorted(presence.items())
    connected = [
        {"charge_point_id": cp_id, "protocol": protocol, "seen": now, "node": node_id}
        for cp_id, (protocol, online) in ordered
        if online
    ]
    left = [{"charge_point_id": cp_id, "seen": now} for cp_id, (_protocol, online) in ordered if not online]
    if connected:
        statement = _update_by_id(ocpp_protocol="protocol", last_seen_at="seen", node_id="node")
        await session.exec(statement.values(online=True), params=connected)
    if left:
        table = ChargePoint.__table__  # type: ignore[attr-defined]
        held_here = table.c.node_id.is_(None) if node_id is None else table.c.node_id == node_id
        await session.exec(_update_by_id(last_seen_at="seen"), params=left)
        await session.exec(
            _update_by_id().where(or_(held_here, table.c.node_id.is_(None))).values(online=False, node_id=None),
            params=[{"charge_point_id": row["charge_point_id"]} for row in left],
        )


async def touch_last_seen(session: AsyncSession, seen: dict[int, datetime]) -> None:
    """Store when each charger was last heard from, in one statement for all of them."""
    if seen:
        await session.exec(
            _update_by_id(last_seen_at="seen"),
            params=[{"charge_point_id": cp_id, "seen": at} for cp_id, at in sorted(seen.items())],
        )


@dataclass(frozen=True)
class BootInfo:
    protocol: str
    vendor: str
    model: str
    firmware: str | None = None
    serial: str | None = None


async def _charge_points_with_operator(
    session: AsyncSession, charge_point_ids: Iterable[int]
) -> dict[int, tuple[ChargePoint, int]]:
    """Load charge points with their operator's id, one query for all."""
    rows = await session.exec(
        select(ChargePoint, Team.operator_id)
        .join(Team, col(Team.id) == col(ChargePoint.team_id))
        .where(col(ChargePoint.id).in_(set(charge_point_ids)))
    )
    return {charge_point.id or 0: (charge_point, operator_id) for charge_point, operator_id in rows}


async def store_boots(session: AsyncSession, boots: Sequence[tuple[int, BootInfo]]) -> None:
    """Store what chargers reported at boot (a batch, a few queries for all); it decides compatibility (R2).

    Participation is re-evaluated for a charger's first boot, or when what it reports changed.
    """
    found = await _charge_points_with_operator(session, [cp_id for cp_id, _ in boots])
    now = utcnow()
    changed: list[int] = []
    for cp_id, boot in boots:
        if cp_id not in found:
            continue  # Deleted since it connected.
        charge_point, operator_id = found[cp_id]
        first_boot = charge_point.booted_at is None
        before = {
            "vendor": charge_point.reported_vendor,
            "model": charge_point.reported_model,
            "firmware": charge_point.reported_firmware,
            "serial": charge_point.reported_serial,
        }
        after = {
            "vendor": boot.vendor[:80],
            "model": boot.model[:80],
            "firmware": (boot.firmware or "")[:80] or None,
            "serial": (boot.serial or "")[:80] or None,
        }
        charge_point.reported_vendor = after["vendor"]
        charge_point.reported_model = after["model"]
        charge_point.reported_firmware = after["firmware"]
        charge_point.reported_serial = after["serial"]
        charge_point.booted_at = now
        # Stored with the boot, not only with the batched presence, so it is there as soon as boot is.
        charge_point.ocpp_protocol = boot.protocol
        session.add(charge_point)
        if before != after:
            keys = [key for key in after if before[key] != after[key]]
            record(
                session,
                SYSTEM,
                "charge_point.reported",
                charge_point,
                operator_id=operator_id,
                before={key: before[key] for key in keys},
                after={key: after[key] for key in keys},
            )
        # Only what it reports decides compatibility; a reboot that reports the same changes nothing.
        if first_boot or before != after:
            changed.append(cp_id)
    await reevaluate(session, changed)


async def store_status(
    session: AsyncSession,
    charge_point_id: int,
    connector_id: int,
    status: str,
    error_code: str | None,
    reported_at: datetime | None,
) -> None:
    """Store a connector's latest status."""
    row = (
        await session.exec(
            select(ConnectorStatus).where(
                ConnectorStatus.charge_point_id == charge_point_id, ConnectorStatus.connector_id == connector_id
            )
        )
    ).first()
    if row is None:
        row = ConnectorStatus(charge_point_id=charge_point_id, connector_id=connector_id, status=status)
    row.status = status[:30]
    row.error_code = error_code[:50] if error_code else None
    row.reported_at = reported_at or utcnow()
    session.add(row)


@dataclass(frozen=True)
class MeterReading:
    """One sampled moment: any of power, energy register and currents that the charger sent."""

    measured_at: datetime
    power_w: float | None = None
    energy_wh: float | None = None
    currents_a: dict[str, float] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.power_w is None and self.energy_wh is None and not self.currents_a


def meter_rows(
    charge_point_id: int,
    connector_id: int,
    readings: Iterable[MeterReading],
    transaction_id: str | None = None,
) -> list[dict[str, Any]]:
    """Return the meter sample rows of a charger's readings (empty readings are left out)."""
    received_at = utcnow()
    return [
        {
            "charge_point_id": charge_point_id,
            "connector_id": connector_id,
            "measured_at": reading.measured_at,
            "received_at": received_at,
            "power_w": reading.power_w,
            "energy_wh": reading.energy_wh,
            "current_l1_a": reading.currents_a.get("L1"),
            "current_l2_a": reading.currents_a.get("L2"),
            "current_l3_a": reading.currents_a.get("L3"),
            "transaction_id": transaction_id,
        }
        for reading in readings
        if not reading.empty
    ]


async def insert_meter_rows(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Store meter sample rows of any number of chargers in one statement."""
    if rows:
        await session.exec(insert(METER_TABLE), params=list(rows))


async def prune_meter_samples(session: AsyncSession, charge_point_ids: Iterable[int]) -> None:
    """Keep only the newest METER_SAMPLES_KEPT samples of each of these chargers, one statement run for each."""
    ids = sorted(set(charge_point_ids))
    if ids:
        await session.exec(meter_prune_statement(), params=[{"charge_point_id": cp_id} for cp_id in ids])


def meter_prune_statement() -> Any:
    """Return the DELETE of a charger's samples older than its newest METER_SAMPLES_KEPT (``charge_point_id``)."""
    newer = METER_TABLE.alias("newer")
    oldest_kept = (
        select(newer.c.id)
        .where(newer.c.charge_point_id == bindparam("charge_point_id"))
        .order_by(newer.c.id.desc())
        .offset(METER_SAMPLES_KEPT - 1)
        .limit(1)
        .scalar_subquery()
    )
    return delete(METER_TABLE).where(
        METER_TABLE.c.charge_point_id == bindparam("charge_point_id"), METER_TABLE.c.id < oldest_kept
    )


async def store_meter_values(
    session: AsyncSession,
    charge_point_id: int,
    connector_id: int,
    readings: Iterable[MeterReading],
    transaction_id: str | None = None,
    *,
    prune: bool = False,
) -> int:
    """Store meter readings; with ``prune``, drop all but the newest kept ones. Return how many."""
    rows = meter_rows(charge_point_id, connector_id, readings, transaction_id)
    await insert_meter_rows(session, rows)
    if prune:
        await prune_meter_samples(session, [charge_point_id])
    return len(rows)


@dataclass(frozen=True)
class StatusReport:
    """A connector's status as a charger reported it."""

    charge_point_id: int
    connector_id: int
    status: str
    error_code: str | None
    reported_at: datetime | None


async def upsert_statuses(session: AsyncSession, reports: Sequence[StatusReport]) -> None:
    """Store each connector's latest status, one statement for any number of chargers.

    Of several reports for one connector the last one wins.
    """
    rows = status_rows(reports)
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        await session.exec(status_upsert_statement(dialect), params=rows)
        return
    for row in rows:
        await store_status(
            session, row["charge_point_id"], row["connector_id"], row["status"], row["error_code"], row["reported_at"]
        )


def status_rows(reports: Sequence[StatusReport]) -> list[dict[str, Any]]:
    """Return the rows ``upsert_statuses`` stores: the last report of each connector."""
    latest = {(r.charge_point_id, r.connector_id): r for r in reports}
    now = utcnow()
    return [
        {
            "charge_point_id": r.charge_point_id,
            "connector_id": r.connector_id,
            "status": r.status[:30],
            "error_code": r.error_code[:50] if r.error_code else None,
            "reported_at": r.reported_at or now,
        }
        for r in latest.values()
    ]


def status_upsert_statement(dialect: str) -> Any:
    """Return the INSERT … ON CONFLICT UPDATE of connector statuses for SQLite or PostgreSQL."""
    statement = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(STATUS_TABLE)
    return statement.on_conflict_do_update(
        index_elements=["charge_point_id", "connector_id"],
        set_={
            "status": statement.excluded.status,
            "error_code": statement.excluded.error_code,
            "reported_at": statement.excluded.reported_at,
        },
    )


async def start_transaction(
    session: AsyncSession,
    charge_point_id: int,
    connector_id: int,
    started_at: datetime,
    *,
    id_tag: str | None = None,
    meter_start_wh: float | None = None,
    remote_id: str | None = None,
) -> ChargingTransaction:
    """Record a started charging session; its id is the OCPP 1.6 transactionId."""
    transaction = ChargingTransaction(
        charge_point_id=charge_point_id,
        connector_id=connector_id,
        started_at=started_at,
        id_tag=(id_tag or "")[:40] or None,
        meter_start_wh=meter_start_wh,
        remote_id=remote_id,
    )
    session.add(transaction)
    await session.flush()
    return transaction


async def find_transaction(
    session: AsyncSession, charge_point_id: int, *, transaction_id: int | None = None, remote_id: str | None = None
) -> ChargingTransaction | None:
    """Return a charger's transaction by the hub's id (1.6) or the charger's own id (2.0.1)."""
    query = select(ChargingTransaction).where(ChargingTransaction.charge_point_id == charge_point_id)
    if transaction_id is not None:
        query = query.where(ChargingTransaction.id == transaction_id)
    else:
        query = query.where(ChargingTransaction.remote_id == remote_id).order_by(col(ChargingTransaction.id).desc())
    return (await session.exec(query.limit(1))).first()


async def stop_transaction(
    session: AsyncSession,
    transaction: ChargingTransaction,
    stopped_at: datetime,
    *,
    meter_stop_wh: float | None = None,
    reason: str | None = None,
) -> None:
    """Record the end of a charging session."""
    transaction.stopped_at = stopped_at
    transaction.meter_stop_wh = meter_stop_wh
    transaction.stop_reason = (reason or "")[:40] or None
    session.add(transaction)


@dataclass(frozen=True)
class Capability:
    """What a charger answered to the capability probe."""

    smart_charging: bool | None
    feature_profiles: str | None = None
    max_stack_level: int | None = None
    rate_units: str | None = None
    meter_interval_s: int | None = None


async def store_capabilities(session: AsyncSession, answers: Sequence[tuple[int, Capability]]) -> list[tuple[int, str]]:
    """Store capability probe answers (a batch); smart charging support decides compatibility (R2).

    Return what the enrollment re-evaluation changed (a DK2 charger signed up, a suspension);
    participation is re-evaluated only for chargers whose answer about smart charging changed.
    """
    found = await _charge_points_with_operator(session, [cp_id for cp_id, _ in answers])
    rows = {
        row.charge_point_id: row
        for row in await session.exec(
            select(ChargerCapability).where(col(ChargerCapability.charge_point_id).in_(list(found)))
        )
    }
    now = utcnow()
    changed: list[int] = []
    for cp_id, capability in answers:
        if cp_id not in found:
            continue  # Deleted since it connected.
        charge_point, operator_id = found[cp_id]
        row = rows.get(cp_id)
        if row is None:
            row = rows[cp_id] = ChargerCapability(charge_point_id=cp_id, probed_at=now)
        row.probed_at = now
        row.smart_charging = capability.smart_charging
        row.feature_profiles = (capability.feature_profiles or "")[:255] or None
        row.max_stack_level = capability.max_stack_level
        row.rate_units = (capability.rate_units or "")[:40] or None
        row.meter_interval_s = capability.meter_interval_s
        session.add(row)
        if charge_point.smart_charging == capability.smart_charging:
            continue  # What decides compatibility is unchanged (a reboot): participation stays.
        record(
            session,
            SYSTEM,
            "charge_point.smart_charging",
            charge_point,
            operator_id=operator_id,
            before={"smart_charging": charge_point.smart_charging},
            after={"smart_charging": capability.smart_charging},
        )
        charge_point.smart_charging = capability.smart_charging
        session.add(charge_point)
        changed.append(cp_id)
    return await reevaluate(session, changed)


@dataclass
class LiveStatus:
    """What the charge point page shows of a charger's live state."""

    connectors: list[ConnectorStatus]
    samples: list[MeterSample]
    capability: ChargerCapability | None

    @property
    def current_power_w(self) -> float | None:
        """Return the newest reported power, if it is recent enough to be current."""
        for sample in self.samples:
            if sample.power_w is not None:
                if utcnow() - sample.received_at <= CURRENT_POWER_MAX_AGE:
                    return sample.power_w
                return None
        return None


async def live_status(session: AsyncSession, charge_point_id: int, samples: int = 20) -> LiveStatus:
    """Return a charger's connectors, newest meter samples and capability (three queries)."""
    connectors = await session.exec(
        select(ConnectorStatus)
        .where(ConnectorStatus.charge_point_id == charge_point_id)
        .order_by(col(ConnectorStatus.connector_id))
    )
    recent: Sequence[MeterSample] = (
        await session.exec(
            select(MeterSample)
            .where(MeterSample.charge_point_id == charge_point_id)
            .order_by(col(MeterSample.id).desc())
            .limit(samples)
        )
    ).all()
    capability = await session.get(ChargerCapability, charge_point_id)
    return LiveStatus(list(connectors), list(recent), capability)
