"""Two real `powerbank serve` nodes on one PostgreSQL: each holds its own chargers; a killed one is declared dead.

The nodes are processes started as an operator starts them; chargers connect over real websockets.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from powerbank.db import standalone_session
from powerbank.runtime.server import wait_until_listening
from tests.conftest import TEST_PASSWORD, Factory
from tests.helpers import eventually
from tests.ocpp.support import basic
from tests.runtime.cluster_support import Node, cluster_status, holders, nodes_on

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def nodes(database_url: str, tmp_path: Path) -> Iterator[list[Node]]:
    with nodes_on(database_url, tmp_path) as started:
        yield started


@asynccontextmanager
async def connected(node: Node, identity: str) -> AsyncIterator[ClientConnection]:
    async with connect(
        f"ws://127.0.0.1:{node.port}/ocpp/{identity}",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=basic(identity, TEST_PASSWORD),
    ) as websocket:
        boot = {"chargePointVendor": "Easee", "chargePointModel": "Home"}
        await websocket.send(json.dumps([2, "boot", "BootNotification", boot]))
        assert json.loads(await asyncio.wait_for(websocket.recv(), 10))[:2] == [3, "boot"]
        yield websocket


async def test_each_node_holds_its_chargers_and_a_killed_node_is_declared_dead(
    database_url: str, nodes: list[Node]
) -> None:
    async with standalone_session(database_url) as session:
        factory = Factory(session)
        team = await factory.team()
        await factory.charge_point(team, identity="ON-NODE-1")
        await factory.charge_point(team, identity="ON-NODE-2")
    one, two = nodes
    for node in nodes:
        await wait_until_listening("127.0.0.1", node.port, timeout=60)
    async with connected(one, "ON-NODE-1"), connected(two, "ON-NODE-2"):

        async def both_held() -> bool:
            return await holders(database_url) == {"ON-NODE-1": "node-1", "ON-NODE-2": "node-2"}

        await eventually(both_held, timeout=15)
        assert (await asyncio.to_thread(one.health))["chargers"] == 1
        status = await asyncio.to_thread(cluster_status, database_url)
        assert [line.split()[:3] for line in status.splitlines()[1:]] == [
            ["node-1", "alive", "1"],
            ["node-2", "alive", "1"],
        ]

        # Node 2 dies without a word: its charger's row still says node 2 until node 1 declares it dead.
        two.kill(signal.SIGKILL)

        async def two_declared_dead() -> bool:
            return await holders(database_url) == {"ON-NODE-1": "node-1", "ON-NODE-2": None}

        await eventually(two_declared_dead, timeout=20, message="node 1 never declared node 2 dead")
        status = await asyncio.to_thread(cluster_status, database_url)
        assert [line.split()[:3] for line in status.splitlines()[1:]] == [
            ["node-1", "alive", "1"],
            ["node-2", "dead", "0"],
        ]
        assert (await asyncio.to_thread(one.health))["status"] == "ok"

    # A clean stop lets go of its own chargers at once.
    one.kill(signal.SIGTERM)
    assert await holders(database_url) == {"ON-NODE-1": None, "ON-NODE-2": None}
    status = await asyncio.to_thread(cluster_status, database_url)
    assert [line.split()[:2] for line in status.splitlines()[1:]] == [["node-1", "stopped"], ["node-2", "dead"]]


async def test_the_newest_connection_wins_across_nodes(database_url: str, nodes: list[Node]) -> None:
    async with standalone_session(database_url) as session:
        await Factory(session).charge_point(await Factory(session).team(), identity="HOPPER")
    one, two = nodes
    for node in nodes:
        await wait_until_listening("127.0.0.1", node.port, timeout=60)
    async with connected(one, "HOPPER") as first:

        async def on_one() -> bool:
            return await holders(database_url) == {"HOPPER": "node-1"}

        await eventually(on_one, timeout=15)
        # The charger comes again through the balancer, to node 2, while node 1 still holds the first socket.
        async with connected(two, "HOPPER") as second:
            await asyncio.wait_for(first.wait_closed(), 15)
            assert first.close_code == 1000 and "another node" in (first.close_reason or "")

            async def on_two() -> bool:
                return await holders(database_url) == {"HOPPER": "node-2"}

            await eventually(on_two, timeout=15)
            # The second socket serves on: its heartbeat is answered (the hub's own calls, such as the
            # capability probe after the boot, may come first).
            await second.send(json.dumps([2, "hb", "Heartbeat", {}]))
            received = []
            while [3, "hb"] not in [frame[:2] for frame in received]:
                assert len(received) < 5, received
                received.append(json.loads(await asyncio.wait_for(second.recv(), 10)))
            assert (await asyncio.to_thread(one.health))["chargers"] == 0
            assert (await asyncio.to_thread(two.health))["chargers"] == 1
