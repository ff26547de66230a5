"""A scheduled activation's baselines from the chargers' past: the same quarter-hour on the last working days.

The meter samples are pruned to the newest, so each batch of them is also added to its charger's
quarter-hour sums as it is stored; the baseline is the median of those means on the last five working
days, when at least three have data, else the mean over the minute before the trigger.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from quart import Quart
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import Activation, ChargePoint, Dispatch, DispatchStatus, MeterSample
from powerbank.models.baselines import MeterQuarter
from powerbank.services import delivery
from tests.conftest import Factory, LoginAs
from tests.dispatch.support import write_token

pytestmark = pytest.mark.usefixtures("fast_hashing")

# Monday 30 November 2026, 17:05 in Copenhagen: the quarter-hour 17:00–17:15 (16:00 UTC) on Friday 27
# back to Monday 23 November.
TRIGGER = datetime(2026, 11, 30, 16, 5, tzinfo=UTC)


def quarter_on(day: int, minute: int = 2) -> datetime:
    return datetime(2026, 11, day, 16, minute, tzinfo=UTC)


def meter_row(cp: ChargePoint, at: datetime, power_w: float | None) -> dict[str, object]:
    return {"charge_point_id": cp.id, "measured_at": at, "received_at": at, "power_w": power_w}


async def scheduled(
    session: AsyncSession, operator_id: int, chargers: list[ChargePoint], *, made: datetime
) -> Activation:
    activation = Activation(
        operator_id=operator_id,
        price_area="DK2",
        market="FCR-D up",
        action="pause",
        start_at=TRIGGER,
        duration_s=300,
        end_at=TRIGGER + timedelta(seconds=300),
        ended_at=TRIGGER + timedelta(seconds=300),
        state="ended",
        triggered_at=TRIGGER,
        created_at=made,
        created_by="grid",
    )
    session.add(activation)
    await session.flush()
    for cp in chargers:
        session.add(
            Dispatch(
                activation_id=activation.id or 0,
                charge_point_id=cp.id,
                identity=cp.identity,
                status=DispatchStatus.ACCEPTED,
                limit_w=0.0,
                sent_at=TRIGGER,
            )
        )
    await session.commit()
    return activation


async def test_a_scheduled_activations_baseline_is_the_median_of_past_working_days_where_enough_have_data(
    app: Quart, factory: Factory, session: AsyncSession, login_as: LoginAs
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    steady, new, busy = [await factory.charge_point(team, price_area="DK2") for _ in range(3)]
    past: list[dict[str, object]] = []
    # Steady: 6, 7, 8 and 9 kW on Friday back to Tuesday (two samples a day), a broken meter on Monday
    # 23rd (discarded: no data that day), and a Saturday that is not a working day.
    for day, kw in ((27, 6), (26, 7), (25, 8), (24, 9)):
        past += [
            meter_row(steady, quarter_on(day), kw * 1000 - 500),
            meter_row(steady, quarter_on(day, 9), kw * 1000 + 500),
        ]
    past += [meter_row(steady, quarter_on(23), 1e7), meter_row(steady, quarter_on(28), 20_000)]
    # New: two days only. Busy: three days, but on Thursday another activation limited it then.
    past += [meter_row(new, quarter_on(day), 3_000) for day in (27, 26)]
    past += [meter_row(busy, quarter_on(day), 5_000) for day in (27, 26, 25)]
    # Outside the quarter-hour (16:15 UTC is 17:15 in Copenhagen): not the same quarter-hour.
    past += [meter_row(new, quarter_on(25, 15), 3_000), meter_row(new, quarter_on(24, 15), 3_000)]
    await delivery.add_quarters(session, past)
    await delivery.add_quarters(session, [meter_row(steady, quarter_on(27, 14), 6_000)])  # added to Friday's sums
    earlier = await scheduled(session, operator.id or 0, [busy], made=quarter_on(26) - timedelta(hours=1))
    earlier.start_at = earlier.triggered_at = quarter_on(26, 10)
    earlier.end_at = earlier.ended_at = quarter_on(26, 11)
    session.add(earlier)
    # The minute before the trigger and the pause after it, for all three.
    for cp in (steady, new, busy):
        for offset, power in ((-40, 11_000.0), (-20, 11_000.0), (3, 0.0)):
            at = TRIGGER + timedelta(seconds=offset)
            session.add(MeterSample(charge_point_id=cp.id or 0, measured_at=at, received_at=at, power_w=power))
    await session.commit()

    friday = (
        await session.exec(
            select(MeterQuarter).where(
                MeterQuarter.charge_point_id == steady.id, MeterQuarter.starts_at == quarter_on(27, 0)
            )
        )
    ).one()
    assert (friday.power_sum_w, friday.samples) == (18_000, 3)

    activation = await scheduled(session, operator.id or 0, [steady, new, busy], made=TRIGGER - timedelta(days=1))
    dispatches = list(
        await session.exec(select(Dispatch).where(Dispatch.activation_id == activation.id).order_by(col(Dispatch.id)))
    )
    found = await delivery.delivery_of(session, activation, dispatches, TRIGGER + timedelta(seconds=400))
    assert found is not None and found.quarter is not None
    assert found.quarter.label == "17:00–17:15 Europe/Copenhagen"
    by_cp = {c.dispatch.charge_point_id: c for c in found.chargers}
    # Friday's mean is (5.5 + 6.5 + 6) / 3 = 6 kW: the median of 6, 7, 8 and 9 kW is 7.5 kW.
    assert by_cp[steady.id].baseline_w == pytest.approx(7_500)
    assert by_cp[steady.id].baseline_method == "quarter_hour_median"
    assert "on 4 of the last 5 working days" in by_cp[steady.id].baseline_detail
    assert by_cp[steady.id].verdict == delivery.Verdict.DELIVERED and by_cp[steady.id].expected_w == pytest.approx(
        7_500
    )
    for cp in (new, busy):
        assert by_cp[cp.id].baseline_w == 11_000 and by_cp[cp.id].baseline_method == "mean_60s"
        assert by_cp[cp.id].baseline_detail.startswith("2 of the last 5 working days have data in 17:00–17:15")
    assert (found.by_method("quarter_hour_median"), found.by_method("mean_60s")) == (1, 2)
    # The area's expected reduction adds up the baselines of either method.
    assert found.area.expected_w == pytest.approx(7_500 + 11_000 + 11_000)

    # The same activation started at once: the minute before the trigger for all.
    activation.created_at = activation.start_at
    immediate = await delivery.delivery_of(session, activation, dispatches, TRIGGER + timedelta(seconds=400))
    assert immediate is not None and immediate.quarter is None
    assert {c.baseline_method for c in immediate.chargers} == {"mean_60s"}
    activation.created_at = TRIGGER - timedelta(days=1)
    await session.commit()

    # The page, the API and the CSV say which method each charger's baseline came from.
    headers = await write_token(session, operator)
    client = app.test_client()
    body = await (await client.get(f"/api/v1/activations/{activation.id}/response", headers=headers)).get_json()
    assert body["baseline_quarter_hour"] == "17:00–17:15 Europe/Copenhagen"
    methods = {row["identity"]: row["baseline_method"] for row in body["chargers"]}
    assert methods == {steady.identity: "quarter_hour_median", new.identity: "mean_60s", busy.identity: "mean_60s"}
    exported = await client.get(f"/api/v1/activations/{activation.id}/chargers.csv", headers=headers)
    table = {row["identity"]: row for row in csv.DictReader(io.StringIO(await exported.get_data(as_text=True)))}
    assert table[steady.identity]["baseline_method"] == "quarter_hour_median"
    assert table[steady.identity]["baseline_kw"] == "7.5"
    assert "at least 3 needed" in table[new.identity]["baseline_detail"]
    admin = await factory.user(operator=operator, operator_role="admin")
    page = await (await (await login_as(admin)).get(f"/activations/{activation.id}")).get_data(as_text=True)
    assert "Baseline (a scheduled activation)" in page and "17:00–17:15 Europe/Copenhagen" in page
    assert "median of the 17:00–17:15 Europe/Copenhagen means on 4 of the last 5 working days" in page
    assert "(1 charger(s)); otherwise" in page


async def test_quarter_hours_older_than_two_weeks_go_when_the_chargers_samples_are_pruned(
    factory: Factory, session: AsyncSession
) -> None:
    team = await factory.team()
    cp, other = await factory.charge_point(team), await factory.charge_point(team)
    now = delivery.utcnow()
    old, recent = now - timedelta(days=20), now - timedelta(days=3)
    rows = [meter_row(c, at, 1_000) for c in (cp, other) for at in (old, recent)]
    await delivery.add_quarters(session, rows)
    await delivery.add_quarters(session, [], pruned=[cp.id or 0])
    await session.commit()
    kept = {(q.charge_point_id, q.starts_at) for q in await session.exec(select(MeterQuarter))}
    assert kept == {
        (cp.id, delivery.quarter_of(recent)),
        (other.id, delivery.quarter_of(old)),
        (other.id, delivery.quarter_of(recent)),
    }


async def test_of_duplicate_samples_the_first_received_counts_whatever_order_they_were_stored_in(
    factory: Factory, session: AsyncSession
) -> None:
    cp = await factory.charge_point(await factory.team())
    at = TRIGGER - timedelta(seconds=10)
    # The resent one (received later, another value) is stored first.
    for received_s, power in ((2, 9_000.0), (0, 11_000.0), (1, 60_000.0)):
        received = at + timedelta(seconds=received_s)
        session.add(MeterSample(charge_point_id=cp.id or 0, measured_at=at, received_at=received, power_w=power))
    await session.commit()
    activation = Activation(
        operator_id=1, price_area="DK2", market="Test", action="pause", start_at=TRIGGER, duration_s=60,
        end_at=TRIGGER + timedelta(seconds=60), triggered_at=TRIGGER, created_at=TRIGGER, created_by="grid",
    )  # fmt: skip
    loaded = await delivery.load_samples(session, activation, [cp.id or 0], TRIGGER - timedelta(minutes=3), TRIGGER)
    assert [(s.at, s.power_w) for s in loaded.samples[cp.id or 0]] == [(at, 11_000.0)]
    assert loaded.discarded == {} and loaded.clock_behind_s == {}
