"""A cancel or an opt-out while a fan-out is being recorded still releases the chargers (S2).

The limit is on the chargers as soon as the frames are written, but the dispatch rows a release
looks for are stored a moment later; a release asked for in that moment must not be lost.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.dispatch import runner as runner_module
from powerbank.rules.permissions import load_principal
from powerbank.services import enrollment
from tests.conftest import Factory
from tests.dispatch.support import (
    FULL_POWER_W,
    HUB_CONFIG,
    activate,
    clears,
    connect_all,
    dk2_fleet,
    row_of,
    running,
    simulated,
    write_token,
)
from tests.helpers import eventually

pytestmark = [pytest.mark.usefixtures("fast_hashing"), pytest.mark.served]


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return HUB_CONFIG


@pytest.mark.parametrize("how", ["cancel", "opt-out"])
async def test_a_release_asked_for_while_the_fan_out_is_recorded_reaches_the_charger(
    app: Quart, factory: Factory, session: AsyncSession, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    operator = await factory.operator()
    cp = (await dk2_fleet(factory, session, await factory.team(operator), 1))[0]
    manager = await factory.user(operator=operator, operator_role="manager")
    charger = simulated(cp.identity)
    headers = await write_token(session, operator)
    recording, may_record = asyncio.Event(), asyncio.Event()
    record_sent = runner_module.service.record_sent

    async def held_record_sent(*args: Any, **kwargs: Any) -> None:
        recording.set()
        await may_record.wait()
        await record_sent(*args, **kwargs)

    async with running(app.config["TEST_OCPP_URL"], [charger]):
        await connect_all(app, session, [(cp, charger)])
        monkeypatch.setattr(runner_module.service, "record_sent", held_record_sent)
        try:
            created = await activate(app, headers, price_area="DK2", action="pause", duration_s=60)
            # The frame is out, its row not stored yet.
            await eventually(recording.is_set, message="the fan-out did not reach its recording")
            await eventually(lambda: charger.power_w == 0, 2.0, "not paused")
            if how == "cancel":
                response = await app.test_client().delete(f"/api/v1/activations/{created['id']}", headers=headers)
                assert response.status_code == 200
                # A cancel waits for the rows: its release follows the limit once they are stored.
                assert clears(charger) == []
            else:
                # An opt-out lifts the limit at once (the charger may be deleted next), before the rows exist.
                await enrollment.opt_out(session, await load_principal(session, manager), cp)
                await session.commit()
        finally:
            may_record.set()
        # Once the rows are stored the charger is released, once, and the release is recorded.
        await eventually(lambda: charger.power_w == FULL_POWER_W, 2.0, "the limit stayed on")

        async def recorded() -> bool:
            row = await row_of(app, headers, created["id"], cp.identity)
            return row["release_status"] == "Accepted"

        await eventually(recorded, message="the release was not recorded")
        row = await row_of(app, headers, created["id"], cp.identity)
        assert row["release_reason"].startswith("cancelled" if how == "cancel" else "Opted out")
        assert len(clears(charger)) == 1
