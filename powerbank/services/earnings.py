"""Earnings: market prices, revenue shares, what each charge point contributed, and monthly statements.

Where the figures come from (docs/earnings.md says it for people):

- **Capacity.** Each hour (UTC) a charge point was signed up throughout and reported its power, its
  mean measured power is accrued into ``available_hour`` from its quarter-hour means (``meter_quarter``,
  kept 15 days, so accrual must run within that: ``accrue_hours``). The hour earns its power in MW
  times each capacity price of its area holding that hour.
- **Activated energy.** Once an activation's evidence is kept, each charger's delivered reduction is
  judged once, exactly as the activation page judges it (services/delivery.py), and stored in
  ``delivered_energy`` (``settle_deliveries``): the reduction held over the window, for "delivered"
  and "partial" verdicts; "accepted but not delivered" and every other verdict deliver 0. It earns
  its MWh times the energy price of its area and market holding at the trigger.
- **Statements.** ``refresh_month`` computes every team's lines of an operator's open month in a
  fixed number of queries whatever the number of charge points, and replaces the stored ones; pages,
  CSV, PDF and the API only read stored lines. ``close_month`` refreshes a month a last time and
  closes it: its lines never change again. What a closed month would now come to differently (late
  evidence, say) becomes a dated correction line in the month after it.

The rounding rule is in rules/earnings.py (``line_amount``): once per line, to the cent, half up.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, String, and_, cast, column, delete, func, insert, values
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import UTCDateTime
from powerbank.errors import ConflictError, FormErrors
from powerbank.models import (
    Activation,
    AvailableHour,
    ChargePoint,
    DeliveredEnergy,
    Dispatch,
    EarningsMonth,
    EarningsSettled,
    MarketPrice,
    MeterQuarter,
    OperatorRevenueShare,
    Participation,
    ParticipationEvent,
    ParticipationState,
    StatementLine,
    Team,
    TeamRevenueShare,
)
from powerbank.rules.countries import PriceArea
from powerbank.rules.earnings import (
    CURRENCY_BY_AREA,
    PriceKind,
    line_amount,
    month_bounds,
    month_of,
    next_month,
    parse_price,
    parse_share,
    previous_month,
    round_value,
)
from powerbank.rules.permissions import Permission
from powerbank.services import audit, notifications
from powerbank.services.access import Acting, actor_of, require_on_operator, require_on_team
from powerbank.services.activations import MARKETS
from powerbank.services.audit import SYSTEM
from powerbank.services.delivery import VERDICT_CHUNK, Verdict, delivery_of

# The markets a price may be entered for: those activations name, except the test market.
PRICED_MARKETS = tuple(market for market in MARKETS if market != "Test")
AREAS = tuple(area.value for area in PriceArea)
# The share of market revenue that goes to a team when its operator set none.
DEFAULT_SHARE = Decimal("0.7000")
# A month still open this many days after its end is closed by the hub (``close_due_months``).
AUTO_CLOSE_DAYS = 10
# Quarter-hour means are kept 15 days; accrual reads no further back than this.
ACCRUE_BACK = timedelta(days=14)
# Verdicts whose reduction earns activated energy.
EARNING_VERDICTS = (Verdict.DELIVERED, Verdict.PARTIAL)
# Verdicts of a charger that did not take part (it was not reached, or refused).
ABSENT_VERDICTS = (Verdict.OFFLINE, Verdict.NOT_ACCEPTED)
CHARGE_POINT_LINE = "charge point"
CORRECTION_LINE = "correction"
ENERGY_TABLE: Any = DeliveredEnergy.__table__  # type: ignore[attr-defined]
# Rows per INSERT (about 20 values each): well below every database's limit of bound values.
INSERT_CHUNK = 1000
CSV_COLUMNS = (
    "month",
    "line",
    "charge_point",
    "price_area",
    "hours_signed_up",
    "average_available_kw",
    "activations",
    "delivered_kwh",
    "market_value",
    "share_percent",
    "amount",
    "currency",
    "note",
)


class MonthClosedError(ConflictError):
    """The month is closed: its statements never change."""


# ---- prices ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceInput:
    """One valid price row, with the line it came from (1 for a form)."""

    line: int
    price_area: str
    market: str
    kind: str
    currency: str
    starts_at: datetime
    ends_at: datetime
    price: Decimal


@dataclass(frozen=True)
class PricesSaved:
    """What saving prices did."""

    added: int
    changed: int
    unchanged: int
    months: tuple[str, ...]


class PriceRowsRefused(FormErrors):
    """Nothing was saved: ``errors`` maps "line N" (or a field, for a form) to what is wrong."""


PRICE_FIELDS = ("price_area", "market", "kind", "currency", "starts_at", "ends_at", "price")


def _moment(text: str, errors: list[str], name: str) -> datetime | None:
    value = (text or "").strip()
    if not value:
        errors.append(f"{name}: give a date and time, e.g. 2026-11-01T00:00:00Z.")
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        errors.append(f"{name}: {value!r} is not an ISO 8601 date and time, e.g. 2026-11-01T00:00:00Z.")
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        errors.append(f"{name}: give a time zone too (Z or e.g. +01:00).")
        return None
    return moment.astimezone(UTC)


def clean_price_row(row: dict[str, str], line: int) -> tuple[PriceInput | None, list[str]]:
    """Check one price row (a CSV line or the form); return it, or what is wrong with it."""
    errors: list[str] = []
    area = (row.get("price_area") or "").strip().upper()
    if area not in AREAS:
        errors.append(f"price_area: {area or 'nothing'} is not a price area PowerBank knows ({', '.join(AREAS)}).")
    market = (row.get("market") or "").strip()
    if market not in PRICED_MARKETS:
        errors.append(f"market: {market or 'nothing'} is not a market PowerBank knows ({', '.join(PRICED_MARKETS)}).")
    kind = (row.get("kind") or "").strip().lower()
    if kind not in tuple(PriceKind):
        errors.append("kind: capacity (per MW per hour) or energy (per MWh).")
    currency = (row.get("currency") or "").strip().upper()
    expected = CURRENCY_BY_AREA.get(area)
    if expected is not None and currency != expected:
        errors.append(f"currency: prices in {area} are in {expected}, not {currency or 'nothing'}.")
    starts_at = _moment(row.get("starts_at", ""), errors, "starts_at")
    ends_text = (row.get("ends_at") or "").strip()
    ends_at: datetime | None
    if not ends_text and starts_at is not None and kind == PriceKind.CAPACITY:
        ends_at = starts_at + timedelta(hours=1)
    else:
        ends_at = _moment(ends_text, errors, "ends_at")
    if starts_at is not None and ends_at is not None:
        if ends_at <= starts_at:
            errors.append("ends_at: must be after starts_at.")
        elif kind == PriceKind.CAPACITY and (
            starts_at.minute or starts_at.second or starts_at.microsecond or (ends_at - starts_at) % timedelta(hours=1)
        ):
            errors.append("starts_at: a capacity price holds for whole hours (UTC), e.g. 2026-11-01T13:00:00Z.")
        elif ends_at - starts_at > timedelta(days=31):
            errors.append("ends_at: a price period is at most 31 days long.")
    price, problem = parse_price(row.get("price", ""), expected or currency)
    if problem:
        errors.append(f"price: {problem}")
    if errors or starts_at is None or ends_at is None or price is None:
        return None, errors
    return PriceInput(line, area, market, kind, currency, starts_at, ends_at, price), []


def read_price_csv(text: str) -> list[PriceInput]:
    """Read a price file (a header naming PRICE_FIELDS; ends_at may be left out).

    Raises PriceRowsRefused naming each bad line.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in PRICE_FIELDS if name != "ends_at" and name not in header]
    if missing:
        raise PriceRowsRefused(
            {"line 1": f"The header lacks {', '.join(missing)} (columns: {', '.join(PRICE_FIELDS)})."}
        )
    reader.fieldnames = header
    rows: list[PriceInput] = []
    errors: dict[str, str] = {}
    for row in reader:
        line = reader.line_num
        found, problems = clean_price_row({k: v or "" for k, v in row.items() if isinstance(k, str)}, line)
        if problems:
            errors[f"line {line}"] = " ".join(problems)
        elif found is not None:
            rows.append(found)
    if errors:
        raise PriceRowsRefused(errors)
    if not rows:
        raise PriceRowsRefused({"line 2": "The file has no prices."})
    return rows


def _months_between(start: datetime, end: datetime) -> list[str]:
    months = [month_of(start)]
    while month_bounds(months[-1])[1] < end:
        months.append(next_month(months[-1]))
    return months


async def closed_months(session: AsyncSession, operator_id: int) -> set[str]:
    """Return the operator's closed months."""
    rows = await session.exec(
        select(EarningsMonth.month).where(
            EarningsMonth.operator_id == operator_id, col(EarningsMonth.closed_at).is_not(None)
        )
    )
    return set(rows.all())


async def save_prices(
    session: AsyncSession, by: Acting, operator_id: int, rows: Sequence[PriceInput], now: datetime
) -> PricesSaved:
    """Save prices all or nothing, then refresh the open months they touch (the caller commits).

    A row equal to a stored price changes nothing (importing a file twice is harmless); a row for a
    stored period with another price replaces it; a row whose period overlaps another row of the
    same area, market and kind (stored or in the same file), or falls in a closed month, refuses
    them all: PriceRowsRefused names the lines.
    """
    require_on_operator(by, Permission.MANAGE_EARNINGS, operator_id)
    errors: dict[str, str] = {}
    closed = await closed_months(session, operator_id)
    for row in rows:
        hit = [m for m in _months_between(row.starts_at, row.ends_at) if m in closed]
        if hit:
            errors[f"line {row.line}"] = f"{', '.join(hit)} is closed: its statements no longer change."
    # Overlaps within the rows themselves.
    by_key: dict[tuple[str, str, str], list[PriceInput]] = defaultdict(list)
    for row in rows:
        by_key[(row.price_area, row.market, row.kind)].append(row)
    for group in by_key.values():
        group.sort(key=lambda r: r.starts_at)
        for before, after in zip(group, group[1:], strict=False):
            if after.starts_at < before.ends_at:
                errors.setdefault(
                    f"line {after.line}",
                    f"Its period overlaps line {before.line}'s ({after.price_area} {after.market} {after.kind}).",
                )
    if errors:
        raise PriceRowsRefused(errors)
    # The stored prices these rows could meet: one query.
    start = min(row.starts_at for row in rows)
    end = max(row.ends_at for row in rows)
    stored = list(
        await session.exec(
            select(MarketPrice).where(
                MarketPrice.operator_id == operator_id,
                col(MarketPrice.starts_at) < end,
                col(MarketPrice.ends_at) > start,
            )
        )
    )
    stored_by_key: dict[tuple[str, str, str], list[MarketPrice]] = defaultdict(list)
    for price in stored:
        stored_by_key[(price.price_area, price.market, price.kind)].append(price)
    for group_prices in stored_by_key.values():
        group_prices.sort(key=lambda p: p.starts_at)
    added = changed = unchanged = 0
    to_add: list[MarketPrice] = []
    for row in rows:
        group_prices = stored_by_key.get((row.price_area, row.market, row.kind), [])
        starts = [p.starts_at for p in group_prices]
        index = bisect.bisect_left(starts, row.starts_at)
        same = group_prices[index] if index < len(group_prices) and starts[index] == row.starts_at else None
        if same is not None and same.ends_at == row.ends_at:
            if same.price == row.price:
                unchanged += 1
            else:
                same.price, same.entered_by, same.entered_at = row.price, actor_of(by).label, now
                session.add(same)
                changed += 1
            continue
        clash = next(
            (
                p
                for p in group_prices[max(0, index - 1) : index + 2]
                if p.starts_at < row.ends_at and row.starts_at < p.ends_at
            ),
            None,
        )
        if clash is not None:
            errors[f"line {row.line}"] = (
                f"Its period overlaps the stored {clash.price_area} {clash.market} {clash.kind} price of "
                f"{clash.starts_at:%Y-%m-%d %H:%M}–{clash.ends_at:%Y-%m-%d %H:%M} UTC."
            )
            continue
        to_add.append(
            MarketPrice(
                operator_id=operator_id,
                price_area=row.price_area,
                market=row.market,
                kind=row.kind,
                currency=row.currency,
                starts_at=row.starts_at,
                ends_at=row.ends_at,
                price=row.price,
                entered_by=actor_of(by).label,
                entered_at=now,
            )
        )
        added += 1
    if errors:
        # Nothing half-saved: the caller's transaction is rolled back with the changed prices.
        raise PriceRowsRefused(errors)
    session.add_all(to_add)
    months = tuple(sorted({m for row in rows for m in _months_between(row.starts_at, row.ends_at)}))
    if added or changed:
        audit.record(
            session,
            actor_of(by),
            "enter market prices",
            _OperatorRef(operator_id),
            operator_id=operator_id,
            label=f"{added + changed} price(s)",
            after={"added": added, "changed": changed, "unchanged": unchanged, "months": list(months)},
        )
        await session.flush()
        for month in months:
            await refresh_month(session, operator_id, month, now)
    return PricesSaved(added, changed, unchanged, months)


@dataclass(frozen=True)
class _OperatorRef:
    """What an audit entry of an operator-wide earnings change is about."""

    id: int
    name: str = "earnings"


async def list_prices(session: AsyncSession, operator_id: int, month: str, limit: int = 2000) -> list[MarketPrice]:
    """Return the operator's prices holding in ``month``, by area, market, kind and time."""
    start, end = month_bounds(month)
    rows = await session.exec(
        select(MarketPrice)
        .where(
            MarketPrice.operator_id == operator_id, col(MarketPrice.starts_at) < end, col(MarketPrice.ends_at) > start
        )
        .order_by(
            col(MarketPrice.price_area), col(MarketPrice.market), col(MarketPrice.kind), col(MarketPrice.starts_at)
        )
        .limit(limit)
    )
    return list(rows)


# ---- revenue shares ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Shares:
    """An operator's share and its teams' own."""

    operator: Decimal
    operator_set: bool
    teams: dict[int, Decimal]

    def of(self, team_id: int) -> Decimal:
        return self.teams.get(team_id, self.operator)


async def shares_of(session: AsyncSession, operator_id: int) -> Shares:
    """Return the operator's share and its teams' overrides (two queries)."""
    own = await session.get(OperatorRevenueShare, operator_id)
    rows = await session.exec(
        select(TeamRevenueShare)
        .join(Team, col(Team.id) == col(TeamRevenueShare.team_id))
        .where(Team.operator_id == operator_id)
    )
    return Shares(own.share if own else DEFAULT_SHARE, own is not None, {row.team_id: row.share for row in rows})


async def set_share(
    session: AsyncSession, by: Acting, operator_id: int, team: Team | None, percent: str, now: datetime
) -> Decimal | None:
    """Set the operator's share, or a team's own (``team``; an empty ``percent`` removes a team's own).

    Raises FormErrors for a share that is not a percentage from 0 to 100. Refreshes the open months;
    the caller commits.
    """
    require_on_operator(by, Permission.MANAGE_EARNINGS, operator_id)
    if team is not None and team.operator_id != operator_id:
        raise FormErrors({"share": "No such team."})
    share: Decimal | None = None
    if team is not None and not percent.strip():
        existing = await session.get(TeamRevenueShare, team.id)
        before = existing.share if existing else None
        if existing is not None:
            await session.delete(existing)
    else:
        share, problem = parse_share(percent)
        if problem or share is None:
            raise FormErrors({"share": problem or "Give the share in percent."})
        if team is None:
            row: Any = await session.get(OperatorRevenueShare, operator_id)
            before = row.share if row else None
            row = row or OperatorRevenueShare(operator_id=operator_id, share=share)
        else:
            row = await session.get(TeamRevenueShare, team.id)
            before = row.share if row else None
            row = row or TeamRevenueShare(team_id=team.id or 0, share=share)
        row.share, row.updated_at = share, now
        session.add(row)
    audit.record(
        session,
        actor_of(by),
        "set revenue share",
        team if team is not None else _OperatorRef(operator_id),
        operator_id=operator_id,
        label=team.name if team is not None else "operator's share",
        before={"share": str(before) if before is not None else None},
        after={"share": str(share) if share is not None else None},
    )
    await session.flush()
    for month in await open_months(session, operator_id, now):
        await refresh_month(session, operator_id, month, now)
    return share


# ---- what charge points contributed ------------------------------------------------------------


def hour_of(moment: datetime) -> datetime:
    """Return the start of the hour (UTC) ``moment`` is in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _signed_up_throughout(changes: list[tuple[datetime, bool]], start: datetime, end: datetime) -> bool:
    """Decide from a charge point's (time, signed up) changes, oldest first, whether it was in all of [start, end)."""
    times = [at for at, _ in changes]
    index = bisect.bisect_right(times, start)
    if index == 0 or not changes[index - 1][1]:
        return False
    return all(signed for at, signed in changes[index:] if at < end)


async def accrue_hours(session: AsyncSession, now: datetime, operator_id: int | None = None) -> int:
    """Store each hour, up to the last whole one, that a charge point was signed up throughout and reported power.

    Reads the quarter-hour means since the newest accrued hour (at most ACCRUE_BACK), and each charge
    point's participation history (three queries). The hub accrues every operator at once (``operator_id``
    None): the newest accrued hour of all is where the next accrual starts, so accruing one operator
    alone would leave the others' hours before it behind. The hour's power is the mean of its quarter-hours'
    means. Returns how many hours were stored; the caller commits.
    """
    until = hour_of(now)
    table = AvailableHour.__table__  # type: ignore[attr-defined]
    newest_query: Any = (
        core_select(func.max(table.c.hour))
        .select_from(table.join(ChargePoint.__table__, ChargePoint.__table__.c.id == table.c.charge_point_id))  # type: ignore[attr-defined]
        .join(Team.__table__, col(Team.id) == col(ChargePoint.team_id))  # type: ignore[attr-defined]
    )
    if operator_id is not None:
        newest_query = newest_query.where(col(Team.operator_id) == operator_id)
    newest = (await session.exec(newest_query)).scalar()
    since = until - ACCRUE_BACK
    if newest is not None:
        since = max(since, newest.astimezone(UTC) + timedelta(hours=1))
    if since >= until:
        return 0
    quarters_query: Any = (
        select(MeterQuarter.charge_point_id, MeterQuarter.starts_at, MeterQuarter.power_sum_w, MeterQuarter.samples)
        .join(ChargePoint, col(ChargePoint.id) == col(MeterQuarter.charge_point_id))
        .join(Team, col(Team.id) == col(ChargePoint.team_id))
        .where(col(MeterQuarter.starts_at) >= since, col(MeterQuarter.starts_at) < until)
    )
    if operator_id is not None:
        quarters_query = quarters_query.where(Team.operator_id == operator_id)
    means: dict[tuple[int, datetime], list[float]] = defaultdict(list)
    for cp_id, starts_at, power_sum, samples in await session.exec(quarters_query):
        if samples:
            means[(cp_id, hour_of(starts_at))].append(power_sum / samples)
    if not means:
        return 0
    cp_ids = sorted({cp_id for cp_id, _ in means})
    changes: dict[int, list[tuple[datetime, bool]]] = defaultdict(list)
    events = await session.exec(
        select(ParticipationEvent.charge_point_id, ParticipationEvent.at, ParticipationEvent.to_state)
        .where(col(ParticipationEvent.charge_point_id).in_(cp_ids), col(ParticipationEvent.at) < until)
        .order_by(col(ParticipationEvent.charge_point_id), col(ParticipationEvent.at), col(ParticipationEvent.id))
    )
    for cp_id, at, to_state in events:
        changes[cp_id].append((at.astimezone(UTC), to_state == ParticipationState.SIGNED_UP))
    # A charge point with no history (signed up before histories were kept) counts from its state's since.
    states = await session.exec(
        select(Participation.charge_point_id, Participation.state, Participation.since).where(
            col(Participation.charge_point_id).in_(cp_ids)
        )
    )
    for cp_id, state, state_since in states:
        if cp_id not in changes:
            changes[cp_id] = [(state_since.astimezone(UTC), state == ParticipationState.SIGNED_UP)]
    rows = [
        {"charge_point_id": cp_id, "hour": hour, "power_w": max(0.0, sum(values) / len(values))}
        for (cp_id, hour), values in sorted(means.items())
        if _signed_up_throughout(changes.get(cp_id, []), hour, hour + timedelta(hours=1))
    ]
    await _insert_ignoring(session, table, rows)
    return len(rows)


async def _insert_ignoring(session: AsyncSession, table: Any, rows: list[dict[str, Any]]) -> None:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    for first in range(0, len(rows), INSERT_CHUNK):
        await session.exec(dialect.insert(table).values(rows[first : first + INSERT_CHUNK]).on_conflict_do_nothing())


async def settle_deliveries(session: AsyncSession, now: datetime, limit: int = 20) -> int:
    """Store the delivered energy of each charger of activations whose evidence is kept, once each.

    Judged from the kept evidence exactly as the activation page judges it; returns how many
    activations were settled. The caller commits.
    """
    settled = select(EarningsSettled.activation_id)
    due = list(
        await session.exec(
            select(Activation)
            .where(
                col(Activation.evidence_kept_at).is_not(None),
                col(Activation.triggered_at).is_not(None),
                col(Activation.id).not_in(settled),
            )
            .order_by(col(Activation.id))
            .limit(limit)
        )
    )
    for activation in due:
        await session.exec(
            insert(EarningsSettled.__table__).values(activation_id=activation.id, settled_at=now)  # type: ignore[attr-defined]
        )
        await _insert_ignoring(session, ENERGY_TABLE, await _delivered_rows(session, activation, now))
    return len(due)


async def _delivered_rows(session: AsyncSession, activation: Activation, now: datetime) -> list[dict[str, Any]]:
    trigger = activation.triggered_at
    if trigger is None:
        return []
    window_end = activation.ended_at or activation.end_at
    hours = max(0.0, (window_end - trigger).total_seconds()) / 3600
    dispatches = list(
        await session.exec(
            select(Dispatch)
            .where(Dispatch.activation_id == activation.id, col(Dispatch.charge_point_id).is_not(None))
            .order_by(col(Dispatch.charge_point_id))
        )
    )
    rows: list[dict[str, Any]] = []
    for first in range(0, len(dispatches), VERDICT_CHUNK):
        judged = await delivery_of(session, activation, dispatches[first : first + VERDICT_CHUNK], now)
        if judged is None:
            break
        for charger in judged.chargers:
            earns = charger.verdict in EARNING_VERDICTS and charger.delivered_w is not None
            rows.append(
                {
                    "activation_id": activation.id,
                    "charge_point_id": charger.dispatch.charge_point_id,
                    "operator_id": activation.operator_id,
                    "price_area": activation.price_area,
                    "market": activation.market,
                    "triggered_at": trigger,
                    "verdict": str(charger.verdict),
                    "delivered_wh": max(0.0, charger.delivered_w or 0.0) * hours if earns else 0.0,
                }
            )
    return rows


# ---- statements --------------------------------------------------------------------------------


@dataclass
class LineDraft:
    """A charge point's month before it is stored."""

    team_id: int
    charge_point_id: int
    name: str
    price_area: str
    hours: int = 0
    available_wh: float = 0.0
    activations: int = 0
    delivered_wh: float = 0.0
    value: float = 0.0


async def compute_month(session: AsyncSession, operator_id: int, month: str) -> dict[int, LineDraft]:
    """Return each charge point's figures and market value for ``month`` (four queries, any fleet size).

    Only charge points with an available hour or an activation appear.
    """
    start, end = month_bounds(month)
    hour = AvailableHour.__table__  # type: ignore[attr-defined]
    cp = ChargePoint.__table__  # type: ignore[attr-defined]
    team = Team.__table__  # type: ignore[attr-defined]
    price = MarketPrice.__table__  # type: ignore[attr-defined]
    energy = DeliveredEnergy.__table__  # type: ignore[attr-defined]
    fleet = cp.join(team, team.c.id == cp.c.team_id)
    in_month = and_(hour.c.hour >= start, hour.c.hour < end, team.c.operator_id == operator_id)
    drafts: dict[int, LineDraft] = {}

    def draft(cp_id: int, team_id: int, name: str, area: str | None) -> LineDraft:
        found = drafts.get(cp_id)
        if found is None:
            found = drafts[cp_id] = LineDraft(team_id, cp_id, name, area or "")
        return found

    hours: Any = (
        core_select(
            cp.c.id,
            cp.c.team_id,
            cp.c.name,
            cp.c.price_area,
            func.count(),
            func.coalesce(func.sum(hour.c.power_w), 0.0),
        )
        .select_from(hour.join(fleet, cp.c.id == hour.c.charge_point_id))
        .where(in_month)
        .group_by(cp.c.id, cp.c.team_id, cp.c.name, cp.c.price_area)
    )
    for cp_id, team_id, name, area, count, power in await session.exec(hours):
        line = draft(cp_id, team_id, name, area)
        line.hours, line.available_wh = int(count), float(power)
    # Each hour's capacity prices of each area, summed over markets, drive the join: one index probe
    # of the hour per price row, never a range comparison with every price of the month (nor a scan
    # of the prices per hour row, which SQLite would do for an outer join to them).
    hourly = await _hourly_capacity_prices(session, operator_id, start, end)
    if hourly:
        prices = (
            values(
                column("price_area", String(3)), column("hour", UTCDateTime()), column("price", Float()), name="hourly"
            )
            .data([(area, at, float(total)) for (area, at), total in sorted(hourly.items())])
            .cte("hourly")
        )
        capacity: Any = (
            core_select(cp.c.id, func.sum(hour.c.power_w * prices.c.price))
            .select_from(
                prices.join(hour, hour.c.hour == prices.c.hour)
                .join(cp, cp.c.id == hour.c.charge_point_id)
                .join(team, team.c.id == cp.c.team_id)
            )
            .where(in_month, cp.c.price_area == prices.c.price_area)
            .group_by(cp.c.id)
        )
        for cp_id, value in await session.exec(capacity):
            if cp_id in drafts:
                # W times a price per MW and hour, for one hour.
                drafts[cp_id].value += float(value or 0.0) / 1_000_000
    # Periods of one area, market and kind never overlap: each delivery meets at most one energy price.
    energy_price = and_(
        price.c.operator_id == energy.c.operator_id,
        price.c.price_area == energy.c.price_area,
        price.c.market == energy.c.market,
        price.c.kind == PriceKind.ENERGY.value,
        price.c.starts_at <= energy.c.triggered_at,
        price.c.ends_at > energy.c.triggered_at,
    )
    took_part: Any = (
        core_select(
            cp.c.id,
            cp.c.team_id,
            cp.c.name,
            cp.c.price_area,
            func.count(),
            func.coalesce(func.sum(energy.c.delivered_wh), 0.0),
            func.coalesce(func.sum(energy.c.delivered_wh * cast(price.c.price, Float)), 0.0),
        )
        .select_from(energy.join(cp, cp.c.id == energy.c.charge_point_id).outerjoin(price, energy_price))
        .where(
            energy.c.operator_id == operator_id,
            energy.c.triggered_at >= start,
            energy.c.triggered_at < end,
            energy.c.verdict.not_in([str(v) for v in ABSENT_VERDICTS]),
        )
        .group_by(cp.c.id, cp.c.team_id, cp.c.name, cp.c.price_area)
    )
    for cp_id, team_id, name, area, count, delivered, value in await session.exec(took_part):
        line = draft(cp_id, team_id, name, area)
        line.activations, line.delivered_wh = int(count), float(delivered)
        # Wh times a price per MWh.
        line.value += float(value or 0.0) / 1_000_000
    return drafts


async def _hourly_capacity_prices(
    session: AsyncSession, operator_id: int, start: datetime, end: datetime
) -> dict[tuple[str, datetime], Decimal]:
    """Return the sum of the capacity prices holding in each (area, hour) of [start, end) (one query)."""
    rows = await session.exec(
        select(MarketPrice).where(
            MarketPrice.operator_id == operator_id,
            MarketPrice.kind == PriceKind.CAPACITY.value,
            col(MarketPrice.starts_at) < end,
            col(MarketPrice.ends_at) > start,
        )
    )
    hourly: dict[tuple[str, datetime], Decimal] = defaultdict(Decimal)
    for price in rows:
        at = max(hour_of(price.starts_at), start)
        while at < min(price.ends_at, end):
            hourly[(price.price_area, at)] += price.price
            at += timedelta(hours=1)
    return hourly


def _value(amount: float) -> Decimal:
    """Return a market value computed from measured power (a float) as a Decimal of six places."""
    return round_value(Decimal(repr(amount)))


async def _month_row(session: AsyncSession, operator_id: int, month: str) -> EarningsMonth | None:
    return await session.get(EarningsMonth, (operator_id, month))


async def open_months(session: AsyncSession, operator_id: int, now: datetime) -> list[str]:
    """Return the months to keep refreshed: this month, last month unless closed, and any other open one."""
    rows = await session.exec(
        select(EarningsMonth.month).where(
            EarningsMonth.operator_id == operator_id, col(EarningsMonth.closed_at).is_(None)
        )
    )
    closed = await closed_months(session, operator_id)
    current = month_of(now)
    wanted = set(rows.all()) | {current, previous_month(current)}
    return sorted(m for m in wanted if m not in closed and m <= current)


async def refresh_month(session: AsyncSession, operator_id: int, month: str, now: datetime) -> int:
    """Recompute every team's lines of an open month and store them in place of the old; return how many.

    When the month before is closed, what it would now come to differently per charge point is a
    correction line here, dated when it was first found. Raises MonthClosedError for a closed month.
    The caller commits.
    """
    state = await _month_row(session, operator_id, month)
    if state is not None and state.closed_at is not None:
        raise MonthClosedError(f"{month} is closed: its statements no longer change.")
    shares = await shares_of(session, operator_id)
    drafts = await compute_month(session, operator_id, month)
    rows: list[dict[str, Any]] = []
    for line in sorted(drafts.values(), key=lambda d: (d.team_id, d.name, d.charge_point_id)):
        share = shares.of(line.team_id)
        value = _value(line.value)
        rows.append(
            _line_row(
                operator_id,
                month,
                line,
                CHARGE_POINT_LINE,
                share,
                value,
                line_amount(value, share),
            )
        )
    rows += await _corrections(session, operator_id, month, shares, now)
    # Computed from reads alone (seconds for a large fleet) before the month's row is locked: SQLite's
    # write lock is held only for the writes, and two nodes refreshing at once write one after the
    # other (PostgreSQL's row lock), the second replacing the first's lines, never adding to them.
    state = await _locked_month_row(session, operator_id, month)
    if state.closed_at is not None:
        raise MonthClosedError(f"{month} is closed: its statements no longer change.")
    table = StatementLine.__table__  # type: ignore[attr-defined]
    await session.exec(delete(table).where(table.c.operator_id == operator_id, table.c.month == month))
    for first in range(0, len(rows), INSERT_CHUNK):
        await session.exec(insert(table), params=rows[first : first + INSERT_CHUNK])
    state.refreshed_at = now
    session.add(state)
    await session.flush()
    return len(rows)


async def _locked_month_row(session: AsyncSession, operator_id: int, month: str) -> EarningsMonth:
    """Return the month's row, made if missing, locked until the transaction ends (PostgreSQL)."""
    table = EarningsMonth.__table__  # type: ignore[attr-defined]
    await _insert_ignoring(session, table, [{"operator_id": operator_id, "month": month}])
    return (
        await session.exec(
            select(EarningsMonth)
            .where(EarningsMonth.operator_id == operator_id, EarningsMonth.month == month)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one()


def _line_row(
    operator_id: int,
    month: str,
    line: LineDraft,
    kind: str,
    share: Decimal,
    value: Decimal,
    amount: Decimal,
    *,
    dated: datetime | None = None,
    corrects: str | None = None,
    note: str = "",
) -> dict[str, Any]:
    return {
        "operator_id": operator_id,
        "team_id": line.team_id,
        "month": month,
        "kind": kind,
        "charge_point_id": line.charge_point_id,
        "charge_point_name": line.name[:120],
        "price_area": line.price_area,
        "currency": CURRENCY_BY_AREA.get(line.price_area, ""),
        "hours_signed_up": line.hours,
        "available_kwh": line.available_wh / 1000,
        "activations": line.activations,
        "delivered_kwh": line.delivered_wh / 1000,
        "market_value": value,
        "share": share,
        "amount": amount,
        "dated": dated,
        "corrects": corrects,
        "note": note,
    }


async def _corrections(
    session: AsyncSession, operator_id: int, month: str, shares: Shares, now: datetime
) -> list[dict[str, Any]]:
    """Return the correction lines ``month`` carries for the closed month before it."""
    before = previous_month(month)
    state = await _month_row(session, operator_id, before)
    if state is None or state.closed_at is None:
        return []
    stored = list(
        await session.exec(
            select(StatementLine).where(
                StatementLine.operator_id == operator_id,
                col(StatementLine.month).in_([before, month]),
            )
        )
    )
    closed_amount: dict[int, tuple[Decimal, Decimal, Decimal]] = {}
    known: dict[int, StatementLine] = {}
    for line in stored:
        if line.month == before and line.kind == CHARGE_POINT_LINE and line.charge_point_id is not None:
            value, amount, _ = closed_amount.get(line.charge_point_id, (Decimal(0), Decimal(0), line.share))
            closed_amount[line.charge_point_id] = (value + line.market_value, amount + line.amount, line.share)
        elif line.month == month and line.kind == CORRECTION_LINE and line.charge_point_id is not None:
            known[line.charge_point_id] = line
    rows = []
    for cp_id, fresh in (await compute_month(session, operator_id, before)).items():
        value = _value(fresh.value)
        # The share the closed month was reckoned with: a later change of share corrects nothing.
        old_value, old_amount, share = closed_amount.get(cp_id, (Decimal(0), Decimal(0), shares.of(fresh.team_id)))
        difference = line_amount(value, share) - old_amount
        if not difference:
            continue
        earlier = known.get(cp_id)
        dated = earlier.dated if earlier is not None and earlier.amount == difference and earlier.dated else now
        rows.append(
            _line_row(
                operator_id,
                month,
                fresh,
                CORRECTION_LINE,
                share,
                value - old_value,
                difference,
                dated=dated,
                corrects=before,
                note=f"Correction to {before}: figures that arrived after it was closed",
            )
        )
    return rows


async def close_month(session: AsyncSession, by: Acting, operator_id: int, month: str, now: datetime) -> int:
    """Refresh a month a last time and close it; return its lines. The caller commits.

    Raises MonthClosedError when it is closed already, FormErrors when it has not ended yet.
    """
    require_on_operator(by, Permission.MANAGE_EARNINGS, operator_id)
    if month_bounds(month)[1] > now:
        raise FormErrors({"month": f"{month} has not ended yet: a month can be closed once it is over."})
    state = await _month_row(session, operator_id, month)
    if state is not None and state.closed_at is not None:
        raise MonthClosedError(f"{month} was closed already, on {state.closed_at:%Y-%m-%d} by {state.closed_by}.")
    lines = await refresh_month(session, operator_id, month, now)
    # Claimed with a conditional update, so two people closing at once close it once.
    table = EarningsMonth.__table__  # type: ignore[attr-defined]
    claimed = await session.exec(
        table.update()
        .where(table.c.operator_id == operator_id, table.c.month == month, table.c.closed_at.is_(None))
        .values(closed_at=now, closed_by=actor_of(by).label)
    )
    if not claimed.rowcount:
        raise MonthClosedError(f"{month} was closed already.")
    audit.record(
        session,
        actor_of(by),
        "close earnings month",
        _OperatorRef(operator_id),
        operator_id=operator_id,
        label=month,
        after={"month": month, "lines": lines},
    )
    await _tell_statements_ready(session, operator_id, month)
    # Corrections to it now belong to the month after.
    if month_bounds(next_month(month))[0] <= now:
        await refresh_month(session, operator_id, next_month(month), now)
    return lines


async def _tell_statements_ready(session: AsyncSession, operator_id: int, month: str) -> None:
    """Tell each team with a statement for a month just closed that it is ready, with what it pays (one query)."""
    table = StatementLine.__table__  # type: ignore[attr-defined]
    query: Any = (
        core_select(table.c.team_id, table.c.currency, func.sum(cast(table.c.amount, Float)))
        .where(table.c.operator_id == operator_id, table.c.month == month)
        .group_by(table.c.team_id, table.c.currency)
    )
    for team_id, currency, total in await session.exec(query):
        await notifications.notify_statement_ready(
            session,
            operator_id=operator_id,
            team_id=team_id,
            month=month,
            amount=str(_sum_of_cents(total)),
            currency=currency,
            url=f"/teams/{team_id}/earnings?month={month}",
        )


async def close_due_months(session: AsyncSession, now: datetime) -> list[tuple[int, str]]:
    """Close, as the hub, every operator's last month when it ended more than AUTO_CLOSE_DAYS ago."""
    month = previous_month(month_of(now))
    if month_bounds(month)[1] + timedelta(days=AUTO_CLOSE_DAYS) > now:
        return []
    operators = await session.exec(
        select(Team.operator_id)
        .distinct()
        .where(
            col(Team.operator_id).not_in(
                select(EarningsMonth.operator_id).where(
                    EarningsMonth.month == month, col(EarningsMonth.closed_at).is_not(None)
                )
            )
        )
    )
    closed = []
    for operator_id in list(operators):
        await close_month(session, SYSTEM, operator_id, month, now)
        closed.append((operator_id, month))
    return closed


async def refresh_open_months(session: AsyncSession, now: datetime) -> int:
    """Recompute every operator's open months; return how many operators."""
    operators = list(await session.exec(select(Team.operator_id).distinct()))
    for operator_id in operators:
        for month in await open_months(session, operator_id, now):
            await refresh_month(session, operator_id, month, now)
    return len(operators)


async def refresh_all(session: AsyncSession, now: datetime) -> int:
    """Accrue hours, settle deliveries and refresh every operator's open months."""
    await accrue_hours(session, now)
    await settle_deliveries(session, now)
    return await refresh_open_months(session, now)


# ---- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Total:
    currency: str
    amount: Decimal
    market_value: Decimal


@dataclass
class Statement:
    """A team's month as stored."""

    team_id: int
    month: str
    lines: list[Line]
    corrections: list[Line]
    refreshed_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None
    share: Decimal
    totals: list[Total] = field(default_factory=list)

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


def totals_of(lines: Iterable[Line]) -> list[Total]:
    """Return the sum of the lines' amounts per currency (exact: they are Decimals rounded once each)."""
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    values: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        amounts[line.currency] += line.amount
        values[line.currency] += line.market_value
    return [Total(currency, amounts[currency], values[currency]) for currency in sorted(amounts)]


@dataclass(frozen=True, slots=True)
class Line:
    """One stored statement line as pages, files and the API read it (no ORM object: thousands are read at once)."""

    id: int
    kind: str
    charge_point_id: int | None
    charge_point_name: str
    price_area: str
    currency: str
    hours_signed_up: int
    available_kwh: float
    activations: int
    delivered_kwh: float
    market_value: Decimal
    share: Decimal
    amount: Decimal
    dated: datetime | None
    corrects: str | None
    note: str


LINE_COLUMNS = tuple(f.name for f in dataclasses.fields(Line))


async def statement(session: AsyncSession, by: Acting, team: Team, month: str) -> Statement:
    """Return a team's stored statement of ``month`` (four queries)."""
    require_on_team(by, Permission.VIEW_TEAM, team)
    state = await _month_row(session, team.operator_id, month)
    table = StatementLine.__table__  # type: ignore[attr-defined]
    query: Any = (
        core_select(*(table.c[name] for name in LINE_COLUMNS))
        .where(table.c.team_id == team.id, table.c.month == month)
        .order_by(table.c.kind, table.c.charge_point_name, table.c.id)
    )
    lines = [Line(*row) for row in await session.exec(query)]
    shares = await shares_of(session, team.operator_id)
    own = [line for line in lines if line.kind == CHARGE_POINT_LINE]
    corrections = [line for line in lines if line.kind == CORRECTION_LINE]
    return Statement(
        team.id or 0,
        month,
        own,
        corrections,
        state.refreshed_at if state else None,
        state.closed_at if state else None,
        state.closed_by if state else None,
        shares.of(team.id or 0),
        totals_of(lines),
    )


@dataclass(frozen=True)
class MonthTotal:
    month: str
    currency: str
    amount: Decimal
    closed: bool


def _sum_of_cents(total: Any) -> Decimal:
    # Each amount has two decimals; their float sum is within far less than half a cent of the exact
    # sum for any realistic total (below 10^11), so rounding it to the cent gives the exact sum.
    return Decimal(repr(float(total or 0.0))).quantize(Decimal("0.01"))


async def month_totals(
    session: AsyncSession, team: Team, months: int = 12, now: datetime | None = None
) -> list[MonthTotal]:
    """Return the team's total per month and currency over its last ``months`` months, newest first (two queries)."""
    current = month_of(now or datetime.now(UTC))
    first = current
    for _ in range(months - 1):
        first = previous_month(first)
    table = StatementLine.__table__  # type: ignore[attr-defined]
    query: Any = (
        core_select(table.c.month, table.c.currency, func.sum(cast(table.c.amount, Float)))
        .where(table.c.team_id == team.id, table.c.month >= first, table.c.month <= current)
        .group_by(table.c.month, table.c.currency)
    )
    rows = await session.exec(query)
    closed = await closed_months(session, team.operator_id)
    found = [MonthTotal(month, currency, _sum_of_cents(total), month in closed) for month, currency, total in rows]
    return sorted(found, key=lambda t: (t.month, t.currency), reverse=True)


@dataclass(frozen=True)
class ChargePointMonth:
    month: str
    hours_signed_up: int
    activations: int
    delivered_kwh: float
    amount: Decimal
    currency: str
    closed: bool


async def charge_point_months(
    session: AsyncSession, charge_point: ChargePoint, team: Team, months: int = 12, now: datetime | None = None
) -> list[ChargePointMonth]:
    """Return a charge point's lines (with its corrections) over its last ``months`` months, newest first."""
    current = month_of(now or datetime.now(UTC))
    first = current
    for _ in range(months - 1):
        first = previous_month(first)
    lines = await session.exec(
        select(StatementLine).where(
            StatementLine.team_id == team.id,
            StatementLine.charge_point_id == charge_point.id,
            col(StatementLine.month) >= first,
            col(StatementLine.month) <= current,
        )
    )
    closed = await closed_months(session, team.operator_id)
    by_month: dict[str, ChargePointMonth] = {}
    for line in lines:
        before = by_month.get(line.month)
        by_month[line.month] = ChargePointMonth(
            line.month,
            (before.hours_signed_up if before else 0) + line.hours_signed_up * (line.kind == CHARGE_POINT_LINE),
            (before.activations if before else 0) + line.activations * (line.kind == CHARGE_POINT_LINE),
            (before.delivered_kwh if before else 0.0) + line.delivered_kwh * (line.kind == CHARGE_POINT_LINE),
            (before.amount if before else Decimal(0)) + line.amount,
            line.currency,
            line.month in closed,
        )
    return sorted(by_month.values(), key=lambda m: m.month, reverse=True)


def average_kw(line: Line) -> float:
    """Return a line's average available power over its signed-up hours."""
    return line.available_kwh / line.hours_signed_up if line.hours_signed_up else 0.0


# Columns of a statement printed as fixed-width text: (width, right-aligned).
TEXT_COLUMNS = ((30, False), (5, False), (7, True), (9, True), (6, True), (11, True), (16, True), (18, True))


def text_row(cells: Sequence[object]) -> str:
    """Return one statement row as fixed-width text (a PDF of thousands of lines lays text out fast)."""
    parts = []
    for (width, right), cell in zip(TEXT_COLUMNS, cells, strict=True):
        text = str(cell)[:width]
        parts.append(text.rjust(width) if right else text.ljust(width))
    return " ".join(parts).rstrip()


def text_rows(lines: Iterable[Line]) -> list[str]:
    """Return statement lines as fixed-width text rows."""
    return [
        text_row(
            [
                line.charge_point_name,
                line.price_area,
                line.hours_signed_up,
                f"{average_kw(line):.2f}",
                line.activations,
                f"{line.delivered_kwh:.3f}",
                f"{line.market_value:f}",
                f"{line.amount:f} {line.currency}",
            ]
        )
        for line in lines
    ]


def percent(share: Decimal) -> str:
    """Return a share as people read it: 0.7 → "70"."""
    return f"{(share * 100).normalize():f}"


def _cell(value: object) -> object:
    # A cell a spreadsheet would run as a formula starts with an apostrophe.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def statement_csv(found: Statement, team_name: str) -> str:
    """Return a statement as CSV: one row per line, then one total row per currency."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for line in [*found.lines, *found.corrections]:
        writer.writerow(
            [
                found.month,
                line.kind,
                _cell(line.charge_point_name),
                line.price_area,
                line.hours_signed_up,
                f"{average_kw(line):.3f}",
                line.activations,
                f"{line.delivered_kwh:.3f}",
                f"{line.market_value:f}",
                percent(line.share),
                f"{line.amount:f}",
                line.currency,
                _cell(line.note),
            ]
        )
    for total in found.totals:
        writer.writerow(
            [
                found.month,
                "total",
                _cell(team_name),
                "",
                "",
                "",
                "",
                "",
                f"{total.market_value:f}",
                "",
                f"{total.amount:f}",
                total.currency,
                "",
            ]
        )
    return buffer.getvalue()
