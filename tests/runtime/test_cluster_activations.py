"""Three real `powerbank serve` nodes on one PostgreSQL act as one hub for activations.

Each node holds some of the chargers (simulated chargers on real websockets). An activation started
on one node reaches the chargers of every node; an opt-out done on one node releases a charger held
by another at once; a node killed mid-activation leaves limits that end by themselves, and its chargers
that reconnect to another node get the active limit without booting; when the scheduler's leader is
killed, a standby starts the next scheduled activation.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from powerbank.db import standalone_session
from powerbank.models import ChargePoint, Operator
from powerbank.tools.simulator import ChargerSpec, SimulatedCharger
from tests.conftest import TEST_PASSWORD, Factory
from tests.dispatch.support import MARGIN_S, clears, dk2_fleet, set_profiles, write_token
from tests.helpers import eventually
from tests.runtime.cluster_support import Node, api, holders, nodes_on

pytestmark = pytest.mark.postgres_only

NAMES = ("node-1", "node-2", "node-3")
# Chargers per node.
PER_NODE = 2
HUB_SETTINGS = {
    "POWERBANK_ACTIVATION_PROFILE_MARGIN_S": str(MARGIN_S),
    "POWERBANK_ACTIVATION_ANSWER_TIMEOUT_S": "5",
    "POWERBANK_OCPP_CALL_TIMEOUT_S": "5",
    # A charger that reconnects without booting is looked up 1 s after it connected.
    "POWERBANK_OCPP_BOOT_GRACE_S": "1",
}


@pytest.fixture
def nodes(database_url: str, tmp_path: Path) -> Iterator[list[Node]]:
    with nodes_on(database_url, tmp_path, NAMES, **HUB_SETTINGS) as started:
        yield started


async def fleet(url: str) -> tuple[str, list[ChargePoint]]:
    """Create signed-up DK2 charge points, PER_NODE for each node, and an operator write token."""
    async with standalone_session(url) as session:
        factory = Factory(session)
        team = await factory.team()
        charge_points = await dk2_fleet(factory, session, team, PER_NODE * len(NAMES))
        operator = await session.get(Operator, team.operator_id)
        assert operator is not None
        headers = await write_token(session, operator)
    return headers["Authorization"].removeprefix("Bearer "), charge_points


def home(index: int, nodes: Sequence[Node]) -> list[str]:
    """Return the node URLs a charger tries, its own node first (charger ``index`` is at home on index % 3)."""
    first = index % len(nodes)
    return [nodes[(first + step) % len(nodes)].ocpp_url for step in range(len(nodes))]


@asynccontextmanager
async def running(chargers: Sequence[SimulatedCharger], urls: Sequence[Sequence[str]]) -> AsyncIterator[None]:
    pairs = zip(chargers, urls, strict=True)
    tasks = [asyncio.create_task(simulated.run(list(each), TEST_PASSWORD)) for simulated, each in pairs]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def spread(url: str, charge_points: Sequence[ChargePoint]) -> None:
    """Wait until every charger is held by its own node."""
    expected = {cp.identity: NAMES[index % len(NAMES)] for index, cp in enumerate(charge_points)}

    async def as_expected() -> bool:
        return await holders(url) == expected

    await eventually(as_expected, timeout=60, message="the chargers were not held by their nodes")


async def record(node: Node, token: str, activation_id: int) -> dict[str, dict[str, Any]]:
    status, body = await api(node, "GET", f"/activations/{activation_id}", token)
    assert status == 200, body
    return {row["identity"]: row for row in body["chargers"]}


def charger(identity: str, boot_on_reconnect: bool = True) -> SimulatedCharger:
    return SimulatedCharger(
        ChargerSpec(identity=identity),
        meter_interval=1.0,
        reconnect_delay=0.05,
        max_reconnect_delay=0.2,
        boot_on_reconnect=boot_on_reconnect,
    )


def paused(charger: SimulatedCharger) -> bool:
    return charger.connected and charger.limit_w == 0


async def test_an_activation_from_one_node_reaches_every_node_and_an_opt_out_elsewhere_releases_at_once(
    database_url: str, nodes: list[Node]
) -> None:
    token, charge_points = await fleet(database_url)
    for node in nodes:
        await node.listening()
    chargers = [charger(cp.identity) for cp in charge_points]
    async with running(chargers, [home(index, nodes) for index in range(len(chargers))]):
        await spread(database_url, charge_points)
        status, created = await api(
            nodes[0], "POST", "/activations", token, {"price_area": "DK2", "action": "pause", "duration_s": 300}
        )
        assert status == 201, created
        await eventually(lambda: all(paused(charger) for charger in chargers), timeout=15)

        async def all_accepted() -> bool:
            rows = await record(nodes[1], token, created["id"])
            return sorted(rows) == sorted(cp.identity for cp in charge_points) and all(
                row["status"] == "Accepted" for row in rows.values()
            )

        await eventually(all_accepted, timeout=15, message="the record read on node 2 does not show every answer")

        # Opted out on node 2, held by node 3: released at once, the others stay paused.
        index = NAMES.index("node-3")
        victim, victim_cp = chargers[index], charge_points[index]
        others = [charger for charger in chargers if charger is not victim]
        status, body = await api(nodes[1], "DELETE", f"/charge-points/{victim_cp.id}/powerbank", token)
        assert status == 200, body
        await eventually(lambda: bool(clears(victim)) and victim.limit_w is None, timeout=10)
        assert all(paused(charger) for charger in others)

        async def released_in_record() -> bool:
            row = (await record(nodes[0], token, created["id"]))[victim_cp.identity]
            return row["released_at"] is not None and row["release_status"] == "Accepted"

        await eventually(released_in_record, timeout=10)
        assert all(not clears(charger) for charger in others)

        # Cancelled on node 3: every node releases the chargers it holds.
        status, body = await api(nodes[2], "DELETE", f"/activations/{created['id']}", token)
        assert status == 200, body
        await eventually(lambda: all(bool(clears(charger)) for charger in others), timeout=10)
        assert all(charger.limit_w is None for charger in chargers)


async def test_a_node_killed_mid_activation_leaves_limits_that_end_and_its_chargers_get_the_limit_elsewhere(
    database_url: str, nodes: list[Node]
) -> None:
    token, charge_points = await fleet(database_url)
    for node in nodes:
        await node.listening()
    # Node 2's chargers reconnect without booting (a charger that only lost its connection), to the
    # next node; one of them can reach node 2 only and stays away once it is gone.
    on_two = [index for index in range(len(charge_points)) if NAMES[index % len(NAMES)] == "node-2"]
    stranded_index, roaming = on_two[0], on_two[1:]
    chargers = [charger(cp.identity, boot_on_reconnect=index not in on_two) for index, cp in enumerate(charge_points)]
    urls = [home(index, nodes) for index in range(len(chargers))]
    urls[stranded_index] = [nodes[1].ocpp_url]
    async with running(chargers, urls):
        await spread(database_url, charge_points)
        status, created = await api(
            nodes[0], "POST", "/activations", token, {"price_area": "DK2", "action": "pause", "duration_s": 20}
        )
        assert status == 201, created
        await eventually(lambda: all(paused(charger) for charger in chargers), timeout=15)
        end_at = datetime.fromisoformat(created["end_at"])
        received_before = {index: len(chargers[index].received) for index in roaming}

        async def all_answered() -> bool:
            return all(row["status"] == "Accepted" for row in (await record(nodes[0], token, created["id"])).values())

        await eventually(all_answered, timeout=15)
        first_sent = {
            identity: row["sent_at"] for identity, row in (await record(nodes[0], token, created["id"])).items()
        }

        nodes[1].kill(signal.SIGKILL)

        # The roaming ones reconnect to node 3 and are sent the limit again, without a BootNotification.
        def limited_again() -> bool:
            return all(
                chargers[index].connected and set_profiles(chargers[index], received_before[index]) for index in roaming
            )

        await eventually(limited_again, timeout=30, message="node 2's chargers did not get the limit on node 3")
        for index in roaming:
            assert chargers[index].boots == 1
            assert paused(chargers[index])
            profile = set_profiles(chargers[index], received_before[index])[-1]["cs_charging_profiles"]
            assert datetime.fromisoformat(profile["valid_to"]) <= end_at + timedelta(seconds=MARGIN_S + 1)

        async def two_declared_dead() -> bool:
            held = await holders(database_url)
            return "node-2" not in held.values() and all(
                held[charge_points[index].identity] == "node-3" for index in roaming
            )

        await eventually(two_declared_dead, timeout=20)
        rows = await record(nodes[0], token, created["id"])
        for index in roaming:
            row = rows[charge_points[index].identity]
            # Sent again (a later sending time) and answered again, by node 3.
            assert row["sent_at"] > first_sent[row["identity"]] and row["status"] == "Accepted", row

        # The stranded charger's limit ends by itself with the window (S1), as every other one's.
        stranded = chargers[stranded_index]
        assert not stranded.connected and stranded.limit_w == 0
        await eventually(lambda: stranded.limit_w is None, timeout=40, message="a limit outlived its window")
        assert datetime.now(UTC) >= end_at
        await eventually(lambda: all(charger.limit_w is None for charger in chargers), timeout=10)
        rows = await record(nodes[2], token, created["id"])
        # What happened to each: the stranded one was never released (it is away); the others were.
        assert rows[charge_points[stranded_index].identity]["released_at"] is None
        assert all(
            row["release_reason"] == "ended" for identity, row in rows.items() if identity != stranded.spec.identity
        ), rows


async def test_when_the_leader_is_killed_a_standby_starts_the_next_scheduled_activation(
    database_url: str, nodes: list[Node]
) -> None:
    token, charge_points = await fleet(database_url)
    for node in nodes:
        await node.listening()
    chargers = [charger(cp.identity) for cp in charge_points]
    async with running(chargers, [home(index, nodes) for index in range(len(chargers))]):
        await spread(database_url, charge_points)
        healths = [await asyncio.to_thread(node.health) for node in nodes]
        assert [health["leader"] for health in healths].count(True) == 1, healths
        leader = next(node for node, health in zip(nodes, healths, strict=True) if health["leader"])
        standbys = [node for node in nodes if node is not leader]
        start_at = datetime.now(UTC) + timedelta(seconds=6)
        status, created = await api(
            standbys[0],
            "POST",
            "/activations",
            token,
            {"price_area": "DK2", "action": "pause", "duration_s": 300, "start_at": start_at.isoformat()},
        )
        assert status == 201 and created["state"] == "scheduled", created

        leader.kill(signal.SIGKILL)

        async def standby_leads() -> bool:
            return any([(await asyncio.to_thread(node.health))["leader"] for node in standbys])

        await eventually(standby_leads, timeout=10, message="no standby took the lead")
        survivors = [charger for index, charger in enumerate(chargers) if nodes[index % len(nodes)] is not leader]
        await eventually(lambda: all(paused(charger) for charger in survivors), timeout=30)
        status, body = await api(standbys[1], "GET", f"/activations/{created['id']}", token)
        assert status == 200 and body["state"] == "active", body
        triggered_at = datetime.fromisoformat(body["triggered_at"])
        # Started by the new leader, not before its time, and within FCR-D's five seconds of it.
        assert timedelta(0) <= triggered_at - datetime.fromisoformat(body["start_at"]) < timedelta(seconds=5), body
