"""Earnings: statements against a hand computation, bad prices refused whole, closed months never change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.errors import FormErrors
from powerbank.models import (
    AuditEntry,
    AvailableHour,
    ChargePoint,
    DeliveredEnergy,
    MarketPrice,
    MeterQuarter,
    Operator,
    Participation,
    ParticipationEvent,
    StatementLine,
    Team,
)
from powerbank.rules.earnings import line_amount, month_bounds, parse_month, round_amount
from powerbank.services import earnings
from powerbank.services.audit import SYSTEM
from powerbank.services.earnings import MonthClosedError, PriceRowsRefused
from tests.conftest import Factory
from tests.services import reliability_support as support

MONTH = "2026-10"
START, END = month_bounds(MONTH)
NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
HEADER = "price_area,market,kind,currency,starts_at,ends_at,price\n"


def _hour(n: int) -> datetime:
    return START + timedelta(hours=n)


async def _fleet(factory: Factory) -> tuple[Operator, Team, ChargePoint, ChargePoint]:
    operator = await factory.operator("Earning Operator")
    team = await factory.team(operator, "Copenhagen")
    first = await factory.charge_point(team, name="A-1", price_area="DK2")
    second = await factory.charge_point(team, name="B-2", price_area="DK2")
    return operator, team, first, second


async def _energy(
    session: AsyncSession, operator: Operator, cp: ChargePoint, activation_id: int, **values: object
) -> None:
    session.add(
        DeliveredEnergy(
            activation_id=activation_id,
            charge_point_id=cp.id or 0,
            operator_id=operator.id or 0,
            price_area="DK2",
            market="FCR-D up",
            **values,  # type: ignore[arg-type]
        )
    )


async def _activation(session: AsyncSession, operator: Operator, at: datetime) -> int:
    from powerbank.models import Activation

    activation = Activation(
        operator_id=operator.id or 0,
        price_area="DK2",
        market="FCR-D up",
        action="pause",
        start_at=at,
        duration_s=900,
        end_at=at + timedelta(seconds=900),
        state="ended",
        created_by="grid@example.test",
        triggered_at=at,
        ended_at=at + timedelta(seconds=900),
    )
    session.add(activation)
    await session.flush()
    return activation.id or 0


async def test_a_statement_matches_a_hand_computation_from_prices_and_delivered_energy(
    session: AsyncSession, factory: Factory
) -> None:
    operator, team, first, second = await _fleet(factory)
    # Hourly FCR-D up capacity prices for the first three hours of the month, and an energy price.
    csv_text = HEADER + (
        f"DK2,FCR-D up,capacity,DKK,{_hour(0).isoformat()},,412.50\n"
        f"DK2,FCR-D up,capacity,DKK,{_hour(1).isoformat()},,300\n"
        f"DK2,FCR-D up,capacity,DKK,{_hour(2).isoformat()},,0.3333\n"
        f"DK2,FCR-D up,energy,DKK,{START.isoformat()},{END.isoformat()},1500\n"
    )
    # What PowerBank measured: A-1 available 7.4 kW in hours 0 and 1, 3.3 kW in hour 2; B-2 11 kW in hour 1.
    session.add_all(
        [
            AvailableHour(charge_point_id=first.id or 0, hour=_hour(0), power_w=7400.0),
            AvailableHour(charge_point_id=first.id or 0, hour=_hour(1), power_w=7400.0),
            AvailableHour(charge_point_id=first.id or 0, hour=_hour(2), power_w=3300.0),
            AvailableHour(charge_point_id=second.id or 0, hour=_hour(1), power_w=11000.0),
            # Outside the month: not counted.
            AvailableHour(charge_point_id=second.id or 0, hour=END, power_w=11000.0),
        ]
    )
    one = await _activation(session, operator, _hour(5))
    two = await _activation(session, operator, _hour(30))
    # A-1 delivered 2.75 kWh in the first activation; B-2 accepted but did not deliver in both.
    await _energy(session, operator, first, one, triggered_at=_hour(5), verdict="delivered", delivered_wh=2750.0)
    await _energy(
        session, operator, second, one, triggered_at=_hour(5), verdict="accepted but not delivered", delivered_wh=0.0
    )
    await _energy(
        session, operator, second, two, triggered_at=_hour(30), verdict="accepted but not delivered", delivered_wh=0.0
    )
    await session.commit()
    await earnings.set_share(session, SYSTEM, operator.id or 0, None, "72.5", NOW)
    await earnings.save_prices(session, SYSTEM, operator.id or 0, earnings.read_price_csv(csv_text), NOW)
    await session.commit()

    found = await earnings.statement(session, SYSTEM, team, MONTH)

    # By hand: A-1 0.0074 MW × 412.50 + 0.0074 × 300 + 0.0033 × 0.3333 + 2.75 MWh/1000 × 1500
    a_value = Decimal("3.0525") + Decimal("2.22") + Decimal("0.00109989") + Decimal("4.125")
    # B-2: 0.011 MW × 300; nothing for the activations it accepted but did not deliver.
    b_value = Decimal("3.3")
    a_amount = (a_value * Decimal("0.725")).quantize(Decimal("0.01"), ROUND_HALF_UP)  # 6.81398...
    b_amount = (b_value * Decimal("0.725")).quantize(Decimal("0.01"), ROUND_HALF_UP)  # 2.3925
    assert [(line.charge_point_name, line.amount) for line in found.lines] == [("A-1", a_amount), ("B-2", b_amount)]
    assert a_amount == Decimal("6.81") and b_amount == Decimal("2.39")
    a_line, b_line = found.lines
    assert a_line.market_value == Decimal("9.398600")  # 9.39859989 kept to six places
    assert (a_line.hours_signed_up, a_line.activations, a_line.delivered_kwh) == (3, 1, 2.75)
    assert a_line.available_kwh == pytest.approx(18.1)
    assert (b_line.hours_signed_up, b_line.activations, b_line.delivered_kwh) == (1, 2, 0.0)
    assert found.share == Decimal("0.725")
    assert [(t.currency, t.amount) for t in found.totals] == [("DKK", Decimal("9.20"))]
    assert sum(line.amount for line in found.lines) == found.totals[0].amount

    exported = earnings.statement_csv(found, team.name).splitlines()
    assert exported[1].split(",")[2] == "A-1" and exported[1].split(",")[-3:-1] == ["6.81", "DKK"]
    assert exported[-1].split(",")[1] == "total" and exported[-1].split(",")[-3:-1] == ["9.20", "DKK"]


def test_the_rounding_rule_is_once_per_line_half_up_to_the_cent() -> None:
    assert round_amount(Decimal("2.345")) == Decimal("2.35")
    assert round_amount(Decimal("2.344999")) == Decimal("2.34")
    assert line_amount(Decimal("3.3"), Decimal("0.725")) == Decimal("2.39")
    # Three lines of a third each: their amounts, not a re-rounded total, make the total.
    lines = [line_amount(Decimal("1"), Decimal("0.3333"))] * 3
    assert sum(lines) == Decimal("0.99")


@pytest.mark.parametrize("text", ["2026-13", "26-10", "2026-1", "", "2026-10-01", "abcd-ef", "1999-12"])
def test_a_month_that_is_not_yyyy_mm_is_refused(text: str) -> None:
    assert parse_month(text) is None


BAD_ROWS = [
    ("DK2,FCR-D up,capacity,DKK,2026-10-01T00:00:00Z,,-5", "negative"),
    ("DK2,FCR-D up,capacity,DKK,2026-10-01T00:00:00Z,,9999999", "beyond any balancing price"),
    ("DK2,FCR-D up,capacity,DKK,2026-10-01T00:00:00Z,,abc", "not a number"),
    ("DK2,FCR-D up,capacity,DKK,2026-10-01T00:00:00Z,,NaN", "finite"),
    ("XX9,FCR-D up,capacity,DKK,2026-10-01T00:00:00Z,,5", "not a price area"),
    ("DK2,Moon market,capacity,DKK,2026-10-01T00:00:00Z,,5", "not a market"),
    ("DK2,Test,capacity,DKK,2026-10-01T00:00:00Z,,5", "not a market"),
    ("DK2,FCR-D up,capacity,SEK,2026-10-01T00:00:00Z,,5", "in DKK, not SEK"),
    ("DK2,FCR-D up,bonus,DKK,2026-10-01T00:00:00Z,,5", "capacity (per MW per hour) or energy"),
    ("DK2,FCR-D up,capacity,DKK,2026-10-01T00:30:00Z,,5", "whole hours"),
    ("DK2,FCR-D up,capacity,DKK,2026-10-01T00:00:00,,5", "time zone"),
    ("DK2,FCR-D up,energy,DKK,2026-10-02T00:00:00Z,2026-10-01T00:00:00Z,5", "after starts_at"),
    ("DK2,FCR-D up,energy,DKK,2026-10-01T00:00:00Z,2026-12-01T00:00:00Z,5", "at most 31 days"),
]


@pytest.mark.parametrize(("row", "says"), BAD_ROWS)
async def test_a_bad_row_names_its_line_and_nothing_is_saved(
    session: AsyncSession, factory: Factory, row: str, says: str
) -> None:
    operator, *_ = await _fleet(factory)
    good = "DK2,FCR-D up,capacity,DKK,2026-10-05T00:00:00Z,,100\n"
    with pytest.raises(PriceRowsRefused) as refused:
        rows = earnings.read_price_csv(HEADER + good + row + "\n")
        await earnings.save_prices(session, SYSTEM, operator.id or 0, rows, NOW)
    assert list(refused.value.errors) == ["line 3"]
    assert says in refused.value.errors["line 3"]
    await session.rollback()
    assert (await session.exec(select(func.count()).select_from(MarketPrice))).one() == 0


async def test_overlapping_periods_in_a_file_or_against_stored_prices_are_refused_whole(
    session: AsyncSession, factory: Factory
) -> None:
    operator, *_ = await _fleet(factory)
    op_id = operator.id or 0
    inside = HEADER + (
        "DK2,FCR-D up,energy,DKK,2026-10-01T00:00:00Z,2026-10-10T00:00:00Z,100\n"
        "DK2,FCR-D up,energy,DKK,2026-10-09T00:00:00Z,2026-10-20T00:00:00Z,100\n"
    )
    with pytest.raises(PriceRowsRefused) as refused:
        await earnings.save_prices(session, SYSTEM, op_id, earnings.read_price_csv(inside), NOW)
    assert "overlaps line 2" in refused.value.errors["line 3"]
    await session.rollback()
    stored = HEADER + "DK2,FCR-D up,energy,DKK,2026-10-01T00:00:00Z,2026-10-10T00:00:00Z,100\n"
    await earnings.save_prices(session, SYSTEM, op_id, earnings.read_price_csv(stored), NOW)
    await session.commit()
    clash = HEADER + (
        "DK2,FCR-D up,capacity,DKK,2026-10-01T00:00:00Z,,50\n"
        "DK2,FCR-D up,energy,DKK,2026-10-05T00:00:00Z,2026-10-12T00:00:00Z,100\n"
    )
    with pytest.raises(PriceRowsRefused) as refused:
        await earnings.save_prices(session, SYSTEM, op_id, earnings.read_price_csv(clash), NOW)
    assert list(refused.value.errors) == ["line 3"] and "overlaps the stored" in refused.value.errors["line 3"]
    await session.rollback()
    # The valid capacity row of the refused file was not saved either.
    kinds = (await session.exec(select(MarketPrice.kind))).all()
    assert kinds == ["energy"]


async def test_the_same_file_twice_changes_nothing_and_each_change_is_audited(
    session: AsyncSession, factory: Factory
) -> None:
    operator, *_ = await _fleet(factory)
    op_id = operator.id or 0
    text = HEADER + "".join(f"DK2,FCR-D up,capacity,DKK,{_hour(n).isoformat()},,{100 + n}\n" for n in range(24))
    first = await earnings.save_prices(session, SYSTEM, op_id, earnings.read_price_csv(text), NOW)
    await session.commit()
    again = await earnings.save_prices(session, SYSTEM, op_id, earnings.read_price_csv(text), NOW)
    await session.commit()
    assert (first.added, first.changed, first.unchanged) == (24, 0, 0)
    assert (again.added, again.changed, again.unchanged) == (0, 0, 24)
    assert (await session.exec(select(func.count()).select_from(MarketPrice))).one() == 24
    changed = text.replace(",100\n", ",99.5\n")
    third = await earnings.save_prices(session, SYSTEM, op_id, earnings.read_price_csv(changed), NOW)
    await session.commit()
    assert (third.added, third.changed) == (0, 1)
    entries = (
        await session.exec(
            select(AuditEntry).where(AuditEntry.action == "enter market prices").order_by(col(AuditEntry.id))
        )
    ).all()
    assert [(e.after or {}).get("added") for e in entries] == [24, 0]
    assert [(e.after or {}).get("changed") for e in entries] == [0, 1]


async def test_a_closed_month_never_changes_and_late_data_is_a_dated_correction_next_month(
    session: AsyncSession, factory: Factory
) -> None:
    operator, team, first, second = await _fleet(factory)
    op_id, second_id, team_id = operator.id or 0, second.id or 0, team.id or 0
    prices = HEADER + f"DK2,FCR-D up,capacity,DKK,{_hour(0).isoformat()},{_hour(24).isoformat()},1000\n"
    await earnings.save_prices(session, SYSTEM, op_id, earnings.read_price_csv(prices), NOW)
    session.add(AvailableHour(charge_point_id=first.id or 0, hour=_hour(3), power_w=10_000.0))
    await session.commit()
    await earnings.close_month(session, SYSTEM, op_id, MONTH, NOW)
    await session.commit()
    before = await earnings.statement(session, SYSTEM, team, MONTH)
    assert [(line.charge_point_name, line.amount) for line in before.lines] == [("A-1", Decimal("7.00"))]

    # Closing twice, or entering prices for it, is refused; nothing changes.
    with pytest.raises(MonthClosedError):
        await earnings.close_month(session, SYSTEM, op_id, MONTH, NOW)
    await session.rollback()
    late = HEADER + f"DK2,FCR-D up,capacity,DKK,{_hour(30).isoformat()},,1000\n"
    with pytest.raises(PriceRowsRefused) as refused:
        await earnings.save_prices(session, SYSTEM, op_id, earnings.read_price_csv(late), NOW)
    assert "2026-10 is closed" in refused.value.errors["line 2"]
    await session.rollback()
    with pytest.raises(MonthClosedError):
        await earnings.refresh_month(session, op_id, MONTH, NOW)
    await session.rollback()

    # Evidence arrives late: B-2 was available in hour 4 of the closed month.
    session.add(AvailableHour(charge_point_id=second_id, hour=_hour(4), power_w=20_000.0))
    await session.commit()
    later = NOW + timedelta(days=2)
    await earnings.refresh_all(session, later)
    await session.commit()
    team = await session.get(Team, team_id) or team
    after = await earnings.statement(session, SYSTEM, team, MONTH)
    assert [(line.charge_point_name, line.amount) for line in after.lines] == [("A-1", Decimal("7.00"))]
    assert after.totals == before.totals
    november = await earnings.statement(session, SYSTEM, team, "2026-11")
    assert [(c.charge_point_name, c.amount, c.corrects) for c in november.corrections] == [
        ("B-2", Decimal("14.00"), MONTH)
    ]
    assert november.corrections[0].dated == later
    # Refreshed again, the correction keeps the date it was found.
    await earnings.refresh_month(session, op_id, "2026-11", later + timedelta(days=1))
    await session.commit()
    again = await earnings.statement(session, SYSTEM, team, "2026-11")
    assert again.corrections[0].dated == later


async def test_a_month_not_over_cannot_be_closed(session: AsyncSession, factory: Factory) -> None:
    operator, *_ = await _fleet(factory)
    with pytest.raises(FormErrors) as refused:
        await earnings.close_month(session, SYSTEM, operator.id or 0, "2026-11", NOW)
    assert "has not ended" in refused.value.errors["month"]


async def test_a_teams_own_share_overrides_the_operators(session: AsyncSession, factory: Factory) -> None:
    operator, team, first, _ = await _fleet(factory)
    other = await factory.team(operator, "Aarhus")
    op_id = operator.id or 0
    await earnings.set_share(session, SYSTEM, op_id, None, "60", NOW)
    await earnings.set_share(session, SYSTEM, op_id, team, "85 %", NOW)
    with pytest.raises(FormErrors):
        await earnings.set_share(session, SYSTEM, op_id, team, "120", NOW)
    await session.commit()
    shares = await earnings.shares_of(session, op_id)
    assert shares.of(team.id or 0) == Decimal("0.85") and shares.of(other.id or 0) == Decimal("0.6")
    await earnings.set_share(session, SYSTEM, op_id, team, "", NOW)
    await session.commit()
    assert (await earnings.shares_of(session, op_id)).of(team.id or 0) == Decimal("0.6")


async def test_hours_accrue_from_quarter_hour_means_while_signed_up_throughout(
    session: AsyncSession, factory: Factory
) -> None:
    operator, team, first, second = await _fleet(factory)
    now = datetime(2026, 11, 3, 12, 20, tzinfo=UTC)
    base = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
    # A-1 signed up since yesterday; B-2 signed up at 10:30.
    for cp, at in ((first, base - timedelta(days=1)), (second, base + timedelta(minutes=90))):
        session.add(
            ParticipationEvent(
                charge_point_id=cp.id or 0,
                team_id=team.id or 0,
                operator_id=operator.id,
                charge_point_name=cp.name,
                actor_label="test",
                at=at,
                from_state="not_signed_up",
                to_state="signed_up",
                source="single",
            )
        )
        session.add(Participation(charge_point_id=cp.id or 0, state="signed_up", since=at, source="single"))
    for cp in (first, second):
        for quarter in range(12):  # 09:00 to 12:00
            starts = base + timedelta(minutes=15 * quarter)
            session.add(
                MeterQuarter(
                    charge_point_id=cp.id or 0, starts_at=starts, power_sum_w=4000.0 * (quarter % 2 + 1), samples=2
                )
            )
    await session.commit()
    assert await earnings.accrue_hours(session, now) == 4
    await session.commit()
    hours = (
        await session.exec(select(AvailableHour).order_by(col(AvailableHour.charge_point_id), col(AvailableHour.hour)))
    ).all()
    assert [(h.charge_point_id, h.hour.hour, h.power_w) for h in hours] == [
        (first.id, 9, 3000.0),
        (first.id, 10, 3000.0),
        (first.id, 11, 3000.0),
        # Not 10:00 for B-2: it signed up at 10:30. Not 12:00: that hour is not over.
        (second.id, 11, 3000.0),
    ]
    # Accruing again adds nothing.
    assert await earnings.accrue_hours(session, now) == 0


async def test_delivered_energy_is_settled_from_the_evidence_and_not_delivered_earns_nothing(
    session: AsyncSession, factory: Factory
) -> None:
    operator, team, first, second = await _fleet(factory)
    activation = await support.judged_activation(
        session, operator.id or 0, [(first, support.DELIVERS), (second, support.IGNORES)], hours_ago=2
    )
    assert await earnings.settle_deliveries(session, datetime.now(UTC)) == 1
    await session.commit()
    assert await earnings.settle_deliveries(session, datetime.now(UTC)) == 0
    rows = {
        row.charge_point_id: row
        for row in (await session.exec(select(DeliveredEnergy).where(DeliveredEnergy.activation_id == activation.id)))
    }
    assert rows[first.id or 0].verdict == "delivered"
    # 11 kW paused for the 120 s window.
    assert rows[first.id or 0].delivered_wh == pytest.approx(11_000 * 120 / 3600)
    assert rows[second.id or 0].verdict == "accepted but not delivered"
    assert rows[second.id or 0].delivered_wh == 0.0


async def test_a_statement_costs_the_same_queries_whatever_the_fleet(session: AsyncSession, factory: Factory) -> None:
    from sqlalchemy import event

    operator, team, first, second = await _fleet(factory)
    session.add(AvailableHour(charge_point_id=second.id or 0, hour=_hour(0), power_w=1000.0))
    # The month's first refresh also creates its row; count the ones after.
    await earnings.refresh_month(session, operator.id or 0, MONTH, NOW)
    await session.commit()
    counts = []
    for size in (2, 40):
        while len((await session.exec(select(ChargePoint.id).where(ChargePoint.team_id == team.id))).all()) < size:
            cp = await factory.charge_point(team, price_area="DK2")
            session.add(AvailableHour(charge_point_id=cp.id or 0, hour=_hour(1), power_w=1000.0))
        session.add(AvailableHour(charge_point_id=first.id or 0, hour=_hour(size), power_w=1000.0))
        await session.commit()
        statements: list[str] = []
        engine = session.get_bind()
        sync_engine = engine.sync_engine if hasattr(engine, "sync_engine") else engine

        def count(*args: object) -> None:
            statements.append(str(args[2]))

        event.listen(sync_engine, "before_cursor_execute", count)
        try:
            await earnings.refresh_month(session, operator.id or 0, MONTH, NOW)
            await session.commit()
            refreshed = len(statements)
            statements.clear()
            await earnings.statement(session, SYSTEM, team, MONTH)
        finally:
            event.remove(sync_engine, "before_cursor_execute", count)
        counts.append((refreshed, len(statements)))
        lines = (await session.exec(select(func.count()).select_from(StatementLine))).one()
        assert lines == size
    assert counts[0] == counts[1]
