"""The availability sampler: a minute a node leads is written once, a minute nobody sampled stays a gap."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from quart import Quart
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.dispatch.availability import LOOK_EVERY_S, AvailabilitySampler
from powerbank.models import AreaAvailability, MeterSample, Participation
from powerbank.web import state
from tests.conftest import Factory
from tests.helpers import eventually

START = datetime(2026, 3, 2, 12, 0, 10, tzinfo=UTC)


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    # The app's own sampler would write the real current minute; these tests run their own.
    return {"AVAILABILITY_SAMPLING": False}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def writer(app: Quart) -> Any:
    @contextlib.asynccontextmanager
    async def writing() -> AsyncIterator[AsyncSession]:
        async with state.sessionmaker(app)() as session:
            yield session

    return writing


async def stored_minutes(app: Quart) -> list[tuple[datetime, float]]:
    async with state.sessionmaker(app)() as session:
        rows = await session.exec(select(AreaAvailability).order_by(AreaAvailability.minute))  # type: ignore[arg-type]
        return [(row.minute, row.power_w) for row in rows]


async def fleet(factory: Factory) -> None:
    """One operator with one signed-up, online charger drawing 7 kW (its sample is received at START)."""
    team = await factory.team(await factory.operator())
    cp = await factory.charge_point(team, online=True)
    factory.session.add(Participation(charge_point_id=cp.id or 0, state="signed_up", source="single"))
    factory.session.add(MeterSample(charge_point_id=cp.id or 0, measured_at=START, received_at=START, power_w=7000.0))
    await factory.session.commit()


def minute(n: int) -> datetime:
    return START.replace(second=0) + timedelta(minutes=n)


async def test_each_minute_while_leading_is_written_once_and_a_minute_not_led_is_a_gap(
    app: Quart, factory: Factory
) -> None:
    await fleet(factory)
    clock = Clock(START)
    leading = True
    sampler = AvailabilitySampler(writer(app), lambda: leading, clock)
    sampler.start()
    try:
        await eventually(lambda: _has(app, [minute(0)]), message="the first minute is written at once")
        clock.now = START + timedelta(minutes=1)
        await eventually(lambda: _has(app, [minute(0), minute(1)]))
        # Another node led (or none ran) in minutes 2 and 3: this one wrote nothing for them.
        leading = False
        clock.now = START + timedelta(minutes=2)
        await asyncio.sleep(2 * LOOK_EVERY_S)
        assert await _has(app, [minute(0), minute(1)])
        leading = True
        clock.now = START + timedelta(minutes=4)
        await eventually(lambda: _has(app, [minute(0), minute(1), minute(4)]))
    finally:
        await sampler.stop()
    assert [power for _, power in await stored_minutes(app)] == [7000.0, 7000.0, 7000.0]


async def _has(app: Quart, minutes: list[datetime]) -> bool:
    return [at for at, _ in await stored_minutes(app)] == minutes


async def test_two_nodes_that_both_lead_for_a_moment_write_a_minute_once(
    app: Quart, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    await fleet(factory)
    clock = Clock(START)
    samplers = [AvailabilitySampler(writer(app), lambda: True, clock) for _ in range(2)]
    with caplog.at_level(logging.ERROR, logger="powerbank.availability"):
        for sampler in samplers:
            sampler.start()
        try:
            await eventually(lambda: _has(app, [minute(0)]))
            written = [await sampler.sample() for sampler in samplers]
        finally:
            for sampler in samplers:
                await sampler.stop()
    assert [s.written for s in written] == [0, 0]
    assert await stored_minutes(app) == [(minute(0), 7000.0)]
    assert not caplog.records


async def test_a_restart_within_a_minute_does_not_write_it_again(app: Quart, factory: Factory) -> None:
    await fleet(factory)
    clock = Clock(START)
    first = AvailabilitySampler(writer(app), lambda: True, clock)
    first.start()
    await eventually(lambda: _has(app, [minute(0)]))
    await first.stop()

    clock.now = START + timedelta(seconds=30)
    again = AvailabilitySampler(writer(app), lambda: True, clock)
    again.start()
    try:
        written = await again.sample()
    finally:
        await again.stop()
    assert written.written == 0
    assert await stored_minutes(app) == [(minute(0), 7000.0)]


@pytest.mark.parametrize("config_overrides", [{}])
async def test_the_app_samples_while_it_serves(app: Quart) -> None:
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert "availability sampler" in names
