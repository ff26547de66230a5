"""Drive simulated chargers against a small central system over real websockets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from powerbank.tools.simulator import (
    ChargerSpec,
    InstalledProfile,
    SchedulePeriod,
    SimulatedCharger,
    effective_limit_w,
    run_simulation,
)

PASSWORD = "s3cret"
TIMEOUT = 3.0
# Meter values every minute: within a test, any MeterValues after the first is a prompt report.
SLOW_METER = 60.0

Message = tuple[str, dict[str, Any]]


class Inbox:
    """Keep what chargers sent so tests can wait for a message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._arrived = asyncio.Condition()

    async def put(self, action: str, payload: dict[str, Any]) -> None:
        async with self._arrived:
            self.messages.append((action, payload))
            self._arrived.notify_all()

    def mark(self) -> int:
        """Return a position: `expect(since=...)` then only looks at later messages."""
        return len(self.messages)

    async def expect(
        self,
        action: str,
        matches: Callable[[dict[str, Any]], bool] = lambda payload: True,
        *,
        since: int = 0,
        timeout: float = TIMEOUT,
    ) -> dict[str, Any]:
        """Wait for a message of `action` that `matches`, received at or after `since`."""

        def found() -> list[dict[str, Any]]:
            # A list, so that an empty payload such as a Heartbeat's still counts as found.
            return [payload for got, payload in self.messages[since:] if got == action and matches(payload)]

        async with asyncio.timeout(timeout), self._arrived:
            return (await self._arrived.wait_for(found))[0]


class Hub16(ChargePoint16):
    def __init__(self, identity: str, connection: ServerConnection, inbox: Inbox) -> None:
        super().__init__(identity, connection)
        self.inbox = inbox

    @on(Action16.boot_notification)
    async def on_boot_notification(self, **payload: Any) -> result16.BootNotification:
        await self.inbox.put("BootNotification", payload)
        return result16.BootNotification(current_time=_now(), interval=1, status="Accepted")

    @on(Action16.heartbeat)
    async def on_heartbeat(self) -> result16.Heartbeat:
        await self.inbox.put("Heartbeat", {})
        return result16.Heartbeat(current_time=_now())

    @on(Action16.status_notification)
    async def on_status_notification(self, **payload: Any) -> result16.StatusNotification:
        await self.inbox.put("StatusNotification", payload)
        return result16.StatusNotification()

    @on(Action16.start_transaction)
    async def on_start_transaction(self, **payload: Any) -> result16.StartTransaction:
        await self.inbox.put("StartTransaction", payload)
        return result16.StartTransaction(transaction_id=42, id_tag_info={"status": "Accepted"})

    @on(Action16.meter_values)
    async def on_meter_values(self, **payload: Any) -> result16.MeterValues:
        await self.inbox.put("MeterValues", payload)
        return result16.MeterValues()


class Hub201(ChargePoint201):
    def __init__(self, identity: str, connection: ServerConnection, inbox: Inbox) -> None:
        super().__init__(identity, connection)
        self.inbox = inbox

    @on(Action201.boot_notification)
    async def on_boot_notification(self, **payload: Any) -> result201.BootNotification:
        await self.inbox.put("BootNotification", payload)
        return result201.BootNotification(current_time=_now(), interval=1, status="Accepted")

    @on(Action201.heartbeat)
    async def on_heartbeat(self) -> result201.Heartbeat:
        await self.inbox.put("Heartbeat", {})
        return result201.Heartbeat(current_time=_now())

    @on(Action201.status_notification)
    async def on_status_notification(self, **payload: Any) -> result201.StatusNotification:
        await self.inbox.put("StatusNotification", payload)
        return result201.StatusNotification()

    @on(Action201.transaction_event)
    async def on_transaction_event(self, **payload: Any) -> result201.TransactionEvent:
        await self.inbox.put("TransactionEvent", payload)
        return result201.TransactionEvent()

    @on(Action201.meter_values)
    async def on_meter_values(self, **payload: Any) -> result201.MeterValues:
        await self.inbox.put("MeterValues", payload)
        return result201.MeterValues()


@dataclass
class CentralSystem:
    """A minimal hub: records what arrives and lets a test call the chargers."""

    refuse: int = 0
    url: str = ""
    inbox: Inbox = field(default_factory=Inbox)
    authorizations: list[str | None] = field(default_factory=list)
    stations: dict[str, Hub16 | Hub201] = field(default_factory=dict)
    connections: dict[str, ServerConnection] = field(default_factory=dict)

    def check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.authorizations.append(request.headers.get("Authorization"))
        if self.refuse:
            self.refuse -= 1
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Unknown charger\n")
        return None

    async def handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        identity = connection.request.path.rsplit("/", 1)[-1]
        hub_class = Hub16 if connection.subprotocol == "ocpp1.6" else Hub201
        station = hub_class(identity, connection, self.inbox)
        self.stations[identity] = station
        self.connections[identity] = connection
        with contextlib.suppress(ConnectionClosed):
            await station.start()


@contextlib.asynccontextmanager
async def central_system(refuse: int = 0) -> AsyncIterator[CentralSystem]:
    system = CentralSystem(refuse=refuse)
    async with serve(
        system.handle,
        "127.0.0.1",
        0,
        subprotocols=[Subprotocol("ocpp2.0.1"), Subprotocol("ocpp1.6")],
        process_request=system.check_request,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        system.url = f"ws://127.0.0.1:{port}/ocpp"
        yield system


@contextlib.asynccontextmanager
async def running(charger: SimulatedCharger, url: str) -> AsyncIterator[SimulatedCharger]:
    task = asyncio.create_task(charger.run(url, PASSWORD))
    try:
        yield charger
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _readings(meter_value: dict[str, Any]) -> dict[tuple[str, str | None], Any]:
    return {(sample["measurand"], sample.get("phase")): sample["value"] for sample in meter_value["sampled_value"]}


def power_is(watts: float) -> Callable[[dict[str, Any]], bool]:
    """Match a 1.6 MeterValues or 2.0.1 TransactionEvent reporting `watts`."""

    def matches(payload: dict[str, Any]) -> bool:
        return any(
            float(_readings(meter_value).get(("Power.Active.Import", None), -1)) == watts
            for meter_value in payload.get("meter_value", [])
        )

    return matches


def max_profile_16(profile_id: int, stack_level: int, unit: str, limit: float, **schedule: Any) -> dict[str, Any]:
    return {
        "charging_profile_id": profile_id,
        "stack_level": stack_level,
        "charging_profile_purpose": "ChargePointMaxProfile",
        "charging_profile_kind": "Relative",
        "charging_schedule": {
            "charging_rate_unit": unit,
            "charging_schedule_period": [{"start_period": 0, "limit": limit}],
            **schedule,
        },
    }


def max_profile_201(profile_id: int, stack_level: int, unit: str, limit: float, **schedule: Any) -> dict[str, Any]:
    return {
        "id": profile_id,
        "stack_level": stack_level,
        "charging_profile_purpose": "ChargingStationMaxProfile",
        "charging_profile_kind": "Absolute",
        "charging_schedule": [
            {
                "id": 1,
                "start_schedule": _now(),
                "charging_rate_unit": unit,
                "charging_schedule_period": [{"start_period": 0, "limit": limit}],
                **schedule,
            }
        ],
    }


async def test_v16_charger_boots_reports_and_answers_the_probe() -> None:
    charger = SimulatedCharger(ChargerSpec("CP-16", serial="SN-16"), meter_interval=0.2)
    async with central_system() as system, running(charger, system.url):
        inbox = system.inbox
        boot = await inbox.expect("BootNotification")
        assert boot == {
            "charge_point_vendor": "Easee",
            "charge_point_model": "Home",
            "firmware_version": "sim-1.0",
            "charge_point_serial_number": "SN-16",
        }
        assert system.authorizations == ["Basic " + base64.b64encode(b"CP-16:s3cret").decode()]
        await inbox.expect("StatusNotification", lambda p: (p["connector_id"], p["status"]) == (0, "Available"))
        start = await inbox.expect("StartTransaction")
        assert (start["connector_id"], start["id_tag"]) == (1, "SIMTAG01")
        await inbox.expect("StatusNotification", lambda p: (p["connector_id"], p["status"]) == (1, "Charging"))
        periodic = await inbox.expect(
            "MeterValues", lambda p: p["meter_value"][0]["sampled_value"][0]["context"] == "Sample.Periodic"
        )
        assert periodic["transaction_id"] == 42
        readings = _readings(periodic["meter_value"][0])
        assert readings[("Power.Active.Import", None)] == "11000"
        assert {phase: float(readings[("Current.Import", phase)]) for phase in ("L1", "L2", "L3")} == {
            "L1": 15.9,
            "L2": 15.9,
            "L3": 15.9,
        }
        assert ("Energy.Active.Import.Register", None) in readings
        assert datetime.fromisoformat(periodic["meter_value"][0]["timestamp"]).tzinfo is not None

        hub = system.stations["CP-16"]
        everything = await hub.call(call16.GetConfiguration())
        configuration = {item["key"]: item["value"] for item in everything.configuration_key}
        assert configuration["SupportedFeatureProfiles"] == (
            "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"
        )
        assert configuration["ChargeProfileMaxStackLevel"] == "10"
        assert configuration["ChargingScheduleAllowedChargingRateUnit"] == "Current,Power"
        assert configuration["MeterValueSampleInterval"] == "0.2"
        some = await hub.call(call16.GetConfiguration(key=["ChargeProfileMaxStackLevel", "NoSuchKey"]))
        assert [item["key"] for item in some.configuration_key] == ["ChargeProfileMaxStackLevel"]
        assert some.unknown_key == ["NoSuchKey"]
        assert charger.received[-1] == (
            "GetConfiguration",
            {"key": ["ChargeProfileMaxStackLevel", "NoSuchKey"]},
        )

        await inbox.expect("Heartbeat")
        assert charger.connected and charger.booted.is_set()
        assert charger.energy_wh > 0


async def test_v16_profile_limits_power_at_once_and_expires_by_itself() -> None:
    charger = SimulatedCharger(ChargerSpec("CP-16"), meter_interval=SLOW_METER)
    async with central_system() as system, running(charger, system.url):
        await system.inbox.expect("MeterValues", power_is(11_000))
        since = system.inbox.mark()
        result = await system.stations["CP-16"].call(
            call16.SetChargingProfile(connector_id=0, cs_charging_profiles=max_profile_16(7, 5, "W", 4000, duration=1))
        )
        assert result.status == "Accepted"
        assert (charger.power_w, charger.limit_w) == (4000, 4000)
        await system.inbox.expect("MeterValues", power_is(4000), since=since)

        await system.inbox.expect("MeterValues", power_is(11_000), since=since)
        assert charger.profiles == [] and charger.limit_w is None


async def test_v16_stacked_profiles_pause_and_clearing_restores() -> None:
    charger = SimulatedCharger(ChargerSpec("CP-16"), meter_interval=SLOW_METER)
    async with central_system() as system, running(charger, system.url):
        inbox = system.inbox
        await inbox.expect("MeterValues", power_is(11_000))
        hub = system.stations["CP-16"]
        # 10 A on three phases.
        await hub.call(call16.SetChargingProfile(connector_id=0, cs_charging_profiles=max_profile_16(1, 1, "A", 10)))
        await inbox.expect("MeterValues", power_is(6900))
        paused = await hub.call(
            call16.SetChargingProfile(connector_id=0, cs_charging_profiles=max_profile_16(2, 2, "W", 0))
        )
        assert paused.status == "Accepted"
        await inbox.expect("StatusNotification", lambda p: p["status"] == "SuspendedEVSE")
        await inbox.expect("MeterValues", power_is(0))
        assert charger.power_w == 0

        since = inbox.mark()
        assert (await hub.call(call16.ClearChargingProfile(id=2))).status == "Accepted"
        await inbox.expect("StatusNotification", lambda p: p["status"] == "Charging", since=since)
        await inbox.expect("MeterValues", power_is(6900), since=since)
        cleared = await hub.call(
            call16.ClearChargingProfile(charging_profile_purpose="ChargePointMaxProfile", stack_level=1)
        )
        assert cleared.status == "Accepted"
        await inbox.expect("MeterValues", power_is(11_000), since=since)
        assert (await hub.call(call16.ClearChargingProfile(id=1))).status == "Unknown"
        assert charger.profiles == []


@pytest.mark.parametrize(
    ("connector_id", "profile"),
    [
        pytest.param(1, max_profile_16(3, 1, "W", 4000), id="station maximum on a connector"),
        pytest.param(0, max_profile_16(3, 11, "W", 4000), id="stack level above the maximum"),
        pytest.param(
            2,
            {**max_profile_16(3, 1, "W", 4000), "charging_profile_purpose": "TxDefaultProfile"},
            id="unknown connector",
        ),
        pytest.param(
            1,
            {**max_profile_16(3, 1, "W", 4000), "charging_profile_purpose": "TxProfile", "transaction_id": 7},
            id="another transaction",
        ),
    ],
)
async def test_v16_invalid_profile_is_rejected(connector_id: int, profile: dict[str, Any]) -> None:
    charger = SimulatedCharger(ChargerSpec("CP-16"), meter_interval=SLOW_METER)
    async with central_system() as system, running(charger, system.url):
        await system.inbox.expect("MeterValues")
        result = await system.stations["CP-16"].call(
            call16.SetChargingProfile(connector_id=connector_id, cs_charging_profiles=profile)
        )
        assert result.status == "Rejected"
        assert charger.profiles == [] and charger.power_w == 11_000


async def test_v16_charger_without_smart_charging_says_so_and_refuses_profiles() -> None:
    charger = SimulatedCharger(ChargerSpec("CP-16", charging=False, smart_charging=False), meter_interval=SLOW_METER)
    async with central_system() as system, running(charger, system.url):
        await system.inbox.expect("StatusNotification", lambda p: (p["connector_id"], p["status"]) == (1, "Available"))
        hub = system.stations["CP-16"]
        probe = await hub.call(call16.GetConfiguration(key=["SupportedFeatureProfiles", "ChargeProfileMaxStackLevel"]))
        assert (
            probe.configuration_key[0]["value"]
            == "Core,FirmwareManagement,LocalAuthListManagement,Reservation,RemoteTrigger"
        )
        assert probe.unknown_key == ["ChargeProfileMaxStackLevel"]
        result = await hub.call(
            call16.SetChargingProfile(connector_id=0, cs_charging_profiles=max_profile_16(1, 1, "W", 0))
        )
        assert result.status == "NotSupported"
        assert (await hub.call(call16.ClearChargingProfile())).status == "Unknown"
        assert charger.profiles == [] and charger.power_w == 0
        assert not any(action == "StartTransaction" for action, _ in system.inbox.messages)


async def test_v201_charger_boots_reports_and_answers_the_probe() -> None:
    spec = ChargerSpec("CP-201", vendor="Zaptec", model="Go", protocol="ocpp2.0.1", phases=1, max_power_w=7400)
    charger = SimulatedCharger(spec, meter_interval=0.2)
    async with central_system() as system, running(charger, system.url):
        inbox = system.inbox
        boot = await inbox.expect("BootNotification")
        assert boot == {
            "charging_station": {"vendor_name": "Zaptec", "model": "Go", "firmware_version": "sim-1.0"},
            "reason": "PowerUp",
        }
        assert system.authorizations == ["Basic " + base64.b64encode(b"CP-201:s3cret").decode()]
        status = await inbox.expect("StatusNotification")
        assert (status["evse_id"], status["connector_id"], status["connector_status"]) == (1, 1, "Occupied")
        started = await inbox.expect("TransactionEvent", lambda p: p["event_type"] == "Started")
        assert started["evse"] == {"id": 1, "connector_id": 1}
        periodic = await inbox.expect("TransactionEvent", lambda p: p["trigger_reason"] == "MeterValuePeriodic")
        assert periodic["transaction_info"]["transaction_id"] == started["transaction_info"]["transaction_id"]
        assert periodic["seq_no"] > started["seq_no"]
        readings = _readings(periodic["meter_value"][0])
        assert readings[("Power.Active.Import", None)] == 7400
        assert readings[("Current.Import", "L1")] == 32.2
        assert ("Current.Import", "L2") not in readings

        def variable(component: str, name: str, **extra: Any) -> dict[str, Any]:
            return {"component": {"name": component}, "variable": {"name": name}, **extra}

        probe = await system.stations["CP-201"].call(
            call201.GetVariables(
                get_variable_data=[
                    variable("SmartChargingCtrlr", "Enabled"),
                    variable("SmartChargingCtrlr", "Available"),
                    variable("SmartChargingCtrlr", "ProfileStackLevel"),
                    variable("SmartChargingCtrlr", "RateUnit"),
                    variable("SampledDataCtrlr", "TxUpdatedInterval"),
                    variable("SmartChargingCtrlr", "NoSuchVariable"),
                    variable("NoSuchCtrlr", "Enabled"),
                    variable("SmartChargingCtrlr", "Enabled", attribute_type="MaxSet"),
                ]
            )
        )
        answers = [(r["attribute_status"], r.get("attribute_value")) for r in probe.get_variable_result]
        assert answers == [
            ("Accepted", "true"),
            ("Accepted", "true"),
            ("Accepted", "10"),
            ("Accepted", "A,W"),
            ("Accepted", "0.2"),
            ("UnknownVariable", None),
            ("UnknownComponent", None),
            ("NotSupportedAttributeType", None),
        ]
        await inbox.expect("Heartbeat")


async def test_v201_profile_limits_power_at_once_expires_and_clears() -> None:
    spec = ChargerSpec("CP-201", protocol="ocpp2.0.1", phases=1, max_power_w=7400)
    charger = SimulatedCharger(spec, meter_interval=SLOW_METER)
    async with central_system() as system, running(charger, system.url):
        inbox = system.inbox
        await inbox.expect("TransactionEvent", power_is(7400))
        hub = system.stations["CP-201"]
        since = inbox.mark()
        # 6 A on one phase, for one second.
        result = await hub.call(
            call201.SetChargingProfile(evse_id=0, charging_profile=max_profile_201(1, 5, "A", 6, duration=1))
        )
        assert result.status == "Accepted"
        assert charger.power_w == 1380
        limited = await inbox.expect("TransactionEvent", power_is(1380), since=since)
        assert limited["trigger_reason"] == "ChargingRateChanged"
        await inbox.expect("TransactionEvent", power_is(7400), since=since)
        assert charger.profiles == []

        since = inbox.mark()
        await hub.call(call201.SetChargingProfile(evse_id=0, charging_profile=max_profile_201(2, 5, "W", 0)))
        paused = await inbox.expect("TransactionEvent", power_is(0), since=since)
        assert paused["transaction_info"]["charging_state"] == "SuspendedEVSE"
        cleared = await hub.call(
            call201.ClearChargingProfile(
                charging_profile_criteria={"charging_profile_purpose": "ChargingStationMaxProfile"}
            )
        )
        assert cleared.status == "Accepted"
        resumed = await inbox.expect("TransactionEvent", power_is(7400), since=since)
        assert resumed["transaction_info"]["charging_state"] == "Charging"
        assert (await hub.call(call201.ClearChargingProfile(charging_profile_id=2))).status == "Unknown"


@pytest.mark.parametrize(
    ("evse_id", "profile", "reason"),
    [
        pytest.param(1, max_profile_201(3, 1, "W", 4000), "InvalidProfile", id="station maximum on an EVSE"),
        pytest.param(
            0,
            {**max_profile_201(3, 1, "W", 4000), "charging_profile_kind": "Relative"},
            "InvalidProfile",
            id="relative",
        ),
        pytest.param(0, max_profile_201(3, 1, "W", 4000), "DuplicateProfile", id="stack level taken"),
        pytest.param(0, max_profile_201(3, 11, "W", 4000), "InvalidStackLevel", id="stack level above the maximum"),
    ],
)
async def test_v201_invalid_profile_is_rejected(evse_id: int, profile: dict[str, Any], reason: str) -> None:
    charger = SimulatedCharger(ChargerSpec("CP-201", protocol="ocpp2.0.1"), meter_interval=SLOW_METER)
    async with central_system() as system, running(charger, system.url):
        await system.inbox.expect("TransactionEvent", power_is(11_000))
        hub = system.stations["CP-201"]
        installed = await hub.call(
            call201.SetChargingProfile(evse_id=0, charging_profile=max_profile_201(9, 1, "W", 5000))
        )
        assert installed.status == "Accepted"
        result = await hub.call(call201.SetChargingProfile(evse_id=evse_id, charging_profile=profile))
        assert (result.status, result.status_info["reason_code"]) == ("Rejected", reason)
        assert [installed.id for installed in charger.profiles] == [9]


async def test_v201_charger_without_smart_charging_rejects_profiles() -> None:
    spec = ChargerSpec("CP-201", protocol="ocpp2.0.1", smart_charging=False)
    charger = SimulatedCharger(spec, meter_interval=SLOW_METER)
    async with central_system() as system, running(charger, system.url):
        await system.inbox.expect("TransactionEvent", power_is(11_000))
        hub = system.stations["CP-201"]
        probe = await hub.call(
            call201.GetVariables(
                get_variable_data=[
                    {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "Available"}},
                    {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "ProfileStackLevel"}},
                ]
            )
        )
        answers = [(r["attribute_status"], r.get("attribute_value")) for r in probe.get_variable_result]
        assert answers == [("Accepted", "false"), ("UnknownVariable", None)]
        result = await hub.call(call201.SetChargingProfile(evse_id=0, charging_profile=max_profile_201(1, 1, "W", 0)))
        assert (result.status, result.status_info["reason_code"]) == ("Rejected", "NotSupported")
        assert charger.power_w == 11_000


async def test_charger_retries_a_refused_connection_and_reconnects_keeping_its_limit() -> None:
    charger = SimulatedCharger(ChargerSpec("CP-16"), meter_interval=SLOW_METER, reconnect_delay=0.05)
    async with central_system(refuse=1) as system, running(charger, system.url):
        inbox = system.inbox
        await inbox.expect("MeterValues", power_is(11_000))
        assert len(system.authorizations) == 2 and system.authorizations[0] == system.authorizations[1]
        hub = system.stations["CP-16"]
        await hub.call(call16.SetChargingProfile(connector_id=0, cs_charging_profiles=max_profile_16(1, 1, "W", 3000)))
        await inbox.expect("MeterValues", power_is(3000))

        since = inbox.mark()
        await system.connections["CP-16"].close()
        await inbox.expect("BootNotification", since=since)
        # The transaction and the limit outlive the connection: no new transaction, still limited.
        reported = await inbox.expect("MeterValues", since=since)
        assert power_is(3000)(reported) and reported["transaction_id"] == 42
        assert charger.boots == 2
        assert not any(action == "StartTransaction" for action, _ in inbox.messages[since:])


async def test_simulation_runs_a_charger_per_spec() -> None:
    specs = [
        ChargerSpec("SIM-1", model="One"),
        ChargerSpec("SIM-2", model="Two", protocol="ocpp2.0.1"),
        ChargerSpec("SIM-3", model="Three"),
    ]

    def model(boot: dict[str, Any]) -> str:
        return str(boot.get("charge_point_model") or boot["charging_station"]["model"])

    async with central_system() as system:
        simulation = asyncio.create_task(
            run_simulation(system.url, PASSWORD, specs, meter_interval=SLOW_METER, connect_rate=100)
        )
        try:
            for spec in specs:
                await system.inbox.expect("BootNotification", lambda boot, spec=spec: model(boot) == spec.model)
        finally:
            simulation.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await simulation
        assert sorted(system.stations) == ["SIM-1", "SIM-2", "SIM-3"]


START = datetime(2025, 1, 6, tzinfo=UTC)


def _profile(profile_id: int, stack_level: int, limit: float, **fields: Any) -> InstalledProfile:
    defaults: dict[str, Any] = {
        "purpose": "ChargePointMaxProfile",
        "connector": 0,
        "kind": "Absolute",
        "unit": "W",
        "periods": (SchedulePeriod(0, limit),),
        "start": START,
    }
    return InstalledProfile(id=profile_id, stack_level=stack_level, **{**defaults, **fields})


@pytest.mark.parametrize(
    ("profiles", "seconds", "limit", "change_after"),
    [
        pytest.param([], 0, None, None, id="no profile"),
        pytest.param([_profile(1, 1, 5000), _profile(2, 2, 3000)], 10, 3000, None, id="highest stack level wins"),
        pytest.param(
            [_profile(1, 1, 5000), _profile(2, 2, 3000, valid_from=START + timedelta(seconds=60))],
            10,
            5000,
            60,
            id="higher level not valid yet",
        ),
        pytest.param(
            [_profile(1, 1, 5000), _profile(2, 2, 3000, duration_s=60)],
            90,
            5000,
            None,
            id="higher level ended",
        ),
        pytest.param(
            [_profile(1, 1, 5000, valid_to=START + timedelta(seconds=60))], 60, None, None, id="past valid to"
        ),
        pytest.param(
            [_profile(1, 1, 0, periods=(SchedulePeriod(0, 5000), SchedulePeriod(60, 2000)))],
            30,
            5000,
            60,
            id="first period",
        ),
        pytest.param(
            [_profile(1, 1, 0, periods=(SchedulePeriod(0, 5000), SchedulePeriod(60, 2000)))],
            90,
            2000,
            None,
            id="second period",
        ),
        pytest.param([_profile(1, 1, 16, unit="A")], 0, 16 * 3 * 230, None, id="amps on three phases"),
        pytest.param(
            [_profile(1, 1, 0, unit="A", periods=(SchedulePeriod(0, 16, phases=1),))],
            0,
            16 * 230,
            None,
            id="amps on one phase",
        ),
        pytest.param(
            [
                _profile(1, 1, 7000, purpose="TxDefaultProfile", connector=1),
                _profile(2, 0, 9000, purpose="TxProfile", connector=1),
            ],
            0,
            9000,
            None,
            id="transaction profile overrules default",
        ),
        pytest.param(
            [_profile(1, 1, 9000, purpose="TxProfile", connector=1), _profile(2, 1, 8000)],
            0,
            8000,
            None,
            id="station maximum caps",
        ),
        pytest.param(
            [_profile(1, 1, 1000, kind="Recurring", recurrency="Daily", duration_s=3600)],
            86_400 + 1800,
            1000,
            86_400 + 3600,
            id="recurring, inside today's window",
        ),
        pytest.param(
            [_profile(1, 1, 1000, kind="Recurring", recurrency="Daily", duration_s=3600)],
            86_400 + 7200,
            None,
            2 * 86_400,
            id="recurring, between windows",
        ),
    ],
)
def test_effective_limit(
    profiles: list[InstalledProfile], seconds: float, limit: float | None, change_after: float | None
) -> None:
    at = START + timedelta(seconds=seconds)
    change = None if change_after is None else START + timedelta(seconds=change_after)
    assert effective_limit_w(profiles, at, phases=3) == (limit, change)


class _SwallowingStation:
    """A station whose announcement swallows a cancellation, as Python 3.11's asyncio.wait_for can.

    The ocpp library's ``call`` awaits ``asyncio.wait_for``; on 3.11 a cancellation that arrives
    together with the answer is dropped, and the task goes on with ``cancelling()`` set.
    """

    async def boot(self) -> tuple[str, int]:
        return "Accepted", 3600

    async def announce(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)

    def heartbeat_request(self) -> call16.Heartbeat:
        return call16.Heartbeat()


async def test_a_charger_asked_to_stop_stops_even_when_the_cancellation_was_swallowed() -> None:
    charger = SimulatedCharger(ChargerSpec(identity="CP-STOP", charging=False))
    task = asyncio.create_task(charger._drive(_SwallowingStation()))  # type: ignore[arg-type]
    # The guard only keeps a broken simulator from hanging the suite: the next heartbeat is an hour away.
    done, _ = await asyncio.wait([task], timeout=10)
    assert task in done and task.cancelled()
