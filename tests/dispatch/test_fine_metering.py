"""During an activation its chargers report power as often as they allow; a minute after, as before."""

from __future__ import annotations

import pytest
from quart import Quart
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.dispatch.gateway import gateway
from powerbank.models import Dispatch
from powerbank.tools.simulator import Behaviour, ChargerSpec, SimulatedCharger
from tests.conftest import Factory
from tests.dispatch.support import activate, connect_all, dk2_fleet, running, write_token
from tests.helpers import eventually

pytestmark = [pytest.mark.usefixtures("fast_hashing"), pytest.mark.served]


def charger(identity: str, every_s: float, finest_s: float) -> SimulatedCharger:
    return SimulatedCharger(
        ChargerSpec(identity=identity, behaviour=Behaviour(min_meter_interval_s=finest_s)),
        meter_interval=every_s,
        reconnect_delay=0.05,
        max_reconnect_delay=0.2,
    )


async def test_chargers_report_at_the_finest_interval_they_take_and_go_back_after(
    app: Quart, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.operator()
    charge_points = await dk2_fleet(factory, session, await factory.team(operator), 3)
    fine, coarse, already = (cp.identity for cp in charge_points)
    # Takes 1 s; takes 10 s at the finest (1 and 5 are rejected); reports every second already.
    chargers = [charger(fine, 60, 1), charger(coarse, 60, 10), charger(already, 1, 1)]
    headers = await write_token(session, operator)
    async with running(app.config["TEST_OCPP_URL"], chargers):
        await connect_all(app, session, list(zip(charge_points, chargers, strict=True)))
        triggers_before = [len(c.received) for c in chargers]
        created = await activate(app, headers, price_area="DK2", action="pause", duration_s=30)

        async def noted() -> dict[str, str | None]:
            await session.rollback()  # a fresh snapshot: the runner records in its own session
            rows = await session.exec(select(Dispatch).where(Dispatch.activation_id == created["id"]))
            return {row.identity: row.metering for row in rows}

        async def all_noted() -> bool:
            notes = await noted()  # one snapshot: rows may be stored between two
            return len(notes) == 3 and all(notes.values())

        await eventually(all_noted, message="the chargers' metering was not noted")
        notes = await noted()
        assert notes[fine] == "every 1 s (was 60 s)"
        assert notes[coarse] == "every 10 s (was 60 s)"
        assert notes[already] == "no finer interval taken; one report asked: Accepted"
        assert (chargers[0].meter_interval, chargers[1].meter_interval, chargers[2].meter_interval) == (1, 10, 1)
        asked = [action for action, _payload in chargers[2].received[triggers_before[2] :]]
        assert "TriggerMessage" in asked and "ChangeConfiguration" not in asked

        # A minute after the window (the runner waits for it; here it is asked at once) they go back.
        await gateway(app).runner.metering.restore(created["id"])
        assert (chargers[0].meter_interval, chargers[1].meter_interval) == (60, 60)
        notes = await noted()
        assert notes[fine] == "every 1 s (was 60 s); set back to 60 s: Accepted"
        assert notes[coarse] == "every 10 s (was 60 s); set back to 60 s: Accepted"
