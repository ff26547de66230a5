"""Proof of delivery: what the meters say each charger and the whole area delivered in an activation.

A charger's "Accepted" is not delivery. From the meter samples kept around an activation (60 s
before the trigger to 60 s after the window) this computes, per charger, a baseline (the power it
would have drawn), the reduction it was expected to deliver, what it delivered and a verdict; and
for the area, the response curve at 1 s (step-hold between samples, a charger whose sample is too
old counts as not reporting, never as zero) with the time to 50 % and 100 % of the area's expected
reduction, judged against the market's requirement. docs/delivery-proof.md explains the columns,
the methods and their limits.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import statistics
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import String, bindparam, delete, func, insert, literal, type_coerce, update
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import (
    Activation,
    ActivationState,
    ChargePoint,
    DeliveryRecord,
    DeliveryRecordCharger,
    DeliverySample,
    DeliveryVerdict,
    Dispatch,
    DispatchStatus,
    MeterSample,
)
from powerbank.models.baselines import MeterQuarter
from powerbank.services.enrollment import spreadsheet_text

# The baseline is the mean power measured over this long before the trigger; the curve starts and
# ends this long around the window.
BASELINE_S = 60
CONTEXT_S = 60
# A charger delivered when its reduction reached this share of what was expected (meters are noisy);
# the area's "100 %" is judged with the same tolerance.
DELIVERED_SHARE = 0.9
# Below this share of the expected reduction, an accepted limit was not delivered at all.
PARTIAL_SHARE = 0.1
# A charger drawing less than this at the trigger had nothing to reduce.
NOTHING_TO_REDUCE_W = 100.0
# A sample holds until the next one, but not longer than this: after it the charger is not reporting.
STALE_AFTER_S = 120.0
# A charger silent in the window for this many of its usual intervals (and at least MIN_SILENT_S)
# stopped reporting: what it last reported is not taken as what it did.
SILENT_INTERVALS = 3
MIN_SILENT_S = 10.0
DEFAULT_GAP_S = 60.0
# A sample whose meter time is this far from when the hub received it is placed at the receive time.
CLOCK_AHEAD_S = 5.0
CLOCK_BEHIND_S = 300.0
# A charger whose freshest sample still reached the hub this long after its own time has a clock that
# is behind (not a backlog: a backlog ends with a fresh sample): all its samples are placed at the
# time the hub received them.
CLOCK_SKEW_S = 30.0
# No charge point PowerBank signs up draws more than this (an AC connector draws at most 22 kW, a
# charger with two 44 kW): a sample above it is a broken meter or a wrong unit, discarded and counted.
PLAUSIBLE_MAX_W = 50_000.0
# A slightly negative sample is meter noise around nothing drawn (taken as 0); a more negative one is
# discarded and counted (PowerBank's chargers do not feed the grid).
NEGATIVE_NOISE_W = 100.0
# Samples are kept this long past CONTEXT_S after the window, for the leader to copy them (it looks
# at least every 30 s).
EVIDENCE_GRACE_S = 120.0


# A scheduled activation's baseline (docs/delivery-proof.md): the median of a charger's mean power in
# the same quarter-hour of the price area's local day on the last HISTORY_DAYS working days (Monday to
# Friday before the activation's own day), when at least MIN_HISTORY_DAYS of them have samples there.
HISTORY_DAYS = 5
MIN_HISTORY_DAYS = 3
QUARTER = timedelta(minutes=15)
# The quarter-hour means are kept this long: five working days back, over a weekend and a holiday.
QUARTERS_KEPT = timedelta(days=15)
# A quarter-hour in which the charger was limited by another activation, or reported at a finer
# interval for it (set back a minute after its window), is not its usual power: that day does not count.
BUSY_AFTER_S = 2 * CONTEXT_S
# The local time of each price area: a quarter-hour of day is the area's, not UTC's.
AREA_ZONES = {
    "DK1": "Europe/Copenhagen",
    "DK2": "Europe/Copenhagen",
    "SE1": "Europe/Stockholm",
    "SE2": "Europe/Stockholm",
    "SE3": "Europe/Stockholm",
    "SE4": "Europe/Stockholm",
    "GB": "Europe/London",
    "IE": "Europe/Dublin",
}


class BaselineMethod(StrEnum):
    """How a charger's baseline was found (the ``baseline_method`` column)."""

    MEAN_60S = "mean_60s"
    LAST_SAMPLE = "last_sample"
    QUARTER_HOUR_MEDIAN = "quarter_hour_median"
    NONE = ""


@dataclass(frozen=True)
class Requirement:
    """How fast a market wants the response: 50 % and 100 % of it within these seconds of the trigger."""

    half_s: float | None
    full_s: float


# Per market label (services.activations.MARKETS); others, and "Test", are judged as FCR-D.
REQUIREMENTS: dict[str, Requirement] = {
    "FCR-D up": Requirement(5, 30),
    "FCR-D down": Requirement(5, 30),
    "FCR-N": Requirement(None, 180),
    "FFR": Requirement(None, 1.3),
    "aFRR": Requirement(None, 300),
    "mFRR": Requirement(None, 750),
}
DEFAULT_REQUIREMENT = Requirement(5, 30)


def requirement_for(market: str) -> Requirement:
    return REQUIREMENTS.get(market, DEFAULT_REQUIREMENT)


class Verdict(StrEnum):
    DELIVERED = "delivered"
    PARTIAL = "partial"
    NOT_DELIVERED = "accepted but not delivered"
    NOT_ACCEPTED = "not accepted"
    OFFLINE = "offline"
    NO_METER_DATA = "no meter data"
    NOTHING_TO_REDUCE = "nothing to reduce"
    WAITING = "waiting"


NOT_ACCEPTED = frozenset(
    {DispatchStatus.REJECTED, DispatchStatus.NOT_SUPPORTED, DispatchStatus.TIMEOUT, DispatchStatus.ERROR}
)


@dataclass(frozen=True)
class Sample:
    at: datetime
    power_w: float
    # The charger's own time was implausible: ``at`` is when the hub received the sample.
    clock_replaced: bool = False


@dataclass
class ChargerDelivery:
    """One charger's part: the numbers behind its verdict."""

    dispatch: Dispatch
    verdict: Verdict
    baseline_w: float | None = None
    baseline_method: str = BaselineMethod.NONE
    # The method in words, with what it rests on ("median of 4 working days' 17:00–17:15 …").
    baseline_detail: str = ""
    expected_w: float | None = None
    # The reduction delivered at the market's full-activation time, and the most reached in the window.
    delivered_w: float | None = None
    best_w: float | None = None
    # Seconds from the trigger until the reduction first reached DELIVERED_SHARE of what was expected.
    reached_s: float | None = None
    samples: int = 0
    clock_replaced: int = 0
    # Samples left out as implausible (above PLAUSIBLE_MAX_W, or below -NEGATIVE_NOISE_W).
    discarded: int = 0
    # What else the verdict rests on (a charger that stopped reporting, say).
    note: str = ""

    @property
    def share(self) -> float | None:
        if self.expected_w is None or self.expected_w <= 0 or self.delivered_w is None:
            return None
        return self.delivered_w / self.expected_w


@dataclass(frozen=True)
class CurvePoint:
    at: datetime
    offset_s: int
    baseline_w: float | None
    measured_w: float | None
    limit_w: float | None
    reporting: int


@dataclass
class AreaResponse:
    """The area's response at 1 s and how it compares with the market's requirement."""

    requirement: Requirement
    points: list[CurvePoint] = field(default_factory=list)
    expected_w: float = 0.0
    half_s: float | None = None
    full_s: float | None = None

    @property
    def half_met(self) -> bool | None:
        if self.requirement.half_s is None or self.expected_w <= 0:
            return None
        return self.half_s is not None and self.half_s <= self.requirement.half_s

    @property
    def full_met(self) -> bool | None:
        if self.expected_w <= 0:
            return None
        return self.full_s is not None and self.full_s <= self.requirement.full_s


@dataclass(frozen=True)
class QuarterHour:
    """The quarter-hour of day a scheduled activation's baselines are taken from, and its past days."""

    label: str  # "17:00–17:15 Europe/Copenhagen"
    starts: tuple[datetime, ...]  # UTC, newest day first


@dataclass(frozen=True)
class History:
    """A charger's past in the trigger's quarter-hour: the median of its daily means, if enough days have one."""

    quarter: QuarterHour
    days: int
    median_w: float | None


@dataclass
class Delivery:
    chargers: list[ChargerDelivery]
    area: AreaResponse
    clock_replaced: int = 0
    # Samples discarded as implausible, and chargers whose clock was behind (all placed at receive time).
    discarded: int = 0
    clocks_behind: int = 0
    # Set for a scheduled activation: its baselines come from this quarter-hour on past working days.
    quarter: QuarterHour | None = None
    # How many of the activation's chargers have each verdict and each baseline method: counted from
    # ``chargers``, unless given (a stored record read for one page of its chargers).
    verdicts: dict[str, int] = field(default_factory=dict)
    methods: dict[str, int] = field(default_factory=dict)
    # The sum of the chargers' baselines (None when none has one); likewise counted unless given.
    baseline_w: float | None = None

    def __post_init__(self) -> None:
        if not self.verdicts and not self.methods:
            self.verdicts = dict(Counter(str(charger.verdict) for charger in self.chargers))
            self.methods = dict(Counter(str(charger.baseline_method) for charger in self.chargers))
            baselines = [charger.baseline_w for charger in self.chargers if charger.baseline_w is not None]
            self.baseline_w = sum(baselines) if baselines else None

    def count(self, verdict: str) -> int:
        return self.verdicts.get(str(verdict), 0)

    @property
    def plausible_max_kw(self) -> float:
        return PLAUSIBLE_MAX_W / 1000

    def by_method(self, method: str) -> int:
        """How many chargers' baselines were found by ``method`` (a BaselineMethod)."""
        return self.methods.get(str(method), 0)


def placed(measured_at: datetime, received_at: datetime) -> tuple[datetime, bool]:
    """Return when a sample is taken to be measured: the charger's time unless it is implausible."""
    if measured_at > received_at + timedelta(seconds=CLOCK_AHEAD_S):
        return received_at, True
    if measured_at < received_at - timedelta(seconds=CLOCK_BEHIND_S):
        return received_at, True
    return measured_at, False


def plausible(power_w: float) -> bool:
    """Tell whether a charger can have drawn this (not above PLAUSIBLE_MAX_W, not clearly negative)."""
    return math.isfinite(power_w) and -NEGATIVE_NOISE_W <= power_w <= PLAUSIBLE_MAX_W


@dataclass
class Loaded:
    """Each charger's samples in time order, and what was left out or moved on the way."""

    samples: dict[int, list[Sample]] = field(default_factory=dict)
    # Samples in the period discarded as implausible, per charger.
    discarded: dict[int, int] = field(default_factory=dict)
    # Chargers whose clock was behind: how far (the lag of its freshest sample, s).
    clock_behind_s: dict[int, float] = field(default_factory=dict)


async def load_samples(
    session: AsyncSession, activation: Activation, charge_point_ids: Sequence[int], since: datetime, until: datetime
) -> Loaded:
    """Return each charger's power samples between two moments, in time order, duplicates left out.

    From the evidence kept for the activation once it was copied, else from the chargers' meter
    samples. Of samples with the same charger and time the first received counts; an implausible one is
    discarded and counted; a charger whose clock is behind has all its samples placed at the time the
    hub received them (see ``placed`` for a single implausible time).
    """
    loaded = Loaded()
    if not charge_point_ids:
        return loaded
    low, high = since - timedelta(seconds=CLOCK_AHEAD_S), until + timedelta(seconds=CLOCK_BEHIND_S)
    query: Any
    if activation.evidence_kept_at is not None:
        query = select(
            DeliverySample.charge_point_id,
            DeliverySample.measured_at,
            DeliverySample.received_at,
            DeliverySample.power_w,
        ).where(
            DeliverySample.activation_id == activation.id,
            col(DeliverySample.charge_point_id).in_(charge_point_ids),
            col(DeliverySample.received_at) >= low,
            col(DeliverySample.received_at) <= high,
        )
    else:
        query = select(
            MeterSample.charge_point_id, MeterSample.measured_at, MeterSample.received_at, MeterSample.power_w
        ).where(
            col(MeterSample.charge_point_id).in_(charge_point_ids),
            col(MeterSample.power_w).is_not(None),
            col(MeterSample.received_at) >= low,
            col(MeterSample.received_at) <= high,
        )
    rows: dict[int, list[tuple[datetime, datetime, float]]] = {}
    parse = _stored_moment if _as_text(session) else _moment
    for cp_id, measured_at, received_at, power in await session.exec(_moments_as_text(session, query)):
        if power is not None and math.isfinite(power):
            rows.setdefault(cp_id, []).append((parse(measured_at), parse(received_at), float(power)))
    for cp_id, series in rows.items():
        freshest = min((received - measured).total_seconds() for measured, received, _ in series)
        behind = freshest > CLOCK_SKEW_S
        if behind:
            loaded.clock_behind_s[cp_id] = freshest
        # Of duplicates (one moment), the first received; of those, the lowest power: whatever the rows' order.
        kept: dict[datetime, tuple[datetime, float, bool]] = {}
        for measured_at, received_at, power in series:
            at, replaced = (received_at, True) if behind else placed(measured_at, received_at)
            if since <= at <= until and (at not in kept or (received_at, power) < kept[at][:2]):
                kept[at] = (received_at, power, replaced)
        found: list[Sample] = []
        for at, (_, power, replaced) in kept.items():
            if plausible(power):
                found.append(Sample(at, max(0.0, power), replaced))
            else:
                loaded.discarded[cp_id] = loaded.discarded.get(cp_id, 0) + 1
        if found:
            found.sort(key=lambda sample: sample.at)
            loaded.samples[cp_id] = found
    return loaded


def _as_text(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _moments_as_text(session: AsyncSession, query: Any) -> Any:
    """On SQLite, have a samples query hand back its two moments as the stored text.

    Reading a sample is mostly reading its two datetimes: SQLAlchemy's SQLite parser takes several
    times longer than ``datetime.fromisoformat`` (``_stored_moment``), and an activation's record
    has millions of them. PostgreSQL hands back datetimes itself.
    """
    if not _as_text(session):
        return query
    cp_id, measured_at, received_at, power = query.selected_columns
    return query.with_only_columns(
        cp_id, type_coerce(measured_at, String), type_coerce(received_at, String), power, maintain_column_froms=True
    )


def _stored_moment(text: str) -> datetime:
    """A datetime as SQLite stores it (UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``), back as an aware datetime."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _moment(value: datetime) -> datetime:
    return value


# Keeping the evidence --------------------------------------------------------------------------


def keep_for_s(activation: Activation, now: datetime) -> float:
    """Return how long the chargers reached now must keep their meter samples (none pruned)."""
    return max(0.0, (activation.end_at - now).total_seconds()) + CONTEXT_S + EVIDENCE_GRACE_S


async def evidence_due(session: AsyncSession, now: datetime, limit: int = 50) -> list[Activation]:
    """Return activations over for CONTEXT_S whose chargers' samples are not copied yet, oldest first."""
    rows = await session.exec(
        select(Activation)
        .where(
            col(Activation.triggered_at).is_not(None),
            col(Activation.evidence_kept_at).is_(None),
            col(Activation.state).in_([ActivationState.ENDED, ActivationState.CANCELLED]),
            col(Activation.ended_at) <= now - timedelta(seconds=CONTEXT_S),
        )
        .order_by(col(Activation.ended_at))
        .limit(limit)
    )
    return list(rows)


# Chargers whose samples are copied per statement: each copy is its own short write, so the hub's
# other writes (the chargers' meter values) go on between them (measured: 10,000 chargers' 1.9 million
# samples in one statement held SQLite's write lock 5.5 s on a quiet machine, 55 s on a busy one).
EVIDENCE_CHUNK = 250


async def keep_evidence(session: AsyncSession, activation: Activation, now: datetime) -> bool:
    """Copy an activation's chargers' samples around its window to ``delivery_sample`` and note it on the
    activation, in one transaction the caller commits (False when another node did it already).

    The activation runner does the same in steps (``evidence_chargers``, ``copy_evidence`` per chunk,
    each committed, then ``note_evidence_kept``).
    """
    if activation.evidence_kept_at is not None:
        return False
    await copy_evidence(session, activation, await evidence_chargers(session, activation))
    return await note_evidence_kept(session, activation, now)


async def evidence_chargers(session: AsyncSession, activation: Activation) -> list[int]:
    """Return the charge points an activation reached (whose samples are its evidence), in id order."""
    rows = await session.exec(
        select(Dispatch.charge_point_id)
        .where(Dispatch.activation_id == activation.id, col(Dispatch.charge_point_id).is_not(None))
        .order_by(col(Dispatch.charge_point_id))
    )
    return [cp_id for cp_id in rows if cp_id is not None]


async def copy_evidence(session: AsyncSession, activation: Activation, charge_point_ids: Sequence[int]) -> None:
    """Copy these chargers' samples around an activation's window to its evidence; one INSERT … SELECT.

    A charger whose samples are there already is passed over, so a copy cut off (a node stopped
    midway) is finished by the next one without copying anything twice.
    """
    if activation.triggered_at is None or not charge_point_ids:
        return
    window_end = activation.ended_at or activation.end_at
    since = activation.triggered_at - timedelta(seconds=max(BASELINE_S, CONTEXT_S) + STALE_AFTER_S + CLOCK_AHEAD_S)
    until = window_end + timedelta(seconds=CONTEXT_S + CLOCK_BEHIND_S)
    copied = core_select(col(DeliverySample.charge_point_id)).where(
        col(DeliverySample.activation_id) == activation.id,
        col(DeliverySample.charge_point_id).in_(charge_point_ids),
    )
    samples = core_select(
        literal(activation.id),
        col(MeterSample.charge_point_id),
        col(MeterSample.measured_at),
        col(MeterSample.received_at),
        col(MeterSample.power_w),
    ).where(
        col(MeterSample.charge_point_id).in_(charge_point_ids),
        col(MeterSample.charge_point_id).not_in(copied),
        col(MeterSample.power_w).is_not(None),
        col(MeterSample.received_at) >= since,
        col(MeterSample.received_at) <= until,
    )
    await session.exec(
        insert(DeliverySample).from_select(
            ["activation_id", "charge_point_id", "measured_at", "received_at", "power_w"], samples
        )
    )


async def note_evidence_kept(session: AsyncSession, activation: Activation, now: datetime) -> bool:
    """Note that an activation's evidence is complete (False when another node noted it first)."""
    claimed = await session.exec(
        update(Activation)
        .where(col(Activation.id) == activation.id, col(Activation.evidence_kept_at).is_(None))
        .values(evidence_kept_at=now)
        .returning(col(Activation.id))
    )
    return claimed.first() is not None


# Chargers judged per query, so the event loop is never held for long (measured: 2,000 chargers,
# 86,000 samples, about 3 s in all; 100 per query held it 0.2 s at most, 500 held it 0.7 s).
VERDICT_CHUNK = 100
# Rows per INSERT when a record is stored.
STORE_CHUNK = 1000


async def keep_verdicts(session: AsyncSession, activation: Activation, now: datetime) -> None:
    """Judge an activation's chargers from its kept evidence and store their verdicts and its record;
    the caller commits.

    The activation runner does the two steps apart (judging takes seconds for thousands of chargers,
    and must not hold the hub's write lock meanwhile).
    """
    judged = await delivery_of(session, activation, await _dispatches_of(session, activation), now)
    if judged is not None:
        await store_verdicts(session, verdict_rows(activation, judged, now))
        await store_record(session, activation, judged, now)


async def _dispatches_of(session: AsyncSession, activation: Activation) -> list[Dispatch]:
    rows = await session.exec(
        select(Dispatch).where(Dispatch.activation_id == activation.id).order_by(col(Dispatch.id))
    )
    return list(rows)


async def judge_for_keeping(session: AsyncSession, activation: Activation, now: datetime) -> Delivery | None:
    """Judge an activation from its kept evidence, to store (``verdict_rows``, ``store_record``); reads only."""
    return await delivery_of(session, activation, await _dispatches_of(session, activation), now)


def verdict_rows(activation: Activation, judged: Delivery, now: datetime) -> list[dict[str, Any]]:
    """Return each charger's verdict for ``delivery_verdict``, from the activation's judged delivery.

    services/reliability.py reads them to flag chargers that repeatedly accept but do not deliver.
    An activation that ended (cancelled) before its market's full-activation time gave its chargers
    too little time to fall short: from it, only "delivered" is kept, nothing against a charger.
    """
    if activation.triggered_at is None:
        return []
    window_end = activation.ended_at or activation.end_at
    cut_short = window_end - activation.triggered_at < timedelta(seconds=requirement_for(activation.market).full_s)
    return [
        {
            "activation_id": activation.id,
            "charge_point_id": c.dispatch.charge_point_id,
            "verdict": str(c.verdict),
            "triggered_at": activation.triggered_at,
            "judged_at": now,
        }
        for c in judged.chargers
        if c.dispatch.charge_point_id is not None and (not cut_short or c.verdict == Verdict.DELIVERED)
    ]


async def store_verdicts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Store verdicts; a charger judged already for that activation (another node did it) keeps its
    row, and one deleted since it was judged is left out."""
    ids = [row["charge_point_id"] for row in rows]
    there = (
        set((await session.exec(select(ChargePoint.id).where(col(ChargePoint.id).in_(ids)))).all()) if ids else set()
    )
    rows = [row for row in rows if row["charge_point_id"] in there]
    if not rows:
        return
    table = DeliveryVerdict.__table__  # type: ignore[attr-defined]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    await session.exec(dialect.insert(table).on_conflict_do_nothing(), params=rows)


def _held(series: Sequence[Sample], at: datetime) -> float | None:
    """Return the power holding at ``at`` (the last sample at or before it, unless it is stale)."""
    value = None
    for sample in series:
        if sample.at > at:
            break
        value = sample
    if value is None or (at - value.at).total_seconds() > STALE_AFTER_S:
        return None
    return value.power_w


def _usual_gap_s(series: Sequence[Sample]) -> float:
    """Return the charger's usual time between samples (the median gap; 60 s without two samples)."""
    gaps = sorted((b.at - a.at).total_seconds() for a, b in zip(series, series[1:], strict=False))
    return gaps[len(gaps) // 2] if gaps else DEFAULT_GAP_S


def baseline(
    series: Sequence[Sample], trigger: datetime, history: History | None = None
) -> tuple[float | None, BaselineMethod, str]:
    """Return a charger's baseline, its method and the method in words.

    With ``history`` (a scheduled activation) the median of the charger's past days in the trigger's
    quarter-hour, when enough days have data; else (and for an immediate activation) the mean over
    BASELINE_S before the trigger, or without any sample there the last one before it.
    """
    if history is not None and history.median_w is not None:
        detail = (
            f"median of the {history.quarter.label} means on {history.days} of the last {HISTORY_DAYS} working days"
        )
        return history.median_w, BaselineMethod.QUARTER_HOUR_MEDIAN, detail
    fallback = ""
    if history is not None:
        fallback = (
            f"{history.days} of the last {HISTORY_DAYS} working days have data in {history.quarter.label}"
            f" (at least {MIN_HISTORY_DAYS} needed): "
        )
    before = [s.power_w for s in series if trigger - timedelta(seconds=BASELINE_S) <= s.at < trigger]
    if before:
        detail = f"mean of {len(before)} sample(s) in the {BASELINE_S} s before the trigger"
        return sum(before) / len(before), BaselineMethod.MEAN_60S, fallback + detail
    held = _held(series, trigger)
    if held is not None:
        detail = f"last sample before the trigger (none in the {BASELINE_S} s before it)"
        return held, BaselineMethod.LAST_SAMPLE, fallback + detail
    return None, BaselineMethod.NONE, fallback + "no sample before the trigger"


def judge(
    dispatch: Dispatch,
    series: Sequence[Sample],
    trigger: datetime,
    window_end: datetime,
    requirement: Requirement,
    limit_w: float,
    now: datetime,
    *,
    history: History | None = None,
    discarded: int = 0,
) -> ChargerDelivery:
    """Return one charger's delivery and verdict (``history``: its past, for a scheduled activation)."""
    replaced = sum(1 for s in series if s.clock_replaced)
    result = ChargerDelivery(
        dispatch, Verdict.WAITING, samples=len(series), clock_replaced=replaced, discarded=discarded
    )
    if dispatch.status == DispatchStatus.OFFLINE:
        result.verdict = Verdict.OFFLINE
        return result
    if dispatch.status in NOT_ACCEPTED:
        result.verdict = Verdict.NOT_ACCEPTED
        return result
    result.baseline_w, result.baseline_method, result.baseline_detail = baseline(series, trigger, history)
    if result.baseline_w is None:
        result.verdict = Verdict.NO_METER_DATA
        return result
    limit = dispatch.limit_w if dispatch.limit_w is not None else limit_w
    result.expected_w = max(0.0, result.baseline_w - limit)
    if result.baseline_w < NOTHING_TO_REDUCE_W or result.expected_w < NOTHING_TO_REDUCE_W:
        result.verdict = Verdict.NOTHING_TO_REDUCE
        return result
    during = [s for s in series if trigger <= s.at <= window_end]
    full_at = trigger + timedelta(seconds=requirement.full_s)
    if not during:
        result.verdict = Verdict.NO_METER_DATA if now >= min(full_at, window_end) else Verdict.WAITING
        return result
    for sample in during:
        reduction = result.baseline_w - sample.power_w
        result.best_w = reduction if result.best_w is None else max(result.best_w, reduction)
        if result.reached_s is None and reduction >= DELIVERED_SHARE * result.expected_w:
            result.reached_s = (sample.at - trigger).total_seconds()
    judged_at = min(full_at, window_end)
    held = _held(during, judged_at)
    result.delivered_w = result.baseline_w - held if held is not None else None
    # A charger silent for several of its own reporting intervals (gone offline, say) is not taken
    # to draw what it last reported: the meters cannot say what it did.
    silent_s = (min(now, window_end) - during[-1].at).total_seconds()
    stopped = silent_s > max(SILENT_INTERVALS * _usual_gap_s(series), MIN_SILENT_S)
    if result.reached_s is not None and result.reached_s <= requirement.full_s:
        result.verdict = Verdict.DELIVERED
    elif now < judged_at:
        result.verdict = Verdict.WAITING
    elif stopped and (result.best_w or 0.0) < PARTIAL_SHARE * result.expected_w:
        result.verdict = Verdict.NO_METER_DATA
        result.delivered_w = None
        offset = (during[-1].at - trigger).total_seconds()
        result.note = f"stopped reporting {offset:.0f} s after the trigger"
    elif (result.best_w or 0.0) >= PARTIAL_SHARE * result.expected_w:
        result.verdict = Verdict.PARTIAL
    else:
        result.verdict = Verdict.NOT_DELIVERED
    return result


# The area's curve is summed from each charger's changes, gathered per tenth of a second: chunks of
# chargers judged apart add theirs up to one curve (``CurveSums``), and the response is timed to 0.1 s.
TENTHS_PER_S = 10
_TENTH = timedelta(seconds=1 / TENTHS_PER_S)


def _tenth_at_or_after(moment: datetime, start: datetime) -> int:
    """Return the first tenth of a second from ``start`` at or after ``moment``."""
    return -((start - moment) // _TENTH)


@dataclass
class CurveSums:
    """The area's changes, per tenth of a second from CONTEXT_S before the trigger: the measured power,
    baseline and limit that start or stop holding then, and chargers starting or stopping to report."""

    start: datetime
    # Tenth → [measured W, baseline W, limit W, chargers reporting].
    changes: dict[int, list[float]] = field(default_factory=dict)
    expected_w: float = 0.0

    def add(self, chargers: Sequence[ChargerDelivery], samples: Mapping[int, Sequence[Sample]]) -> None:
        """Add judged chargers' samples: each holds until the next one, or until it is stale."""
        stale = timedelta(seconds=STALE_AFTER_S, microseconds=1)
        changes, start = self.changes, self.start
        for charger in chargers:
            series = samples.get(charger.dispatch.charge_point_id or 0)
            if charger.baseline_w is None or not series:
                continue
            self.expected_w += charger.expected_w or 0.0
            base, limit = charger.baseline_w, charger.dispatch.limit_w or 0.0
            for index, sample in enumerate(series):
                ends = sample.at + stale
                if index + 1 < len(series):
                    ends = min(ends, series[index + 1].at)
                for moment, sign in ((sample.at, 1.0), (ends, -1.0)):
                    tenth = _tenth_at_or_after(moment, start)
                    change = changes.get(tenth)
                    if change is None:
                        changes[tenth] = [sign * sample.power_w, sign * base, sign * limit, sign]
                    else:
                        change[0] += sign * sample.power_w
                        change[1] += sign * base
                        change[2] += sign * limit
                        change[3] += sign


def area_curve(
    chargers: Sequence[ChargerDelivery],
    samples: Mapping[int, Sequence[Sample]],
    trigger: datetime,
    window_end: datetime,
    until: datetime,
    requirement: Requirement,
) -> AreaResponse:
    """Sum the chargers at 1 s from CONTEXT_S before the trigger to ``until``; time the area's response."""
    sums = CurveSums(trigger - timedelta(seconds=CONTEXT_S))
    sums.add(chargers, samples)
    return area_response(sums, trigger, window_end, until, requirement)


def area_response(
    sums: CurveSums, trigger: datetime, window_end: datetime, until: datetime, requirement: Requirement
) -> AreaResponse:
    """Sweep the summed changes once: the curve at each whole second, and the first tenth of a second
    at which the area's reduction reached 50 % and 100 % of what was expected."""
    area = AreaResponse(requirement, expected_w=sums.expected_w)
    start = sums.start
    trigger_t = _tenth_at_or_after(trigger, start)
    window_end_t = (window_end - start) // _TENTH
    last_t = _tenth_at_or_after(until, start)
    tenths = sorted(t for t in sums.changes if t <= last_t)
    measured = baseline_sum = limit_sum = 0.0
    reporting = 0
    applied = 0
    triggered = False

    def reached(tenth: int) -> None:
        """Time the response if the area's reduction reached 50 % or 100 % at ``tenth``."""
        if not (trigger_t <= tenth <= window_end_t and reporting and area.expected_w > 0):
            return
        reduction = baseline_sum - measured
        offset_s = (tenth - trigger_t) / TENTHS_PER_S
        if area.half_s is None and reduction >= 0.5 * area.expected_w:
            area.half_s = offset_s
        if area.full_s is None and reduction >= DELIVERED_SHARE * area.expected_w:
            area.full_s = offset_s

    def apply_until(limit_t: int) -> None:
        nonlocal measured, baseline_sum, limit_sum, reporting, applied, triggered
        while applied < len(tenths) and tenths[applied] <= limit_t:
            tenth = tenths[applied]
            if not triggered and tenth > trigger_t:
                triggered = True
                reached(trigger_t)
            d_measured, d_baseline, d_limit, d_reporting = sums.changes[tenth]
            measured, baseline_sum = measured + d_measured, baseline_sum + d_baseline
            limit_sum, reporting = limit_sum + d_limit, reporting + round(d_reporting)
            applied += 1
            reached(tenth)

    steps = max(0, int((until - start).total_seconds()))
    for step in range(steps + 1):
        at = start + timedelta(seconds=step)
        apply_until(step * TENTHS_PER_S)
        in_window = trigger <= at <= window_end
        area.points.append(
            CurvePoint(
                at,
                step - CONTEXT_S,
                baseline_sum if reporting else None,
                max(0.0, measured) if reporting else None,
                max(0.0, limit_sum) if reporting and in_window else None,
                reporting,
            )
        )
    # Samples after the last whole second still time the response.
    apply_until(last_t)
    if not triggered:
        reached(trigger_t)
    return area


def is_scheduled(activation: Activation) -> bool:
    """Tell whether an activation was scheduled: asked for a later start, not started when it was made.

    An immediate one starts at the moment it is created (``start_at == created_at``); a scheduled one
    was refused unless its start was after that moment (services/activations.py ``clean_activation``).
    """
    return activation.start_at > activation.created_at


def zone_of(price_area: str) -> ZoneInfo:
    """Return a price area's local time zone (UTC for an area not listed)."""
    return ZoneInfo(AREA_ZONES.get(price_area, "UTC"))


def quarter_hour(trigger: datetime, price_area: str) -> QuarterHour:
    """Return the trigger's quarter-hour of the area's local day and its starts (UTC) on the last working days.

    Working days are Monday to Friday of the area's calendar, before the trigger's own day (public
    holidays are not known, and count). Europe changes its clocks on Sunday nights: a working day's
    local quarter-hour is always one real quarter-hour.
    """
    zone = zone_of(price_area)
    local = trigger.astimezone(zone)
    start = local.replace(minute=local.minute - local.minute % 15, second=0, microsecond=0)
    end = start + QUARTER
    label = f"{start:%H:%M}–{end:%H:%M} {zone.key}"
    starts: list[datetime] = []
    day = start.date()
    while len(starts) < HISTORY_DAYS:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            starts.append(datetime.combine(day, start.time(), tzinfo=zone).astimezone(UTC))
    return QuarterHour(label, tuple(starts))


async def histories(
    session: AsyncSession, activation: Activation, charge_point_ids: Sequence[int], quarter: QuarterHour
) -> dict[int, History]:
    """Return each charger's past in ``quarter``: its mean power on each past day, and their median.

    A day counts when the charger has samples in that quarter-hour and was not limited by another
    activation then (nor reporting at its finer interval, until BUSY_AFTER_S after it).
    """
    if not charge_point_ids:
        return {}
    means: dict[int, dict[datetime, float]] = {}
    rows = await session.exec(
        select(
            MeterQuarter.charge_point_id, MeterQuarter.starts_at, MeterQuarter.power_sum_w, MeterQuarter.samples
        ).where(
            col(MeterQuarter.charge_point_id).in_(charge_point_ids),
            col(MeterQuarter.starts_at).in_(quarter.starts),
            col(MeterQuarter.samples) > 0,
        )
    )
    for cp_id, starts_at, power_sum_w, samples in rows:
        means.setdefault(cp_id, {})[starts_at] = power_sum_w / samples
    if means:
        earliest, latest = min(quarter.starts), max(quarter.starts) + QUARTER
        busy = await session.exec(
            select(Dispatch.charge_point_id, Activation.triggered_at, Activation.ended_at, Activation.end_at)
            .join(Activation, col(Activation.id) == col(Dispatch.activation_id))
            .where(
                col(Dispatch.charge_point_id).in_(list(means)),
                col(Activation.id) != activation.id,
                col(Activation.triggered_at).is_not(None),
                col(Activation.triggered_at) < latest,
                col(Activation.end_at) >= earliest - timedelta(seconds=BUSY_AFTER_S),
            )
        )
        for busy_cp, triggered_at, ended_at, end_at in busy:
            busy_until = (ended_at or end_at) + timedelta(seconds=BUSY_AFTER_S)
            days = means.get(busy_cp or 0, {})
            for starts_at in [s for s in days if triggered_at and triggered_at < s + QUARTER and busy_until > s]:
                del days[starts_at]
    found: dict[int, History] = {}
    for cp_id in charge_point_ids:
        values = list(means.get(cp_id, {}).values())
        median = statistics.median(values) if len(values) >= MIN_HISTORY_DAYS else None
        found[cp_id] = History(quarter, len(values), median)
    return found


async def delivery_of(
    session: AsyncSession, activation: Activation, dispatches: Sequence[Dispatch], now: datetime | None = None
) -> Delivery | None:
    """Return what an activation delivered, per charger and for the area (None before it was triggered).

    Judged VERDICT_CHUNK chargers at a time (their samples read, judged and added to the area's sums),
    so the event loop goes on between chunks however large the activation.
    """
    trigger = activation.triggered_at
    if trigger is None:
        return None
    now = now or utcnow()
    window_end = activation.ended_at or activation.end_at
    until = min(now, window_end + timedelta(seconds=CONTEXT_S))
    # The baseline's samples and the one holding at the curve's start are older than the curve.
    since = trigger - timedelta(seconds=max(BASELINE_S, CONTEXT_S) + STALE_AFTER_S)
    quarter = quarter_hour(trigger, activation.price_area) if is_scheduled(activation) else None
    requirement = requirement_for(activation.market)
    sums = CurveSums(trigger - timedelta(seconds=CONTEXT_S))
    chargers: list[ChargerDelivery] = []
    clocks_behind = 0
    for first in range(0, len(dispatches), VERDICT_CHUNK):
        chunk = dispatches[first : first + VERDICT_CHUNK]
        ids = [d.charge_point_id for d in chunk if d.charge_point_id is not None]
        loaded = await load_samples(session, activation, ids, since, until)
        past = await histories(session, activation, ids, quarter) if quarter is not None else {}
        judged = []
        for d in chunk:
            cp_id = d.charge_point_id or 0
            charger = judge(
                d,
                loaded.samples.get(cp_id, []),
                trigger,
                window_end,
                requirement,
                activation.limit_w,
                now,
                history=past.get(cp_id),
                discarded=loaded.discarded.get(cp_id, 0),
            )
            if cp_id in loaded.clock_behind_s:
                clocks_behind += 1
                behind = f"clock {loaded.clock_behind_s[cp_id]:.0f} s behind: placed at the hub's receive time"
                charger.note = f"{charger.note}; {behind}" if charger.note else behind
            judged.append(charger)
        sums.add(judged, loaded.samples)
        chargers.extend(judged)
    return Delivery(
        chargers,
        area_response(sums, trigger, window_end, until, requirement),
        sum(c.clock_replaced for c in chargers),
        discarded=sum(c.discarded for c in chargers),
        clocks_behind=clocks_behind,
        quarter=quarter,
    )


# The stored record -----------------------------------------------------------------------------

RECORD_CHARGER_COLUMNS = (
    "verdict",
    "baseline_w",
    "baseline_method",
    "baseline_detail",
    "expected_w",
    "delivered_w",
    "best_w",
    "reached_s",
    "samples",
    "clock_replaced",
    "discarded",
    "note",
)


async def store_record(session: AsyncSession, activation: Activation, judged: Delivery, now: datetime) -> None:
    """Store an activation's judged delivery (once: a record another node stored is kept); the caller commits."""
    there = await session.exec(
        select(DeliveryRecord.activation_id).where(DeliveryRecord.activation_id == activation.id)
    )
    if there.first() is not None:
        return
    area = judged.area
    session.add(
        DeliveryRecord(
            activation_id=activation.id or 0,
            judged_at=now,
            expected_w=area.expected_w,
            baseline_w=judged.baseline_w,
            half_s=area.half_s,
            full_s=area.full_s,
            clock_replaced=judged.clock_replaced,
            discarded=judged.discarded,
            clocks_behind=judged.clocks_behind,
            curve=[[p.offset_s, p.baseline_w, p.measured_w, p.limit_w, p.reporting] for p in area.points],
        )
    )
    rows = [
        {
            "activation_id": activation.id,
            "dispatch_id": c.dispatch.id,
            **{name: getattr(c, name) for name in RECORD_CHARGER_COLUMNS},
        }
        for c in judged.chargers
        if c.dispatch.id is not None
    ]
    await session.flush()
    table = DeliveryRecordCharger.__table__  # type: ignore[attr-defined]
    for first in range(0, len(rows), STORE_CHUNK):
        await session.exec(insert(table), params=rows[first : first + STORE_CHUNK])


async def stored_delivery(
    session: AsyncSession, activation: Activation, dispatches: Sequence[Dispatch], *, these_only: bool = False
) -> Delivery | None:
    """Return an activation's stored record for ``dispatches`` (in their order), or None when none is stored.

    ``these_only``: ``dispatches`` are a few of the activation's (a page of a large one): only theirs
    are read, and the whole activation's verdicts and baseline methods are counted by the database.
    """
    record = (await session.exec(select(DeliveryRecord).where(DeliveryRecord.activation_id == activation.id))).first()
    if record is None or activation.triggered_at is None:
        return None
    ours = col(DeliveryRecordCharger.activation_id) == activation.id
    columns = [getattr(DeliveryRecordCharger, name) for name in RECORD_CHARGER_COLUMNS]
    query: Any = core_select(col(DeliveryRecordCharger.dispatch_id), *columns).where(ours)
    if these_only:
        query = query.where(col(DeliveryRecordCharger.dispatch_id).in_([d.id for d in dispatches]))
    found = {dispatch_id: values for dispatch_id, *values in await session.exec(query)}
    chargers = []
    for d in dispatches:
        values = found.get(d.id or 0)
        if values is None:
            continue
        fields = dict(zip(RECORD_CHARGER_COLUMNS, values, strict=True))
        fields["verdict"] = Verdict(fields["verdict"])
        chargers.append(ChargerDelivery(dispatch=d, **fields))
    counts: dict[str, dict[str, int]] = {"verdicts": {}, "methods": {}}
    if these_only:
        for name, column in (
            ("verdicts", DeliveryRecordCharger.verdict),
            ("methods", DeliveryRecordCharger.baseline_method),
        ):
            counted: Any = core_select(col(column), func.count()).where(ours).group_by(col(column))
            counts[name] = {value: n for value, n in await session.exec(counted)}
    trigger = activation.triggered_at
    area = AreaResponse(
        requirement_for(activation.market), expected_w=record.expected_w, half_s=record.half_s, full_s=record.full_s
    )
    area.points = [
        CurvePoint(trigger + timedelta(seconds=offset), offset, baseline_w, measured_w, limit_w, reporting)
        for offset, baseline_w, measured_w, limit_w, reporting in record.curve
    ]
    return Delivery(
        chargers,
        area,
        record.clock_replaced,
        discarded=record.discarded,
        clocks_behind=record.clocks_behind,
        quarter=quarter_hour(trigger, activation.price_area) if is_scheduled(activation) else None,
        baseline_w=record.baseline_w if these_only else None,
        **counts,
    )


async def record_or_judge(
    session: AsyncSession, activation: Activation, dispatches: Sequence[Dispatch], now: datetime | None = None
) -> Delivery | None:
    """Return an activation's delivery: its stored record once there is one, else judged now."""
    if activation.evidence_kept_at is not None:
        stored = await stored_delivery(session, activation, dispatches)
        if stored is not None:
            return stored
    return await delivery_of(session, activation, dispatches, now)


class DeliveryCache:
    """An activation's delivery computed once for every page and API read, and again only when stale.

    Judging is CPU work on the event loop that answers the chargers (about 20 µs a sample: seconds
    for thousands of chargers), and a live page asks every second. While an activation runs, a
    result stays fresh for ``cost ÷ duty`` (at least ``min_age_s``): readers together take at most
    that share of the loop however many watch. Readers arriving during a computation wait for it
    rather than start another. Once the evidence is kept, nothing it is judged from changes: that
    result is kept (the newest ``kept`` activations) until the process ends.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        duty: float = 0.2,
        min_age_s: float = 1.0,
        kept: int = 8,
    ) -> None:
        self._clock, self._duty, self._min_age_s, self._kept = clock, duty, min_age_s, kept
        # Activation → (computed at, cost, what it was computed for, result).
        self._entries: OrderedDict[int, tuple[float, float, tuple[Any, ...], Delivery | None]] = OrderedDict()
        self._computing: dict[int, asyncio.Future[Delivery | None]] = {}
        self.computed = 0

    async def get(self, activation: Activation, compute: Callable[[], Awaitable[Delivery | None]]) -> Delivery | None:
        """Return the activation's delivery, from ``compute()`` only when none fresh is held."""
        key = activation.id or 0
        # Started, cancelled or ended, evidence kept: a result computed before is for another window.
        state = (activation.triggered_at, activation.ended_at, activation.evidence_kept_at)
        entry = self._entries.get(key)
        if entry is not None:
            at, cost, computed_for, value = entry
            final = computed_for[2] is not None
            if computed_for == state and (final or self._clock() - at < max(self._min_age_s, cost / self._duty)):
                self._entries.move_to_end(key)
                return value
        running = self._computing.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Delivery | None] = asyncio.get_running_loop().create_future()
        self._computing[key] = future
        started = self._clock()
        try:
            value = await compute()
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # read: a computation nobody else waited for is not reported as lost
            raise
        else:
            future.set_result(value)
        finally:
            del self._computing[key]
        self.computed += 1
        self._entries[key] = (self._clock(), self._clock() - started, state, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._kept:
            self._entries.popitem(last=False)
        return value


# Quarter-hour means, for scheduled activations' baselines -------------------------------------

QUARTER_TABLE = MeterQuarter.__table__  # type: ignore[attr-defined]
QUARTER_COLUMNS = ("charge_point_id", "starts_at", "power_sum_w", "samples")


def quarter_of(at: datetime) -> datetime:
    """Return the start of the quarter-hour (UTC) that ``at`` falls in."""
    at = at.astimezone(UTC)
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


def quarter_rows(meter_rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return what a batch of meter sample rows adds to each charger's quarter-hours (plausible power only).

    A sample is placed as ``placed`` places it (an implausible charger time: when the hub received it).
    """
    sums: dict[tuple[int, datetime], list[float]] = {}
    for row in meter_rows:
        power = row.get("power_w")
        if power is None or not plausible(power):
            continue
        at, _ = placed(row["measured_at"], row["received_at"])
        total = sums.setdefault((row["charge_point_id"], quarter_of(at)), [0.0, 0])
        total[0] += max(0.0, power)
        total[1] += 1
    return [
        {"charge_point_id": cp_id, "starts_at": starts_at, "power_sum_w": total, "samples": int(count)}
        for (cp_id, starts_at), (total, count) in sums.items()
    ]


def quarter_upsert_statement(dialect: str) -> Any:
    """Return the INSERT … ON CONFLICT that adds rows of ``quarter_rows`` to the stored sums (SQLite or PostgreSQL)."""
    statement = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(QUARTER_TABLE)
    return statement.on_conflict_do_update(
        index_elements=["charge_point_id", "starts_at"],
        set_={
            "power_sum_w": QUARTER_TABLE.c.power_sum_w + statement.excluded.power_sum_w,
            "samples": QUARTER_TABLE.c.samples + statement.excluded.samples,
        },
    )


def quarter_prune_statement() -> Any:
    """Return the DELETE of a charger's quarter-hours older than ``before`` (``charge_point_id``, ``before``)."""
    return delete(QUARTER_TABLE).where(
        QUARTER_TABLE.c.charge_point_id == bindparam("charge_point_id"),
        QUARTER_TABLE.c.starts_at < bindparam("before"),
    )


def quarter_prune_rows(charge_point_ids: Iterable[int], now: datetime) -> list[dict[str, Any]]:
    """Return the parameters of ``quarter_prune_statement`` for these chargers: older than QUARTERS_KEPT."""
    before = now - QUARTERS_KEPT
    return [{"charge_point_id": cp_id, "before": before} for cp_id in sorted(set(charge_point_ids))]


async def add_quarters(
    session: AsyncSession, meter_rows: Sequence[Mapping[str, Any]], pruned: Iterable[int] = ()
) -> None:
    """Add a batch of meter sample rows to the chargers' quarter-hours; drop the old quarter-hours of
    the chargers whose samples are pruned in the same batch. Two statements at most."""
    rows = quarter_rows(meter_rows)
    if rows:
        dialect = session.get_bind().dialect.name
        await session.exec(quarter_upsert_statement(dialect), params=rows)
    prune = quarter_prune_rows(pruned, utcnow())
    if prune:
        await session.exec(quarter_prune_statement(), params=prune)


# Exports -------------------------------------------------------------------------------------

CURVE_COLUMNS = ("time", "offset_s", "baseline_kw", "measured_kw", "limit_kw", "chargers_reporting")
CHARGER_COLUMNS = (
    "identity",
    "status",
    "verdict",
    "baseline_kw",
    "baseline_method",
    "baseline_detail",
    "expected_reduction_kw",
    "delivered_reduction_kw",
    "delivered_share",
    "best_reduction_kw",
    "reached_90_percent_s",
    "samples",
    "clock_replaced",
    "discarded",
    "note",
)


def _kw(value: float | None) -> float | None:
    return None if value is None else round(value / 1000, 3) + 0.0  # + 0.0: never "-0.0"


def curve_rows(area: AreaResponse) -> list[dict[str, object]]:
    return [
        {
            "time": point.at.isoformat(timespec="milliseconds"),
            "offset_s": point.offset_s,
            "baseline_kw": _kw(point.baseline_w),
            "measured_kw": _kw(point.measured_w),
            "limit_kw": _kw(point.limit_w),
            "chargers_reporting": point.reporting,
        }
        for point in area.points
    ]


def charger_rows(chargers: Iterable[ChargerDelivery]) -> list[dict[str, object]]:
    return [
        {
            "identity": c.dispatch.identity,
            "status": c.dispatch.status,
            "verdict": str(c.verdict),
            "baseline_kw": _kw(c.baseline_w),
            "baseline_method": str(c.baseline_method),
            "baseline_detail": c.baseline_detail,
            "expected_reduction_kw": _kw(c.expected_w),
            "delivered_reduction_kw": _kw(c.delivered_w),
            "delivered_share": None if c.share is None else round(c.share, 3),
            "best_reduction_kw": _kw(c.best_w),
            "reached_90_percent_s": None if c.reached_s is None else round(c.reached_s, 3),
            "samples": c.samples,
            "clock_replaced": c.clock_replaced,
            "discarded": c.discarded,
            "note": c.note,
        }
        for c in chargers
    ]


def to_csv(columns: Sequence[str], rows: Iterable[dict[str, object]]) -> str:
    """Return rows as CSV (empty cells for unknown values); cells a spreadsheet would run are quoted harmless."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(value) for key, value in row.items()})
    return out.getvalue()


def _cell(value: object) -> object:
    if value is None:
        return ""
    return spreadsheet_text(value) if isinstance(value, str) else value
