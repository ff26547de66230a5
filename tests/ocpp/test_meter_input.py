"""Bad meter input through the real OCPP path: what is stored, and the curve and verdicts made of it.

Library chargers send MeterValues in kW, W and a wrong unit, power per phase only, absurd and negative
values, NaN and words, duplicates, samples out of order, and with clocks minutes behind or ahead. The
hub stores what it can read, and the proof of delivery says what it knows: implausible samples are
discarded and counted, a charger whose clock is off is placed at the hub's receive time and said so.
"""

from __future__ import annotations

import csv
import io
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from quart import Quart
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import Activation, ChargePoint, Dispatch, DispatchStatus, MeterSample
from powerbank.models.baselines import MeterQuarter
from powerbank.ocpp.meter import reading_from
from powerbank.services import delivery
from tests.conftest import Factory, LoginAs
from tests.dispatch.support import write_token
from tests.helpers import eventually
from tests.ocpp.support import boot16, charger

pytestmark = [pytest.mark.usefixtures("fast_hashing"), pytest.mark.served]


def stamp(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def power(value: str, unit: str | None = "W", phase: str | None = None) -> dict[str, Any]:
    sampled = {"value": value, "measurand": "Power.Active.Import"}
    if unit is not None:
        sampled["unit"] = unit
    if phase is not None:
        sampled["phase"] = phase
    return sampled


async def send(station: Any, *meter_values: tuple[datetime, list[dict[str, Any]]]) -> None:
    """Send one MeterValues; it is answered once its samples are stored."""
    await station.call(
        call16.MeterValues(
            connector_id=1,
            meter_value=[{"timestamp": stamp(at), "sampledValue": values} for at, values in meter_values],
        )
    )


async def stored(session: AsyncSession, cp: ChargePoint) -> list[MeterSample]:
    rows = await session.exec(
        select(MeterSample).where(MeterSample.charge_point_id == cp.id).order_by(col(MeterSample.id))
    )
    return list(rows)


async def test_bad_meter_values_are_stored_as_far_as_readable_and_the_proof_says_what_it_knows(
    app: Quart, factory: Factory, session: AsyncSession, login_as: LoginAs
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    mixed, phases, behind, ahead = [await factory.charge_point(team, price_area="DK2") for _ in range(4)]
    async with AsyncExitStack() as stack:
        a, b, c, d = [
            await stack.enter_async_context(charger(app, cp.identity)) for cp in (mixed, phases, behind, ahead)
        ]
        for station in (a, b, c, d):
            await boot16(station)

        # Before the trigger. Mixed units: kW, W, no unit (W), and a power "in Wh" (not a power: left
        # out); one message sent twice. Phases: L1, L2 and L3 only, in kW and W. Clocks three minutes
        # behind and ten minutes ahead.
        now = utcnow()
        await send(a, (now - timedelta(seconds=3), [power("11", "kW")]))
        await send(a, (now - timedelta(seconds=2), [power("11000")]))
        await send(a, (now - timedelta(seconds=1.5), [power("11000", "Wh")]))
        for _ in range(2):
            await send(a, (now - timedelta(seconds=1), [power("11000", None)]))
        for seconds in (2, 1):
            three = [power("3.7", "kW", "L1"), power("3700", "W", "L2-N"), power("3700", "W", "L3")]
            await send(b, (now - timedelta(seconds=seconds), three))
        for _ in range(2):
            await send(c, (utcnow() - timedelta(minutes=3), [power("7000")]))
            await send(d, (utcnow() + timedelta(minutes=10), [power("7000")]))
        trigger = utcnow()

        # After it. Out of order (0 W stamped after 5 kW but sent first), 10 MW on an 11 kW charger,
        # -5 kW, NaN and a word; the others paused.
        after = utcnow()
        await send(
            a,
            (after + timedelta(seconds=0.4), [power("0")]),
            (after + timedelta(seconds=0.2), [power("5000")]),
        )
        await send(a, (after + timedelta(seconds=0.1), [power("10000", "kW")]))
        await send(a, (after + timedelta(seconds=0.3), [power("-5000")]))
        await send(a, (after + timedelta(seconds=0.5), [power("NaN")]), (after, [power("eleven")]))
        await send(b, (utcnow(), [power("0", "W", phase) for phase in ("L1", "L2", "L3")]))
        await send(c, (utcnow() - timedelta(minutes=3), [power("0")]))
        await send(d, (utcnow() + timedelta(minutes=10), [power("0")]))

    # Stored: every readable power, duplicates and absurd values too (the proof judges them); nothing
    # for NaN, a word or a power in Wh.
    assert sorted(s.power_w or 0 for s in await stored(session, mixed)) == sorted(
        [11_000.0, 11_000.0, 11_000.0, 11_000.0, 5_000.0, 0.0, 1e7, -5_000.0]
    )
    assert [s.power_w for s in await stored(session, phases)] == [11_100.0, 11_100.0, 0.0]
    # Added to their quarter-hours as they were stored (the duplicate too), without the absurd ones.
    for cp, total_w, count in ((mixed, 4 * 11_000 + 5_000, 6), (phases, 2 * 11_100, 3)):
        quarters = list(await session.exec(select(MeterQuarter).where(MeterQuarter.charge_point_id == cp.id)))
        assert (sum(q.power_sum_w for q in quarters), sum(q.samples for q in quarters)) == (total_w, count)
    late = await stored(session, behind)
    assert all(timedelta(minutes=2) < s.received_at - s.measured_at < timedelta(minutes=4) for s in late)

    activation = Activation(
        operator_id=operator.id or 0,
        price_area="DK2",
        market="FCR-D up",
        action="pause",
        start_at=trigger,
        created_at=trigger,
        duration_s=300,
        end_at=trigger + timedelta(seconds=300),
        ended_at=trigger + timedelta(seconds=300),
        state="ended",
        triggered_at=trigger,
        created_by="grid",
    )
    session.add(activation)
    await session.flush()
    for cp in (mixed, phases, behind, ahead):
        session.add(
            Dispatch(
                activation_id=activation.id or 0,
                charge_point_id=cp.id,
                identity=cp.identity,
                status=DispatchStatus.ACCEPTED,
                limit_w=0.0,
                sent_at=trigger,
            )
        )
    await session.commit()
    dispatches = list(await session.exec(select(Dispatch).where(Dispatch.activation_id == activation.id)))
    found = await delivery.delivery_of(session, activation, dispatches, trigger + timedelta(seconds=400))
    assert found is not None
    by_cp = {c.dispatch.charge_point_id: c for c in found.chargers}

    # Mixed: the duplicate counts once, the two absurd samples are discarded and counted, the
    # out-of-order ones are sorted: 11 kW down to 5 kW, then 0 W.
    one = by_cp[mixed.id]
    assert (one.baseline_w, one.samples, one.discarded, one.clock_replaced) == (11_000, 5, 2, 0)
    assert one.verdict == delivery.Verdict.DELIVERED and one.best_w == 11_000
    assert one.reached_s is not None and 0 < one.reached_s < 30
    # Phases: summed.
    assert (
        by_cp[phases.id].baseline_w == pytest.approx(11_100) and by_cp[phases.id].verdict == delivery.Verdict.DELIVERED
    )
    # Clocks off: placed at the hub's receive time, so the baseline is before the trigger and the
    # pause after it; the one behind is named.
    for cp in (behind, ahead):
        off = by_cp[cp.id]
        assert (off.baseline_w, off.clock_replaced, off.verdict) == (7_000, 3, delivery.Verdict.DELIVERED)
    assert "s behind: placed at the hub's receive time" in by_cp[behind.id].note and by_cp[ahead.id].note == ""
    assert (found.discarded, found.clocks_behind, found.clock_replaced) == (2, 1, 6)

    # The curve: all four at the trigger (the samples after it are later), all down a minute later.
    points = {p.offset_s: p for p in found.area.points}
    assert points[0].reporting == 4 and points[0].measured_w == pytest.approx(11_000 + 11_100 + 7_000 + 7_000)
    assert points[60].reporting == 4 and points[60].measured_w == 0
    assert found.area.full_met is True

    # The page and the export say so, once the samples' own times have come (the page judges up to now).
    await eventually(lambda: utcnow() > after + timedelta(seconds=0.5), message="the clock stands still")
    admin = await factory.user(operator=operator, operator_role="admin")
    page = await (await (await login_as(admin)).get(f"/activations/{activation.id}")).get_data(as_text=True)
    assert "2 sample(s) discarded as implausible (above 50 kW or below 0)" in page
    assert "6 sample(s) carried an implausible charger time" in page and "(1 charger(s) with a clock behind)" in page
    headers = await write_token(session, operator)
    exported = await app.test_client().get(f"/api/v1/activations/{activation.id}/chargers.csv", headers=headers)
    table = {row["identity"]: row for row in csv.DictReader(io.StringIO(await exported.get_data(as_text=True)))}
    assert table[mixed.identity]["discarded"] == "2" and table[behind.identity]["clock_replaced"] == "3"


@pytest.mark.parametrize(
    ("sampled", "expected_w"),
    [
        # The whole charger's power wins over its phases.
        ([power("3.7", "kW", "L1"), power("11", "kW"), power("3700", "W", "L2")], 11_000.0),
        # Phases only: summed, whichever of them are sent (a car charging on two phases).
        ([power("3.7", "kW", "L1-N"), power("3700", "W", "L2-N")], 7_400.0),
        # Power in an energy unit, apparent or reactive power, or current: not a power.
        ([power("11000", "Wh")], None),
        ([power("11", "kVA")], None),
        ([power("11", "kvar")], None),
        ([power("16", "A")], None),
        # A bad phase value leaves the others.
        ([power("3700", "W", "L1"), power("NaN", "W", "L2"), power("3700", "W", "L3")], 7_400.0),
    ],
)
def test_power_per_phase_is_summed_and_a_wrong_unit_is_not_read(
    sampled: list[dict[str, Any]], expected_w: float | None
) -> None:
    assert reading_from("2026-12-07T12:00:00Z", sampled).power_w == expected_w


async def test_a_201_station_reporting_per_phase_power_with_a_multiplier_is_stored_as_its_sum(
    app: Quart, factory: Factory, session: AsyncSession
) -> None:
    cp = await factory.charge_point(await factory.team())
    async with charger(app, cp.identity, protocol="ocpp2.0.1") as station:
        sampled = [
            {"value": 3.7, "measurand": "Power.Active.Import", "phase": phase, "unit_of_measure": {"unit": "kW"}}
            for phase in ("L1-N", "L2-N")
        ]
        sampled.append(
            {
                "value": 37,
                "measurand": "Power.Active.Import",
                "phase": "L3-N",
                "unit_of_measure": {"unit": "W", "multiplier": 2},
            }
        )
        sampled.append({"value": 9, "measurand": "Power.Active.Import", "unit_of_measure": {"unit": "kVA"}})
        await station.call(
            call201.MeterValues(evse_id=1, meter_value=[{"timestamp": stamp(utcnow()), "sampled_value": sampled}])
        )
    assert [s.power_w for s in await stored(session, cp)] == [pytest.approx(11_100.0)]
