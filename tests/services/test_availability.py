"""Availability per price area: what a minute's sample sums, for whom, once, and how a range is read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.errors import FormErrors
from powerbank.models import AreaAvailability, ChargePoint, MeterSample, Operator, Participation, Team
from powerbank.services import availability as service
from tests.conftest import Factory

NOW = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
MINUTE = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    # These tests write the minutes themselves.
    return {"AVAILABILITY_SAMPLING": False}


async def charger(
    factory: Factory,
    team: Team,
    *,
    area: str = "DK1",
    state: str | None = "signed_up",
    online: bool = True,
    power: list[tuple[float | None, timedelta]] = (),  # type: ignore[assignment]
) -> ChargePoint:
    """Add a charge point with its participation and meter samples (power, how long before NOW), oldest first."""
    country = {"DK1": "DK", "DK2": "DK", "SE3": "SE", "GB": "GB"}[area]
    cp = await factory.charge_point(team, price_area=area, country=country, online=online)
    session = factory.session
    if state is not None:
        session.add(Participation(charge_point_id=cp.id or 0, state=state, source="single"))
    for watts, ago in power:
        session.add(
            MeterSample(charge_point_id=cp.id or 0, measured_at=NOW - ago, received_at=NOW - ago, power_w=watts)
        )
    await session.commit()
    return cp


async def rows(session: AsyncSession, operator: Operator) -> dict[tuple[str, datetime], AreaAvailability]:
    found = await session.exec(
        select(AreaAvailability)
        .where(AreaAvailability.operator_id == operator.id)
        .execution_options(populate_existing=True)
    )
    return {(row.price_area, row.minute): row for row in found}


async def test_a_minute_sums_the_newest_power_of_signed_up_online_chargers_per_operator_and_area(
    session: AsyncSession, factory: Factory
) -> None:
    ours, theirs = await factory.operator("Ours"), await factory.operator("Theirs")
    team, sibling, other = await factory.team(ours), await factory.team(ours), await factory.team(theirs)
    s = timedelta(seconds=1)
    # Counted: the newest sample with a power reading, from either team of the operator.
    await charger(factory, team, power=[(9000.0, 50 * s), (7000.0, 20 * s)])
    await charger(factory, sibling, power=[(3000.0, 30 * s), (None, 5 * s)])
    # Online and signed up, but its newest power is too old to be current: online, not reporting.
    await charger(factory, team, power=[(11000.0, 10 * 60 * s)])
    # Online and signed up, never reported power.
    await charger(factory, team)
    # Not counted: offline, opted out, never signed up, suspended.
    await charger(factory, team, online=False, power=[(5000.0, 10 * s)])
    await charger(factory, team, state="opted_out", power=[(5000.0, 10 * s)])
    await charger(factory, team, state=None, power=[(5000.0, 10 * s)])
    await charger(factory, team, state="suspended", power=[(5000.0, 10 * s)])
    # Another area of ours, and another operator in the same area.
    await charger(factory, team, area="SE3", power=[(2000.0, 10 * s)])
    await charger(factory, other, power=[(40000.0, 10 * s)])

    sampled = await service.sample(session, NOW)
    await session.commit()

    assert sampled.minute == MINUTE
    found = await rows(session, ours)
    assert set(found) == {("DK1", MINUTE), ("SE3", MINUTE)}
    dk1 = found[("DK1", MINUTE)]
    assert (dk1.power_w, dk1.signed_up, dk1.online, dk1.reporting) == (10000.0, 5, 4, 2)
    se3 = found[("SE3", MINUTE)]
    assert (se3.power_w, se3.signed_up, se3.online, se3.reporting) == (2000.0, 1, 1, 1)
    theirs_dk1 = (await rows(session, theirs))[("DK1", MINUTE)]
    assert (theirs_dk1.power_w, theirs_dk1.online) == (40000.0, 1)


async def test_an_area_with_charge_points_but_none_available_is_zero_not_missing(
    session: AsyncSession, factory: Factory
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    await charger(factory, team, online=False, power=[(5000.0, timedelta(seconds=5))])
    await charger(factory, team, area="GB", state=None)

    await service.sample(session, NOW)
    await session.commit()

    found = await rows(session, operator)
    assert {key: (r.power_w, r.signed_up, r.online, r.reporting) for key, r in found.items()} == {
        ("DK1", MINUTE): (0.0, 1, 0, 0),
        ("GB", MINUTE): (0.0, 0, 0, 0),
    }


async def test_a_minute_is_written_once_however_often_it_is_sampled(session: AsyncSession, factory: Factory) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    cp = await charger(factory, team, power=[(4000.0, timedelta(seconds=5))])

    first = await service.sample(session, NOW)
    await session.commit()
    # Later in the same minute (a restart, a second node) the power changed: the minute keeps its first value.
    session.add(MeterSample(charge_point_id=cp.id or 0, measured_at=NOW, received_at=NOW, power_w=8000.0))
    await session.commit()
    again = await service.sample(session, NOW + timedelta(seconds=20))
    await session.commit()

    assert (first.written, again.written) == (1, 0)
    found = await rows(session, operator)
    assert [(r.minute, r.power_w) for r in found.values()] == [(MINUTE, 4000.0)]

    # The next minute is a row of its own, with the new power.
    await service.sample(session, NOW + timedelta(seconds=40))
    await session.commit()
    found = await rows(session, operator)
    assert [(r.minute, r.power_w) for r in sorted(found.values(), key=lambda r: r.minute)] == [
        (MINUTE, 4000.0),
        (MINUTE + timedelta(minutes=1), 8000.0),
    ]


async def test_a_minute_not_sampled_stays_a_gap(session: AsyncSession, factory: Factory) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    await charger(factory, team, power=[(4000.0, timedelta(seconds=5))])

    for minutes in (0, 1, 5):  # the hub was down from 12:02 to 12:04
        await service.sample(session, NOW + timedelta(minutes=minutes))
        await session.commit()

    wanted = service.clean_range("DK1", None, None, MINUTE + timedelta(minutes=6))
    points = await service.series(session, operator.id or 0, wanted)
    assert [p.minute - MINUTE for p in points] == [timedelta(minutes=m) for m in (0, 1, 5)]


async def test_rows_older_than_the_kept_period_are_pruned(session: AsyncSession, factory: Factory) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    await charger(factory, team)
    old = NOW - service.KEPT - timedelta(minutes=1)
    await service.sample(session, old)
    await service.sample(session, NOW - service.KEPT)
    await session.commit()
    assert len(await rows(session, operator)) == 2

    await service.sample(session, NOW)
    await session.commit()

    assert sorted(minute for _, minute in await rows(session, operator)) == [
        service.minute_of(NOW - service.KEPT),
        MINUTE,
    ]


async def test_a_series_is_one_operators_one_area_within_the_range(session: AsyncSession, factory: Factory) -> None:
    ours, theirs = await factory.operator(), await factory.operator()
    for operator in (ours, theirs):
        team = await factory.team(operator)
        await charger(factory, team, power=[(1000.0 * (operator.id or 0), timedelta(seconds=5))])
        await charger(factory, team, area="SE3", power=[(500.0, timedelta(seconds=5))])
    for minutes in range(5):
        await service.sample(session, NOW + timedelta(minutes=minutes))
    await session.commit()

    wanted = service.clean_range(
        "DK1", (MINUTE + timedelta(minutes=1)).isoformat(), (MINUTE + timedelta(minutes=3)).isoformat(), NOW
    )
    points = await service.series(session, ours.id or 0, wanted)
    # From included, to excluded; only our DK1 chargers' power.
    assert [(p.minute, p.power_w) for p in points] == [
        (MINUTE + timedelta(minutes=1), 1000.0 * (ours.id or 0)),
        (MINUTE + timedelta(minutes=2), 1000.0 * (ours.id or 0)),
    ]
    total = (await session.exec(select(func.count()).select_from(AreaAvailability))).one()
    assert total == 2 * 2 * 5
    assert (await session.exec(select(func.count()).where(col(AreaAvailability.operator_id) == theirs.id))).one() == 10


def test_a_range_defaults_to_the_last_24_hours() -> None:
    wanted = service.clean_range("SE3", None, None, NOW)
    assert (wanted.area, wanted.start, wanted.end) == ("SE3", NOW - timedelta(hours=24), NOW)
    only_from = service.clean_range("SE3", "2026-03-01T00:00:00+01:00", None, NOW)
    assert (only_from.start, only_from.end) == (
        datetime(2026, 2, 28, 23, tzinfo=UTC),
        datetime(2026, 3, 1, 23, tzinfo=UTC),
    )
    only_to = service.clean_range("SE3", None, "2026-03-01T00:00:00Z", NOW)
    assert only_to.start == datetime(2026, 2, 28, tzinfo=UTC)


@pytest.mark.parametrize(
    ("area", "start", "end", "field", "says"),
    [
        ("DK3", None, None, "area", "DK1, DK2, SE1, SE2, SE3, SE4, GB, IE"),
        ("dk1", None, None, "area", "Not a price area"),
        ("DK1", "yesterday", None, "from", "ISO 8601"),
        ("DK1", "2026-03-01T00:00:00 01:00", None, "from", "%2B"),
        ("DK1", "2026-03-01T00:00:00", None, "from", "time zone"),
        ("DK1", None, "2026-03-01", "to", "time zone"),
        ("DK1", "2026-03-01T00:00:00Z", "2026-03-01T00:00:00Z", "from", "before to"),
        ("DK1", "2026-03-02T00:00:00Z", "2026-03-01T00:00:00Z", "from", "before to"),
        ("DK1", "2026-01-01T00:00:00Z", "2026-02-01T00:00:01Z", "to", "31 days"),
    ],
)
def test_a_bad_range_names_its_field(area: str, start: str | None, end: str | None, field: str, says: str) -> None:
    with pytest.raises(FormErrors) as raised:
        service.clean_range(area, start, end, NOW)
    assert field in raised.value.errors
    assert says in raised.value.errors[field]


def test_a_range_of_exactly_31_days_is_allowed() -> None:
    wanted = service.clean_range("DK1", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", NOW)
    assert wanted.end - wanted.start == service.MAX_RANGE
