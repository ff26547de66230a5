"""A light OCPP 1.6J load generator: thousands of chargers in one process, hand-written frames.

Each simulated charger is one plain ``websockets`` client connection and a few attributes; frames
are JSON arrays written by hand, not ``ocpp`` library ChargePoints, so the generator costs little
next to the server it measures. It is driven by ``bench/run.py`` over stdin/stdout, one JSON
object per line:

    {"cmd": "connect"}                       connect and boot every charger
    {"cmd": "wait_probes", "timeout": 60}    wait until each charger was asked its configuration
    {"cmd": "sustain", "seconds": 30}        Heartbeat and MeterValues every 10 s per charger
                                             ("share": 0.5: only the first half of them send)
    {"cmd": "profiles", "timeout": 30}      wait for a SetChargingProfile per charger, give their times
    {"cmd": "storm", "jitter": 5, "timeout": 120}
                                             a reconnect storm: every charger starts at a random moment
                                             within the jitter, no handshake limit, retrying after a failure
    {"cmd": "boot_to_profile", "timeout": 30}
                                             wait for a SetChargingProfile per booted charger; give each
                                             one's delay from its BootNotification answered
    {"cmd": "meter", "seconds": 20, "chargers": 5000, "interval": 1}
                                             MeterValues only, every second, from the first 5,000
    {"cmd": "stats"}                         CPU used by this process so far
    {"cmd": "close"}                         close every connection and exit

Times are ``time.monotonic()`` (CLOCK_MONOTONIC, the same clock in every process of the machine),
taken when this process has read the frame: they include the generator's own scheduling delay.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import random
import resource
import sys
import time
from array import array
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from powerbank.runtime.gc_policy import GcPolicy

CALL, CALL_RESULT, CALL_ERROR = 2, 3, 4
SUBPROTOCOL = Subprotocol("ocpp1.6")
VENDOR, MODEL = "Easee", "Home"
CONFIGURATION = {
    "SupportedFeatureProfiles": "Core,FirmwareManagement,RemoteTrigger,SmartCharging",
    "ChargeProfileMaxStackLevel": "10",
    "ChargingScheduleAllowedChargingRateUnit": "Current,Power",
    "MeterValueSampleInterval": "10",
    "ChargingScheduleMaxPeriods": "24",
    "MaxChargingProfilesInstalled": "10",
}
# Replies to the hub's calls; anything else is answered with a NotImplemented CallError.
STATIC_REPLIES: dict[str, dict[str, Any]] = {
    "SetChargingProfile": {"status": "Accepted"},
    "ClearChargingProfile": {"status": "Accepted"},
    "ChangeConfiguration": {"status": "Accepted"},
    "TriggerMessage": {"status": "Rejected"},
    "GetVariables": {"getVariableResult": []},
    "SetVariables": {"setVariableResult": []},
}
MAX_CONNECTING = 256
TICK_S = 0.02


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def basic_auth_header(identity: str, password: str) -> str:
    """Return the HTTP Basic Authorization value OCPP security profile 1 sends."""
    return "Basic " + base64.b64encode(f"{identity}:{password}".encode()).decode()


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Return the value at ``fraction`` (0..1) of already sorted values (nearest rank)."""
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, int(round(fraction * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


class Charger:
    """One simulated charger: its connection, message ids and outstanding calls."""

    __slots__ = ("identity", "ws", "next_id", "pending", "booted", "accepted", "probed", "profile_at", "booted_at")

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.ws: ClientConnection | None = None
        self.next_id = 0
        # message id -> (action, monotonic time sent)
        self.pending: dict[str, tuple[str, float]] = {}
        self.booted: asyncio.Future[str] | None = None
        self.accepted = False
        self.probed = False
        self.profile_at: float | None = None
        # When its BootNotification was answered (monotonic).
        self.booted_at: float | None = None

    def new_id(self) -> str:
        self.next_id += 1
        return str(self.next_id)


class LoadGenerator:
    """Hold the chargers, answer the hub, and record what was measured."""

    def __init__(self, url: str, identities: list[str], password: str, max_connecting: int = MAX_CONNECTING) -> None:
        self.url = url.rstrip("/")
        self.password = password
        self.max_connecting = max_connecting
        self.chargers = [Charger(identity) for identity in identities]
        self.latencies = array("d")
        self.replies_by_action: dict[str, int] = {}
        self.call_errors = 0
        self.failures: dict[str, int] = {}
        self.readers: set[asyncio.Task[None]] = set()

    def _fail(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    async def _send_call(self, charger: Charger, action: str, payload: dict[str, Any]) -> None:
        assert charger.ws is not None
        message_id = charger.new_id()
        charger.pending[message_id] = (action, time.monotonic())
        await charger.ws.send(json.dumps([CALL, message_id, action, payload], separators=(",", ":")))

    def _answer(self, charger: Charger, message: list[Any]) -> str:
        """Return the reply frame to a call from the hub."""
        message_id, action, payload = message[1], message[2], message[3] if len(message) > 3 else {}
        if action == "SetChargingProfile" and charger.profile_at is None:
            charger.profile_at = time.monotonic()
        if action == "GetConfiguration":
            charger.probed = True
            wanted = payload.get("key") or list(CONFIGURATION)
            known = [
                {"key": key, "readonly": True, "value": CONFIGURATION[key]} for key in wanted if key in CONFIGURATION
            ]
            unknown = [key for key in wanted if key not in CONFIGURATION]
            reply: list[Any] = [CALL_RESULT, message_id, {"configurationKey": known, "unknownKey": unknown}]
        elif action in STATIC_REPLIES:
            reply = [CALL_RESULT, message_id, STATIC_REPLIES[action]]
        else:
            reply = [CALL_ERROR, message_id, "NotImplemented", f"{action} is not simulated", {}]
        return json.dumps(reply, separators=(",", ":"))

    async def _read(self, charger: Charger) -> None:
        """Read one charger's frames until its connection closes."""
        assert charger.ws is not None
        try:
            async for raw in charger.ws:
                message = json.loads(raw)
                kind = message[0]
                if kind == CALL:
                    await charger.ws.send(self._answer(charger, message))
                    continue
                sent = charger.pending.pop(message[1], None)
                if sent is None:
                    continue
                action, sent_at = sent
                if kind == CALL_ERROR:
                    self.call_errors += 1
                if action == "BootNotification":
                    if charger.booted is not None and not charger.booted.done():
                        status = message[2].get("status", "?") if kind == CALL_RESULT else "CallError"
                        charger.booted.set_result(status)
                    continue
                self.latencies.append(time.monotonic() - sent_at)
                self.replies_by_action[action] = self.replies_by_action.get(action, 0) + 1
        except ConnectionClosed:
            pass
        finally:
            if charger.booted is not None and not charger.booted.done():
                charger.booted.set_result("closed")

    async def _connect_one(self, charger: Charger, gate: asyncio.Semaphore | None, timeout: float) -> float | None:
        """Connect and boot one charger (``gate``: a handshake slot to wait for); return when its boot was
        accepted, or None."""
        async with gate or contextlib.nullcontext():
            try:
                charger.ws = await connect(
                    f"{self.url}/{charger.identity}",
                    subprotocols=[SUBPROTOCOL],
                    additional_headers={"Authorization": basic_auth_header(charger.identity, self.password)},
                    compression=None,
                    proxy=None,
                    ping_interval=None,
                    open_timeout=timeout,
                    close_timeout=2,
                    max_queue=4,
                )
            except InvalidStatus as exc:
                self._fail(f"HTTP {exc.response.status_code}")
                return None
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                self._fail(type(exc).__name__)
                return None
        if charger.ws.subprotocol != SUBPROTOCOL:
            self._fail("no ocpp1.6 subprotocol")
            return None
        charger.booted = asyncio.get_running_loop().create_future()
        reader = asyncio.create_task(self._read(charger))
        self.readers.add(reader)
        reader.add_done_callback(self.readers.discard)
        try:
            await self._send_call(
                charger,
                "BootNotification",
                {
                    "chargePointVendor": VENDOR,
                    "chargePointModel": MODEL,
                    "chargePointSerialNumber": charger.identity,
                    "firmwareVersion": "bench-1",
                },
            )
            status = await asyncio.wait_for(charger.booted, timeout)
        except (ConnectionClosed, TimeoutError):
            status = "timeout or closed"
        if status != "Accepted":
            self._fail(f"boot {status}")
            return None
        charger.accepted = True
        charger.booted_at = time.monotonic()
        return charger.booted_at

    async def connect_all(self, timeout: float) -> dict[str, Any]:
        """Connect and boot every charger (a bounded number of handshakes at a time)."""
        gate = asyncio.Semaphore(self.max_connecting)
        started = time.monotonic()
        booted = await asyncio.gather(*(self._connect_one(c, gate, timeout) for c in self.chargers))
        done = [t for t in booted if t is not None]
        return {
            "started": started,
            "last_booted": max(done, default=None),
            "booted": len(done),
            "failed": len(self.chargers) - len(done),
            "failures": dict(self.failures),
        }

    async def storm(self, jitter: float, timeout: float) -> dict[str, Any]:
        """Connect every charger at once, as after an outage: each starts at a uniformly random moment
        within ``jitter`` seconds, with no limit on handshakes at a time. A charger whose connection or
        boot fails (refused, timed out, closed) retries after 1 to 3 s, as a real one does, until
        ``timeout`` seconds after the start; every failure and retry is counted."""
        # Seeded by the slice, so each generator process draws its own moments, the same in every run.
        rng = random.Random(self.chargers[0].identity if self.chargers else "")
        self.failures = {}
        started = time.monotonic()
        deadline = started + timeout
        retries = 0
        first_attempts: list[float] = []

        async def one(charger: Charger, delay: float) -> float | None:
            nonlocal retries
            await asyncio.sleep(delay)
            first_attempts.append(time.monotonic())
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                booted = await self._connect_one(charger, None, left)
                if booted is not None:
                    return booted
                if charger.ws is not None:
                    await charger.ws.close()
                    charger.ws = None
                retries += 1
                await asyncio.sleep(rng.uniform(1.0, 3.0))

        booted = await asyncio.gather(*(one(c, rng.uniform(0, jitter)) for c in self.chargers))
        done = [t for t in booted if t is not None]
        return {
            "started": started,
            "first_attempt": min(first_attempts, default=None),
            "last_booted": max(done, default=None),
            "booted": len(done),
            "failed": len(self.chargers) - len(done),
            "failures": dict(self.failures),
            "retries": retries,
        }

    async def boot_to_profile(self, timeout: float) -> dict[str, Any]:
        """Wait (bounded) for a SetChargingProfile on every booted charger; return each one's delay from its
        BootNotification answered to its first SetChargingProfile, and how many got none."""
        booted = [c for c in self.chargers if c.accepted and c.booted_at is not None]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(c.profile_at is None for c in booted):
            await asyncio.sleep(0.05)
        delays = [c.profile_at - c.booted_at for c in booted if c.profile_at is not None and c.booted_at is not None]
        return {"delays": delays, "never": sum(c.profile_at is None for c in booted), "booted": len(booted)}

    async def wait_probes(self, timeout: float) -> dict[str, Any]:
        """Wait (bounded) until every connected charger was asked its configuration."""
        deadline = time.monotonic() + timeout
        connected = [c for c in self.chargers if c.accepted]
        while time.monotonic() < deadline and not all(c.probed for c in connected):
            await asyncio.sleep(0.1)
        return {"probed": sum(c.probed for c in connected), "connected": len(connected)}

    async def sustain(self, seconds: float, interval: float, drain: float, share: float = 1.0) -> dict[str, Any]:
        """Send Heartbeat and MeterValues every ``interval`` per charger for ``seconds``.

        Charger i sends its Heartbeat at i/N of the interval and its MeterValues half an interval
        later, so the hub sees an even rate and no charger has two calls outstanding. With ``share``
        below 1 only that fraction of the connected chargers send; the others stay connected, idle.
        """
        live = [c for c in self.chargers if c.accepted]
        live = live[: max(1, round(len(live) * share))] if live else live
        self.latencies = array("d")
        self.replies_by_action = {}
        slots = sorted(
            [((i / len(live)) * interval, "Heartbeat", c) for i, c in enumerate(live)]
            + [(((i / len(live)) + 0.5) % 1.0 * interval, "MeterValues", c) for i, c in enumerate(live)],
            key=lambda slot: slot[0],
        )
        sent = 0
        started = time.monotonic()
        cpu_before = time.process_time()
        cursor, cycle = 0, 0
        while slots:
            now = time.monotonic() - started
            if now >= seconds:
                break
            due_before = now - cycle * interval
            while cursor < len(slots) and slots[cursor][0] <= due_before:
                _at, action, charger = slots[cursor]
                cursor += 1
                payload = {} if action == "Heartbeat" else self._meter_values()
                try:
                    await self._send_call(charger, action, payload)
                    sent += 1
                except ConnectionClosed:
                    self._fail("closed during load")
            if cursor == len(slots):
                cursor, cycle = 0, cycle + 1
            await asyncio.sleep(TICK_S)
        sending_s = time.monotonic() - started
        unanswered = await _drained(live, drain)
        return {
            "sent": sent,
            "seconds": sending_s,
            "unanswered": unanswered,
            "latencies": list(self.latencies),
            "replies": dict(self.replies_by_action),
            "call_errors": self.call_errors,
            "cpu_s": time.process_time() - cpu_before,
        }

    def _meter_values(self) -> dict[str, Any]:
        stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return {
            "connectorId": 1,
            "meterValue": [
                {
                    "timestamp": stamp,
                    "sampledValue": [
                        {"value": "7360", "measurand": "Power.Active.Import", "unit": "W"},
                        {"value": "123456", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                    ],
                }
            ],
        }

    async def meter(
        self, seconds: float, interval: float, chargers: int, drain: float, power_w: float = 7360.0
    ) -> dict[str, Any]:
        """Send MeterValues only, every ``interval`` from each of the first ``chargers`` connected chargers.

        Charger i reports at i/N of the interval (an even rate); timestamps to the millisecond, so two
        reports of one charger a second apart never share one. Also say how late the generator itself
        sent (a generator that cannot keep up shows here, not as the hub's latency).
        """
        live = [c for c in self.chargers if c.accepted][: max(0, chargers)]
        self.latencies = array("d")
        self.replies_by_action = {}
        errors_before = self.call_errors
        slots = [((i / len(live)) * interval, c) for i, c in enumerate(live)]
        sent, latest_s = 0, 0.0
        started = time.monotonic()
        cpu_before = time.process_time()
        cursor, cycle = 0, 0
        while slots:
            now = time.monotonic() - started
            if now >= seconds:
                break
            due_before = now - cycle * interval
            while cursor < len(slots) and slots[cursor][0] <= due_before:
                due, charger = slots[cursor]
                cursor += 1
                latest_s = max(latest_s, time.monotonic() - started - cycle * interval - due)
                try:
                    await self._send_call(charger, "MeterValues", self._meter_values_ms(power_w))
                    sent += 1
                except ConnectionClosed:
                    self._fail("closed during meter load")
            if cursor == len(slots):
                cursor, cycle = 0, cycle + 1
            await asyncio.sleep(TICK_S)
        sending_s = time.monotonic() - started
        unanswered = await _drained(live, drain)
        return {
            "chargers": len(live),
            "sent": sent,
            "seconds": sending_s,
            "unanswered": unanswered,
            "latencies": list(self.latencies),
            "replies": dict(self.replies_by_action),
            "call_errors": self.call_errors - errors_before,
            "latest_send_s": latest_s,
            "cpu_s": time.process_time() - cpu_before,
        }

    def _meter_values_ms(self, power_w: float) -> dict[str, Any]:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "connectorId": 1,
            "meterValue": [
                {
                    "timestamp": stamp,
                    "sampledValue": [
                        {"value": f"{power_w:.0f}", "measurand": "Power.Active.Import", "unit": "W"},
                        {"value": "123456", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                    ],
                }
            ],
        }

    async def profiles(self, expect: int | None, timeout: float) -> dict[str, Any]:
        """Wait (bounded) for ``expect`` SetChargingProfile frames (default: one per booted charger).

        Return when each arrived.
        """
        if expect is None:
            expect = sum(c.accepted for c in self.chargers)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and sum(c.profile_at is not None for c in self.chargers) < expect:
            await asyncio.sleep(0.02)
        times = [c.profile_at for c in self.chargers if c.profile_at is not None]
        for charger in self.chargers:
            charger.profile_at = None
        return {"received": times}

    async def close(self) -> None:
        """Close every connection (bounded in time)."""
        open_ = [c.ws for c in self.chargers if c.ws is not None]
        if open_:
            await asyncio.wait([asyncio.create_task(ws.close()) for ws in open_], timeout=10)
        for reader in list(self.readers):
            reader.cancel()


def cpu_seconds() -> float:
    """Return the user plus system CPU time of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def serve_commands(generator: LoadGenerator) -> None:
    """Run commands read from stdin, one JSON object per line, answering each on stdout."""
    loop = asyncio.get_running_loop()
    # A full collection over 10,000 connections' objects pauses this process ~0.3 s, which would
    # count as server latency: keep long-lived objects out of the collector's way, as the hub does.
    collector = asyncio.create_task(GcPolicy(full_every_s=math.inf).run())
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    handlers: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
        "connect": lambda c: generator.connect_all(float(c.get("timeout", 120))),
        "storm": lambda c: generator.storm(float(c.get("jitter", 5)), float(c.get("timeout", 120))),
        "boot_to_profile": lambda c: generator.boot_to_profile(float(c.get("timeout", 30))),
        "wait_probes": lambda c: generator.wait_probes(float(c.get("timeout", 60))),
        "sustain": lambda c: generator.sustain(
            float(c["seconds"]), float(c.get("interval", 10)), float(c.get("drain", 5)), float(c.get("share", 1))
        ),
        "profiles": lambda c: generator.profiles(c.get("expect"), float(c.get("timeout", 30))),
        "meter": lambda c: generator.meter(
            float(c["seconds"]), float(c.get("interval", 1)), int(c["chargers"]), float(c.get("drain", 5))
        ),
    }
    while True:
        line = await reader.readline()
        if not line:
            break
        command = json.loads(line)
        name = command["cmd"]
        if name == "close":
            await generator.close()
            _reply({"cmd": "close", "cpu_s": cpu_seconds()})
            break
        if name == "stats":
            _reply({"cmd": "stats", "cpu_s": cpu_seconds(), "pid": os.getpid()})
            continue
        result = await handlers[name](command)
        _reply({"cmd": name, **result})
    collector.cancel()


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _drained(live: list[Charger], drain: float) -> int:
    """Wait up to ``drain`` seconds for the last replies; return how many calls stayed unanswered (forgotten)."""
    deadline = time.monotonic() + drain
    while time.monotonic() < deadline and any(c.pending for c in live):
        await asyncio.sleep(0.05)
    unanswered = sum(len(c.pending) for c in live)
    for charger in live:
        charger.pending.clear()
    return unanswered


def main(argv: list[str] | None = None) -> int:
    """Run the load generator for one slice of charger identities."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="e.g. ws://127.0.0.1:8000/ocpp")
    parser.add_argument("--password", required=True)
    parser.add_argument("--prefix", default="BENCH-")
    parser.add_argument("--first", type=int, default=1)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--max-connecting", type=int, default=MAX_CONNECTING, help="handshakes at a time")
    args = parser.parse_args(argv)
    raise_open_files_limit()
    identities = [f"{args.prefix}{n:06d}" for n in range(args.first, args.first + args.count)]
    asyncio.run(serve_commands(LoadGenerator(args.url, identities, args.password, args.max_connecting)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
