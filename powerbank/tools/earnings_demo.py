"""Demo earnings: last month's and this month's prices, available hours and activations for Nordic Charge.

So `make run` shows Copenhagen Fleet's statement of last month (closed) and this month so far. The
hours and deliveries are made up, as a month of the simulated fleet would have measured them; they
are written as the accrual and the settlement would have stored them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import (
    Activation,
    ActivationState,
    AvailableHour,
    ChargePoint,
    DeliveredEnergy,
    Dispatch,
    DispatchStatus,
    EarningsMonth,
    EarningsSettled,
    MarketPrice,
    Operator,
    OperatorRevenueShare,
    Participation,
    ParticipationState,
    Team,
)
from powerbank.rules.earnings import month_bounds, month_of, previous_month
from powerbank.services import earnings

OPERATOR = "Nordic Charge"
AREA = "DK2"
MARKET = "FCR-D up"
SHARE = Decimal("0.7500")
ENERGY_PRICE = Decimal("1850.0000")
# What each demo charger does in the demo activations (as tools/simulator.py's fleet behaves).
BEHAVIOUR = {
    "CPH-001": ("delivered", 7400.0),
    "CPH-002": ("delivered", 7200.0),
    "CPH-003": ("accepted but not delivered", 0.0),
    "CPH-004": ("offline", 0.0),
}
# Days and hours (UTC) of last month's activations: 15 minutes each.
ACTIVATIONS = ((3, 17), (9, 7), (16, 18), (24, 16))
WINDOW = timedelta(minutes=15)


def capacity_price(hour: datetime) -> Decimal:
    """Return a plausible FCR-D up price (DKK per MW per hour): higher in the evening peak, varying by day."""
    base = 180 + 40 * (hour.day % 5)
    peak = 260 if 16 <= hour.hour < 20 else (90 if 6 <= hour.hour < 9 else 0)
    return Decimal(base + peak + (hour.hour * 7) % 23) + Decimal("0.25") * (hour.day % 4)


def available_w(identity: str, hour: datetime) -> float | None:
    """Return a charger's mean available power in an hour, or None when it was away (not reporting)."""
    seed = sum(ord(c) for c in identity)
    if (hour.day * 24 + hour.hour + seed) % 11 == 0:
        return None
    night = hour.hour < 6 or hour.hour >= 22
    return float(2000 + (seed * 37 + hour.hour * 311 + hour.day * 53) % 5000 + (3000 if night else 0))


async def load_demo_earnings(session: AsyncSession, now: datetime) -> None:
    """Store last month's and this month's demo prices, hours and activations; close last month. The caller commits."""
    operator = (await session.exec(select(Operator).where(Operator.name == OPERATOR))).one()
    operator_id = operator.id or 0
    signed_up = list(
        await session.exec(
            select(ChargePoint)
            .join(Team, col(Team.id) == col(ChargePoint.team_id))
            .join(Participation, col(Participation.charge_point_id) == col(ChargePoint.id))
            .where(
                Team.operator_id == operator_id,
                ChargePoint.price_area == AREA,
                Participation.state == ParticipationState.SIGNED_UP,
            )
        )
    )
    current = month_of(now)
    last = previous_month(current)
    start, _ = month_bounds(last)
    until = now.replace(minute=0, second=0, microsecond=0)
    session.add(OperatorRevenueShare(operator_id=operator_id, share=SHARE, updated_at=now))
    hour = start
    while hour < until:
        session.add(
            MarketPrice(
                operator_id=operator_id,
                price_area=AREA,
                market=MARKET,
                kind="capacity",
                currency="DKK",
                starts_at=hour,
                ends_at=hour + timedelta(hours=1),
                price=capacity_price(hour),
                entered_by="demo data",
                entered_at=now,
            )
        )
        for charge_point in signed_up:
            power = available_w(charge_point.identity, hour)
            if power is not None:
                session.add(AvailableHour(charge_point_id=charge_point.id or 0, hour=hour, power_w=power))
        hour += timedelta(hours=1)
    for month in (last, current):
        month_start, month_end = month_bounds(month)
        session.add(
            MarketPrice(
                operator_id=operator_id,
                price_area=AREA,
                market=MARKET,
                kind="energy",
                currency="DKK",
                starts_at=month_start,
                ends_at=month_end,
                price=ENERGY_PRICE,
                entered_by="demo data",
                entered_at=now,
            )
        )
    await session.flush()
    for day, at_hour in ACTIVATIONS:
        await _activation(session, operator_id, signed_up, start.replace(day=day, hour=at_hour))
    await session.flush()
    await earnings.refresh_month(session, operator_id, last, now)
    state = await session.get(EarningsMonth, (operator_id, last))
    if state is not None:
        state.closed_at, state.closed_by = now, "demo data"
        session.add(state)
    await earnings.refresh_month(session, operator_id, current, now)


async def _activation(session: AsyncSession, operator_id: int, chargers: list[ChargePoint], at: datetime) -> None:
    activation = Activation(
        operator_id=operator_id,
        price_area=AREA,
        market=MARKET,
        action="pause",
        start_at=at,
        duration_s=int(WINDOW.total_seconds()),
        end_at=at + WINDOW,
        state=ActivationState.ENDED,
        created_by="demo data",
        created_at=at,
        triggered_at=at,
        last_sent_at=at,
        ended_at=at + WINDOW,
        evidence_kept_at=at + WINDOW + timedelta(minutes=1),
    )
    session.add(activation)
    await session.flush()
    for charge_point in chargers:
        verdict, reduction_w = BEHAVIOUR.get(charge_point.identity, ("delivered", 5000.0))
        status = DispatchStatus.OFFLINE if verdict == "offline" else DispatchStatus.ACCEPTED
        session.add(
            Dispatch(
                activation_id=activation.id or 0,
                charge_point_id=charge_point.id,
                identity=charge_point.identity,
                status=status,
                limit_w=0.0,
                sent_at=at,
                answered_at=at,
                released_at=at + WINDOW,
            )
        )
        session.add(
            DeliveredEnergy(
                activation_id=activation.id or 0,
                charge_point_id=charge_point.id or 0,
                operator_id=operator_id,
                price_area=AREA,
                market=MARKET,
                triggered_at=at,
                verdict=verdict,
                delivered_wh=reduction_w * WINDOW.total_seconds() / 3600,
            )
        )
    session.add(EarningsSettled(activation_id=activation.id or 0, settled_at=at + WINDOW))
