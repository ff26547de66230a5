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
- the scheduler works: an activation scheduled to start just after the window starts, on every charger;
- the nodes hear each other again (LISTEN/NOTIFY): a cancel made on one node releases the chargers the
  other holds, and an activation started on one node limits the chargers the other holds.

The test runs a PostgreSQL cluster of its own: stopping the one the suite shares would break whatever
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
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
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
from powerbank.tools.simulator import ChargerSpec, SimulatedCharger
from tests.conftest import TEST_PASSWORD, Factory
from tests.dispatch.support import FULL_POWER_W, MARGIN_S, clears, dk2_fleet, set_profiles, write_token
from tests.helpers import eventually, free_port
from tests.pg_server import _as_owner, _bindir
from tests.runtime.cluster_support import CLUSTER_ENV, Node, api, cluster_status, holders, stop_all

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
WINDOW_S = 10
# What the tests give a node to see its database back and serve again: its next heartbeat after the
# lease (a node declared dead meanwhile registers again) and the leader lock's next try, generously.
RECOVERY_S = 10 * float(CLUSTER_ENV["POWERBANK_CLUSTER_LEASE_S"])
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
    started = [Node(name, postgres.url, tmp_path / f"{name}.log", **HUB_SETTINGS) for name in NAMES]
    try:
        yield started
    finally:
        stop_all(started)


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
    energies, status_at, firmware = await stored_reports(url, witness.identity)
    meters = {number for number, action in witness.acknowledged.items() if action == "MeterValues"}
    assert meters and meters <= energies, (
        f"{witness.identity}: acknowledged meter values lost: {sorted(meters - energies)}"
    )
    # Statuses and boots keep the last one: it is the last acknowledged one, or one sent after it.
    statuses = [number for number, action in witness.acknowledged.items() if action == "StatusNotification"]
    assert status_at is not None and witness.status_times.get(status_at, 0) >= max(statuses), (
        f"{witness.identity}: the stored status is older than the last one acknowledged"
    )
    boots = [number for number, action in witness.acknowledged.items() if action == "BootNotification"]
    assert firmware is not None and int(firmware.removeprefix("w-")) >= max(boots), (
        f"{witness.identity}: the stored boot is older than the last one acknowledged"
    )


# The chargers and the nodes --------------------------------------------------------------------


async def fleet(url: str) -> tuple[str, list[ChargePoint], list[ChargePoint]]:
    """Create the signed-up DK2 charge points, the witnesses (DK1, under no activation) and a write token."""
    async with standalone_session(url) as session:
        factory = Factory(session)
        team = await factory.team()
        charge_points = await dk2_fleet(factory, session, team, CHARGERS)
        witnesses = [await factory.charge_point(team, price_area="DK1") for _ in range(WITNESSES * len(NAMES))]
        operator = await session.get(Operator, team.operator_id)
        assert operator is not None
        headers = await write_token(session, operator)
    return headers["Authorization"].removeprefix("Bearer "), charge_points, witnesses


def charger(identity: str) -> SimulatedCharger:
    return SimulatedCharger(
        ChargerSpec(identity=identity), meter_interval=2.0, reconnect_delay=0.2, max_reconnect_delay=2.0
    )


def home(index: int, nodes: Sequence[Node]) -> list[str]:
    """Return the node URLs a charger tries, its own node first."""
    first = index % len(nodes)
    return [nodes[(first + step) % len(nodes)].ocpp_url for step in range(len(nodes))]


@asynccontextmanager
async def running(chargers: Sequence[SimulatedCharger], nodes: Sequence[Node]) -> AsyncIterator[None]:
    tasks = [
        asyncio.create_task(simulated.run(home(index, nodes), TEST_PASSWORD))
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


async def healths(nodes: Sequence[Node]) -> list[dict[str, Any]]:
    return [await asyncio.to_thread(node.health) for node in nodes]


async def record(node: Node, token: str, activation_id: int) -> dict[str, dict[str, Any]]:
    status, body = await api(node, "GET", f"/activations/{activation_id}", token)
    assert status == 200, body
    return {row["identity"]: row for row in body["chargers"]}


def paused(simulated: SimulatedCharger) -> bool:
    """Whether the charger is connected, in a transaction, and held at 0 W."""
    return simulated.connected and simulated.transaction_id is not None and simulated.limit_w == 0


async def leader_locks(url: str) -> int:
    """Return how many sessions hold the leader lock (a bigint advisory lock: its two halves)."""
    key = LOCK_KEY & 0xFFFF_FFFF_FFFF_FFFF
    rows = await execute(
        url,
        "SELECT count(*) AS held FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
        key >> 32,
        key & 0xFFFF_FFFF,
    )
    return int(rows[0]["held"])


async def test_the_nodes_come_back_by_themselves_lose_nothing_acknowledged_and_leave_no_charger_limited(
    postgres: Postgres, nodes: list[Node]
) -> None:
    mark = timeline()
    token, charge_points, witness_points = await fleet(postgres.url)
    for node in nodes:
        await node.listening()
    chargers = [charger(cp.identity) for cp in charge_points]
    witnesses = [Witness(cp.identity, nodes[index % len(nodes)].ocpp_url) for index, cp in enumerate(witness_points)]
    async with running(chargers, nodes), witnessing(witnesses):

        async def all_online() -> bool:
            return all(holder is not None for holder in (await holders(postgres.url)).values())

        await eventually(all_online, timeout=60, message="the chargers did not all connect")
        assert set((await holders(postgres.url)).values()) == set(NAMES)
        mark(f"{CHARGERS} chargers and {len(witnesses)} witnesses connected")
        assert [health["leader"] for health in await healths(nodes)].count(True) == 1

        # Under a limit whose window ends while the database is away, and with an activation scheduled to
        # start after that window, whether the database is back by then or not.
        status, window = await api(
            nodes[0], "POST", "/activations", token, {"price_area": "DK2", "action": "pause", "duration_s": WINDOW_S}
        )
        assert status == 201, window
        end_at = datetime.fromisoformat(window["end_at"])
        start_at = end_at + timedelta(seconds=3)
        status, scheduled = await api(
            nodes[1],
            "POST",
            "/activations",
            token,
            {"price_area": "DK2", "action": "pause", "duration_s": 300, "start_at": start_at.isoformat()},
        )
        assert status == 201 and scheduled["state"] == "scheduled", scheduled

        # The database goes once every charger is limited and has answered (the scheduler, which looked at
        # the schedule when these were created, then waits for the window's end: see the next test).
        async def window_answered() -> bool:
            rows = await record(nodes[1], token, window["id"])
            return len(rows) == CHARGERS and all(row["status"] == "Accepted" for row in rows.values())

        await eventually(window_answered, timeout=30, message="the window's record did not show every answer")
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
            return flags.count(True) == 1 and await leader_locks(postgres.url) == 1

        await eventually(one_leader, timeout=RECOVERY_S, message="not exactly one node leads")

        mark("one leader")

        async def both_alive() -> bool:
            lines = (await asyncio.to_thread(cluster_status, postgres.url)).splitlines()
            states = {line.split()[0]: line.split()[1] for line in lines[1:] if line.strip()}
            return states == dict.fromkeys(NAMES, "alive")

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
            # From the message in flight at the stop on, some were refused or left unanswered.
            assert any(
                outcome != "acknowledged"
                for number, _, outcome in witness.history
                if number >= in_flight[witness.identity]
            ), f"{witness.identity}: everything was acknowledged: {witness.history}"
            await nothing_acknowledged_lost(postgres.url, witness)

        mark("nothing acknowledged lost")

        # The window's end is recorded for every charger.
        async def window_released() -> bool:
            rows = await record(nodes[0], token, window["id"])
            return len(rows) == CHARGERS and all(row["released_at"] is not None for row in rows.values())

        await eventually(window_released, timeout=RECOVERY_S, message="the window's record kept chargers limited")

        mark("the window's record shows every charger released")
        # The scheduler starts the scheduled activation on every charger.
        await eventually(
            lambda: all(paused(simulated) for simulated in chargers),
            timeout=RECOVERY_S + 3,
            message="the scheduled activation did not limit every charger",
        )
        status, body = await api(nodes[0], "GET", f"/activations/{scheduled['id']}", token)
        assert status == 200 and body["state"] == "active", body

        seen: dict[str, Any] = {}

        async def all_back_and_answered() -> bool:
            rows = await record(nodes[0], token, scheduled["id"])
            shown = await holders(postgres.url)
            seen["away"] = [simulated.spec.identity for simulated in chargers if not simulated.connected]
            seen["shown offline"] = [
                simulated.spec.identity for simulated in chargers if shown[simulated.spec.identity] is None
            ]
            seen["not answered"] = {
                identity: row["status"] for identity, row in rows.items() if row["status"] != "Accepted"
            }
            seen["rows"] = len(rows)
            return len(rows) == CHARGERS and not any(seen[key] for key in ("away", "shown offline", "not answered"))

        try:
            await eventually(all_back_and_answered, timeout=RECOVERY_S)
        except AssertionError:
            raise AssertionError(f"the chargers did not all come back and answer: {seen}") from None
        mark("every charger back, limited by the scheduled activation, its record complete")
        # LISTEN/NOTIFY works again: a cancel on node 2 releases the chargers node 1 holds ...
        shown = await holders(postgres.url)
        held_by = {name: [c for c in chargers if shown[c.spec.identity] == name] for name in NAMES}
        assert all(held_by.values()), shown
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
