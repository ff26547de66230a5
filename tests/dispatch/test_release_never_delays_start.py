"""A release never delays a start: FCR-D cannot wait for another activation's chargers to answer.

An activation ends while one of its chargers holds back its answer to the release; an activation
that the scheduler starts meanwhile reaches its chargers all the same, and the held answer is
still recorded once it comes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession
from websockets.asyncio.client import ClientConnection

from powerbank.models import ChargePoint
from powerbank.rules.permissions import load_principal
from powerbank.services import enrollment
from powerbank.tools.simulator import ChargerSpec, SimulatedCharger, _Station16, _Station201
from tests.conftest import Factory
from tests.dispatch.support import (
    FULL_POWER_W,
    HUB_CONFIG,
    activate,
    by_identity,
    clears,
    connect_all,
    dk2_fleet,
    read,
    row_of,
    running,
    set_profiles,
    simulated,
    write_token,
)
from tests.helpers import eventually

pytestmark = [pytest.mark.usefixtures("fast_hashing"), pytest.mark.served]

# The hub would wait this long for the held answer: far longer than the test waits for the start,
# so a scheduler that waited for it could not start the next activation in time.
ANSWER_TIMEOUT_S = 120


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {**HUB_CONFIG, "ACTIVATION_ANSWER_TIMEOUT_S": ANSWER_TIMEOUT_S}


class HeldRelease(SimulatedCharger):
    """A simulated charger that answers ClearChargingProfile only once ``answer`` is set."""

    def __init__(self, charge_point: ChargePoint) -> None:
        super().__init__(
            ChargerSpec(identity=charge_point.identity),
            meter_interval=1.0,
            reconnect_delay=0.05,
            max_reconnect_delay=0.2,
        )
        self.clear_arrived = asyncio.Event()
        self.answer = asyncio.Event()
        self.answered: list[str] = []

    def _station(self, websocket: ClientConnection) -> _Station16 | _Station201:
        return _HeldStation16(self, websocket)


class _HeldStation16(_Station16):
    """Hold the answer to ClearChargingProfile (the charger reads nothing else meanwhile, as the library
    handles one incoming message at a time)."""

    charger: HeldRelease

    @on(Action16.clear_charging_profile)
    async def on_clear_charging_profile(self, **criteria: Any) -> result16.ClearChargingProfile:
        self.charger.clear_arrived.set()
        await self.charger.answer.wait()
        result = super().on_clear_charging_profile(**criteria)
        self.charger.answered.append(str(result.status))
        return result


@pytest.mark.parametrize("area_of_next", ["DK2", "DK1"], ids=["same area", "other area"])
async def test_a_start_reaches_its_chargers_while_the_release_before_it_is_unanswered(
    app: Quart, factory: Factory, session: AsyncSession, area_of_next: str
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    held_cp = (await dk2_fleet(factory, session, team, 1))[0]
    if area_of_next == "DK2":
        next_cp = (await dk2_fleet(factory, session, team, 1))[0]
    else:
        next_cp = await factory.charge_point(team, price_area="DK1")
        admin = await factory.user(operator=operator, operator_role="admin")
        await enrollment.sign_up_one(
            session,
            await load_principal(session, admin),
            next_cp,
            accept_terms_version=(await enrollment.current_terms(session)).version,
            facility_id=None,
        )
        await session.commit()
    held, other = HeldRelease(held_cp), simulated(next_cp.identity)
    headers = await write_token(session, operator)
    async with running(app.config["TEST_OCPP_URL"], [held, other]):
        try:
            await connect_all(app, session, [(held_cp, held), (next_cp, other)])
            first = await activate(app, headers, price_area="DK2", action="pause", duration_s=1)
            await eventually(lambda: held.power_w == 0, 2.0, "not paused")
            # The window ends; the hub sends the release and the charger sits on its answer.
            await eventually(held.clear_arrived.is_set, 5.0, "the release was not sent")
            sets_before = len(set_profiles(other))
            start = datetime.now(UTC) + timedelta(seconds=0.5)
            second = await activate(
                app, headers, price_area=area_of_next, action="pause", duration_s=30, start_at=start.isoformat()
            )
            assert second["state"] == "scheduled"
            # The scheduler starts it while the release is still unanswered.
            await eventually(
                lambda: len(set_profiles(other)) > sets_before and other.power_w == 0,
                5.0,
                "the scheduled activation waited for another activation's release",
            )
            assert not held.answer.is_set()
            assert by_identity(await read(app, headers, first["id"]))[held_cp.identity]["released_at"] is None
        finally:
            held.answer.set()

        async def release_recorded() -> bool:
            row = await row_of(app, headers, first["id"], held_cp.identity)
            return (row["release_reason"], row["release_status"]) == ("ended", *held.answered)

        # The held answer (Unknown if the profile has expired by itself meanwhile) is recorded once
        # it comes, and the release was sent once.
        await eventually(release_recorded, message="the held answer was not recorded")
        assert len(clears(held)) == 1
        if area_of_next == "DK2":
            # It was released before the next activation reached it: it ends paused by that one.
            await eventually(lambda: held.power_w == 0, 2.0, "the next activation did not reach the held charger")
        else:
            assert held.power_w == FULL_POWER_W
        assert (await read(app, headers, second["id"]))["state"] == "active"
