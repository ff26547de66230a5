"""Simulate OCPP 1.6 and 2.0.1 chargers, thousands in one process, to exercise the hub.

Each charger boots, reports status and meter values, answers the hub's capability probe and
obeys (or, without smart charging, refuses) charging profiles, reconnecting whenever the
connection drops. By default a charger is ideal: its power follows a new limit at once. Its
`Behaviour` can make it behave as real fleets do: a ramp delay, a limit accepted but ignored,
a connection dropped on a pause, a car that does not resume, meter noise (`realistic_behaviour`
gives each identity a fixed mix of these). Run it on its own with

    python -m powerbank.tools.simulator --url ws://127.0.0.1:8000/ocpp --password secret --chargers 100
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import hashlib
import logging
import random
import ssl
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from ocpp.exceptions import OCPPError
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16 import datatypes as types16
from ocpp.v16.enums import Action as Action16
from ocpp.v16.enums import ChargingProfileStatus, ClearChargingProfileStatus, ConfigurationStatus, TriggerMessageStatus
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from ocpp.v201.enums import (
    ChargingProfileStatusEnumType,
    ClearChargingProfileStatusEnumType,
    GetVariableStatusEnumType,
    SetVariableStatusEnumType,
    TriggerMessageStatusEnumType,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.frames import CloseCode
from websockets.typing import Subprotocol

logger = logging.getLogger("powerbank.simulator")

PROTOCOLS = ("ocpp1.6", "ocpp2.0.1")
VOLTAGE_V = 230.0
MAX_STACK_LEVEL = 10
# Used when the hub accepts a boot but answers heartbeat interval 0.
DEFAULT_HEARTBEAT_S = 300
# Used when the hub answers Pending or Rejected without saying when to retry.
DEFAULT_BOOT_RETRY_S = 30
ID_TAG = "SIMTAG01"
MEASURANDS = "Power.Active.Import,Energy.Active.Import.Register,Current.Import"
FEATURE_PROFILES = (
    "Core",
    "FirmwareManagement",
    "LocalAuthListManagement",
    "Reservation",
    "SmartCharging",
    "RemoteTrigger",
)
# The 1.6 configuration key and the 2.0.1 variable the hub may set: the meter reporting interval.
METER_INTERVAL_KEY = "MeterValueSampleInterval"
METER_INTERVAL_VARIABLE = ("SampledDataCtrlr", "TxUpdatedInterval")
STATION_MAX_PURPOSES = frozenset({"ChargePointMaxProfile", "ChargingStationMaxProfile"})
TX_PURPOSES = frozenset({"TxDefaultProfile", "TxProfile"})
RECURRENCE = {"Daily": timedelta(days=1), "Weekly": timedelta(weeks=1)}
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)

# (measurand, phase, value, unit) of one meter reading.
Reading = tuple[str, str | None, float, str]
BEHAVIOURS = ("ideal", "realistic")
# The seed of the realistic mix. With it the demo fleet's signed-up DK2 chargers include one that
# ignores limits, one that goes offline on a pause and one whose car does not resume (a test checks).
REALISTIC_SEED = "powerbank-fleet-792"


@dataclass(frozen=True)
class Behaviour:
    """How a charger departs from an ideal one, which follows every limit at once and exactly.

    - `ramp_s`: the power moves to a new limit (a lower one or a release) only this many seconds
      after the limit applies;
    - `ignores_limits`: it accepts profiles but keeps charging at full power;
    - `offline_after_pause_s`: when a pause (a 0 A or 0 W limit) takes effect it drops its
      connection, and comes back after this many seconds;
    - `resumes_after_pause` off: the car stops for good once paused, and draws nothing after the release;
    - `meter_noise`: the reported power (and currents) are off by up to this fraction, never negative;
    - `min_meter_interval_s`: the finest meter reporting interval the hub may set.
    """

    ramp_s: float = 0.0
    ignores_limits: bool = False
    offline_after_pause_s: float | None = None
    resumes_after_pause: bool = True
    meter_noise: float = 0.0
    min_meter_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.ramp_s < 0:
            raise ValueError(f"ramp_s must not be negative, not {self.ramp_s}")
        if self.offline_after_pause_s is not None and self.offline_after_pause_s < 0:
            raise ValueError(f"offline_after_pause_s must not be negative, not {self.offline_after_pause_s}")
        if not 0 <= self.meter_noise < 1:
            raise ValueError(f"meter_noise must be at least 0 and below 1, not {self.meter_noise}")
        if self.min_meter_interval_s <= 0:
            raise ValueError(f"min_meter_interval_s must be positive, not {self.min_meter_interval_s}")


IDEAL = Behaviour()


def realistic_behaviour(identity: str) -> Behaviour:
    """Return the behaviour the realistic mix gives `identity`, the same on every run.

    Of a hundred chargers about 66 are good (power follows in 2-10 s), 14 slow (20-30 s), 7 ignore
    limits, 7 go offline for 15-60 s when paused and 6 have a car that does not resume after a
    pause. All report with 0.5-3 % noise and allow meter intervals down to 1, 5 or 10 s.
    """
    digest = hashlib.sha256(f"{REALISTIC_SEED}:{identity}".encode()).digest()

    def fraction(index: int) -> float:
        return digest[index] / 255

    kind = digest[0] % 100
    good = Behaviour(
        ramp_s=round(2 + 8 * fraction(1), 1),
        meter_noise=round(0.005 + 0.025 * fraction(2), 3),
        min_meter_interval_s=(1.0, 5.0, 10.0)[digest[3] % 3],
    )
    if kind < 66:
        return good
    if kind < 80:
        return replace(good, ramp_s=round(20 + 10 * fraction(1), 1))
    if kind < 87:
        return replace(good, ignores_limits=True)
    if kind < 94:
        return replace(good, offline_after_pause_s=float(round(15 + 45 * fraction(4))))
    return replace(good, resumes_after_pause=False)


def behaviour_of(kind: str, identity: str) -> Behaviour:
    """Return the `kind` of behaviour ("ideal" or "realistic") for the charger `identity`."""
    if kind not in BEHAVIOURS:
        raise ValueError(f"behaviour must be one of {', '.join(BEHAVIOURS)}, not {kind!r}")
    return IDEAL if kind == "ideal" else realistic_behaviour(identity)


@dataclass
class ChargerSpec:
    """Describe one simulated charger."""

    identity: str
    vendor: str = "Easee"
    model: str = "Home"
    firmware: str = "sim-1.0"
    serial: str = ""
    protocol: str = "ocpp1.6"
    phases: int = 3
    max_power_w: float = 11_000
    charging: bool = True
    smart_charging: bool = True
    behaviour: Behaviour = IDEAL

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}")
        if self.phases not in (1, 2, 3):
            raise ValueError(f"phases must be 1, 2 or 3, not {self.phases}")


@dataclass(frozen=True)
class SchedulePeriod:
    """One period of a charging schedule, `start_s` seconds after the schedule starts."""

    start_s: float
    limit: float
    phases: int | None = None


@dataclass(frozen=True)
class InstalledProfile:
    """A charging profile as the charger keeps it, whichever protocol delivered it."""

    id: int
    stack_level: int
    purpose: str
    connector: int  # OCPP 1.6 connector id, OCPP 2.0.1 EVSE id
    kind: str
    unit: str
    periods: tuple[SchedulePeriod, ...]
    start: datetime
    duration_s: float | None = None
    recurrency: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None


def _earliest(*moments: datetime | None) -> datetime | None:
    """Return the earliest of the given moments, None when none is given."""
    return min((moment for moment in moments if moment is not None), default=None)


def profile_limit_w(profile: InstalledProfile, at: datetime, phases: int) -> tuple[float | None, datetime | None]:
    """Return the profile's limit in W at `at` (None if none applies) and when it may change.

    A (None, None) answer means the profile can never apply again: it has expired.
    """
    if profile.valid_to is not None and at >= profile.valid_to:
        return None, None
    if profile.valid_from is not None and at < profile.valid_from:
        return None, profile.valid_from
    start = profile.start
    recurrence = RECURRENCE.get(profile.recurrency or "") if profile.kind == "Recurring" else None
    if recurrence is not None and at >= start:
        start += (at - start) // recurrence * recurrence
    next_start = start + recurrence if recurrence is not None else None
    if next_start is not None and profile.valid_to is not None and next_start >= profile.valid_to:
        next_start = None
    if at < start:
        return None, _earliest(start, profile.valid_to)
    end = start + timedelta(seconds=profile.duration_s) if profile.duration_s is not None else None
    if end is not None and at >= end:
        return None, next_start
    current: SchedulePeriod | None = None
    change = _earliest(end, next_start, profile.valid_to)
    for period in profile.periods:
        period_start = start + timedelta(seconds=period.start_s)
        if period_start > at:
            change = _earliest(change, period_start)
            break
        current = period
    if current is None:
        return None, change
    if profile.unit == "W":
        return current.limit, change
    used_phases = min(current.phases or phases, phases)
    return current.limit * used_phases * VOLTAGE_V, change


def effective_limit_w(
    profiles: Iterable[InstalledProfile], at: datetime, phases: int
) -> tuple[float | None, datetime | None]:
    """Return the limit in W that the profiles impose at `at` and when it may next change.

    Per purpose the applicable profile with the highest stack level wins; a TxProfile
    overrules the TxDefaultProfile, and the station maximum caps whichever applies.
    """
    winners: dict[str, tuple[int, float]] = {}
    change: datetime | None = None
    for profile in profiles:
        limit, profile_change = profile_limit_w(profile, at, phases)
        change = _earliest(change, profile_change)
        if limit is None:
            continue
        group = "max" if profile.purpose in STATION_MAX_PURPOSES else profile.purpose
        if group not in winners or profile.stack_level > winners[group][0]:
            winners[group] = (profile.stack_level, limit)
    transaction = winners.get("TxProfile") or winners.get("TxDefaultProfile")
    limits = [winner[1] for winner in (winners.get("max"), transaction) if winner is not None]
    return (min(limits) if limits else None), change


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _shifted(moment: datetime | None, delay: timedelta) -> datetime | None:
    """Return `moment` plus `delay`; None stays None, and so does a moment past the calendar's end."""
    if moment is None:
        return None
    try:
        return moment + delay
    except OverflowError:
        return None


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(text: str | None) -> datetime | None:
    """Parse an OCPP date-time; one without an offset is taken as UTC."""
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _overlap(first: InstalledProfile, second: InstalledProfile) -> bool:
    """Tell whether two profiles' validity periods overlap."""
    return (first.valid_from or EARLIEST) < (second.valid_to or LATEST) and (second.valid_from or EARLIEST) < (
        first.valid_to or LATEST
    )


def _clear_criteria(
    profile_id: int | None, connector: int | None, purpose: str | None, stack_level: int | None
) -> Callable[[InstalledProfile], bool]:
    """Return which installed profiles a ClearChargingProfile request names (an id, or every criterion given)."""

    def matches(profile: InstalledProfile) -> bool:
        if profile_id is not None:
            return profile.id == profile_id
        return all(
            wanted is None or wanted == actual
            for wanted, actual in (
                (connector, profile.connector),
                (purpose, profile.purpose),
                (stack_level, profile.stack_level),
            )
        )

    return matches


def build_profile(
    raw: Mapping[str, Any],
    schedule: Mapping[str, Any],
    *,
    profile_id: int,
    connector: int,
    installed_at: datetime,
    transaction_started_at: datetime | None,
) -> InstalledProfile:
    """Turn a received profile (snake_case keys) into an installed one; ValueError if malformed.

    A schedule without startSchedule starts when the transaction started (transaction
    profiles during a transaction) or else when the profile arrived.
    """
    purpose = str(raw["charging_profile_purpose"])
    anchor = installed_at
    if purpose in TX_PURPOSES and transaction_started_at is not None:
        anchor = transaction_started_at
    periods = sorted(
        (
            SchedulePeriod(
                start_s=float(period["start_period"]),
                # OCPP 1.6 validation hands limits over as Decimal.
                limit=float(period["limit"]),
                phases=period.get("number_phases"),
            )
            for period in schedule["charging_schedule_period"]
        ),
        key=lambda period: period.start_s,
    )
    duration = schedule.get("duration")
    return InstalledProfile(
        id=profile_id,
        stack_level=int(raw["stack_level"]),
        purpose=purpose,
        connector=connector,
        kind=str(raw["charging_profile_kind"]),
        unit=str(schedule["charging_rate_unit"]),
        periods=tuple(periods),
        start=_parse_time(schedule.get("start_schedule")) or anchor,
        duration_s=float(duration) if duration is not None else None,
        recurrency=raw.get("recurrency_kind"),
        valid_from=_parse_time(raw.get("valid_from")),
        valid_to=_parse_time(raw.get("valid_to")),
    )


async def _request(station: ChargePoint16 | ChargePoint201, payload: Any) -> Any:
    """Send a request and return its answer; a CallError raises.

    Our own requests are built by code, and validating thousands of them per second in the
    library's thread pool would cost more than it finds: the hub validates what it receives.
    """
    return await station.call(payload, suppress=False, skip_schema_validation=True)


def _stop_if_asked() -> None:
    """Raise CancelledError when this task was asked to stop, even if the request was swallowed.

    Python 3.11's ``asyncio.wait_for``, which the ocpp library's ``call`` awaits, drops a cancellation
    that arrives together with the answer; a charger asked to stop must stop all the same.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class SimulatedCharger:
    """One simulated charger: its connection loop, its meter and its charging profiles.

    With ``boot_on_reconnect`` off it boots only on its first connection, as a charger that merely
    lost its connection (the hub restarted) does, and carries on with what it had installed.

    Readable state: `connected`, `connections`, `booted` (set while booted), `boots`, `power_w` (the true
    power; reports add the meter noise), `limit_w` (what the profiles impose, whether or not the power
    follows), `energy_wh`, `profiles` (installed, expired ones dropped), `transaction_id`, `meter_interval`
    and `received` (the hub's requests as (action, payload) pairs).

    The power is computed from times, never from sleeps: `power_at` and `energy_at` answer for any
    moment from the last booking on, following the limits as the charger was given them over time.
    """

    def __init__(
        self,
        spec: ChargerSpec,
        *,
        meter_interval: float = 5.0,
        reconnect_delay: float = 1.0,
        max_reconnect_delay: float = 60.0,
        boot_on_reconnect: bool = True,
    ) -> None:
        self.spec = spec
        self.boot_on_reconnect = boot_on_reconnect
        self.meter_interval = meter_interval
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.connected = False
        self.connections = 0
        self.booted = asyncio.Event()
        self.boots = 0
        self._heartbeat_s: float = DEFAULT_HEARTBEAT_S
        self.profiles: list[InstalledProfile] = []
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.transaction_id: int | str | None = None
        self.transaction_started_at: datetime | None = None
        self._energy_wh = 0.0
        self._energy_at = _utcnow()
        self._seq_no = 0
        self._failures = 0
        self._outage_reported = False
        self._wake = asyncio.Event()
        self._report_due = False
        self._reported_power_w: float | None = None
        self._reported_state: str | None = None
        # The installed profiles as they were from each moment on: a ramp follows them with a delay.
        self._history: list[tuple[datetime, tuple[InstalledProfile, ...]]] = [(EARLIEST, ())]
        self._car_stopped = False
        self._dropped_in_pause = False
        # Set from a profile change until its request is answered: the charger answers before it drops.
        self._unanswered = False
        self._offline_for: float | None = None
        self._trigger_due = False
        self._meter_rescheduled = False
        self._noise = random.Random(spec.identity)

    @property
    def limit_w(self) -> float | None:
        """Return the limit in W that the installed profiles impose now."""
        return effective_limit_w(self.profiles, _utcnow(), self.spec.phases)[0]

    @property
    def power_w(self) -> float:
        """Return the power the charger delivers now."""
        return self.power_at(_utcnow())

    @property
    def energy_wh(self) -> float:
        """Return the energy register now."""
        return self.energy_at(_utcnow())

    def power_at(self, at: datetime) -> float:
        """Return the power the charger delivers at `at` (not before its last booking)."""
        return self._delivery(at)[1]

    def energy_at(self, at: datetime) -> float:
        """Return the energy register at `at` (not before its last booking)."""
        return self._delivery(at)[0]

    async def run(self, url: str | Sequence[str], password: str, tls: ssl.SSLContext | None = None) -> None:
        """Keep the charger connected to the hub at `url` until cancelled.

        Given several URLs (the nodes of a cluster, as a charger configured with fallback addresses),
        it connects to the first, and to the next one each time a connection ends or fails. A wss://
        URL is reached with the TLS settings ``tls`` (security profiles 2 and 3).
        """
        urls = [url] if isinstance(url, str) else list(url)
        endpoints = [f"{each.rstrip('/')}/{quote(self.spec.identity, safe='')}" for each in urls]
        headers = None
        if password:
            credentials = f"{self.spec.identity}:{password}".encode()
            headers = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
        attempt = 0
        while True:
            endpoint = endpoints[attempt % len(endpoints)]
            attempt += 1
            try:
                await self._connect(endpoint, headers, tls if endpoint.startswith("wss:") else None)
            except (OSError, InvalidHandshake) as error:
                # Thousands of chargers retry against a hub that is down: each says so once.
                level = logging.DEBUG if self._outage_reported else logging.WARNING
                logger.log(level, "%s cannot connect to %s: %s", self.spec.identity, endpoint, error)
                self._outage_reported = True
            if self._offline_for is not None:
                offline_for, self._offline_for = self._offline_for, None
                await asyncio.sleep(offline_for)
                continue
            delay = min(self.max_reconnect_delay, self.reconnect_delay * 2**self._failures)
            self._failures += 1
            # Jitter spreads a crowd that lost the hub at the same moment.
            await asyncio.sleep(random.uniform(delay / 2, delay))

    async def _connect(self, endpoint: str, headers: dict[str, str] | None, tls: ssl.SSLContext | None = None) -> None:
        """Hold one connection: boot, then report and obey until it drops."""
        async with connect(
            endpoint,
            ssl=tls,
            subprotocols=[Subprotocol(self.spec.protocol)],
            additional_headers=headers,
            # Per-connection deflate state and keepalive pings would dominate the cost of
            # thousands of chargers; the hub pings and heartbeats detect a dead hub.
            compression=None,
            ping_interval=None,
            proxy=None,
        ) as websocket:
            if websocket.subprotocol != self.spec.protocol:
                logger.warning(
                    "%s: hub did not accept %s (chose %s)",
                    self.spec.identity,
                    self.spec.protocol,
                    websocket.subprotocol,
                )
                return
            self.connected = True
            self.connections += 1
            station = self._station(websocket)
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(station.start())
                    await self._drive(station)
            except* (ConnectionClosed, OCPPError, TimeoutError) as errors:
                logger.info("%s disconnected: %s", self.spec.identity, errors.exceptions[0])
            except* _GoingOffline:
                self._offline_for = self.spec.behaviour.offline_after_pause_s or 0.0
                logger.info(
                    "%s drops its connection as its pause takes effect, back in %g s",
                    self.spec.identity,
                    self._offline_for,
                )
            finally:
                self.connected = False
                self.booted.clear()
                # Stopping or giving up is the charger going away; the library would say 1011.
                await websocket.close(CloseCode.GOING_AWAY)

    def _station(self, websocket: ClientConnection) -> _Station16 | _Station201:
        if self.spec.protocol == "ocpp1.6":
            return _Station16(self, websocket)
        return _Station201(self, websocket)

    async def _drive(self, station: _Station16 | _Station201) -> NoReturn:
        """Boot, then send heartbeats and meter values, and react to profile changes at once."""
        if self.boots and not self.boot_on_reconnect:
            heartbeat_s = self._heartbeat_s
            self._failures = 0
            self.booted.set()
        else:
            heartbeat_s = await self._boot(station)
        self._reported_power_w = None
        self._reported_state = None
        await station.announce()
        logger.info(
            "%s booted over %s as %s %s (heartbeat %s s, %s)",
            self.spec.identity,
            self.spec.protocol,
            self.spec.vendor,
            self.spec.model,
            heartbeat_s,
            f"charging at {self.power_w / 1000:.1f} kW" if self.spec.charging else "idle",
        )
        loop = asyncio.get_running_loop()
        next_heartbeat = loop.time() + heartbeat_s
        next_meter = loop.time() + self.meter_interval
        while True:
            # Cleared before looking at the state, so a change made meanwhile still wakes us.
            self._wake.clear()
            now = _utcnow()
            change = self._settle(now)
            if self._drops_now(now):
                raise _GoingOffline(self.spec.identity)
            if self._meter_rescheduled:
                self._meter_rescheduled = False
                next_meter = loop.time() + self.meter_interval
            if self._trigger_due:
                self._trigger_due = False
                await station.report_triggered(now, self._readings(self.power_at(now)))
            if self.transaction_id is not None:
                power = self.power_at(now)
                changed = self._report_due or power != self._reported_power_w
                periodic = loop.time() >= next_meter
                if changed or periodic:
                    await self._report(station, now, power, periodic=not changed)
                if periodic:
                    next_meter = loop.time() + self.meter_interval
            if loop.time() >= next_heartbeat:
                await _request(station, station.heartbeat_request())
                next_heartbeat = loop.time() + heartbeat_s
            deadline = next_heartbeat
            if self.transaction_id is not None:
                deadline = min(deadline, next_meter)
            if change is not None:
                deadline = min(deadline, loop.time() + (change - _utcnow()).total_seconds())
            _stop_if_asked()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _boot(self, station: _Station16 | _Station201) -> float:
        """Send BootNotification until accepted; return the heartbeat interval."""
        while True:
            status, interval = await station.boot()
            if status == "Accepted":
                break
            logger.info("%s boot %s, retrying", self.spec.identity, status.lower())
            await asyncio.sleep(interval or DEFAULT_BOOT_RETRY_S)
        self.boots += 1
        self._failures = 0
        self._outage_reported = False
        self.booted.set()
        self._heartbeat_s = interval or DEFAULT_HEARTBEAT_S
        return self._heartbeat_s

    async def _report(
        self, station: _Station16 | _Station201, now: datetime, power_w: float, *, periodic: bool
    ) -> None:
        """Send the meter readings, and the charging state first if it changed."""
        if power_w > 0:
            state = "Charging"
        elif self._paused_by_limit(now) or not self._car_stopped:
            state = "SuspendedEVSE"
        else:
            # The limit allows charging, but the car has stopped.
            state = "SuspendedEV"
        state_changed = state != self._reported_state
        # Booked before sending: a profile change while the hub answers asks for the next report.
        self._reported_power_w = power_w
        self._reported_state = state
        self._report_due = False
        await station.report(now, self._readings(power_w), state, state_changed=state_changed, periodic=periodic)

    def _readings(self, power_w: float) -> list[Reading]:
        """Return the meter's readings at `power_w` (give or take its noise), with the energy booked so far."""
        noise = self.spec.behaviour.meter_noise
        if noise:
            power_w = max(0.0, power_w * (1 + self._noise.uniform(-noise, noise)))
        amps = power_w / (self.spec.phases * VOLTAGE_V)
        currents = [("Current.Import", f"L{phase}", round(amps, 1), "A") for phase in range(1, self.spec.phases + 1)]
        return [
            ("Power.Active.Import", None, round(power_w), "W"),
            ("Energy.Active.Import.Register", None, round(self._energy_wh), "Wh"),
            *currents,
        ]

    def start_transaction(self, transaction_id: int | str, started_at: datetime) -> None:
        """Record that a transaction runs from `started_at`."""
        self.transaction_id = transaction_id
        self.transaction_started_at = started_at
        self._energy_at = started_at

    def next_seq_no(self) -> int:
        """Return the next OCPP 2.0.1 TransactionEvent sequence number."""
        seq_no = self._seq_no
        self._seq_no += 1
        return seq_no

    def install(
        self,
        profile: InstalledProfile,
        replaces: Callable[[InstalledProfile], bool],
        *,
        at: datetime | None = None,
    ) -> None:
        """Install a profile in place of those it replaces, at `at` (now by default)."""
        now = at or _utcnow()
        self._settle(now)
        self._change_profiles(now, [installed for installed in self.profiles if not replaces(installed)] + [profile])
        logger.debug("%s installed profile %s", self.spec.identity, profile.id)

    def clear(self, matches: Callable[[InstalledProfile], bool], *, at: datetime | None = None) -> bool:
        """Remove the matching profiles at `at` (now by default); tell whether there were any."""
        now = at or _utcnow()
        self._settle(now)
        kept = [profile for profile in self.profiles if not matches(profile)]
        if len(kept) == len(self.profiles):
            return False
        self._change_profiles(now, kept)
        return True

    def _change_profiles(self, now: datetime, profiles: list[InstalledProfile]) -> None:
        self.profiles = profiles
        self._history.append((now, tuple(profiles)))
        self._report_due = True
        self._unanswered = True

    def set_meter_interval(self, text: str) -> bool:
        """Report meter values every `text` seconds from now on; False if it is no number or below the minimum."""
        try:
            seconds = float(text)
        except ValueError:
            return False
        if not seconds >= self.spec.behaviour.min_meter_interval_s or seconds == float("inf"):
            return False
        self.meter_interval = seconds
        self._meter_rescheduled = True
        return True

    def trigger_meter_values(self) -> None:
        """Send a meter report at once, as the hub's TriggerMessage asks."""
        self._trigger_due = True
        self._wake.set()

    def wake(self) -> None:
        """Make the charger act on a changed profile now rather than at its next tick (its answer is sent)."""
        self._unanswered = False
        self._wake.set()

    def configuration(self) -> dict[str, str]:
        """Return the OCPP 1.6 configuration keys and values."""
        smart = self.spec.smart_charging
        profiles = [name for name in FEATURE_PROFILES if smart or name != "SmartCharging"]
        keys = {
            "SupportedFeatureProfiles": ",".join(profiles),
            "MeterValueSampleInterval": f"{self.meter_interval:g}",
            "MeterValuesSampledData": MEASURANDS,
            "NumberOfConnectors": "1",
        }
        if smart:
            keys["ChargeProfileMaxStackLevel"] = str(MAX_STACK_LEVEL)
            keys["ChargingScheduleAllowedChargingRateUnit"] = "Current,Power"
        return keys

    def device_model(self) -> dict[str, dict[str, str]]:
        """Return the OCPP 2.0.1 variables' Actual values by component and variable."""
        smart = "true" if self.spec.smart_charging else "false"
        smart_charging = {"Available": smart, "Enabled": smart}
        if self.spec.smart_charging:
            smart_charging["ProfileStackLevel"] = str(MAX_STACK_LEVEL)
            smart_charging["RateUnit"] = "A,W"
        return {
            "SmartChargingCtrlr": smart_charging,
            "SampledDataCtrlr": {
                "TxUpdatedInterval": f"{self.meter_interval:g}",
                "TxUpdatedMeasurands": MEASURANDS,
            },
        }

    def _deliverable_w(self, limit_w: float | None) -> float:
        if limit_w is None:
            return self.spec.max_power_w
        return max(0.0, min(limit_w, self.spec.max_power_w))

    def _given_limit_at(self, at: datetime) -> tuple[float | None, datetime | None]:
        """Return the limit the profiles installed by `at` impose at `at`, and when that may change."""
        if at >= self._history[-1][0]:
            return effective_limit_w(self.profiles, at, self.spec.phases)
        index = bisect.bisect_right(self._history, at, key=lambda entry: entry[0])
        # Before the oldest change kept (a clock set back), the oldest stands for what came before.
        limit, change = effective_limit_w(self._history[max(index - 1, 0)][1], at, self.spec.phases)
        return limit, _earliest(change, self._history[index][0])

    def _followed_limit_at(self, at: datetime) -> tuple[float | None, datetime | None]:
        """Return the limit the power follows at `at`, a ramp delay behind the given one, and when it may change."""
        delay = timedelta(seconds=self.spec.behaviour.ramp_s)
        limit, change = self._given_limit_at(at - delay)
        return limit, _shifted(change, delay)

    def _paused_by_limit(self, at: datetime) -> bool:
        """Tell whether the limit the power follows at `at` is a pause."""
        if self.spec.behaviour.ignores_limits:
            return False
        return self._deliverable_w(self._followed_limit_at(at)[0]) == 0

    def _delivery(self, until: datetime) -> tuple[float, float, bool]:
        """Integrate the power from the last booking to `until`, piece by piece as it changes.

        Return the energy register at `until`, the power then, and whether the car has stopped.
        """
        energy, stopped = self._energy_wh, self._car_stopped
        if self.transaction_id is None:
            return energy, 0.0, stopped
        behaviour = self.spec.behaviour
        moment = min(self._energy_at, until)
        while True:
            if behaviour.ignores_limits:
                power, change = self.spec.max_power_w, None
            else:
                limit, change = self._followed_limit_at(moment)
                power = self._deliverable_w(limit)
                stopped = stopped or (power == 0 and not behaviour.resumes_after_pause)
            if stopped:
                power, change = 0.0, None
            end = until if change is None else min(change, until)
            if end <= moment:
                return energy, power, stopped
            energy += power * (end - moment).total_seconds() / 3600
            moment = end

    def _settle(self, now: datetime) -> datetime | None:
        """Book energy up to `now`, drop expired profiles; return when the power may change."""
        self._energy_wh, _, self._car_stopped = self._delivery(now)
        self._energy_at = max(now, self._energy_at)
        kept = [profile for profile in self.profiles if profile_limit_w(profile, now, self.spec.phases) != (None, None)]
        if len(kept) != len(self.profiles):
            expired = {profile.id for profile in self.profiles} - {profile.id for profile in kept}
            logger.debug("%s: profiles %s expired", self.spec.identity, sorted(expired))
            self.profiles = kept
            self._report_due = True
        # Only the profiles the power still has to follow are kept.
        in_force = bisect.bisect_right(
            self._history, now - timedelta(seconds=self.spec.behaviour.ramp_s), key=lambda entry: entry[0]
        )
        del self._history[: max(0, in_force - 1)]
        if self.transaction_id is None or self._car_stopped or self.spec.behaviour.ignores_limits:
            return effective_limit_w(self.profiles, now, self.spec.phases)[1]
        return self._followed_limit_at(now)[1]

    def _drops_now(self, now: datetime) -> bool:
        """Tell whether the charger drops its connection now: a pause has just taken effect."""
        if self.spec.behaviour.offline_after_pause_s is None or self.transaction_id is None:
            return False
        if not self._paused_by_limit(now):
            self._dropped_in_pause = False
            return False
        if self._dropped_in_pause or self._unanswered:
            return False
        self._dropped_in_pause = True
        return True


class _GoingOffline(Exception):
    """Raised to drop the connection as a pause takes effect."""


class _Station16(ChargePoint16):
    """Speak OCPP 1.6 for one simulated charger over one connection."""

    def __init__(self, charger: SimulatedCharger, connection: ClientConnection) -> None:
        super().__init__(charger.spec.identity, connection)
        self.charger = charger

    async def boot(self) -> tuple[str, int]:
        spec = self.charger.spec
        result = await _request(
            self,
            call16.BootNotification(
                charge_point_model=spec.model,
                charge_point_vendor=spec.vendor,
                firmware_version=spec.firmware,
                charge_point_serial_number=spec.serial or None,
            ),
        )
        return result.status, result.interval

    def heartbeat_request(self) -> call16.Heartbeat:
        return call16.Heartbeat()

    async def announce(self) -> None:
        """Report the connectors and start charging unless a transaction already runs."""
        charger = self.charger
        await self._status(0, "Available")
        if not charger.spec.charging:
            await self._status(1, "Available")
            return
        if charger.transaction_id is None:
            await self._status(1, "Preparing")
            started_at = _utcnow()
            result = await _request(
                self,
                call16.StartTransaction(
                    connector_id=1,
                    id_tag=ID_TAG,
                    meter_start=round(charger.energy_wh),
                    timestamp=_timestamp(started_at),
                ),
            )
            charger.start_transaction(result.transaction_id, started_at)

    async def report(
        self,
        now: datetime,
        readings: Sequence[Reading],
        state: str,
        *,
        state_changed: bool,
        periodic: bool,
    ) -> None:
        charger = self.charger
        if state_changed:
            await self._status(1, state)
        context = "Sample.Periodic" if periodic else "Other"
        sampled = [
            types16.SampledValue(value=str(value), context=context, measurand=measurand, phase=phase, unit=unit)
            for measurand, phase, value, unit in readings
        ]
        await _request(
            self,
            call16.MeterValues(
                connector_id=1,
                transaction_id=charger.transaction_id,
                meter_value=[types16.MeterValue(timestamp=_timestamp(now), sampled_value=sampled)],
            ),
        )

    async def report_triggered(self, now: datetime, readings: Sequence[Reading]) -> None:
        sampled = [
            types16.SampledValue(value=str(value), context="Trigger", measurand=measurand, phase=phase, unit=unit)
            for measurand, phase, value, unit in readings
        ]
        await _request(
            self,
            call16.MeterValues(
                connector_id=1,
                transaction_id=self.charger.transaction_id,
                meter_value=[types16.MeterValue(timestamp=_timestamp(now), sampled_value=sampled)],
            ),
        )

    async def _status(self, connector_id: int, status: str) -> None:
        await _request(
            self,
            call16.StatusNotification(
                connector_id=connector_id,
                error_code="NoError",
                status=status,
                timestamp=_timestamp(_utcnow()),
            ),
        )

    @on(Action16.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None) -> result16.GetConfiguration:
        self.charger.received.append(("GetConfiguration", {"key": key}))
        configuration = self.charger.configuration()
        wanted = key or list(configuration)
        return result16.GetConfiguration(
            configuration_key=[
                types16.KeyValue(key=name, readonly=name != METER_INTERVAL_KEY, value=configuration[name])
                for name in wanted
                if name in configuration
            ],
            unknown_key=[name for name in wanted if name not in configuration] or None,
        )

    @on(Action16.change_configuration)
    def on_change_configuration(self, key: str, value: str) -> result16.ChangeConfiguration:
        self.charger.received.append(("ChangeConfiguration", {"key": key, "value": value}))
        if key == METER_INTERVAL_KEY:
            accepted = self.charger.set_meter_interval(value)
            status = ConfigurationStatus.accepted if accepted else ConfigurationStatus.rejected
        elif key in self.charger.configuration():
            status = ConfigurationStatus.rejected
        else:
            status = ConfigurationStatus.not_supported
        return result16.ChangeConfiguration(status=status)

    @after(Action16.change_configuration)
    def after_change_configuration(self, **_: Any) -> None:
        self.charger.wake()

    @on(Action16.trigger_message)
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None) -> result16.TriggerMessage:
        self.charger.received.append(
            ("TriggerMessage", {"requested_message": requested_message, "connector_id": connector_id})
        )
        if requested_message != "MeterValues":
            return result16.TriggerMessage(status=TriggerMessageStatus.not_implemented)
        if connector_id not in (None, 1):
            return result16.TriggerMessage(status=TriggerMessageStatus.rejected)
        return result16.TriggerMessage(status=TriggerMessageStatus.accepted)

    @after(Action16.trigger_message)
    def after_trigger_message(self, requested_message: str, connector_id: int | None = None) -> None:
        if requested_message == "MeterValues" and connector_id in (None, 1):
            self.charger.trigger_meter_values()

    @on(Action16.set_charging_profile)
    def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any]
    ) -> result16.SetChargingProfile:
        charger = self.charger
        charger.received.append(
            (
                "SetChargingProfile",
                {"connector_id": connector_id, "cs_charging_profiles": cs_charging_profiles},
            )
        )
        if not charger.spec.smart_charging:
            return result16.SetChargingProfile(status=ChargingProfileStatus.not_supported)
        raw = cs_charging_profiles
        purpose = raw["charging_profile_purpose"]
        transaction_id = raw.get("transaction_id")
        rejected = (
            connector_id not in (0, 1)
            or raw["stack_level"] > MAX_STACK_LEVEL
            or (purpose in STATION_MAX_PURPOSES and connector_id != 0)
            or (
                purpose == "TxProfile"
                and (
                    connector_id != 1
                    or charger.transaction_id is None
                    or transaction_id not in (None, charger.transaction_id)
                )
            )
        )
        if rejected:
            return result16.SetChargingProfile(status=ChargingProfileStatus.rejected)
        try:
            profile = build_profile(
                raw,
                raw["charging_schedule"],
                profile_id=raw["charging_profile_id"],
                connector=connector_id,
                installed_at=_utcnow(),
                transaction_started_at=charger.transaction_started_at,
            )
        except ValueError:
            return result16.SetChargingProfile(status=ChargingProfileStatus.rejected)
        # OCPP 1.6: the same id, or the same stack level and purpose, is replaced.
        charger.install(
            profile,
            lambda installed: (
                installed.id == profile.id
                or (installed.purpose, installed.stack_level, installed.connector)
                == (profile.purpose, profile.stack_level, profile.connector)
            ),
        )
        return result16.SetChargingProfile(status=ChargingProfileStatus.accepted)

    @after(Action16.set_charging_profile)
    def after_set_charging_profile(self, **_: Any) -> None:
        self.charger.wake()

    @on(Action16.clear_charging_profile)
    def on_clear_charging_profile(self, **criteria: Any) -> result16.ClearChargingProfile:
        self.charger.received.append(("ClearChargingProfile", criteria))

        matches = _clear_criteria(
            criteria.get("id"),
            criteria.get("connector_id"),
            criteria.get("charging_profile_purpose"),
            criteria.get("stack_level"),
        )
        cleared = self.charger.spec.smart_charging and self.charger.clear(matches)
        return result16.ClearChargingProfile(
            status=ClearChargingProfileStatus.accepted if cleared else ClearChargingProfileStatus.unknown
        )

    @after(Action16.clear_charging_profile)
    def after_clear_charging_profile(self, **_: Any) -> None:
        self.charger.wake()


class _Station201(ChargePoint201):
    """Speak OCPP 2.0.1 for one simulated charger over one connection."""

    def __init__(self, charger: SimulatedCharger, connection: ClientConnection) -> None:
        super().__init__(charger.spec.identity, connection)
        self.charger = charger

    async def boot(self) -> tuple[str, int]:
        spec = self.charger.spec
        station = {"vendor_name": spec.vendor, "model": spec.model, "firmware_version": spec.firmware}
        if spec.serial:
            station["serial_number"] = spec.serial
        result = await _request(self, call201.BootNotification(charging_station=station, reason="PowerUp"))
        return result.status, result.interval

    def heartbeat_request(self) -> call201.Heartbeat:
        return call201.Heartbeat()

    async def announce(self) -> None:
        """Report the connector and start charging unless a transaction already runs."""
        charger = self.charger
        await _request(
            self,
            call201.StatusNotification(
                timestamp=_timestamp(_utcnow()),
                connector_status="Occupied" if charger.spec.charging else "Available",
                evse_id=1,
                connector_id=1,
            ),
        )
        if charger.spec.charging and charger.transaction_id is None:
            started_at = _utcnow()
            charger.start_transaction(str(uuid.uuid4()), started_at)
            await _request(
                self,
                call201.TransactionEvent(
                    event_type="Started",
                    timestamp=_timestamp(started_at),
                    trigger_reason="Authorized",
                    seq_no=charger.next_seq_no(),
                    transaction_info={"transaction_id": charger.transaction_id},
                    evse={"id": 1, "connector_id": 1},
                    id_token={"id_token": ID_TAG, "type": "ISO14443"},
                    meter_value=[
                        self._meter_value(
                            started_at,
                            [("Energy.Active.Import.Register", None, round(charger.energy_wh), "Wh")],
                            "Transaction.Begin",
                        )
                    ],
                ),
            )

    async def report(
        self,
        now: datetime,
        readings: Sequence[Reading],
        state: str,
        *,
        state_changed: bool,
        periodic: bool,
    ) -> None:
        charger = self.charger
        transaction: dict[str, Any] = {"transaction_id": charger.transaction_id}
        if state_changed:
            transaction["charging_state"] = state
            trigger = "ChargingStateChanged"
        else:
            trigger = "MeterValuePeriodic" if periodic else "ChargingRateChanged"
        context = "Sample.Periodic" if periodic else "Other"
        await _request(
            self,
            call201.TransactionEvent(
                event_type="Updated",
                timestamp=_timestamp(now),
                trigger_reason=trigger,
                seq_no=charger.next_seq_no(),
                transaction_info=transaction,
                meter_value=[self._meter_value(now, readings, context)],
            ),
        )

    async def report_triggered(self, now: datetime, readings: Sequence[Reading]) -> None:
        await _request(self, call201.MeterValues(evse_id=1, meter_value=[self._meter_value(now, readings, "Trigger")]))

    @staticmethod
    def _meter_value(now: datetime, readings: Sequence[Reading], context: str) -> dict[str, Any]:
        sampled = []
        for measurand, phase, value, unit in readings:
            sample: dict[str, Any] = {
                "value": value,
                "context": context,
                "measurand": measurand,
                "unit_of_measure": {"unit": unit},
            }
            if phase is not None:
                sample["phase"] = phase
            sampled.append(sample)
        return {"timestamp": _timestamp(now), "sampled_value": sampled}

    @on(Action201.get_variables)
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> result201.GetVariables:
        self.charger.received.append(("GetVariables", {"get_variable_data": get_variable_data}))
        model = self.charger.device_model()
        results = []
        for item in get_variable_data:
            component, variable = item["component"], item["variable"]
            attribute = item.get("attribute_type", "Actual")
            values = model.get(component["name"])
            result: dict[str, Any] = {"component": component, "variable": variable}
            if values is None:
                result["attribute_status"] = GetVariableStatusEnumType.unknown_component
            elif variable["name"] not in values:
                result["attribute_status"] = GetVariableStatusEnumType.unknown_variable
            elif attribute != "Actual":
                result["attribute_status"] = GetVariableStatusEnumType.not_supported_attribute_type
            else:
                result["attribute_status"] = GetVariableStatusEnumType.accepted
                result["attribute_type"] = attribute
                result["attribute_value"] = values[variable["name"]]
            results.append(result)
        return result201.GetVariables(get_variable_result=results)

    @on(Action201.set_variables)
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> result201.SetVariables:
        self.charger.received.append(("SetVariables", {"set_variable_data": set_variable_data}))
        model = self.charger.device_model()
        results = []
        for item in set_variable_data:
            component, variable = item["component"], item["variable"]
            attribute = item.get("attribute_type", "Actual")
            values = model.get(component["name"])
            if values is None:
                status = SetVariableStatusEnumType.unknown_component
            elif variable["name"] not in values:
                status = SetVariableStatusEnumType.unknown_variable
            elif attribute != "Actual":
                status = SetVariableStatusEnumType.not_supported_attribute_type
            elif (component["name"], variable["name"]) == METER_INTERVAL_VARIABLE and self.charger.set_meter_interval(
                item["attribute_value"]
            ):
                status = SetVariableStatusEnumType.accepted
            else:
                status = SetVariableStatusEnumType.rejected
            results.append(
                {"attribute_type": attribute, "attribute_status": status, "component": component, "variable": variable}
            )
        return result201.SetVariables(set_variable_result=results)

    @after(Action201.set_variables)
    def after_set_variables(self, **_: Any) -> None:
        self.charger.wake()

    @on(Action201.trigger_message)
    def on_trigger_message(
        self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> result201.TriggerMessage:
        self.charger.received.append(("TriggerMessage", {"requested_message": requested_message, "evse": evse}))
        if requested_message != "MeterValues":
            return result201.TriggerMessage(status=TriggerMessageStatusEnumType.not_implemented)
        if evse is not None and evse.get("id") not in (0, 1):
            return result201.TriggerMessage(status=TriggerMessageStatusEnumType.rejected)
        return result201.TriggerMessage(status=TriggerMessageStatusEnumType.accepted)

    @after(Action201.trigger_message)
    def after_trigger_message(self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any) -> None:
        if requested_message == "MeterValues" and (evse is None or evse.get("id") in (0, 1)):
            self.charger.trigger_meter_values()

    @on(Action201.set_charging_profile)
    def on_set_charging_profile(
        self, evse_id: int, charging_profile: dict[str, Any], **_: Any
    ) -> result201.SetChargingProfile:
        charger = self.charger
        charger.received.append(("SetChargingProfile", {"evse_id": evse_id, "charging_profile": charging_profile}))
        if not charger.spec.smart_charging:
            return self._rejected("NotSupported", "SmartChargingCtrlr is not available")
        raw = charging_profile
        purpose = raw["charging_profile_purpose"]
        kind = raw["charging_profile_kind"]
        schedule = raw["charging_schedule"][0]
        problem = None
        if evse_id not in (0, 1):
            problem = ("UnknownEvse", f"EVSE {evse_id} does not exist (K01.FR.28)")
        elif raw["stack_level"] > MAX_STACK_LEVEL:
            problem = ("InvalidStackLevel", f"stackLevel above {MAX_STACK_LEVEL}")
        elif purpose in STATION_MAX_PURPOSES and evse_id != 0:
            problem = ("InvalidProfile", "ChargingStationMaxProfile only on EVSE 0 (K01.FR.03)")
        elif purpose in STATION_MAX_PURPOSES and kind == "Relative":
            problem = ("InvalidProfile", "ChargingStationMaxProfile cannot be Relative (K01.FR.38)")
        elif purpose == "TxProfile" and evse_id != 1:
            problem = ("InvalidProfile", "TxProfile needs an EVSE above 0 (K01.FR.16)")
        elif purpose == "TxProfile" and (
            charger.transaction_id is None or raw.get("transaction_id") != charger.transaction_id
        ):
            problem = ("TxNotFound", "no such transaction on this EVSE (K01.FR.09, K01.FR.33)")
        elif kind in ("Absolute", "Recurring") and schedule.get("start_schedule") is None:
            problem = ("InvalidSchedule", f"{kind} profile needs startSchedule (K01.FR.40)")
        elif kind == "Relative" and schedule.get("start_schedule") is not None:
            problem = ("InvalidSchedule", "Relative profile cannot have startSchedule (K01.FR.41)")
        elif min(period["start_period"] for period in schedule["charging_schedule_period"]) != 0:
            problem = ("InvalidSchedule", "first startPeriod must be 0 (K01.FR.31)")
        if problem is not None:
            return self._rejected(*problem)
        try:
            profile = build_profile(
                raw,
                schedule,
                profile_id=raw["id"],
                connector=evse_id,
                installed_at=_utcnow(),
                transaction_started_at=charger.transaction_started_at,
            )
        except ValueError as error:
            return self._rejected("InvalidSchedule", str(error)[:512])
        # OCPP 2.0.1 replaces the same id, but refuses another profile at the same stack
        # level, purpose and EVSE whose validity overlaps (K01.FR.06, K01.FR.39).
        if any(
            installed.id != profile.id
            and (installed.purpose, installed.stack_level, installed.connector)
            == (profile.purpose, profile.stack_level, profile.connector)
            and _overlap(installed, profile)
            for installed in charger.profiles
        ):
            return self._rejected("DuplicateProfile", "stack level taken (K01.FR.06, K01.FR.39)")
        charger.install(profile, lambda installed: installed.id == profile.id)
        return result201.SetChargingProfile(status=ChargingProfileStatusEnumType.accepted)

    @staticmethod
    def _rejected(reason: str, detail: str) -> result201.SetChargingProfile:
        return result201.SetChargingProfile(
            status=ChargingProfileStatusEnumType.rejected,
            status_info={"reason_code": reason, "additional_info": detail},
        )

    @after(Action201.set_charging_profile)
    def after_set_charging_profile(self, **_: Any) -> None:
        self.charger.wake()

    @on(Action201.clear_charging_profile)
    def on_clear_charging_profile(
        self,
        charging_profile_id: int | None = None,
        charging_profile_criteria: dict[str, Any] | None = None,
        **_: Any,
    ) -> result201.ClearChargingProfile:
        self.charger.received.append(
            (
                "ClearChargingProfile",
                {
                    "charging_profile_id": charging_profile_id,
                    "charging_profile_criteria": charging_profile_criteria,
                },
            )
        )
        criteria = charging_profile_criteria or {}
        matches = _clear_criteria(
            charging_profile_id,
            criteria.get("evse_id"),
            criteria.get("charging_profile_purpose"),
            criteria.get("stack_level"),
        )
        cleared = self.charger.spec.smart_charging and self.charger.clear(matches)
        return result201.ClearChargingProfile(
            status=ClearChargingProfileStatusEnumType.accepted
            if cleared
            else ClearChargingProfileStatusEnumType.unknown
        )

    @after(Action201.clear_charging_profile)
    def after_clear_charging_profile(self, **_: Any) -> None:
        self.charger.wake()


async def run_simulation(
    url: str,
    password: str,
    specs: list[ChargerSpec],
    *,
    meter_interval: float = 5.0,
    connect_rate: float | None = None,
    tls: TlsSettings | None = None,
) -> None:
    """Run a charger per spec against the hub at `url` until cancelled.

    With `connect_rate`, chargers start that many per second so thousands don't stampede.
    """
    chargers = [SimulatedCharger(spec, meter_interval=meter_interval) for spec in specs]
    async with asyncio.TaskGroup() as tasks:
        for charger in chargers:
            context = tls.context_for(charger.spec.identity) if tls is not None else None
            tasks.create_task(charger.run(url, password, context), name=f"charger {charger.spec.identity}")
            if connect_rate:
                await asyncio.sleep(1 / connect_rate)


@dataclass(frozen=True)
class TlsSettings:
    """How simulated chargers reach a hub over wss:// (security profiles 2 and 3).

    ``ca_file``: a CA the hub's server certificate may be signed by, besides the system's.
    A client certificate (profile 3) is ``client_cert``/``client_key`` for a single charger, or
    ``IDENTITY.pem``/``IDENTITY-key.pem`` in ``cert_dir`` for each (as `powerbank ca issue` writes them).
    """

    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    cert_dir: str | None = None

    def context_for(self, identity: str) -> ssl.SSLContext:
        """Return the TLS context charger ``identity`` connects with."""
        # The system's CAs and the given one: a hub's certificate may come from either.
        context = ssl.create_default_context()
        if self.ca_file:
            context.load_verify_locations(self.ca_file)
        if self.client_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        elif self.cert_dir:
            directory = Path(self.cert_dir)
            context.load_cert_chain(directory / f"{identity}.pem", directory / f"{identity}-key.pem")
        return context


def add_tls_options(parser: argparse.ArgumentParser) -> None:
    """Add the options for wss:// URLs: the CA to trust, and client certificates (profile 3)."""
    group = parser.add_argument_group("TLS (wss:// URLs: security profiles 2 and 3)")
    group.add_argument("--ca-file", help="CA certificate the hub's server certificate is checked against")
    group.add_argument("--client-cert", help="client certificate (PEM) of a single charger (profile 3)")
    group.add_argument("--client-key", help="its private key (PEM)")
    group.add_argument("--cert-dir", help="a directory with IDENTITY.pem and IDENTITY-key.pem for each charger")


def tls_from(args: argparse.Namespace) -> TlsSettings | None:
    """Return the TLS settings the options give (None when no TLS option is given)."""
    settings = TlsSettings(args.ca_file, args.client_cert, args.client_key, args.cert_dir)
    return settings if any((args.ca_file, args.client_cert, args.cert_dir)) else None


def add_behaviour_options(parser: argparse.ArgumentParser, *, default: str) -> None:
    """Add the options that choose how the chargers behave: a mix, then overrides for every charger."""
    group = parser.add_argument_group("how the chargers behave (the options after --behaviour apply to every charger)")
    group.add_argument(
        "--behaviour",
        choices=BEHAVIOURS,
        default=default,
        help=f"ideal: follow every limit at once; realistic: a fixed mix per identity (default: {default})",
    )
    group.add_argument("--ramp-s", type=float, help="seconds before the power follows a new limit")
    group.add_argument("--ignore-limits", action="store_true", help="accept limits but keep charging at full power")
    group.add_argument(
        "--offline-after-pause-s", type=float, help="drop the connection on a pause, back after this many seconds"
    )
    group.add_argument("--no-resume", action="store_true", help="the car does not resume after a pause")
    group.add_argument("--meter-noise", type=float, help="relative noise on the reported power, e.g. 0.02")
    group.add_argument("--min-meter-interval", type=float, help="finest meter interval the hub may set, in seconds")


def behaviour_from(args: argparse.Namespace, identity: str) -> Behaviour:
    """Return the behaviour the options give `identity`; ValueError if a value is out of range."""
    overrides: dict[str, Any] = {
        name: value
        for name, value in (
            ("ramp_s", args.ramp_s),
            ("offline_after_pause_s", args.offline_after_pause_s),
            ("meter_noise", args.meter_noise),
            ("min_meter_interval_s", args.min_meter_interval),
        )
        if value is not None
    }
    if args.ignore_limits:
        overrides["ignores_limits"] = True
    if args.no_resume:
        overrides["resumes_after_pause"] = False
    return replace(behaviour_of(args.behaviour, identity), **overrides)


def main(argv: list[str] | None = None) -> int:
    """Simulate chargers against a hub until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m powerbank.tools.simulator", description="Simulate OCPP chargers against a hub."
    )
    parser.add_argument("--url", required=True, help="OCPP endpoint, e.g. ws://127.0.0.1:8000/ocpp")
    parser.add_argument("--password", default="", help="Basic auth password (security profiles 1 and 2)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--identities", help="comma-separated charger identities")
    who.add_argument("--chargers", type=int, default=1, help="number of chargers sim-0001 …")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="ocpp1.6")
    parser.add_argument("--meter-interval", type=float, default=5.0, help="seconds between meter values")
    parser.add_argument("--connect-rate", type=float, help="chargers connecting per second")
    add_behaviour_options(parser, default="ideal")
    add_tls_options(parser)
    args = parser.parse_args(argv)
    if args.client_cert and len((args.identities or "").split(",")) != 1:
        parser.error("--client-cert is one charger's: give one --identities, or use --cert-dir")
    if args.identities:
        identities = [identity.strip() for identity in args.identities.split(",") if identity.strip()]
    else:
        identities = [f"sim-{number:04d}" for number in range(1, args.chargers + 1)]
    if not identities:
        parser.error("no charger to simulate")
    try:
        specs = [
            ChargerSpec(identity=identity, protocol=args.protocol, behaviour=behaviour_from(args, identity))
            for identity in identities
        ]
    except ValueError as error:
        parser.error(str(error))

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # The ocpp library logs every frame at INFO, which thousands of chargers turn into a flood.
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    logger.info("simulating %d charger(s) against %s", len(specs), args.url)
    try:
        asyncio.run(
            run_simulation(
                args.url,
                args.password,
                specs,
                meter_interval=args.meter_interval,
                connect_rate=args.connect_rate,
                tls=tls_from(args),
            )
        )
    except KeyboardInterrupt:
        logger.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
