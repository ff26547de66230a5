"""An operator admin's suspension during an activation lifts that charger's limit at once (S2), as an opt-out does."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import Participation
from tests.conftest import Factory, LoginAs, post_form
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


async def test_suspending_a_charger_from_its_page_during_an_activation_releases_it_at_once(
    app: Quart, factory: Factory, session: AsyncSession, login_as: LoginAs
) -> None:
    operator = await factory.operator()
    cps = await dk2_fleet(factory, session, await factory.team(operator), 2)
    admin = await login_as(await factory.user(operator=operator, operator_role="admin"))
    chargers = {cp.identity: simulated(cp.identity) for cp in cps}
    headers = await write_token(session, operator)
    async with running(app.config["TEST_OCPP_URL"], chargers.values()):
        await connect_all(app, session, [(cp, chargers[cp.identity]) for cp in cps])
        created = await activate(app, headers, price_area="DK2", action="pause", duration_s=30)
        await eventually(lambda: all(c.power_w == 0 for c in chargers.values()), 2.0, "not paused")
        suspended, staying = cps
        response = await post_form(
            admin, f"/charge-points/{suspended.id}/powerbank/suspend", {"reason": "Accepts but does not deliver"}
        )
        assert response.status_code == 303
        await eventually(
            lambda: chargers[suspended.identity].power_w == FULL_POWER_W, 1.0, "the suspension did not release"
        )
        assert clears(chargers[suspended.identity])
        assert chargers[staying.identity].power_w == 0 and not clears(chargers[staying.identity])

        async def recorded() -> bool:
            return (await row_of(app, headers, created["id"], suspended.identity))["released_at"] is not None

        await eventually(recorded)
        row = await row_of(app, headers, created["id"], suspended.identity)
        assert row["release_reason"].startswith("Suspended by") and row["release_status"] == "Accepted"
    participation = await session.get(Participation, suspended.id, populate_existing=True)
    assert participation is not None and participation.state == "suspended"
