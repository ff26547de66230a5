"""S4 for a charger that reconnects without a BootNotification (the usual case after a hub restart).

It gets the limit of an activation still active in its area again, and a limit that ended while it
was away is cleared, as after a boot.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import ChargePoint
from powerbank.ocpp.registry import registry_of
from powerbank.tools.simulator import ChargerSpec, SimulatedCharger
from tests import helpers
from tests.conftest import Factory
from tests.dispatch.support import (
    FULL_POWER_W,
    HUB_CONFIG,
    MARGIN_S,
    activate,
    by_identity,
    clears,
    connect_all,
    dk2_fleet,
    dk2_fleet_and_a_signed_up_se3,
    read,
    row_of,
    running,
    set_profiles,
    write_token,
)
from tests.helpers import SERVED_CONFIG, TEST_CONFIG, eventually, free_port

pytestmark = [pytest.mark.usefixtures("fast_hashing"), pytest.mark.served]

# A charger that has not booted this long after connecting is taken as reconnected (production: 10 s).
RECONNECT_CONFIG = {**HUB_CONFIG, "OCPP_BOOT_GRACE_S": 0.3}


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return RECONNECT_CONFIG


def served(database_url: str, port: int) -> AbstractAsyncContextManager[Quart]:
    return helpers.served({**TEST_CONFIG, **SERVED_CONFIG, **RECONNECT_CONFIG, "DATABASE_URL": database_url}, port=port)


def without_reboot(charge_point: ChargePoint) -> SimulatedCharger:
    """A simulated charger that boots on its first connection only."""
    return SimulatedCharger(
        ChargerSpec(identity=charge_point.identity),
        meter_interval=1.0,
        reconnect_delay=0.05,
        max_reconnect_delay=0.2,
        boot_on_reconnect=False,
    )


async def test_after_a_restart_a_charger_that_does_not_reboot_gets_the_active_limit_and_loses_the_ended_one(
    database_url: str, own_session: AsyncSession
) -> None:
    session, factory = own_session, Factory(own_session)
    operator = await factory.operator()
    team = await factory.team(operator)
    dk2, se3 = await dk2_fleet_and_a_signed_up_se3(factory, session, team)
    kept, lapsed = without_reboot(dk2), without_reboot(se3)
    headers = await write_token(session, operator)
    port = free_port()
    async with served(database_url, port) as hub, running(hub.config["TEST_OCPP_URL"], [kept, lapsed]):
        await connect_all(hub, session, [(dk2, kept), (se3, lapsed)])
        long = await activate(hub, headers, price_area="DK2", action="pause", duration_s=30)
        short = await activate(hub, headers, price_area="SE3", action="pause", duration_s=2)
        await eventually(lambda: kept.power_w == 0 and lapsed.power_w == 0, 2.0, "not paused")
    sent_before = len(set_profiles(kept))
    # The hub is down while the SE3 window ends; the chargers come back to a new process without booting.
    await eventually(lambda: lapsed.power_w == FULL_POWER_W, 2 + MARGIN_S + 1.0)
    async with served(database_url, port) as hub, running(hub.config["TEST_OCPP_URL"], [kept, lapsed]):
        await eventually(lambda: kept.connections == 2 and lapsed.connections == 2, 5.0, "chargers did not reconnect")
        await eventually(lambda: len(set_profiles(kept)) > sent_before, 5.0, "the active limit was not sent again")
        await eventually(lambda: len(clears(lapsed)) >= 1, 5.0, "the ended activation was not released")
        assert kept.power_w == 0
        assert (kept.boots, lapsed.boots) == (1, 1)

        async def states() -> tuple[str, str, str | None]:
            long_now = await read(hub, headers, long["id"])
            short_now = await read(hub, headers, short["id"])
            return long_now["state"], short_now["state"], by_identity(short_now)[se3.identity]["release_reason"]

        await eventually(lambda: _equals(states(), ("active", "ended", "released after reconnect")))


async def test_a_limit_that_ended_while_the_charger_was_away_is_released_when_it_reconnects_without_booting(
    app: Quart, factory: Factory, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "powerbank.activations")
    operator = await factory.operator()
    cp = (await dk2_fleet(factory, session, await factory.team(operator), 1))[0]
    charger = without_reboot(cp)
    headers = await write_token(session, operator)
    async with running(app.config["TEST_OCPP_URL"], [charger]):
        await connect_all(app, session, [(cp, charger)])
        created = await activate(app, headers, price_area="DK2", action="pause", duration_s=1)
        await eventually(lambda: charger.power_w == 0, 2.0, "not paused")
    await eventually(lambda: registry_of(app).get(cp.identity) is None)

    async def ended() -> bool:
        return (await read(app, headers, created["id"]))["state"] == "ended"

    # The release at the window's end found the charger away: it stays to be done. (The state says
    # "ended" as the window's end is committed, just before that release looks for the chargers.)
    await eventually(ended, 1 + MARGIN_S + 2.0)
    # (A node of a cluster reads only the rows of the chargers it holds: it finds none here.)
    await eventually(lambda: f"activation {created['id']} ended: released 0 charger(s), " in caplog.text)
    assert by_identity(await read(app, headers, created["id"]))[cp.identity]["release_reason"] is None
    async with running(app.config["TEST_OCPP_URL"], [charger]):
        await eventually(lambda: charger.connections == 2, 5.0, "the charger did not reconnect")
        await eventually(lambda: len(clears(charger)) == 1, 5.0, "the ended limit was not released")
        assert charger.boots == 1

        async def released() -> bool:
            row = await row_of(app, headers, created["id"], cp.identity)
            return bool(row["release_reason"] == "released after reconnect")

        await eventually(released)


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected
