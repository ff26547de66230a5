"""The baseline: a minimal OCPP 1.6 server on the bare ``websockets`` library, and nothing else.

It does what PowerBank must do at the least: HTTP Basic auth on the upgrade (argon2, the same
hash), the ``ocpp`` library's ChargePoint with BootNotification, Heartbeat, MeterValues and
StatusNotification handlers, and a naive fan-out: the ``ocpp`` library's ``call()`` for each
connected charger under one ``asyncio.gather``. No database, no web app.

Two plain HTTP routes drive it (websockets answers GET only):

    GET /bench/fanout          start a fan-out of a 0 W ChargePointMaxProfile; answers {"id": n}
    GET /bench/fanout/<n>      its record: when triggered and answered (time.monotonic()), statuses
    GET /bench/floor[?exclude=<identity>]
                               the floor of a fan-out: ONE SetChargingProfile frame, serialised once and
                               handed to every connected socket at once (``broadcast``); answers {"id": n}
    GET /bench/floor/<n>       its record: triggered, last_sent, answered (time.monotonic()), statuses

Run: ``python -m bench.baseline_server --port 9000 --password-hash '$argon2id$...'``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.datatypes import ChargingProfile, ChargingSchedule, ChargingSchedulePeriod
from ocpp.v16.enums import (
    Action,
    ChargingProfileKindType,
    ChargingProfilePurposeType,
    ChargingRateUnitType,
    RegistrationStatus,
)
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bench.loadgen import raise_open_files_limit

STACK_LEVEL = 9
PROFILE_ID = 9001
PROFILE_DURATION_S = 300


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


FLOOR_ID_PREFIX = "floor-"


class BaselineChargePoint(ChargePoint):
    """The handlers every OCPP server needs, answering at once."""

    # Called with each answer to a floor frame (its message id starts with FLOOR_ID_PREFIX).
    floor_answer: Any = None

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Take the answers to a floor frame here (no ``call()`` awaits them); route the rest as usual."""
        text = raw_msg if isinstance(raw_msg, str) else raw_msg.decode()
        if text.startswith((f'[3,"{FLOOR_ID_PREFIX}', f'[4,"{FLOOR_ID_PREFIX}')) and self.floor_answer is not None:
            message = json.loads(text)
            self.floor_answer(message[1], "Accepted" if message[0] == 3 else "CallError")
            return
        await super().route_message(raw_msg)

    @on(Action.boot_notification)
    def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **_: Any) -> Any:
        return call_result.BootNotification(current_time=now_iso(), interval=10, status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    def on_heartbeat(self) -> Any:
        return call_result.Heartbeat(current_time=now_iso())

    @on(Action.meter_values)
    def on_meter_values(self, connector_id: int, meter_value: list[dict[str, Any]], **_: Any) -> Any:
        return call_result.MeterValues()

    @on(Action.status_notification)
    def on_status_notification(self, connector_id: int, error_code: str, status: str, **_: Any) -> Any:
        return call_result.StatusNotification()


@dataclass
class FanOut:
    """One fan-out: when it began and when each charger answered."""

    triggered: float
    targets: int
    answered: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    last_sent: float | None = None
    done: bool = False


class BaselineServer:
    """Hold the connected chargers and run fan-outs over them."""

    def __init__(self, password_hash: str) -> None:
        self.password_hash = password_hash
        self.hasher = PasswordHasher()
        self.chargers: dict[str, BaselineChargePoint] = {}
        self.fanouts: list[FanOut] = []
        self.floors: list[FanOut] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def _verify(self, password: str) -> bool:
        try:
            return self.hasher.verify(self.password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer the bench routes; check HTTP Basic auth before an OCPP upgrade."""
        path = request.path
        if path == "/bench/fanout":
            return self._json(connection, {"id": self._start_fanout()})
        if path.startswith("/bench/floor?exclude=") or path == "/bench/floor":
            # ?exclude=<identity>: a connection that is no charger (the bench's lag probe) gets no frame.
            return self._json(connection, {"id": self._floor(path.partition("?exclude=")[2])})
        if path.startswith("/bench/floor/"):
            index = int(path.rsplit("/", 1)[1])
            if not 0 <= index < len(self.floors):
                return connection.respond(HTTPStatus.NOT_FOUND, "no such floor\n")
            return self._json(connection, vars(self.floors[index]))
        if path.startswith("/bench/fanout/"):
            index = int(path.rsplit("/", 1)[1])
            if not 0 <= index < len(self.fanouts):
                return connection.respond(HTTPStatus.NOT_FOUND, "no such fan-out\n")
            return self._json(connection, vars(self.fanouts[index]))
        if not path.startswith("/ocpp/"):
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        identity = path.removeprefix("/ocpp/")
        credentials = _basic_credentials(request.headers)
        # argon2 releases the GIL: verifying in a thread keeps the event loop free meanwhile.
        if (
            credentials is None
            or credentials[0] != identity
            or not await asyncio.to_thread(self._verify, credentials[1])
        ):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
        return None

    @staticmethod
    def _json(connection: ServerConnection, body: dict[str, Any]) -> Response:
        response = connection.respond(HTTPStatus.OK, json.dumps(body))
        response.headers["Content-Type"] = "application/json"
        return response

    async def handle(self, connection: ServerConnection) -> None:
        """Serve one charger until it disconnects."""
        identity = connection.request.path.removeprefix("/ocpp/") if connection.request else ""
        charge_point = BaselineChargePoint(identity, connection)
        charge_point.floor_answer = self._floor_answer
        previous = self.chargers.get(identity)
        self.chargers[identity] = charge_point
        if previous is not None:
            await previous._connection.close()
        try:
            await charge_point.start()
        except ConnectionClosed:
            pass
        finally:
            if self.chargers.get(identity) is charge_point:
                del self.chargers[identity]

    def _start_fanout(self) -> int:
        fanout = FanOut(triggered=time.monotonic(), targets=len(self.chargers))
        self.fanouts.append(fanout)
        task = asyncio.create_task(self._fanout(fanout, list(self.chargers.values())))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return len(self.fanouts) - 1

    def _floor(self, exclude: str = "") -> int:
        """Write one SetChargingProfile frame, serialised once, to every connected socket without awaiting
        any of them: the least a fan-out can cost on this machine."""
        triggered = time.monotonic()
        connections = [charger._connection for identity, charger in self.chargers.items() if identity != exclude]
        floor = FanOut(triggered=triggered, targets=len(connections))
        self.floors.append(floor)
        index = len(self.floors) - 1
        frame = json.dumps(
            [
                2,
                f"{FLOOR_ID_PREFIX}{index}",
                "SetChargingProfile",
                {
                    "connectorId": 0,
                    "csChargingProfiles": {
                        "chargingProfileId": PROFILE_ID,
                        "stackLevel": STACK_LEVEL,
                        "chargingProfilePurpose": "ChargePointMaxProfile",
                        "chargingProfileKind": "Absolute",
                        "chargingSchedule": {
                            "chargingRateUnit": "W",
                            "duration": PROFILE_DURATION_S,
                            "startSchedule": now_iso(),
                            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 0.0}],
                        },
                    },
                },
            ],
            separators=(",", ":"),
        )
        broadcast(connections, frame)
        floor.last_sent = time.monotonic()
        if not floor.targets:
            floor.done = True
        return index

    def _floor_answer(self, message_id: str, status: str) -> None:
        index = int(message_id.removeprefix(FLOOR_ID_PREFIX))
        if 0 <= index < len(self.floors):
            floor = self.floors[index]
            floor.answered.append(time.monotonic())
            floor.statuses[status] = floor.statuses.get(status, 0) + 1
            floor.done = len(floor.answered) >= floor.targets

    async def _fanout(self, fanout: FanOut, chargers: list[BaselineChargePoint]) -> None:
        """Send the limit with ``call()`` to every charger under one gather (the naive way)."""
        profile = ChargingProfile(
            charging_profile_id=PROFILE_ID,
            stack_level=STACK_LEVEL,
            charging_profile_purpose=ChargingProfilePurposeType.charge_point_max_profile,
            charging_profile_kind=ChargingProfileKindType.absolute,
            valid_to=None,
            charging_schedule=ChargingSchedule(
                charging_rate_unit=ChargingRateUnitType.watts,
                duration=PROFILE_DURATION_S,
                start_schedule=now_iso(),
                charging_schedule_period=[ChargingSchedulePeriod(start_period=0, limit=0.0)],
            ),
        )

        async def one(charger: BaselineChargePoint) -> None:
            try:
                result = await charger.call(call.SetChargingProfile(connector_id=0, cs_charging_profiles=profile))
                status = str(result.status) if result is not None else "CallError"
            except (TimeoutError, ConnectionClosed) as exc:
                status = type(exc).__name__
            fanout.answered.append(time.monotonic())
            fanout.statuses[status] = fanout.statuses.get(status, 0) + 1

        await asyncio.gather(*(one(charger) for charger in chargers))
        fanout.done = True


def _basic_credentials(headers: Headers) -> tuple[str, str] | None:
    value = headers.get("Authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        identity, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return identity, password


async def run(host: str, port: int, password_hash: str) -> None:
    """Serve until SIGINT or SIGTERM."""
    server = BaselineServer(password_hash)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(
        server.handle,
        host,
        port,
        subprotocols=["ocpp1.6"],
        process_request=server.process_request,
        compression=None,
        ping_interval=30,
        ping_timeout=60,
        backlog=4096,
        max_size=64 * 1024,
        # Handshakes wait for argon2 in a thread pool; under a connection storm that takes longer than 10 s.
        open_timeout=120,
    ):
        print(f"baseline listening on ws://{host}:{port}/ocpp", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Run the baseline server."""
    parser = argparse.ArgumentParser(description="Minimal OCPP 1.6 baseline server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--password-hash", required=True, help="argon2 hash every charger's password must match")
    args = parser.parse_args(argv)
    raise_open_files_limit()
    asyncio.run(run(args.host, args.port, args.password_hash))
    return 0


if __name__ == "__main__":
    sys.exit(main())
