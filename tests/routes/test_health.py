"""`/healthz` for a load balancer, and the node a served hub registers as: its chargers name it."""

from __future__ import annotations

import re

import pytest
from quart import Quart
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import ChargePoint, ClusterNode
from powerbank.ocpp.registry import registry_of
from tests.conftest import Factory, LoginAs
from tests.helpers import eventually
from tests.ocpp.support import boot16, charger

pytestmark = pytest.mark.served


@pytest.fixture
def config_overrides() -> dict[str, object]:
    return {"NODE_ID": "node-under-test"}


async def test_a_serving_node_is_healthy_and_its_chargers_name_it(
    app: Quart, factory: Factory, session: AsyncSession
) -> None:
    cp = await factory.charge_point(await factory.team())
    client = app.test_client()
    healthy = await client.get("/healthz")
    assert healthy.status_code == 200
    # A lone node leads: it runs the activation scheduler.
    assert await healthy.get_json() == {"node": "node-under-test", "status": "ok", "chargers": 0, "leader": True}
    node = (await session.exec(select(ClusterNode).where(ClusterNode.name == "node-under-test"))).one()
    assert node.stopped_at is None
    async with charger(app, cp.identity) as station:
        await boot16(station)

        async def held_here() -> bool:
            found = await session.get(ChargePoint, cp.id, populate_existing=True)
            return found is not None and found.online and found.node_id == node.id

        await eventually(held_here)
        assert (await (await client.get("/healthz")).get_json())["chargers"] == 1


async def test_a_node_shutting_down_tells_the_balancer(app: Quart) -> None:
    await registry_of(app).close_all(1.0)
    response = await app.test_client().get("/healthz")
    assert response.status_code == 503
    body = await response.get_json()
    assert body["status"] == "unavailable" and body["problems"] == ["shutting down"]
    assert response.headers["Cache-Control"] == "no-store"


async def test_operator_admins_see_the_nodes_and_only_their_own_chargers_on_them(
    app: Quart, factory: Factory, login_as: LoginAs
) -> None:
    mine, theirs = await factory.operator("Mine"), await factory.operator("Theirs")
    my_cp = await factory.charge_point(await factory.team(mine))
    their_cp = await factory.charge_point(await factory.team(theirs))
    admin = await factory.user(operator=mine, operator_role="admin")
    async with charger(app, my_cp.identity), charger(app, their_cp.identity):
        await eventually(lambda: len(registry_of(app)) == 2)
        client = await login_as(admin)

        async def shows_one() -> bool:
            page = await (await client.get(f"/operators/{mine.id}/nodes")).get_data(as_text=True)
            return bool(re.search(r"<td>node-under-test</td>\s*<td>Alive</td>\s*<td>1</td>", page))

        await eventually(shows_one, message="the Nodes page never showed this node with one of my chargers")
        # Another operator's page is not there for this admin (404); a team member may not see it (403).
        assert (await client.get(f"/operators/{theirs.id}/nodes")).status_code == 404
        member = await factory.user(team=await factory.team(mine), team_role="member")
        assert (await (await login_as(member)).get(f"/operators/{mine.id}/nodes")).status_code == 403
