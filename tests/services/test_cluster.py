"""The node registry: a silent node is declared dead once, and a charger belongs to the node that holds it.

The app the fixtures serve is a node itself (its registry registered it): the tests look at theirs.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta

from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import ChargePoint
from powerbank.services import chargers, cluster
from tests.conftest import Factory

OURS = ("node-a", "node-b")


async def ours(names: Awaitable[list[str]]) -> list[str]:
    return [name for name in await names if name in OURS]


async def state_of(session: AsyncSession, charge_point: ChargePoint) -> tuple[bool, int | None]:
    found = await session.get(ChargePoint, charge_point.id, populate_existing=True)
    assert found is not None
    return found.online, found.node_id


async def test_a_charger_that_moved_to_another_node_stays_online_when_the_first_lets_go(
    app: Quart, session: AsyncSession, factory: Factory
) -> None:
    cp = await factory.charge_point(await factory.team())
    a = await cluster.register_node(session, "node-a")
    b = await cluster.register_node(session, "node-b")
    await chargers.store_presence(session, {cp.id or 0: ("ocpp1.6", True)}, a.id)
    await session.commit()
    assert await state_of(session, cp) == (True, a.id)
    # The charger connects to B; A notices its old socket closed only afterwards.
    await chargers.store_presence(session, {cp.id or 0: ("ocpp2.0.1", True)}, b.id)
    await chargers.store_presence(session, {cp.id or 0: ("ocpp1.6", False)}, a.id)
    await session.commit()
    assert await state_of(session, cp) == (True, b.id)
    await chargers.store_presence(session, {cp.id or 0: ("ocpp2.0.1", False)}, b.id)
    await session.commit()
    assert await state_of(session, cp) == (False, None)


async def test_a_silent_node_is_declared_dead_once_and_its_chargers_go_offline(
    app: Quart, session: AsyncSession, factory: Factory
) -> None:
    team = await factory.team()
    on_a, on_b = await factory.charge_point(team), await factory.charge_point(team)
    start = utcnow()
    a = await cluster.register_node(session, "node-a", now=start)
    b = await cluster.register_node(session, "node-b", now=start)
    await chargers.store_presence(session, {on_a.id or 0: ("ocpp1.6", True)}, a.id)
    await chargers.store_presence(session, {on_b.id or 0: ("ocpp1.6", True)}, b.id)
    await session.commit()
    later = start + cluster.LEASE + timedelta(seconds=1)
    assert await cluster.heartbeat(session, b.id or 0, now=later)
    # Within the lease nobody is dead; past it, A (silent) is, B (beating) is not.
    assert await ours(cluster.declare_dead(session, now=start + cluster.LEASE)) == []
    assert await ours(cluster.declare_dead(session, now=later)) == ["node-a"]
    assert await ours(cluster.declare_dead(session, now=later)) == []
    assert await state_of(session, on_a) == (False, None)
    assert await state_of(session, on_b) == (True, b.id)
    statuses = {
        s.name: (s.state, s.chargers) for s in await cluster.node_statuses(session, now=later) if s.name in OURS
    }
    assert statuses == {"node-a": ("dead", 0), "node-b": ("alive", 1)}
    # A node that was declared dead learns it at its next heartbeat, and registers again.
    assert not await cluster.heartbeat(session, a.id or 0, now=later)
    again = await cluster.register_node(session, "node-a", now=later)
    assert again.id == a.id and again.stopped_at is None


async def test_a_node_whose_own_heartbeat_was_late_never_declares_itself_dead(
    app: Quart, session: AsyncSession, factory: Factory
) -> None:
    cp = await factory.charge_point(await factory.team())
    start = utcnow()
    a = await cluster.register_node(session, "node-a", now=start)
    await chargers.store_presence(session, {cp.id or 0: ("ocpp1.6", True)}, a.id)
    await session.commit()
    # Its beat was written late (it waited for a connection): others would see it silent, not itself.
    later = start + cluster.LEASE + timedelta(seconds=1)
    assert await ours(cluster.declare_dead(session, now=later, caller_id=a.id)) == []
    assert await state_of(session, cp) == (True, a.id)
    assert await ours(cluster.declare_dead(session, now=later)) == ["node-a"]


async def test_a_node_that_starts_or_stops_lets_go_of_its_own_chargers_only(
    app: Quart, session: AsyncSession, factory: Factory
) -> None:
    team = await factory.team()
    on_a, on_b, before_nodes = [await factory.charge_point(team) for _ in range(3)]
    a = await cluster.register_node(session, "node-a")
    b = await cluster.register_node(session, "node-b")
    await chargers.store_presence(session, {on_a.id or 0: ("ocpp1.6", True)}, a.id)
    await chargers.store_presence(session, {on_b.id or 0: ("ocpp1.6", True)}, b.id)
    # Online from before nodes were recorded: nobody holds it.
    before_nodes.online = True
    session.add(before_nodes)
    await session.commit()
    await cluster.register_node(session, "node-a")  # A restarts
    assert await state_of(session, on_a) == (False, None)
    assert await state_of(session, on_b) == (True, b.id)
    assert await state_of(session, before_nodes) == (False, None)
    await cluster.stop_node(session, b.id or 0)
    assert await state_of(session, on_b) == (False, None)
    statuses = {s.name: s.state for s in await cluster.node_statuses(session) if s.name in OURS}
    assert statuses == {"node-a": "alive", "node-b": "stopped"}
