"""PostgreSQL restarted under load beneath two real `powerbank serve` nodes.

Hundreds of simulated chargers, spread over both nodes, charge under an activation's limit and
report meter values; a few witness chargers report without pause and remember what the hub
acknowledged. PostgreSQL is stopped in immediate mode (as a crash stops it) while the activation's
window runs, its window ends while the database is away, then PostgreSQL is started again on the
same port and data. As a user would, the test checks that:

- every node notices (its /healthz answers 503), and when the database is back serves again on its
  own: /healthz answers 200, exactly one node holds the leader lock, both are alive in the node table;
- no charger stays limited past the window: the limits end by themselves, database or not, and every
  charger then charges at full power; once the database is back the activation's record shows every
  charger released;
- nothing acknowledged to a charger is lost: every MeterValues, StatusNotification and
  BootNotification the hub answered before the stop (or after the start) is stored;
- the scheduler works: an activation scheduled, once the chargers are back, to start shortly starts on
  every charger;
- the nodes hear each other again (LISTEN/NOTIFY): a cancel made on one node releases the chargers the
  other holds, and an activation started on one node limits the chargers the other holds.

Two more tests: the leader's scheduler outlives a database error while it looks at the schedule (it used
to stop for good, its node keeping the leader lock), and a charger that leaves while the database is away
is shown offline once it is back (what the node could not store used to be dropped).

Each test runs a PostgreSQL cluster of its own: stopping the one the suite shares would break whatever
else uses it, and that one runs with ``synchronous_commit=off``, with which PostgreSQL may lose
transactions it reported committed when it stops in immediate mode.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from powerbank.db import standalone_session
from powerbank.db.bus import connect_args
from powerbank.db.leadership import LOCK_KEY
from powerbank.db.migrate import upgrade
from powerbank.models import ChargePoint, Operator
from powerbank.services.cluster import node_statuses
from powerbank.tools.simulator import ChargerSpec, SimulatedCharger
from tests.conftest import TEST_PASSWORD, Factory
from tests.dispatch.support import FULL_POWER_W, MARGIN_S, clears, dk2_fleet, set_profiles, write_token
from tests.helpers import eventually, free_port
from tests.pg_server import _as_owner, _bindir
from tests.runtime.cluster_support import CLUSTER_ENV, Node, api, holders, nodes_on, stop_all

pytestmark = pytest.mark.postgres_only

NAMES = ("node-1", "node-2")
# Simulated chargers under the activations, spread evenly over the nodes.
CHARGERS = 300
# Witness chargers per node.
WITNESSES = 2
HUB_SETTINGS = {
    "POWERBANK_ACTIVATION_PROFILE_MARGIN_S": str(MARGIN_S),
    "POWERBANK_ACTIVATION_ANSWER_TIMEOUT_S": "5",
    "POWERBANK_OCPP_CALL_TIMEOUT_S": "5",
    "POWERBANK_OCPP_BOOT_GRACE_S": "1",
}
# The activation whose window ends while the database is away.
WINDOW_S = 12
# What the tests give a node to see its database back and serve again: its next heartbeat after the
# lease (a node declared dead meanwhile registers again) and the leader lock's next try, generously.
RECOVERY_S = 10 * float(CLUSTER_ENV["POWERBANK_CLUSTER_LEASE_S"])
# What a node is given, once it serves again, to look at the schedule again (the leader lock is tried
# every second) and to store which chargers it holds (every OCPP_LAST_SEEN_FLUSH_S), generously.
SCHEDULER_AGAIN_S = 5.0
SHOWN_AGAIN_S = 25 * float(CLUSTER_ENV["POWERBANK_OCPP_LAST_SEEN_FLUSH_S"])
# How often a witness reports.
WITNESS_PACE_S = 0.1


class Postgres:
    """A PostgreSQL cluster of the test's own, stopped and started with pg_ctl as an operator does."""

    def __init__(self) -> None:
        self.bindir = _bindir()
        self.folder = Path(tempfile.mkdtemp(prefix="powerbank-restart-"))
        self.data = self.folder / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.folder.chmod(0o700)
        self.running = False

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/powerbank"

    def _run(self, program: str, *arguments: str) -> None:
        subprocess.run(_as_owner([str(self.bindir / program), *arguments]), check=True, stdout=subprocess.DEVNULL)

    def create(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()

    def start(self) -> None:
        # fsync is off (the machine does not crash under the test), synchronous_commit is left on:
        # a commit PostgreSQL reported is in its log, and survives an immediate stop.
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "start")
        self.running = True

    def stop(self, mode: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def remove(self) -> None:
        if self.running:
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def timeline() -> Callable[[str], None]:
    """Return a function that prints what happened when, from now (shown with a failing test's output)."""
    started = time.monotonic()

    def mark(what: str) -> None:
        print(f"{time.monotonic() - started:6.1f} s  {what}", flush=True)

    return mark


async def execute(url: str, statement: str, *arguments: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(**connect_args(url))
    try:
        return list(await connection.fetch(statement, *arguments))
    finally:
        await connection.close()


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    try:
        server.create()
        asyncio.run(execute(server.admin_url, "CREATE DATABASE powerbank"))
        upgrade(server.url)
        yield server
    finally:
        server.remove()


@pytest.fixture
def nodes(postgres: Postgres, tmp_path: Path) -> Iterator[list[Node]]:
    with nodes_on(postgres.url, tmp_path, NAMES, **HUB_SETTINGS) as started:
        yield started


# The witnesses ------------------------------------------------------------------------------


@dataclass
class Witness:
    """A charger that reports without pause (meter values, statuses, boots) and remembers what was answered.

    Each message carries its sequence number: a MeterValues its energy register in Wh, a BootNotification
    its firmware version, a StatusNotification its timestamp (``status_times``).
    """

    identity: str
    url: str
    reporting: bool = True
    sent: int = 0
    acknowledged: dict[int, str] = field(default_factory=dict)  # sequence number → action answered
    refused: dict[int, str] = field(default_factory=dict)  # answered with a CALLERROR
    status_times: dict[datetime, int] = field(default_factory=dict)
    # What became of each message: (sequence number, action, "acknowledged", "refused", "unanswered" or "cut off").
    history: list[tuple[int, str, str]] = field(default_factory=list)
    _answers: dict[str, asyncio.Future[bool]] = field(default_factory=dict)

    def acknowledged_since(self, sequence: int) -> int:
        return sum(1 for number in self.acknowledged if number > sequence)

    async def run(self) -> None:
        credentials = base64.b64encode(f"{self.identity}:{TEST_PASSWORD}".encode()).decode()
        while self.reporting:
            try:
                async with connect(
                    f"{self.url}/{self.identity}",
                    subprotocols=[Subprotocol("ocpp1.6")],
                    additional_headers={"Authorization": f"Basic {credentials}"},
                    compression=None,
                    ping_interval=None,
                    proxy=None,
                ) as websocket:
                    await self._report(websocket)
            except (OSError, InvalidHandshake, ConnectionClosed):
                pass
            # A charger waits a moment before it tries again.
            await asyncio.sleep(WITNESS_PACE_S)

    async def _report(self, websocket: ClientConnection) -> None:
        reader = asyncio.create_task(self._read(websocket))
        try:
            while self.reporting and not reader.done():
                self.sent += 1
                number = self.sent
                action, payload = self._message(number)
                answer = asyncio.get_running_loop().create_future()
                self._answers[str(number)] = answer
                await websocket.send(json.dumps([2, str(number), action, payload]))
                await asyncio.wait([answer, reader], timeout=10, return_when=asyncio.FIRST_COMPLETED)
                self._answers.pop(str(number), None)
                if not answer.done():
                    # Neither acknowledged nor refused.
                    self.history.append((number, action, "cut off" if reader.done() else "unanswered"))
                    continue
                accepted = answer.result()
                (self.acknowledged if accepted else self.refused)[number] = action
                self.history.append((number, action, "acknowledged" if accepted else "refused"))
                await asyncio.sleep(WITNESS_PACE_S)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    def _message(self, number: int) -> tuple[str, dict[str, Any]]:
        now = datetime.now(UTC)
        if number % 10 == 1:
            return "BootNotification", {
                "chargePointVendor": "Easee",
                "chargePointModel": "Home",
                "firmwareVersion": f"w-{number}",
            }
        if number % 2 == 0:
            self.status_times[now] = number
            status = "Charging" if number % 4 == 0 else "SuspendedEV"
            return "StatusNotification", {
                "connectorId": 1,
                "errorCode": "NoError",
                "status": status,
                "timestamp": now.isoformat(),
            }
        value = {"value": str(number), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
        return "MeterValues", {
            "connectorId": 1,
            "meterValue": [{"timestamp": now.isoformat(), "sampledValue": [value]}],
        }

    async def _read(self, websocket: ClientConnection) -> None:
        async for text in websocket:
            frame = json.loads(text)
            if frame[0] == 2:
                # The hub's own calls (its capability probe): this charger supports none of them.
                await websocket.send(json.dumps([4, frame[1], "NotImplemented", "", {}]))
                continue
            answer = self._answers.get(frame[1])
            if answer is not None and not answer.done():
                answer.set_result(frame[0] == 3)


async def stored_reports(url: str, identity: str) -> tuple[set[int], datetime | None, str | None]:
    """Return what the database holds of a witness: its energy registers, its connector's status time, its firmware."""
    rows = await execute(
        url,
        "SELECT energy_wh FROM ocpp_meter_sample JOIN charge_point ON charge_point.id = charge_point_id"
        " WHERE identity = $1",
        identity,
    )
    status = await execute(
        url,
        "SELECT reported_at FROM ocpp_connector_status JOIN charge_point ON charge_point.id = charge_point_id"
        " WHERE identity = $1 AND connector_id = 1",
        identity,
    )
    firmware = await execute(url, "SELECT reported_firmware FROM charge_point WHERE identity = $1", identity)
    return (
        {int(row["energy_wh"]) for row in rows},
        status[0]["reported_at"] if status else None,
        firmware[0]["reported_firmware"],
    )


async def nothing_acknowledged_lost(url: str, witness: Witness) -> None:
    # What was acknowledged before the database is read: a witness still running may be answered
    # while it is read, for a row committed after the read's snapshot.
    acknowledged = dict(witness.acknowledged)
    energies, status_at, firmware = await stored_reports(url, witness.identity)
    meters = {number for number, action in acknowledged.items() if action == "MeterValues"}
    assert meters and meters <= energies, (
        f"{witness.identity}: acknowledged meter values lost: {sorted(meters - energies)}"
    )
    # Statuses and boots keep the last one: it is the last acknowledged one, or one sent after it.
    statuses = [number for number, action in acknowledged.items() if action == "StatusNotification"]
    assert status_at is not None and witness.status_times.get(status_at, 0) >= max(statuses), (
        f"{witness.identity}: the stored status is older than the last one acknowledged"
    )
    boots = [number for number, action in acknowledged.items() if action == "BootNotification"]
    assert firmware is not None and int(firmware.removeprefix("w-")) >= max(boots), (
        f"{witness.identity}: the stored boot is older than the last one acknowledged"
    )


# The chargers and the nodes --------------------------------------------------------------------


async def fleet(url: str, chargers: int = CHARGERS) -> tuple[str, list[ChargePoint], list[ChargePoint]]:
    """Create the signed-up DK2 charge points, the witnesses (DK1, under no activation) and a write token."""
    async with standalone_session(url) as session:
        factory = Factory(session)
        team = await factory.team()
        charge_points = await dk2_fleet(factory, session, team, chargers)
        witnesses = [await factory.charge_point(team, price_area="DK1") for _ in range(WITNESSES * len(NAMES))]
        operator = await session.get(Operator, team.operator_id)
        assert operator is not None
        headers = await write_token(session, operator)
    return headers["Authorization"].removeprefix("Bearer "), charge_points, witnesses


def charger(identity: str) -> SimulatedCharger:
    return SimulatedCharger(
        ChargerSpec(identity=identity), meter_interval=2.0, reconnect_delay=0.2, max_reconnect_delay=2.0
    )


def home(index: int, nodes: Sequence[Node]) -> Node:
    """Return the one node charger ``index`` connects to: which node holds a charger is known without the database."""
    return nodes[index % len(nodes)]


@asynccontextmanager
async def running(chargers: Sequence[SimulatedCharger], nodes: Sequence[Node]) -> AsyncIterator[None]:
    tasks = [
        asyncio.create_task(simulated.run(home(index, nodes).ocpp_url, TEST_PASSWORD))
        for index, simulated in enumerate(chargers)
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def witnessing(witnesses: Sequence[Witness]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(witness.run()) for witness in witnesses]
    try:
        yield
    finally:
        for witness in witnesses:
            witness.reporting = False
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def paced(condition: Callable[[], Awaitable[bool]], every_s: float = 0.5) -> Callable[[], Awaitable[bool]]:
    """Return ``condition`` asked at most every ``every_s`` (it calls the API: a token may ask 300 times a minute)."""
    asked = [-every_s]

    async def ask() -> bool:
        if time.monotonic() - asked[0] < every_s:
            return False
        asked[0] = time.monotonic()
        return await condition()

    return ask


async def healths(nodes: Sequence[Node]) -> list[dict[str, Any]]:
    return [await asyncio.to_thread(node.health) for node in nodes]


async def node_states(url: str, lease_s: float = float(CLUSTER_ENV["POWERBANK_CLUSTER_LEASE_S"])) -> dict[str, str]:
    """Return each node's state as `powerbank cluster status` shows it ("alive", "overdue", "dead", "stopped")."""
    async with standalone_session(url) as session:
        return {node.name: node.state for node in await node_statuses(session, lease=timedelta(seconds=lease_s))}


async def record(node: Node, token: str, activation_id: int) -> dict[str, dict[str, Any]]:
    status, body = await api(node, "GET", f"/activations/{activation_id}", token)
    assert status == 200, body
    return {row["identity"]: row for row in body["chargers"]}


def paused(simulated: SimulatedCharger) -> bool:
    """Whether the charger is connected, in a transaction, and held at 0 W."""
    return simulated.connected and simulated.transaction_id is not None and simulated.limit_w == 0


async def leader_lock_holders(url: str) -> list[int]:
    """Return the server processes of the sessions that hold the leader lock (a bigint advisory lock: two halves)."""
    key = LOCK_KEY & 0xFFFF_FFFF_FFFF_FFFF
    rows = await execute(
        url,
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
        key >> 32,
        key & 0xFFFF_FFFF,
    )
    return [int(row["pid"]) for row in rows]


async def test_the_nodes_come_back_by_themselves_lose_nothing_acknowledged_and_leave_no_charger_limited(
    postgres: Postgres, nodes: list[Node]
) -> None:
    mark = timeline()
    token, charge_points, witness_points = await fleet(postgres.url)
    for node in nodes:
        await node.listening()
    chargers = [charger(cp.identity) for cp in charge_points]
    witnesses = [Witness(cp.identity, home(index, nodes).ocpp_url) for index, cp in enumerate(witness_points)]
    held_by = {node.name: [c for index, c in enumerate(chargers) if home(index, nodes) is node] for node in nodes}
    async with running(chargers, nodes), witnessing(witnesses):

        async def all_connected() -> bool:
            counts = [health["chargers"] for health in await healths(nodes)]
            return all(simulated.transaction_id is not None for simulated in chargers) and counts == [
                len(held_by[node.name]) + WITNESSES for node in nodes
            ]

        await eventually(all_connected, timeout=60, message="the chargers did not all connect and charge")
        mark(f"{CHARGERS} chargers and {len(witnesses)} witnesses connected")
        assert [health["leader"] for health in await healths(nodes)].count(True) == 1

        # Under a limit whose window ends while the database is away, and with an activation scheduled to
        # start after that window, whether the database is back by then or not.
        status, window = await api(
            nodes[0], "POST", "/activations", token, {"price_area": "DK2", "action": "pause", "duration_s": WINDOW_S}
        )
        assert status == 201, window
        end_at = datetime.fromisoformat(window["end_at"])

        # The database goes once every charger is limited and has answered (the leader's scheduler, which
        # looked at the schedule when the activation was created, then waits for the window's end).
        async def window_answered() -> bool:
            rows = await record(nodes[1], token, window["id"])
            return len(rows) == CHARGERS and all(row["status"] == "Accepted" for row in rows.values())

        await eventually(paced(window_answered), timeout=30, message="the window's record did not show every answer")
        await eventually(
            lambda: all(paused(simulated) for simulated in chargers),
            timeout=10,
            message="not every charger was limited",
        )
        await eventually(
            lambda: all(witness.acknowledged for witness in witnesses),
            timeout=15,
            message="a witness was never answered",
        )
        mark("every charger limited")
        assert datetime.now(UTC) < end_at, "the chargers were limited too late for the window to end in the outage"

        in_flight = {witness.identity: witness.sent for witness in witnesses}
        await asyncio.to_thread(postgres.stop, "immediate")
        mark("PostgreSQL stopped (immediate)")

        async def every_node_unavailable() -> bool:
            return all(health["status"] == "unavailable" for health in await healths(nodes))

        await eventually(every_node_unavailable, timeout=10, message="a node did not notice its database was gone")

        mark("every node answers 503")
        # No charger stays limited past the window, though no node can end it: the limits end by themselves.
        last_limits = [set_profiles(simulated)[-1]["cs_charging_profiles"] for simulated in chargers]
        assert all(
            datetime.fromisoformat(profile["valid_to"]) <= end_at + timedelta(seconds=MARGIN_S)
            for profile in last_limits
        )
        free_at = end_at + timedelta(seconds=MARGIN_S)
        await eventually(lambda: datetime.now(UTC) >= free_at, timeout=WINDOW_S + 5)
        assert all(simulated.limit_w is None for simulated in chargers)
        assert all(simulated.power_w == FULL_POWER_W for simulated in chargers)
        assert not postgres.running

        mark("the window and its margin are over: no charger limited")
        await asyncio.to_thread(postgres.start)
        mark("PostgreSQL started")

        # The nodes serve again by themselves, and one of them leads.
        async def every_node_serves() -> bool:
            return all(health["status"] == "ok" for health in await healths(nodes))

        await eventually(every_node_serves, timeout=RECOVERY_S, message="a node did not serve again")

        mark("every node answers 200")

        async def one_leader() -> bool:
            flags = [health["leader"] for health in await healths(nodes)]
            return flags.count(True) == 1 and len(await leader_lock_holders(postgres.url)) == 1

        await eventually(one_leader, timeout=RECOVERY_S, message="not exactly one node leads")

        mark("one leader")

        async def both_alive() -> bool:
            return await node_states(postgres.url) == dict.fromkeys(NAMES, "alive")

        await eventually(both_alive, timeout=RECOVERY_S, message="a node was not alive again")

        mark("both nodes alive")
        # Nothing the hub acknowledged is lost, before the stop or after the start.
        await eventually(
            lambda: all(witness.acknowledged_since(in_flight[witness.identity]) >= 5 for witness in witnesses),
            timeout=RECOVERY_S,
            message="a witness was not answered again",
        )
        for witness in witnesses:
            witness.reporting = False
        for witness in witnesses:
            await nothing_acknowledged_lost(postgres.url, witness)
        # What the witnesses met from the stop on: a message refused, one answered only once PostgreSQL was
        # back (held meanwhile, then stored) or one not answered at all are all fine; a lost one is not.
        outcomes = [
            outcome
            for witness in witnesses
            for number, _, outcome in witness.history
            if number >= in_flight[witness.identity]
        ]
        mark(f"nothing acknowledged lost ({', '.join(f'{outcomes.count(o)} {o}' for o in sorted(set(outcomes)))})")

        # The window's end is recorded for every charger.
        async def window_released() -> bool:
            rows = await record(nodes[0], token, window["id"])
            return len(rows) == CHARGERS and all(row["released_at"] is not None for row in rows.values())

        await eventually(
            paced(window_released), timeout=RECOVERY_S, message="the window's record kept chargers limited"
        )

        mark("the window's record shows every charger released")

        # Once the chargers are back, an activation scheduled on node 2 to start shortly is started by the
        # leader's scheduler, on every charger.
        async def all_back() -> bool:
            counts = [health["chargers"] for health in await healths(nodes)]
            return all(simulated.connected for simulated in chargers) and counts == [
                len(held_by[node.name]) for node in nodes
            ]

        await eventually(all_back, timeout=RECOVERY_S, message="the chargers did not all come back")
        status, scheduled = await api(
            nodes[1],
            "POST",
            "/activations",
            token,
            {
                "price_area": "DK2",
                "action": "pause",
                "duration_s": 300,
                "start_at": (datetime.now(UTC) + timedelta(seconds=3)).isoformat(),
            },
        )
        assert status == 201 and scheduled["state"] == "scheduled", scheduled
        await eventually(
            lambda: all(paused(simulated) for simulated in chargers),
            timeout=3 + RECOVERY_S,
            message="the scheduled activation did not limit every charger",
        )
        status, body = await api(nodes[0], "GET", f"/activations/{scheduled['id']}", token)
        assert status == 200 and body["state"] == "active", body

        seen: dict[str, Any] = {}

        async def all_back_and_answered() -> bool:
            rows = await record(nodes[0], token, scheduled["id"])
            seen["away"] = [simulated.spec.identity for simulated in chargers if not simulated.connected]
            seen["held"] = [health["chargers"] for health in await healths(nodes)]
            seen["not answered"] = {
                identity: row["status"] for identity, row in rows.items() if row["status"] != "Accepted"
            }
            seen["rows"] = len(rows)
            return (
                len(rows) == CHARGERS
                and not seen["away"]
                and not seen["not answered"]
                and seen["held"] == [len(held_by[node.name]) for node in nodes]
            )

        try:
            await eventually(paced(all_back_and_answered), timeout=RECOVERY_S)
        except AssertionError:
            raise AssertionError(f"the chargers did not all come back and answer: {seen}") from None
        mark("every charger back, limited by the scheduled activation, its record complete")
        # LISTEN/NOTIFY works again: a cancel on node 2 releases the chargers node 1 holds ...
        received = {simulated.spec.identity: len(simulated.received) for simulated in chargers}
        status, body = await api(nodes[1], "DELETE", f"/activations/{scheduled['id']}", token)
        assert status == 200, body
        await eventually(
            lambda: all(
                clears(simulated, received[simulated.spec.identity]) and simulated.limit_w is None
                for simulated in held_by["node-1"]
            ),
            timeout=15,
            message="node 1 did not hear of the cancel on node 2",
        )
        mark("the cancel on node 2 released node 1's chargers")
        # ... and an activation started on node 1 limits the chargers node 2 holds.
        await eventually(
            lambda: all(simulated.limit_w is None for simulated in chargers),
            timeout=15,
            message="a charger stayed limited",
        )
        received = {simulated.spec.identity: len(simulated.received) for simulated in chargers}
        status, created = await api(
            nodes[0], "POST", "/activations", token, {"price_area": "DK2", "action": "pause", "duration_s": 300}
        )
        assert status == 201, created
        await eventually(
            lambda: all(
                set_profiles(simulated, received[simulated.spec.identity]) and paused(simulated)
                for simulated in held_by["node-2"]
            ),
            timeout=15,
            message="node 2 did not hear of the activation started on node 1",
        )
        mark("the activation started on node 1 limited node 2's chargers")


async def test_the_leaders_scheduler_outlives_its_database_connections(postgres: Postgres, nodes: list[Node]) -> None:
    """The leader keeps its lock while every other connection to the database is cut, over a window's end.

    Its scheduler then fails to look at the schedule, as when PostgreSQL stops while it looks (a restart
    that falls in that moment): here that happens every time. Once the database lets it in again, it
    records the window's end and starts the next scheduled activation.
    """
    token, charge_points, _ = await fleet(postgres.url, chargers=4)
    for node in nodes:
        await node.listening()
    chargers = [charger(cp.identity) for cp in charge_points]
    async with running(chargers, nodes):
        await eventually(
            lambda: all(simulated.connected and simulated.transaction_id is not None for simulated in chargers),
            timeout=30,
            message="the chargers did not all connect and charge",
        )
        status, window = await api(
            nodes[0], "POST", "/activations", token, {"price_area": "DK2", "action": "pause", "duration_s": 5}
        )
        assert status == 201, window
        end_at = datetime.fromisoformat(window["end_at"])
        status, scheduled = await api(
            nodes[1],
            "POST",
            "/activations",
            token,
            {
                "price_area": "DK2",
                "action": "pause",
                "duration_s": 300,
                "start_at": (end_at + timedelta(seconds=2)).isoformat(),
            },
        )
        assert status == 201, scheduled
        await eventually(lambda: all(paused(simulated) for simulated in chargers), timeout=15)
        (leader_pid,) = await leader_lock_holders(postgres.url)
        leaders = [health["node"] for health in await healths(nodes) if health["leader"]]

        # Every connection to the database but the leader lock's is cut, and no new one is let in.
        await execute(postgres.admin_url, "ALTER DATABASE powerbank ALLOW_CONNECTIONS false")
        try:
            await execute(
                postgres.admin_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'powerbank' AND pid <> $1",
                leader_pid,
            )

            async def every_node_unavailable() -> bool:
                return all(health["status"] == "unavailable" for health in await healths(nodes))

            await eventually(every_node_unavailable, timeout=10, message="a node did not notice")
            # The window ends meanwhile: the limits end by themselves.
            free_at = end_at + timedelta(seconds=MARGIN_S)
            await eventually(lambda: datetime.now(UTC) >= free_at, timeout=15)
            assert all(simulated.limit_w is None for simulated in chargers)
        finally:
            await execute(postgres.admin_url, "ALTER DATABASE powerbank ALLOW_CONNECTIONS true")

        async def every_node_serves() -> bool:
            return all(health["status"] == "ok" for health in await healths(nodes))

        await eventually(every_node_serves, timeout=RECOVERY_S, message="a node did not serve again")
        assert await leader_lock_holders(postgres.url) == [leader_pid]
        assert [health["node"] for health in await healths(nodes) if health["leader"]] == leaders

        # The leader's scheduler records the window's end and starts the scheduled activation.
        async def scheduled_started() -> bool:
            rows = await record(nodes[0], token, window["id"])
            status, body = await api(nodes[0], "GET", f"/activations/{scheduled['id']}", token)
            assert status == 200, body
            return all(row["released_at"] is not None for row in rows.values()) and body["state"] == "active"

        await eventually(
            paced(scheduled_started), timeout=SCHEDULER_AGAIN_S, message="the leader's scheduler did not run again"
        )
        await eventually(lambda: all(paused(simulated) for simulated in chargers), timeout=15)


def failed_presence_writes(node: Node) -> int:
    """Return how many times the node logged that it could not store which chargers it holds."""
    log = node.log.read_text(errors="replace")
    return sum("in store_presence" in failure for failure in log.split("could not store last-seen times")[1:])


async def test_a_charger_that_leaves_while_the_database_is_away_is_shown_offline_once_it_is_back(
    postgres: Postgres, tmp_path: Path
) -> None:
    # The production lease: a restart shorter than it declares no node dead (a node declared dead
    # registers again and shows afresh the chargers it holds, which would hide what is tested here).
    nodes = [
        Node(name, postgres.url, tmp_path / f"{name}.log", **HUB_SETTINGS, POWERBANK_CLUSTER_LEASE_S="15")
        for name in NAMES
    ]
    try:
        token, charge_points, _ = await fleet(postgres.url, chargers=4)
        for node in nodes:
            await node.listening()
        # Idle ones: they send nothing the database is needed for, so only the one that leaves goes.
        chargers = [
            SimulatedCharger(ChargerSpec(identity=cp.identity, charging=False), reconnect_delay=0.2)
            for cp in charge_points
        ]
        *staying, leaver = chargers
        two = home(len(chargers) - 1, nodes)
        async with running(staying, nodes):
            leaving = asyncio.create_task(leaver.run(two.ocpp_url, TEST_PASSWORD))
            try:

                async def all_shown_online() -> bool:
                    shown = await holders(postgres.url)
                    # Connected and done with what a charger reports once it connected (its last: connector 1's status).
                    reported = await execute(
                        postgres.url, "SELECT count(*) AS n FROM ocpp_connector_status WHERE connector_id = 1"
                    )
                    return reported[0]["n"] == len(chargers) and all(
                        shown[cp.identity] is not None for cp in charge_points
                    )

                await eventually(all_shown_online, timeout=30, message="the chargers were not all shown online")
                await asyncio.to_thread(postgres.stop, "immediate")

                async def every_node_unavailable() -> bool:
                    return all(health["status"] == "unavailable" for health in await healths(nodes))

                await eventually(every_node_unavailable, timeout=10, message="a node did not notice")
                held = (await asyncio.to_thread(two.health))["chargers"]
                failed = failed_presence_writes(two)
            finally:
                leaving.cancel()
                await asyncio.gather(leaving, return_exceptions=True)

            async def let_go() -> bool:
                return (await asyncio.to_thread(two.health))["chargers"] == held - 1

            await eventually(let_go, timeout=10, message="the node did not notice the charger leave")
            # Its node tried to store that it left, and could not.
            await eventually(lambda: failed_presence_writes(two) > failed, timeout=10)
            await asyncio.to_thread(postgres.start)

            async def every_node_serves() -> bool:
                return all(health["status"] == "ok" for health in await healths(nodes))

            await eventually(every_node_serves, timeout=RECOVERY_S, message="a node did not serve again")
            assert await node_states(postgres.url, lease_s=15) == dict.fromkeys(NAMES, "alive")

            async def shown_as_they_are() -> bool:
                shown = await holders(postgres.url)
                return shown[leaver.spec.identity] is None and all(
                    shown[simulated.spec.identity] is not None for simulated in staying
                )

            await eventually(
                shown_as_they_are, timeout=SHOWN_AGAIN_S, message="the charger that left is still shown online"
            )
    finally:
        stop_all(nodes)
