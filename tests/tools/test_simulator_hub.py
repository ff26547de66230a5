"""Simulated chargers that misbehave, against the real hub: every one accepts a pause, not every one delivers it.

What the hub then holds is what proof of delivery is judged from: the answers, and the meter samples.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from quart import Quart
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import ChargePoint, MeterSample
from powerbank.tools.simulator import Behaviour
from tests.conftest import Factory
from tests.dispatch.support import (
    FULL_POWER_W,
    HUB_CONFIG,
    activate,
    clears,
    connect_all,
    dk2_fleet,
    read,
    running,
    simulated,
    write_token,
)
from tests.helpers import eventually

pytestmark = [pytest.mark.usefixtures("fast_hashing"), pytest.mark.served]


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return HUB_CONFIG


async def _samples(session: AsyncSession, charge_point: ChargePoint, since: datetime) -> list[float | None]:
    """Return the power of the charger's meter samples the hub stored, measured at or after `since`."""
    rows = await session.exec(
        select(MeterSample.power_w)
        .where(MeterSample.charge_point_id == charge_point.id, col(MeterSample.measured_at) >= since)
        .order_by(col(MeterSample.measured_at))
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def test_a_pause_accepted_by_every_charger_is_measured_delivered_by_some(
    app: Quart, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.operator()
    delivers, ignores, drops, stuck = await dk2_fleet(factory, session, await factory.team(operator), 4)
    behaviours = [
        (delivers, Behaviour(ramp_s=0.5)),
        (ignores, Behaviour(ignores_limits=True)),
        (drops, Behaviour(offline_after_pause_s=1.0)),
        (stuck, Behaviour(resumes_after_pause=False)),
    ]
    chargers = {cp.identity: simulated(cp.identity, behaviour=behaviour) for cp, behaviour in behaviours}
    headers = await write_token(session, operator)
    async with running(app.config["TEST_OCPP_URL"], chargers.values()):
        await connect_all(app, session, [(cp, chargers[cp.identity]) for cp, _ in behaviours])
        created = await activate(app, headers, price_area="DK2", action="pause", duration_s=3, market="FCR-D up")
        start = datetime.fromisoformat(created["start_at"])

        async def all_accepted() -> bool:
            return (await read(app, headers, created["id"]))["summary"]["accepted"] == 4

        await eventually(all_accepted, message="not every charger accepted the pause")

        async def measured(charge_point: ChargePoint, watts: float, since: datetime = start) -> bool:
            return watts in await _samples(session, charge_point, since)

        await eventually(lambda: measured(delivers, 0), message="the hub never measured the pause delivered")
        await eventually(lambda: measured(stuck, 0), message="the hub never measured the stuck car paused")
        # Accepted, yet reporting full power after it accepted.
        await eventually(lambda: measured(ignores, FULL_POWER_W), message="no report from the ignoring charger")
        assert 0 not in await _samples(session, ignores, start)
        # It dropped its connection as the pause took effect, and reported the pause once back.
        await eventually(lambda: measured(drops, 0), 8.0, "the charger that dropped never came back")
        assert chargers[drops.identity].connections == 2

        # The window ends and the hub releases: the car that does not resume stays at zero.
        await eventually(
            lambda: bool(clears(chargers[stuck.identity]) and clears(chargers[delivers.identity])), 8.0, "not released"
        )
        released = datetime.now(UTC)
        await eventually(lambda: measured(delivers, FULL_POWER_W, released), message="charging did not come back")

        async def reported_since_release() -> bool:
            return bool(await _samples(session, stuck, released))

        await eventually(reported_since_release, message="no report after the release")
        assert set(await _samples(session, stuck, released)) == {0}
        assert chargers[stuck.identity].power_w == 0 and chargers[delivers.identity].power_w == FULL_POWER_W

        # What the page and the export say of each: judged from the meters, not from the answers.
        client = app.test_client()

        async def judged() -> bool:
            response = await client.get(f"/api/v1/activations/{created['id']}/response", headers=headers)
            found = {row["identity"]: row["verdict"] for row in (await response.get_json())["chargers"]}
            return (found.get(delivers.identity), found.get(ignores.identity)) == (
                "delivered",
                "accepted but not delivered",
            )

        await eventually(judged, message="the ignoring charger is not judged accepted but not delivered")
