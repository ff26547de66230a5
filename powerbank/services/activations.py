"""Grid activations: who may start one, what is valid, which chargers it touches, what they did.

One implementation for the pages, the API and the scheduler. Sending to chargers is not done
here (see ``powerbank.ocpp.fanout`` and ``powerbank.activation_runner``): this module decides
what to send to whom and records the outcome in bulk, a bounded number of queries whatever the
number of chargers.

Overlapping activations of one area: while several are active, each charger gets the stricter
limit; when the stricter one ends, the next strictest applies until its own end. The PowerBank
profile is one per charger, so the limit is released (ClearChargingProfile) only when no
activation of the area still needs it. ``envelope`` turns the active activations into that
schedule, so a charger steps back up by itself even if the hub is gone (S1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, insert, literal, update
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.errors import ConflictError, ForbiddenError, FormErrors, NotFoundError
from powerbank.i18n import N_
from powerbank.i18n import gettext as _
from powerbank.models import (
    Activation,
    ActivationAction,
    ActivationState,
    ChargePoint,
    ChargerCapability,
    ClusterNode,
    Dispatch,
    DispatchStatus,
    MeterSample,
    Participation,
    ParticipationState,
    Team,
)
from powerbank.rules.countries import PriceArea
from powerbank.rules.permissions import Permission, Principal, can_on_operator
from powerbank.services import delivery, notifications
from powerbank.services.audit import Actor, record

AREAS = tuple(area.value for area in PriceArea)
MARKETS = ("FCR-D up", "FCR-D down", "FCR-N", "FFR", "aFRR", "mFRR", "DC", "DM", "DR", "Test")
MIN_DURATION_S = 1
MAX_DURATION_S = 60 * 60
# The most an AC charge point draws (3 phases x 32 A x 230 V); no charger stores its own maximum.
MAX_LIMIT_KW = 22.08
# A "Test" activation from the page: a short pause, long enough to watch the power drop.
TEST_DURATION_S = 30
# A profile outlives its activation by this margin: the hub's ClearChargingProfile normally ends
# it, and the profile's own end (S1) takes over only if the release never arrives.
PROFILE_MARGIN_S = 5.0
# Before and after the window, the power chart shows this much for comparison.
CHART_CONTEXT_S = 60
DISPATCH_TABLE = Dispatch.__table__  # type: ignore[attr-defined]
CHARGE_POINT_TABLE = ChargePoint.__table__  # type: ignore[attr-defined]

OVERLAP_RULE = N_(
    "When activations of the same area overlap, each charger gets the stricter limit while both "
    "are active; its limit is released only when no activation of the area still needs it."
)


@dataclass(frozen=True)
class ActivationRequest:
    """A valid activation request (see ``clean_activation``)."""

    price_area: str
    market: str
    action: ActivationAction
    limit_kw: float | None
    duration_s: int
    start_at: datetime | None


@dataclass(frozen=True)
class Step:
    """One stretch of a PowerBank profile: ``limit_w`` until ``until``."""

    until: datetime
    limit_w: float


@dataclass(frozen=True)
class Target:
    """A charger an activation may touch: signed up, in the area, of the operator (S3)."""

    charge_point_id: int
    identity: str
    rate_units: str | None
    max_stack_level: int | None


@dataclass
class Summary:
    """What an activation delivered so far: counts and answer times."""

    total: int = 0
    sent: int = 0
    answered: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    # Seconds from the trigger until the last frame was handed to the sockets.
    last_send_s: float | None = None
    # Seconds from the trigger until 50 %, 95 % and 100 % of the sent chargers had answered.
    answered_s: dict[int, float | None] = field(default_factory=dict)
    released: int = 0

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)


def _number(value: Any, name: str, errors: dict[str, str], *, integer: bool = False) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        errors[name] = _("Enter a number.")
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        errors[name] = _("Enter a number.")
        return None
    if not math.isfinite(number) or (integer and not number.is_integer()):
        errors[name] = _("Enter a whole number of seconds.") if integer else _("Enter a number.")
        return None
    return number


def clean_activation(values: Mapping[str, Any], now: datetime | None = None) -> ActivationRequest:
    """Check an activation request; raise FormErrors naming each bad field."""
    now = now or utcnow()
    errors: dict[str, str] = {}
    area = str(values.get("price_area") or "").strip().upper()
    if area not in AREAS:
        errors["price_area"] = _("Choose a price area: %(areas)s.", areas=", ".join(AREAS))
    market = str(values.get("market") or "").strip()
    if not market:
        errors["market"] = _("Name the market, e.g. FCR-D up, or Test.")
    elif len(market) > 40:
        errors["market"] = _("Use at most 40 characters.")
    action_text = str(values.get("action") or "").strip().lower()
    action = ActivationAction(action_text) if action_text in tuple(ActivationAction) else None
    if action is None:
        errors["action"] = _("Choose pause or limit.")
    limit_kw = _number(values.get("limit_kw"), "limit_kw", errors)
    if action is ActivationAction.LIMIT and "limit_kw" not in errors:
        if limit_kw is None:
            errors["limit_kw"] = _("Give the limit per charger in kW.")
        elif limit_kw < 0:
            errors["limit_kw"] = _("The limit cannot be below 0 kW.")
        elif limit_kw > MAX_LIMIT_KW:
            errors["limit_kw"] = _(
                "The limit cannot be above a charger's maximum of %(max)s kW.", max=f"{MAX_LIMIT_KW:g}"
            )
    elif action is ActivationAction.PAUSE:
        limit_kw = None
    duration = _number(values.get("duration_s"), "duration_s", errors, integer=True)
    if "duration_s" not in errors:
        if duration is None:
            errors["duration_s"] = _("Give the duration in seconds.")
        elif not MIN_DURATION_S <= duration <= MAX_DURATION_S:
            errors["duration_s"] = _(
                "The duration must be %(min)s s to %(max)s min.", min=MIN_DURATION_S, max=MAX_DURATION_S // 60
            )
    start_at = _start(values.get("start_at"), now, errors)
    if errors:
        raise FormErrors(errors)
    assert action is not None and duration is not None
    return ActivationRequest(area, market, action, limit_kw, int(duration), start_at)


def _start(value: Any, now: datetime, errors: dict[str, str]) -> datetime | None:
    """Return the scheduled start (None: now); a start in the past is refused."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        start = value
    else:
        try:
            start = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            errors["start_at"] = _("Give the start as a date and time, e.g. 2030-01-31T14:00:00Z.")
            return None
    if start.tzinfo is None:
        errors["start_at"] = _("Give the start with its time zone (e.g. Z for UTC).")
        return None
    # A second of slack: "now" typed into a form is not "in the past".
    if start < now - timedelta(seconds=1):
        errors["start_at"] = _("The start is in the past; leave it empty to start now.")
        return None
    return start if start > now else None


def may_manage(principal: Principal, operator_id: int) -> bool:
    """Tell whether ``principal`` may start, cancel and watch the operator's activations."""
    return can_on_operator(principal, Permission.MANAGE_ACTIVATIONS, operator_id)


async def create_activation(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    operator_id: int,
    request: ActivationRequest,
    now: datetime | None = None,
) -> Activation:
    """Store a new activation: active at once, or scheduled; the caller commits, then triggers it."""
    if not may_manage(principal, operator_id):
        raise ForbiddenError(_("Only operator admins and managers can start activations."))
    now = now or utcnow()
    start = request.start_at or now
    activation = Activation(
        operator_id=operator_id,
        price_area=request.price_area,
        market=request.market,
        action=request.action,
        limit_kw=request.limit_kw,
        start_at=start,
        duration_s=request.duration_s,
        end_at=start + timedelta(seconds=request.duration_s),
        state=ActivationState.SCHEDULED if request.start_at else ActivationState.ACTIVE,
        created_by=actor.label,
        created_by_user_id=actor.user_id,
        created_at=now,
    )
    session.add(activation)
    await session.flush()
    record(
        session,
        actor,
        "activation.create",
        activation,
        operator_id=operator_id,
        label=describe(activation),
        after={
            "price_area": activation.price_area,
            "market": activation.market,
            "action": activation.action,
            "limit_kw": activation.limit_kw,
            "start_at": start.isoformat(),
            "duration_s": request.duration_s,
        },
    )
    return activation


async def cancel_activation(
    session: AsyncSession, principal: Principal, actor: Actor, activation: Activation, now: datetime | None = None
) -> Activation:
    """Cancel a scheduled or active activation; the caller commits, then releases its chargers."""
    if not may_manage(principal, activation.operator_id):
        raise ForbiddenError(_("Only operator admins and managers can cancel activations."))
    if activation.state == ActivationState.CANCELLED:
        raise ConflictError(_("This activation is already cancelled."))
    if activation.state == ActivationState.ENDED:
        raise ConflictError(_("This activation has already ended."))
    before = activation.state
    activation.state = ActivationState.CANCELLED
    activation.ended_at = now or utcnow()
    activation.cancelled_by = actor.label
    session.add(activation)
    record(
        session,
        actor,
        "activation.cancel",
        activation,
        operator_id=activation.operator_id,
        label=describe(activation),
        before={"state": before},
        after={"state": activation.state},
    )
    return activation


def describe(activation: Activation) -> str:
    """Return a one-line name: "#12 DK2 FCR-D up: pause"."""
    what = "pause" if activation.action == ActivationAction.PAUSE else f"limit {activation.limit_kw:g} kW"
    return f"#{activation.id} {activation.price_area} {activation.market}: {what}"


async def get_activation_or_404(session: AsyncSession, principal: Principal, activation_id: int) -> Activation:
    """Return an activation the principal manages; anything else is "not found"."""
    activation = await session.get(Activation, activation_id)
    if activation is None or not may_manage(principal, activation.operator_id):
        raise NotFoundError(_("No such activation."))
    return activation


async def list_activations(
    session: AsyncSession, operator_ids: Sequence[int], limit: int = 100, offset: int = 0
) -> list[Activation]:
    """Return the newest activations of the operators."""
    if not operator_ids:
        return []
    rows = await session.exec(
        select(Activation)
        .where(col(Activation.operator_id).in_(operator_ids))
        .order_by(col(Activation.created_at).desc(), col(Activation.id).desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows)


async def summaries_of(session: AsyncSession, activation_ids: Sequence[int]) -> dict[int, Summary]:
    """Return the counts of many activations in one grouped query (no answer times)."""
    found = {activation_id: Summary() for activation_id in activation_ids}
    if not activation_ids:
        return found
    rows = await session.exec(
        # sqlmodel's typed select() stops at four columns.
        select(  # type: ignore[call-overload]
            Dispatch.activation_id,
            Dispatch.status,
            func.count(),
            func.count(col(Dispatch.sent_at)),
            func.count(col(Dispatch.answered_at)),
            func.count(col(Dispatch.released_at)),
        )
        .where(col(Dispatch.activation_id).in_(activation_ids))
        .group_by(Dispatch.activation_id, Dispatch.status)
    )
    for activation_id, status, total, sent, answered, released in rows:
        summary = found[activation_id]
        summary.counts[status] = total
        summary.total += total
        summary.sent += sent
        summary.answered += answered
        summary.released += released
    for summary in found.values():
        summary.answered_s = {50: None, 95: None, 100: None}
    return found


async def due_to_start(session: AsyncSession, now: datetime) -> list[Activation]:
    """Return scheduled activations whose start has come."""
    rows = await session.exec(
        select(Activation).where(Activation.state == ActivationState.SCHEDULED, col(Activation.start_at) <= now)
    )
    return list(rows)


async def active_activations(session: AsyncSession) -> list[Activation]:
    """Return every active activation."""
    return list(await session.exec(select(Activation).where(Activation.state == ActivationState.ACTIVE)))


async def next_change_at(session: AsyncSession) -> datetime | None:
    """Return when the next scheduled activation starts or the next active one ends."""
    starts = await session.exec(
        select(func.min(Activation.start_at)).where(Activation.state == ActivationState.SCHEDULED)
    )
    ends = await session.exec(select(func.min(Activation.end_at)).where(Activation.state == ActivationState.ACTIVE))
    moments = [moment for moment in (starts.one(), ends.one()) if moment is not None]
    return min(moments) if moments else None


def envelope(activations: Iterable[Activation], now: datetime) -> list[Step]:
    """Return the limit over time that the active activations impose together (stricter wins)."""
    running = sorted((a for a in activations if a.end_at > now), key=lambda a: a.end_at)
    steps: list[Step] = []
    for index, activation in enumerate(running):
        limit = min(other.limit_w for other in running[index:])
        if steps and steps[-1].limit_w == limit:
            steps[-1] = Step(activation.end_at, limit)
        else:
            steps.append(Step(activation.end_at, limit))
    return steps


async def active_in_area(session: AsyncSession, operator_id: int, price_area: str, now: datetime) -> list[Activation]:
    """Return the operator's activations of the area that are active and not yet over."""
    rows = await session.exec(
        select(Activation).where(
            Activation.operator_id == operator_id,
            Activation.price_area == price_area,
            Activation.state == ActivationState.ACTIVE,
            col(Activation.end_at) > now,
        )
    )
    return list(rows)


def _targets_query() -> Any:
    return (
        select(ChargePoint.id, ChargePoint.identity, ChargerCapability.rate_units, ChargerCapability.max_stack_level)
        .join(Team, col(Team.id) == col(ChargePoint.team_id))
        .join(Participation, col(Participation.charge_point_id) == col(ChargePoint.id))
        .outerjoin(ChargerCapability, col(ChargerCapability.charge_point_id) == col(ChargePoint.id))
        .where(Participation.state == ParticipationState.SIGNED_UP)
    )


async def targets_in_area(session: AsyncSession, operator_id: int, price_area: str) -> list[Target]:
    """Return every signed-up charger of the operator in the area (one query, S3)."""
    rows = await session.exec(
        _targets_query().where(Team.operator_id == operator_id, ChargePoint.price_area == price_area)
    )
    return [Target(cp_id, identity, units, stack) for cp_id, identity, units, stack in rows]


# Ids in one IN list: well inside SQLite's and asyncpg's limits on bound parameters.
HELD_CHUNK = 5_000


async def targets_held(
    session: AsyncSession,
    operator_id: int,
    price_area: str,
    held: Sequence[int],
    node_id: int | None,
    unheld_since: datetime | None = None,
) -> list[Target]:
    """Return a cluster node's share of the area's signed-up chargers (S3): those it holds (``held``),
    those the database says node ``node_id`` holds, and with ``unheld_since`` also those no live
    node holds (offline, or on a node not heard from since then).

    A node reads what it sends or records, not the whole area: the cost follows its share.
    """
    area = _targets_query().where(Team.operator_id == operator_id, ChargePoint.price_area == price_area)
    queries = [area.where(col(ChargePoint.id).in_(held[i : i + HELD_CHUNK])) for i in range(0, len(held), HELD_CHUNK)]
    if node_id is not None:
        queries.append(area.where(col(ChargePoint.node_id) == node_id))
    if unheld_since is not None:
        live = select(ClusterNode.id).where(
            col(ClusterNode.stopped_at).is_(None), col(ClusterNode.heartbeat_at) >= unheld_since
        )
        queries.append(
            area.where(
                or_(
                    col(ChargePoint.online).is_(False),
                    col(ChargePoint.node_id).is_(None),
                    col(ChargePoint.node_id).not_in(live),
                )
            )
        )
    found: dict[int, Target] = {}
    for query in queries:
        for cp_id, identity, units, stack in await session.exec(query):
            found[cp_id] = Target(cp_id, identity, units, stack)
    return list(found.values())


async def targets_for(session: AsyncSession, charge_point_ids: Sequence[int]) -> dict[int, tuple[Target, int, str]]:
    """Return chargers that may get a limit as targets with their operator and area (one query, S3).

    A charger that may get none (not signed up, no area) is left out.
    """
    rows = await session.exec(
        _targets_query()
        .add_columns(Team.operator_id, ChargePoint.price_area)
        .where(col(ChargePoint.id).in_(list(charge_point_ids)))
    )
    return {
        cp_id: (Target(cp_id, identity, units, stack), operator_id, area)
        for cp_id, identity, units, stack, operator_id, area in rows
        if area is not None
    }


async def record_sent(
    session: AsyncSession,
    activation: Activation,
    sent: Mapping[int, datetime],
    offline: Iterable[Target],
    targets: Iterable[Target],
    limit_w: float,
) -> None:
    """Add the activation's dispatch rows in one statement: sent and waiting, or offline."""
    by_id = {target.charge_point_id: target for target in targets}
    offline_ids = {target.charge_point_id for target in offline}
    rows = [
        {
            "activation_id": activation.id,
            "cp_ref": cp_id,
            "identity": target.identity,
            "status": str(DispatchStatus.OFFLINE if cp_id in offline_ids else DispatchStatus.PENDING),
            "detail": "not connected" if cp_id in offline_ids else "",
            "limit_w": limit_w,
            "sent_at": sent.get(cp_id),
        }
        for cp_id, target in by_id.items()
    ]
    if rows:
        # A charger that booted during the fan-out may have its row already (record_resent);
        # that row tells the truth about what it was sent, so it is kept.
        await session.exec(_upsert_dispatches(session, SENT_COLUMNS, only_unsent=True), params=rows)
    await notifications.activation_started(session, activation)


async def record_unsent(session: AsyncSession, activation: Activation, limit_w: float) -> int:
    """Record as offline every signed-up charger of the activation's area that has no row yet, in
    one statement; return how many. In a cluster each node records the chargers it holds: one with
    no row by now was sent the limit by no node (its node died, or never heard of the activation).
    A row stored meanwhile is kept.
    """
    recorded = select(DISPATCH_TABLE.c.id).where(
        DISPATCH_TABLE.c.activation_id == activation.id, DISPATCH_TABLE.c.charge_point_id == ChargePoint.id
    )
    missing = (
        core_select(
            literal(activation.id),
            CHARGE_POINT_TABLE.c.id,
            CHARGE_POINT_TABLE.c.identity,
            literal(str(DispatchStatus.OFFLINE)),
            literal(UNSENT_DETAIL),
            literal(limit_w),
        )
        .join(Team, col(Team.id) == col(ChargePoint.team_id))
        .join(Participation, col(Participation.charge_point_id) == col(ChargePoint.id))
        .where(
            col(Participation.state) == ParticipationState.SIGNED_UP,
            col(Team.operator_id) == activation.operator_id,
            col(ChargePoint.price_area) == activation.price_area,
            ~recorded.exists(),
        )
    )
    columns = ["activation_id", "charge_point_id", "identity", "status", "detail", "limit_w"]
    dialect = session.get_bind().dialect.name
    statement: Any
    if dialect == "postgresql":
        statement = postgresql.insert(DISPATCH_TABLE).from_select(columns, missing).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(DISPATCH_TABLE).from_select(columns, missing).on_conflict_do_nothing()
    else:
        statement = insert(DISPATCH_TABLE).from_select(columns, missing)
    result = await session.exec(statement)
    return int(result.rowcount or 0)


UNSENT_DETAIL = "not connected to any node"
SENT_COLUMNS = ("status", "detail", "limit_w", "sent_at")
RESENT_COLUMNS = (*SENT_COLUMNS, "answered_at")


def _upsert_dispatches(session: AsyncSession, columns: Sequence[str], *, only_unsent: bool) -> Any:
    """Return an INSERT of dispatch rows (params: activation_id, cp_ref, identity and ``columns``) that
    updates the (activation, charge point) row already there instead.

    ``only_unsent``: a row already there is replaced only if it says no limit was sent (offline): in
    a cluster the node that claimed an activation records as offline every charger it does not hold,
    and the node holding one may store what it sent before or after that. A charge point deleted
    since its limit was sent gets a row without it (its identity kept), as its rows get when it is
    deleted after: a deletion committed meanwhile never fails the other chargers' rows.
    """
    values = {
        "activation_id": bindparam("activation_id"),
        "charge_point_id": select(CHARGE_POINT_TABLE.c.id)
        .where(CHARGE_POINT_TABLE.c.id == bindparam("cp_ref"))
        .scalar_subquery(),
        "identity": bindparam("identity"),
        **{column: bindparam(column) for column in columns},
    }
    dialect = session.get_bind().dialect.name
    statement: Any
    if dialect == "postgresql":
        statement = postgresql.insert(DISPATCH_TABLE).values(values)
    elif dialect == "sqlite":
        statement = sqlite.insert(DISPATCH_TABLE).values(values)
    else:
        return insert(DISPATCH_TABLE).values(values)
    return statement.on_conflict_do_update(
        index_elements=["activation_id", "charge_point_id"],
        set_={column: statement.excluded[column] for column in columns},
        where=DISPATCH_TABLE.c.sent_at.is_(None) if only_unsent else None,
    )


async def claim_trigger(session: AsyncSession, activation_id: int, at: datetime) -> bool:
    """Mark an active activation as sent now, unless it was already (one conditional update); flush.

    Of two nodes (or two looks) triggering it at once, only the one this returns True for sends it.
    """
    result = await session.exec(
        update(Activation)
        .where(
            col(Activation.id) == activation_id,
            col(Activation.state) == ActivationState.ACTIVE,
            col(Activation.triggered_at).is_(None),
        )
        .values(triggered_at=at, last_sent_at=at)
    )
    return bool(result.rowcount == 1)


async def record_answers(
    session: AsyncSession, activation_ids: Sequence[int], answers: Sequence[tuple[int, str, str, datetime]]
) -> None:
    """Store chargers' answers (charge point id, status, detail, when) on their dispatch rows, in bulk."""
    params = [
        {
            "b_activation_id": activation_id,
            "b_charge_point_id": cp_id,
            "status": status,
            "detail": detail[:200],
            "answered_at": at,
        }
        for activation_id in activation_ids
        for cp_id, status, detail, at in answers
    ]
    if params:
        await session.exec(
            update(DISPATCH_TABLE)
            .where(
                DISPATCH_TABLE.c.activation_id == bindparam("b_activation_id"),
                DISPATCH_TABLE.c.charge_point_id == bindparam("b_charge_point_id"),
            )
            .values(status=bindparam("status"), detail=bindparam("detail"), answered_at=bindparam("answered_at")),
            params=params,
        )


async def record_resent(
    session: AsyncSession,
    activations: Sequence[Activation],
    targets: Sequence[Target],
    sent_at: datetime,
    limit_w: float,
) -> None:
    """Note a limit sent again to chargers that reconnected: a dispatch row per activation and charger.

    One statement for any number of chargers: rows already there are updated, others inserted.
    """
    rows = [
        {
            "activation_id": activation.id or 0,
            "cp_ref": target.charge_point_id,
            "identity": target.identity,
            "status": str(DispatchStatus.PENDING),
            "detail": "sent after the charger connected",
            "sent_at": sent_at,
            "answered_at": None,
            "limit_w": limit_w,
        }
        for activation in activations
        for target in targets
    ]
    if rows:
        # One statement: a row already there (the activation's fan-out stored it, maybe at this
        # very moment on another node) is updated, others inserted.
        await session.exec(_upsert_dispatches(session, RESENT_COLUMNS, only_unsent=False), params=rows)


async def unreleased(
    session: AsyncSession,
    *,
    activation_id: int | None = None,
    charge_point_ids: Sequence[int] | None = None,
    identities: Sequence[str] | None = None,
    without_charge_point: bool = False,
) -> list[Dispatch]:
    """Return dispatch rows whose limit may still be on the charger (sent, never released).

    ``without_charge_point``: rows whose charge point was deleted (found by ``identities``).
    """
    query = select(Dispatch).where(col(Dispatch.released_at).is_(None), col(Dispatch.sent_at).is_not(None))
    if activation_id is not None:
        query = query.where(Dispatch.activation_id == activation_id)
    if identities is not None:
        query = query.where(col(Dispatch.identity).in_(identities))
    if without_charge_point:
        query = query.where(col(Dispatch.charge_point_id).is_(None))
    if charge_point_ids is None:
        return list(await session.exec(query))
    ids = list(charge_point_ids)
    found: list[Dispatch] = []
    for i in range(0, len(ids), HELD_CHUNK):
        found.extend(await session.exec(query.where(col(Dispatch.charge_point_id).in_(ids[i : i + HELD_CHUNK]))))
    return found


async def record_released(session: AsyncSession, releases: Sequence[tuple[int, str, str, datetime]]) -> None:
    """Store releases (dispatch id, reason, status, when) in one statement."""
    if releases:
        await session.exec(
            update(DISPATCH_TABLE)
            .where(DISPATCH_TABLE.c.id == bindparam("b_id"))
            .values(
                release_reason=bindparam("reason"),
                release_status=bindparam("release_status"),
                released_at=bindparam("at"),
            ),
            params=[
                {"b_id": d_id, "reason": reason[:60], "release_status": status[:40], "at": at}
                for d_id, reason, status, at in releases
            ],
        )


async def meter_intervals(session: AsyncSession, charge_point_ids: Sequence[int]) -> dict[int, int | None]:
    """Return each charger's meter reporting interval as its capability probe read it (None: unknown)."""
    if not charge_point_ids:
        return {}
    rows = await session.exec(
        select(ChargerCapability.charge_point_id, ChargerCapability.meter_interval_s).where(
            col(ChargerCapability.charge_point_id).in_(charge_point_ids)
        )
    )
    return {cp_id: interval for cp_id, interval in rows}


async def record_metering(
    session: AsyncSession, activation_id: int, notes: dict[int, str], *, append: bool = False
) -> None:
    """Note how each charger was asked to report power during an activation (``append``: after the note)."""
    rows = await session.exec(
        select(Dispatch).where(Dispatch.activation_id == activation_id, col(Dispatch.charge_point_id).in_(notes))
    )
    for dispatch in rows:
        note = notes[dispatch.charge_point_id or 0]
        if append and dispatch.metering:
            note = f"{dispatch.metering}; {note}"
        dispatch.metering = note[:200]
        session.add(dispatch)


async def finish(session: AsyncSession, activation: Activation, now: datetime) -> None:
    """Mark an active activation ended (its window is over) and note the power its chargers drew."""
    if activation.state == ActivationState.ACTIVE:
        activation.state = ActivationState.ENDED
        activation.ended_at = now
        session.add(activation)
    await notifications.activation_ended(session, activation)
    await record_power(session, activation)


async def end_windows(session: AsyncSession, activation_ids: Sequence[int], now: datetime) -> list[int]:
    """Mark these activations ended if they are still active; return the ids this call ended.

    One conditional update: of two schedulers looking at once only one ends an activation (and so
    releases it), and a cancel committed meanwhile stays a cancel. The power is noted at the release.
    """
    if not activation_ids:
        return []
    rows = await session.exec(
        update(Activation)
        .where(col(Activation.id).in_(activation_ids), col(Activation.state) == ActivationState.ACTIVE)
        .values(state=ActivationState.ENDED, ended_at=now)
        .returning(col(Activation.id))
    )
    return [activation_id for (activation_id,) in rows]


async def record_power(session: AsyncSession, activation: Activation) -> None:
    """Store each charger's power just before the trigger and its mean during the window (bulk)."""
    if activation.triggered_at is None:
        return
    dispatches = list(
        await session.exec(select(Dispatch.id, Dispatch.charge_point_id).where(Dispatch.activation_id == activation.id))
    )
    by_charger = {cp_id: d_id for d_id, cp_id in dispatches if cp_id is not None}
    samples = await _samples(
        session,
        list(by_charger),
        activation.triggered_at - timedelta(seconds=CHART_CONTEXT_S),
        activation.ended_at or activation.end_at,
    )
    params = []
    for cp_id, d_id in by_charger.items():
        points = samples.get(cp_id, [])
        before = [power for at, power in points if at <= activation.triggered_at]
        during = [power for at, power in points if at > activation.triggered_at]
        params.append(
            {
                "b_id": d_id,
                "power_before_w": before[-1] if before else None,
                "power_during_w": sum(during) / len(during) if during else None,
            }
        )
    if params:
        await session.exec(
            update(DISPATCH_TABLE)
            .where(DISPATCH_TABLE.c.id == bindparam("b_id"))
            .values(power_before_w=bindparam("power_before_w"), power_during_w=bindparam("power_during_w")),
            params=params,
        )


async def _samples(
    session: AsyncSession, charge_point_ids: Sequence[int], since: datetime, until: datetime
) -> dict[int, list[tuple[datetime, float]]]:
    """Return measured power per charger between two moments, oldest first (one query)."""
    found: dict[int, list[tuple[datetime, float]]] = {}
    if not charge_point_ids:
        return found
    rows = await session.exec(
        select(MeterSample.charge_point_id, MeterSample.measured_at, MeterSample.power_w)
        .where(
            col(MeterSample.charge_point_id).in_(charge_point_ids),
            col(MeterSample.power_w).is_not(None),
            col(MeterSample.measured_at) >= since,
            col(MeterSample.measured_at) <= until,
        )
        .order_by(col(MeterSample.measured_at))
    )
    for cp_id, at, power in rows:
        if power is not None:
            found.setdefault(cp_id, []).append((at, float(power)))
    return found


async def dispatches_of(session: AsyncSession, activation_id: int) -> list[Dispatch]:
    """Return an activation's dispatch rows by charger identity."""
    rows = await session.exec(
        select(Dispatch)
        .where(Dispatch.activation_id == activation_id)
        .order_by(col(Dispatch.identity), col(Dispatch.id))
    )
    return list(rows)


async def dispatch_page(session: AsyncSession, activation_id: int, offset: int, limit: int) -> list[Dispatch]:
    """Return some of an activation's dispatch rows, in the order of ``dispatches_of``."""
    rows = await session.exec(
        select(Dispatch)
        .where(Dispatch.activation_id == activation_id)
        .order_by(col(Dispatch.identity), col(Dispatch.id))
        .offset(offset)
        .limit(limit)
    )
    return list(rows)


async def summary_of(session: AsyncSession, activation: Activation) -> Summary:
    """``summarise`` of all an activation's dispatch rows, counted by the database (a page of a large
    activation reads only the rows it shows)."""
    ours = Dispatch.activation_id == activation.id
    counts: Any = select(Dispatch.status, func.count()).where(ours).group_by(col(Dispatch.status))
    summary = Summary(counts={status: n for status, n in await session.exec(counts)})
    summary.total = sum(summary.counts.values())
    answered_rows = (col(Dispatch.answered_at).is_not(None), col(Dispatch.sent_at).is_not(None))
    totals: Any = select(
        func.count(col(Dispatch.sent_at)),
        func.count(col(Dispatch.released_at)),
        func.count(case((col(Dispatch.sent_at).is_not(None), col(Dispatch.answered_at)))),
    ).where(ours)
    summary.sent, summary.released, answered = (await session.exec(totals)).one()
    trigger = activation.triggered_at
    summary.answered = answered if trigger is not None else 0
    if trigger is not None and activation.last_sent_at is not None:
        summary.last_send_s = (activation.last_sent_at - trigger).total_seconds()
    for share in (50, 95, 100):
        needed = math.ceil(summary.sent * share / 100)
        summary.answered_s[share] = None
        if trigger is not None and 0 < needed <= summary.answered:
            nth = await session.exec(
                select(Dispatch.answered_at)
                .where(ours, *answered_rows)
                .order_by(col(Dispatch.answered_at))
                .offset(needed - 1)
                .limit(1)
            )
            answered_at = nth.one()
            summary.answered_s[share] = (answered_at - trigger).total_seconds() if answered_at else None
    return summary


def summarise(activation: Activation, dispatches: Sequence[Dispatch]) -> Summary:
    """Count the outcome and time the answers from the trigger."""
    summary = Summary(total=len(dispatches))
    for dispatch in dispatches:
        summary.counts[dispatch.status] = summary.counts.get(dispatch.status, 0) + 1
    summary.sent = sum(1 for d in dispatches if d.sent_at is not None)
    summary.released = sum(1 for d in dispatches if d.released_at is not None)
    trigger = activation.triggered_at
    answer_times = sorted(
        (d.answered_at - trigger).total_seconds()
        for d in dispatches
        if trigger is not None and d.answered_at is not None and d.sent_at is not None
    )
    summary.answered = len(answer_times)
    if trigger is not None and activation.last_sent_at is not None:
        summary.last_send_s = (activation.last_sent_at - trigger).total_seconds()
    for share in (50, 95, 100):
        needed = math.ceil(summary.sent * share / 100)
        summary.answered_s[share] = answer_times[needed - 1] if 0 < needed <= len(answer_times) else None
    return summary


@dataclass(frozen=True)
class PowerChart:
    """The area's measured charging power over time, as points ready for an SVG polyline."""

    points: list[tuple[float, float]]  # (seconds from the trigger, kW)
    start_s: float
    end_s: float
    window_end_s: float
    max_kw: float


# The chart has at most this many points (a long window is thinned, not cut).
CHART_POINTS = 240


def power_chart(activation: Activation, delivered: delivery.Delivery | None) -> PowerChart | None:
    """The area's measured power before, during and after the window, from its judged response curve
    (each charger's last sample holding at every second), thinned to at most CHART_POINTS points."""
    if activation.triggered_at is None or delivered is None or not delivered.area.points:
        return None
    curve = delivered.area.points
    every = max(1, math.ceil(len(curve) / CHART_POINTS))
    chosen = curve[::every] if (len(curve) - 1) % every == 0 else [*curve[::every], curve[-1]]
    points = [(float(p.offset_s), (p.measured_w or 0.0) / 1000) for p in chosen]
    window_end = activation.ended_at or activation.end_at
    return PowerChart(
        points=points,
        start_s=points[0][0],
        end_s=points[-1][0],
        window_end_s=(window_end - activation.triggered_at).total_seconds(),
        max_kw=max([kw for _, kw in points] + [1.0]),
    )


async def activations_of_charge_point(
    session: AsyncSession, charge_point_id: int, limit: int = 20
) -> list[tuple[Activation, Dispatch]]:
    """Return the activations that reached a charge point, newest first, with its dispatch row."""
    rows = await session.exec(
        select(Activation, Dispatch)
        .join(Dispatch, col(Dispatch.activation_id) == col(Activation.id))
        .where(Dispatch.charge_point_id == charge_point_id)
        .order_by(col(Activation.start_at).desc())
        .limit(limit)
    )
    return [(activation, dispatch) for activation, dispatch in rows]
