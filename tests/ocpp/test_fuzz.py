"""Hostile chargers: every message a charger may send, generated from the official OCPP schemas, and broken frames.

Each generated or malformed frame goes over a real websocket to the served hub. Whatever a charger
sends, the hub answers that call (a CallResult or a CallError with its id) or closes that one
connection; nothing it sends is logged as an unhandled error; the hub's event loop never spends
more than 100 ms of CPU without coming back to its other work; and a well-behaved charger's reports
still land afterwards. Payloads come from the JSON schemas the ``ocpp`` library ships, through
``hypothesis-jsonschema``, derandomised so that `make test` is repeatable; raise
POWERBANK_OCPP_EXAMPLES to search harder.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ocpp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from quart import Quart
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from powerbank.models import ConnectorStatus
from powerbank.runtime.server import hypercorn_config
from tests.conftest import TEST_PASSWORD, Factory
from tests.helpers import eventually
from tests.ocpp.support import basic

pytestmark = pytest.mark.served

EXAMPLES = int(os.environ.get("POWERBANK_OCPP_EXAMPLES", "4"))
# Only to keep a broken hub from hanging the suite: an answer normally comes within milliseconds.
ANSWER_GUARD_S = 20.0
SCHEMAS = Path(ocpp.__file__).parent
MAX_FRAME_BYTES = hypercorn_config("127.0.0.1", 0).websocket_max_message_size
# The longest the hub's event loop may work without coming back to the rest (pages, other chargers).
STALL_LIMIT_S = 0.1
PROBE_TICK_S = 0.01

# What a charger may send (the rest of each protocol is the hub's to send).
CHARGER_ACTIONS = {
    "ocpp1.6": [
        "Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification",
        "FirmwareStatusNotification", "Heartbeat", "MeterValues", "StartTransaction", "StatusNotification",
        "StopTransaction",
    ],
    "ocpp2.0.1": [
        "Authorize", "BootNotification", "ClearedChargingLimit", "DataTransfer", "FirmwareStatusNotification",
        "Get15118EVCertificate", "GetCertificateStatus", "Heartbeat", "LogStatusNotification", "MeterValues",
        "NotifyChargingLimit", "NotifyCustomerInformation", "NotifyDisplayMessages", "NotifyEVChargingNeeds",
        "NotifyEVChargingSchedule", "NotifyEvent", "NotifyMonitoringReport", "NotifyReport",
        "PublishFirmwareStatusNotification", "ReportChargingProfiles", "ReservationStatusUpdate",
        "SecurityEventNotification", "SignCertificate", "StatusNotification", "TransactionEvent",
    ],
}  # fmt: skip

# Frames no schema describes: broken JSON, deep nesting, wrong types, huge values, unknown actions,
# answers to calls the hub never made.
MALFORMED = [
    "",
    "not json",
    "{",
    "[",
    "[]",
    "{}",
    "null",
    "42",
    '"text"',
    "[2]",
    '[2, "m1"]',
    '[2, "m2", "Heartbeat"]',
    '[2, 7, "Heartbeat", {}]',
    '[2, "m3", 7, {}]',
    '[2, "m4", "Heartbeat", []]',
    '[2, "m5", "Heartbeat", {}, "extra"]',
    '[2, "m6", "NoSuchAction", {}]',
    '[2, "m7", "Heartbeat", {"unexpected": 1}]',
    '[9, "m8", "Heartbeat", {}]',
    '[2, "' + "x" * 5000 + '", "Heartbeat", {}]',
    '[2, "m9", "DataTransfer", {"vendorId": "' + "v" * 60_000 + '"}]',
    '[2, "m10", "DataTransfer", {"vendorId": "v", "data": ' + "[" * 5000 + "]" * 5000 + "}]",
    '[2, "m11", "StatusNotification", {"connectorId": 1e400, "errorCode": "NoError", "status": "Available"}]',
    '[2, "m12", "StatusNotification", {"connectorId": ' + "9" * 5000 + ', "errorCode": "NoError", '
    '"status": "Available"}]',
    '[2, "m13", "Heartbeat", {}]\x00',
    '[3, "never-sent", {}]',
    '[4, "never-sent", "GenericError", "", {}]',
    '[3, "never-sent"]',
    "[" * 100_000,
]


def _schema(protocol: str, action: str) -> dict[str, Any]:
    folder = "v16" if protocol == "ocpp1.6" else "v201"
    name = f"{action}.json" if protocol == "ocpp1.6" else f"{action}Request.json"
    schema: dict[str, Any] = json.loads((SCHEMAS / folder / "schemas" / name).read_text())
    # hypothesis-jsonschema reads draft 4 to 7; the $schema and $id only name the draft and the file.
    schema.pop("$schema", None)
    schema.pop("$id", None)
    return schema


def generated_payloads(protocol: str, action: str) -> list[dict[str, Any]]:
    """Return payloads the official schema of ``action`` allows, found by hypothesis (repeatably)."""
    found: list[dict[str, Any]] = []

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def collect(data: st.DataObject) -> None:
        found.append(data.draw(from_schema(_schema(protocol, action))))

    collect()
    return found


class RawCharger:
    """A charger that sends whatever frame it is given and reports what the hub did with it."""

    def __init__(self, app: Quart, identity: str, protocol: str) -> None:
        self.url = f"{app.config['TEST_OCPP_URL']}/{identity}"
        self.identity = identity
        self.protocol = protocol
        self.socket: ClientConnection | None = None
        self.closes = 0

    async def _open(self) -> ClientConnection:
        if self.socket is None:
            self.socket = await connect(
                self.url,
                subprotocols=[self.protocol],  # type: ignore[list-item]
                additional_headers=basic(self.identity, TEST_PASSWORD),
                max_size=None,
            )
        return self.socket

    async def send(self, frame: str, message_id: str | None, *, malformed: bool = False) -> str:
        """Send a frame; return "answered" when the hub answered ``message_id``, else "closed" or "silent".

        A malformed call may be answered with the id "-1", which OCPP-J uses when a message's own id
        cannot be read or trusted.
        """
        socket = await self._open()
        try:
            await socket.send(frame)
            if message_id is None:
                return "silent"
            async with asyncio.timeout(ANSWER_GUARD_S):
                while True:
                    answer = json.loads(await socket.recv())
                    if answer[0] == 2:
                        # The hub's own call (its capability probe): refuse it at once.
                        await socket.send(json.dumps([4, answer[1], "NotImplemented", "", {}]))
                    elif answer[1] == message_id or (malformed and answer[1] == "-1"):
                        return "answered"
        except ConnectionClosed as closed:
            self.socket = None
            self.closes += 1
            return f"closed ({closed.rcvd.code if closed.rcvd else 'no close frame'})"
        except TimeoutError:
            raise AssertionError(f"The hub neither answered nor closed after {frame[:300]!r}") from None

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()


def _message_id(frame: str) -> str | None:
    """Return the id a call frame carries (None for anything the hub need not answer)."""
    try:
        parsed = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    if isinstance(parsed, list) and len(parsed) >= 2 and parsed[0] == 2 and isinstance(parsed[1], str):
        return parsed[1]
    return None


@dataclass
class Stall:
    """The worst gap between two ticks of the probe, and the frame last sent before it ended."""

    seconds: float = 0.0
    during: str = ""

    def __str__(self) -> str:
        return f"{self.seconds * 1000:.1f} ms during {self.during[:200]!r}"


class LoopProbe:
    """Tick on the event loop every ~10 ms and note, between two ticks, the CPU its thread used.

    A stall caused by the hub's code is CPU spent in callbacks that do not yield. The loop thread's
    CPU time (``time.thread_time`` read here, so it is that thread's) is not inflated by other
    processes on a busy machine, as wall time is; the database and password hashing run in threads
    of their own and are not counted. The test's own client shares the loop and is counted with the
    hub (it sends one frame and waits). The wall-clock gaps are noted too, for the record.
    """

    def __init__(self) -> None:
        self.cpu = Stall()
        self.wall = Stall()
        self.doing = "nothing yet"

    async def _tick(self) -> None:
        cpu, wall = time.thread_time(), time.perf_counter()
        while True:
            await asyncio.sleep(PROBE_TICK_S)
            now_cpu, now_wall = time.thread_time(), time.perf_counter()
            if now_cpu - cpu > self.cpu.seconds:
                self.cpu = Stall(now_cpu - cpu, self.doing)
            if now_wall - wall > self.wall.seconds:
                self.wall = Stall(now_wall - wall, self.doing)
            cpu, wall = now_cpu, now_wall

    @asynccontextmanager
    async def running(self) -> AsyncIterator[LoopProbe]:
        """Probe the running loop while in use: the served hub's, as ``served`` runs it as a task of this loop."""
        ticking = asyncio.create_task(self._tick(), name="event loop probe")
        try:
            yield self
        finally:
            ticking.cancel()
            await asyncio.gather(ticking, return_exceptions=True)


@asynccontextmanager
async def no_unhandled_errors(caplog: pytest.LogCaptureFixture) -> AsyncIterator[None]:
    """Fail when anything logs an error while in use (an unhandled exception in a handler or the loop)."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert not errors, "\n".join(f"{r.name}: {r.getMessage()}" for r in errors)


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_whatever_a_charger_sends_the_hub_answers_or_closes_that_connection_alone(
    app: Quart, factory: Factory, session: AsyncSession, caplog: pytest.LogCaptureFixture, protocol: str
) -> None:
    team = await factory.team()
    hostile_cp = await factory.charge_point(team)
    decent_cp = await factory.charge_point(team)
    payloads = {action: generated_payloads(protocol, action) for action in CHARGER_ACTIONS[protocol]}
    assert all(payloads.values()), "an action's schema gave no payload"
    generated = [
        json.dumps([2, f"{action}-{n}", action, payload])
        for action, found in payloads.items()
        for n, payload in enumerate(found)
    ]
    hostile = RawCharger(app, hostile_cp.identity, protocol)
    unanswered: list[str] = []
    # Probed only once the payloads are generated: hypothesis runs on this thread too.
    async with no_unhandled_errors(caplog), LoopProbe().running() as probe:
        for frame in generated:
            probe.doing = frame
            # A message the schema allows is answered, by a result or a CallError, never by a close.
            outcome = await hostile.send(frame, _message_id(frame))
            # The schemas allow messages of any size; the hub takes none over its frame limit.
            expected = "answered" if len(frame.encode()) <= MAX_FRAME_BYTES else "closed (1009)"
            if outcome != expected:
                unanswered.append(f"{outcome}: {frame[:200]}")
        for frame in MALFORMED:
            probe.doing = frame
            # Anything else: an answer, or that one connection closed (hanging here fails the test).
            await hostile.send(frame, _message_id(frame), malformed=True)
        await hostile.close()

        # Another charger of the hub is unharmed: its report is stored as usual.
        probe.doing = "a well-behaved charger's report"
        decent = RawCharger(app, decent_cp.identity, "ocpp1.6")
        status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
        assert await decent.send(json.dumps([2, "ok-1", "StatusNotification", status]), "ok-1") == "answered"
        await decent.close()

        async def stored() -> bool:
            rows = await session.exec(select(ConnectorStatus).where(ConnectorStatus.charge_point_id == decent_cp.id))
            return any(row.status == "Available" for row in rows)

        await eventually(stored, 30.0, "a well-behaved charger's report was not stored")
    print(f"longest event loop gap: {probe.cpu} of CPU; {probe.wall} of wall time")
    assert probe.cpu.seconds <= STALL_LIMIT_S, f"the event loop stalled: {probe.cpu} of CPU without yielding"
    assert not unanswered
