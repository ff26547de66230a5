"""S4 in a reconnect storm: the chargers that boot next get the limit in force while the limits
sent to those before them are still being stored."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.dispatch.gateway import find_gateway
from powerbank.ocpp.registry import registry_of
from tests.conftest import Factory
from tests.dispatch.support import (
    activate,
    connect_all,
    dk2_fleet,
    read,
    running,
    set_profiles,
    simulated,
    write_token,
)
from tests.helpers import eventually

pytestmark = [pytest.mark.usefixtures("fast_hashing"), pytest.mark.served]


async def test_a_charger_that_boots_gets_its_limit_while_the_batch_before_it_is_still_being_stored(
    app: Quart, factory: Factory, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = await factory.operator()
    first_cp, next_cp = await dk2_fleet(factory, session, await factory.team(operator), 2)
    first, following = simulated(first_cp.identity), simulated(next_cp.identity)
    headers = await write_token(session, operator)
    gateway = find_gateway(app)
    assert gateway is not None
    runner = gateway.runner
    async with running(app.config["TEST_OCPP_URL"], [first, following]):
        await connect_all(app, session, [(first_cp, first), (next_cp, following)])
        created = await activate(app, headers, price_area="DK2", action="pause", duration_s=60)
        await eventually(lambda: first.power_w == 0 and following.power_w == 0, 2.0, "not paused")

        async def answers_stored() -> bool:
            rows = await rows_of(app, headers, created["id"])
            return all(rows.get(cp.identity, {}).get("status") == "Accepted" for cp in (first_cp, next_cp))

        # A limit reaches its charger before its row is committed: the rows compared below are stored.
        await eventually(answers_stored, message="the limits' answers were not stored")

        # The write of what the first batch was sent again waits (a database busy with a storm's boots).
        store = runner._record_resent
        stored = asyncio.Event()
        waiting: list[int] = []

        async def held(*args: Any) -> None:
            waiting.append(1)
            await stored.wait()
            await store(*args)

        monkeypatch.setattr(runner, "_record_resent", held)
        before = await rows_of(app, headers, created["id"])
        sent_first, sent_next = len(set_profiles(first)), len(set_profiles(following))
        registry_of(app).disconnect([first_cp.id or 0], "test: reconnect")
        await eventually(lambda: first.boots == 2 and len(set_profiles(first)) > sent_first, 5.0, "not sent again")
        await eventually(lambda: waiting == [1], 2.0, "the first batch's write did not start")

        registry_of(app).disconnect([next_cp.id or 0], "test: reconnect")
        await eventually(lambda: following.boots == 2, 5.0, "the next charger did not boot again")
        # Its limit goes out though the first batch's write has not been done.
        await eventually(lambda: len(set_profiles(following)) > sent_next, 5.0, "the next charger waited")
        assert not stored.is_set() and not runner.boots_settled

        stored.set()
        await eventually(lambda: runner.boots_settled, message="boot look-ups still running")
        # Both limits sent again are stored, and both chargers stay paused.
        after = await rows_of(app, headers, created["id"])
        for cp in (first_cp, next_cp):
            resent, sent = (datetime.fromisoformat(rows[cp.identity]["sent_at"]) for rows in (after, before))
            assert resent > sent
        assert first.power_w == 0 and following.power_w == 0


async def rows_of(app: Quart, headers: dict[str, str], activation_id: int) -> dict[str, dict[str, Any]]:
    return {row["identity"]: row for row in (await read(app, headers, activation_id))["chargers"]}
