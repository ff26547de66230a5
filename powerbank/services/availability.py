"""Availability per price area: the power each operator could pause right now, kept minute by minute.

``sample`` is what the leading node runs once a minute (``powerbank.dispatch.availability``): for
every operator and price area, the newest measured power of the signed-up chargers connected to the
hub, summed, with how many were signed up, online and reporting. It costs one read, one insert of
a row per (operator, area) and one delete of rows past KEPT, whatever the number of chargers. ``series`` reads it back
for the pages and the API, always for one operator: an operator never sees another's fleet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, literal, text
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.errors import FormErrors
from powerbank.i18n import gettext as _
from powerbank.models import AreaAvailability, ChargePoint, MeterSample, Participation, ParticipationState, Team
from powerbank.rules.countries import PriceArea
from powerbank.services.chargers import CURRENT_POWER_MAX_AGE

AREAS = tuple(area.value for area in PriceArea)
# Rows older than this are deleted by the sampler.
KEPT = timedelta(days=35)
# The longest range one read may ask for, and the one it gets when it names none.
MAX_RANGE = timedelta(days=31)
DEFAULT_RANGE = timedelta(hours=24)
TABLE = AreaAvailability.__table__  # type: ignore[attr-defined]
METER = MeterSample.__table__  # type: ignore[attr-defined]
# Rows per INSERT: seven values each stay well below every database's limit of bound values.
INSERT_CHUNK = 500


def minute_of(moment: datetime) -> datetime:
    """Return the start of the minute ``moment`` is in (UTC)."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


@dataclass(frozen=True)
class Sampled:
    """What one sampling wrote: its minute, the rows it found and the rows new to the table."""

    minute: datetime
    rows: list[dict[str, Any]]
    written: int


def _fleet_query(since: datetime) -> Any:
    """Return per (operator, area) the signed-up, online and reporting chargers and their summed power.

    Each charger's power is looked up by scalar subqueries, one index probe per available charger,
    never by a join the planner could turn into a scan of every meter sample. ``OFFSET 0`` keeps
    each layer a subquery of its own, so each probe runs once per charger (PostgreSQL would
    otherwise copy the probe into every aggregate that reads it).
    """
    signed_up = col(Participation.state) == ParticipationState.SIGNED_UP
    available = and_(signed_up, col(ChargePoint.online))
    # The available charger's newest sample with a power reading: the (charge_point_id, id) index
    # read backwards from the newest, which is almost always the one.
    newest = (
        core_select(METER.c.id)
        .where(METER.c.charge_point_id == ChargePoint.id, METER.c.power_w.is_not(None))
        .order_by(METER.c.id.desc())
        .limit(1)
        .correlate(ChargePoint.__table__)  # type: ignore[attr-defined]
        .scalar_subquery()
    )
    chargers = (
        core_select(
            col(Team.operator_id).label("operator_id"),
            col(ChargePoint.price_area).label("price_area"),
            case((signed_up, 1), else_=0).label("signed_up"),
            case((available, 1), else_=0).label("online"),
            case((available, newest), else_=None).label("sample_id"),
        )
        .select_from(ChargePoint)
        .join(Team, col(Team.id) == col(ChargePoint.team_id))
        .outerjoin(Participation, col(Participation.charge_point_id) == col(ChargePoint.id))
        .where(col(ChargePoint.price_area).in_(AREAS))
        .offset(0)
        .subquery("chargers")
    )
    # That sample's power, if it is recent enough to be current (a primary-key lookup).
    sample = METER.alias("sample")
    current = (
        core_select(sample.c.power_w)
        .where(sample.c.id == chargers.c.sample_id, sample.c.received_at >= since)
        .correlate(chargers)
        .scalar_subquery()
    )
    powered = (
        core_select(
            chargers.c.operator_id,
            chargers.c.price_area,
            chargers.c.signed_up,
            chargers.c.online,
            current.label("power_w"),
        )
        .offset(0)
        .subquery("powered")
    )
    return core_select(
        powered.c.operator_id,
        powered.c.price_area,
        func.sum(powered.c.signed_up).label("signed_up"),
        func.sum(powered.c.online).label("online"),
        func.count(powered.c.power_w).label("reporting"),
        func.coalesce(func.sum(powered.c.power_w), literal(0.0)).label("power_w"),
    ).group_by(powered.c.operator_id, powered.c.price_area)


async def sample(session: AsyncSession, now: datetime) -> Sampled:
    """Write the minute of ``now`` for every operator and area it has charge points in (not committed).

    A minute already written (a restart within it, another node) is left as it is. Power counts
    if it was received within CURRENT_POWER_MAX_AGE, as the charge point page shows it; a charger
    online but not reporting counts as online, not as reporting.
    """
    minute = minute_of(now)
    if session.get_bind().dialect.name == "postgresql":
        # The planner's estimate of the per-charger probes is far above what they cost, and would
        # have the query compiled first (JIT), which alone takes longer than running it.
        no_jit: Any = text("SET LOCAL jit = off")
        await session.exec(no_jit)
    found = await session.exec(_fleet_query(now - CURRENT_POWER_MAX_AGE))
    rows = [
        {
            "operator_id": operator_id,
            "price_area": area,
            "minute": minute,
            "power_w": float(power_w or 0.0),
            "signed_up": int(signed or 0),
            "online": int(online or 0),
            "reporting": int(reporting or 0),
        }
        for operator_id, area, signed, online, reporting, power_w in found
    ]
    written = await _insert_new(session, rows)
    await prune(session, now)
    return Sampled(minute, rows, written)


async def _insert_new(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Insert the rows whose (operator, area, minute) is not stored yet; return how many were new."""
    dialect = session.get_bind().dialect.name
    written = 0
    for first in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[first : first + INSERT_CHUNK]
        if dialect == "postgresql":
            statement: Any = postgresql.insert(TABLE).values(chunk).on_conflict_do_nothing()
        elif dialect == "sqlite":
            statement = sqlite.insert(TABLE).values(chunk).on_conflict_do_nothing()
        else:
            statement = insert(TABLE).values(chunk).prefix_with("IGNORE")
        result = await session.exec(statement)
        written += max(int(result.rowcount or 0), 0)
    return written


async def prune(session: AsyncSession, now: datetime) -> int:
    """Delete the rows older than KEPT; return how many."""
    result = await session.exec(delete(TABLE).where(TABLE.c.minute < minute_of(now) - KEPT))
    return int(result.rowcount or 0)


# Reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """A valid request for one area's series: [start, end), both aware UTC."""

    area: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Point:
    """One sampled minute of an area."""

    minute: datetime
    power_w: float
    signed_up: int
    online: int
    reporting: int


def _moment(value: str | None, name: str, errors: dict[str, str]) -> datetime | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        hint = " (in a URL, write + as %2B, or use Z)" if " " in text else ""
        errors[name] = f"Give a date and time in ISO 8601 with a time zone, e.g. 2026-12-07T06:00:00Z{hint}."
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        errors[name] = _("Give a time zone too (Z or e.g. +01:00): a time without one is ambiguous.")
        return None
    return moment.astimezone(UTC)


def clean_range(area: str, start: str | None, end: str | None, now: datetime) -> Range:
    """Check an area and an ISO 8601 range; the range defaults to the DEFAULT_RANGE up to ``now``.

    Raises FormErrors naming each bad field: an unknown area, a time that is not ISO 8601 with a
    time zone, a start not before the end, a range longer than MAX_RANGE.
    """
    errors: dict[str, str] = {}
    if area not in AREAS:
        errors["area"] = f"Not a price area PowerBank knows; one of {', '.join(AREAS)}."
    begin, finish = _moment(start, "from", errors), _moment(end, "to", errors)
    if errors:
        raise FormErrors(errors)
    if finish is None:
        finish = begin + DEFAULT_RANGE if begin is not None else now
    if begin is None:
        begin = finish - DEFAULT_RANGE
    if begin >= finish:
        raise FormErrors({"from": _("Must be before to.")})
    if finish - begin > MAX_RANGE:
        raise FormErrors({"to": _("The range may be at most %(days)s days long.", days=MAX_RANGE.days)})
    return Range(area, begin, finish)


async def series(session: AsyncSession, operator_id: int, wanted: Range) -> list[Point]:
    """Return the operator's sampled minutes of the area in [start, end), oldest first (one query).

    A minute the hub did not sample is absent, never filled in.
    """
    statement: Any = (
        core_select(TABLE.c.minute, TABLE.c.power_w, TABLE.c.signed_up, TABLE.c.online, TABLE.c.reporting)
        .where(
            TABLE.c.operator_id == operator_id,
            TABLE.c.price_area == wanted.area,
            TABLE.c.minute >= wanted.start,
            TABLE.c.minute < wanted.end,
        )
        .order_by(TABLE.c.minute)
    )
    rows = await session.exec(statement)
    return [Point(minute, float(power), signed, online, reporting) for minute, power, signed, online, reporting in rows]
