"""OCPP over a real websocket: the hub served by Hypercorn, chargers played by the `ocpp` library."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from quart import Quart
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from powerbank.models import (
    ChargePoint,
    ChargingTransaction,
    ConnectionAttempt,
    ConnectorStatus,
    MeterSample,
    Operator,
    ParticipationSource,
    ParticipationState,
)
from powerbank.ocpp.connection import ConnectionLost
from powerbank.ocpp.registry import Registry, registry_of
from powerbank.rules.eligibility import model_problem
from powerbank.runtime.server import report_loop_errors
from powerbank.services import chargers
from powerbank.services.chargers import ATTEMPT_ROWS_PER_ADDRESS, record_attempt
from powerbank.services.enrollment import catalogue_keys, get_participation
from tests.conftest import TEST_PASSWORD, Factory, LoginAs, post_form
from tests.helpers import eventually
from tests.ocpp.support import EDIT_FORM, Charger16, basic, boot16, charger, now_text, raw_socket, reload

pytestmark = pytest.mark.served


# Authentication and negotiation --------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_charger_with_its_password_connects_and_shows_online(
    app: Quart,
    factory: Factory,
    session: AsyncSession,
    login_as: LoginAs,
    protocol: str,
) -> None:
    team = await factory.team()
    cp = await factory.charge_point(team)
    owner = await factory.user(team=team, team_role="owner")
    async with raw_socket(app, cp.identity, [protocol]) as websocket:
        assert websocket.subprotocol == protocol

        async def online() -> bool:
            return (await reload(session, cp)).online

        await eventually(online)
        assert cp.ocpp_protocol == protocol
        client = await login_as(owner)
        table = await client.get(f"/teams/{team.id}/charge-points", headers={"HX-Request": "true"})
        assert "Online" in await table.get_data(as_text=True)

    async def offline() -> bool:
        return not (await reload(session, cp)).online

    await eventually(offline)
    page = await (await login_as(owner)).get(f"/teams/{team.id}/charge-points")
    assert "Offline" in await page.get_data(as_text=True)


@pytest.mark.parametrize(
    ("identity", "password", "headers", "reason"),
    [
        ("NOBODY-1", TEST_PASSWORD, None, "Unknown identity"),
        ("{cp}", "wrong password", None, "Wrong password"),
        ("{cp}", None, {}, "No password (HTTP Basic authentication missing)"),
        ("{cp}", TEST_PASSWORD, basic("someone-else", TEST_PASSWORD), "User name differs from the identity"),
    ],
)
async def test_refused_charger_gets_401_and_is_listed(
    app: Quart,
    factory: Factory,
    session: AsyncSession,
    identity: str,
    password: str | None,
    headers: dict[str, str] | None,
    reason: str,
) -> None:
    cp = await factory.charge_point(await factory.team())
    identity = identity.replace("{cp}", cp.identity)
    sent = headers if headers is not None else basic(identity, password or "")
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"{app.config['TEST_OCPP_URL']}/{identity}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=sent,
        ):
            pass
    assert refused.value.response.status_code == 401
    assert "Basic" in refused.value.response.headers["WWW-Authenticate"]
    attempts = list(await session.exec(select(ConnectionAttempt)))
    assert [(a.identity, a.reason, a.remote_address) for a in attempts] == [(identity, reason, "127.0.0.1")]


@pytest.mark.parametrize("path", ["", "CP-1/extra", "CP-1/"])
async def test_a_path_that_names_no_charger_is_not_found(
    app: Quart, factory: Factory, session: AsyncSession, path: str
) -> None:
    await factory.charge_point(await factory.team(), identity="CP-1")
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"{app.config['TEST_OCPP_URL']}/{path}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=basic("CP-1", TEST_PASSWORD),
        ):
            pass
    assert refused.value.response.status_code == 404
    assert list(await session.exec(select(ConnectionAttempt))) == []


@pytest.mark.parametrize("config_overrides", [{"DEMO": False}])
async def test_demo_charger_password_is_refused_outside_demo_mode(
    app: Quart,
    factory: Factory,
    session: AsyncSession,
) -> None:
    from powerbank.rules.demo_credentials import DEMO_CHARGER_PASSWORD
    from powerbank.services.passwords import hash_password

    cp = await factory.charge_point(await factory.team(), ocpp_password_hash=hash_password(DEMO_CHARGER_PASSWORD))
    with pytest.raises(InvalidStatus) as refused:
        async with raw_socket(app, cp.identity, password=DEMO_CHARGER_PASSWORD):
            pass
    assert refused.value.response.status_code == 401
    reasons = list(await session.exec(select(ConnectionAttempt.reason)))
    assert reasons == ["Published demo password refused outside demo mode"]


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["ocpp1.6", "ocpp2.0.1"], "ocpp2.0.1"),
        (["ocpp2.0.1", "ocpp1.6"], "ocpp2.0.1"),
        (["ocpp1.5", "ocpp1.6"], "ocpp1.6"),
    ],
)
async def test_newest_version_both_sides_speak_is_chosen(
    app: Quart, factory: Factory, offered: list[str], chosen: str
) -> None:
    cp = await factory.charge_point(await factory.team())
    async with raw_socket(app, cp.identity, offered) as websocket:
        assert websocket.subprotocol == chosen
        await eventually(lambda: _true(registry_of(app).get(cp.identity) is not None))
        assert registry_of(app).get(cp.identity).protocol == chosen  # type: ignore[union-attr]


async def _true(value: bool) -> bool:
    return value


async def test_no_supported_version_is_closed_with_1002_and_listed(
    app: Quart,
    factory: Factory,
    session: AsyncSession,
) -> None:
    cp = await factory.charge_point(await factory.team())
    async with raw_socket(app, cp.identity, ["ocpp1.5"]) as websocket:
        assert websocket.subprotocol is None
        with pytest.raises(ConnectionClosed) as closed:
            await websocket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1002
    reasons = list(await session.exec(select(ConnectionAttempt.reason)))
    assert reasons == ["No supported OCPP version offered (ocpp1.5)"]


# Messages from the charger -----------------------------------------------------------------


async def test_ocpp16_messages_are_stored_and_shown(
    app: Quart,
    factory: Factory,
    session: AsyncSession,
    login_as: LoginAs,
) -> None:
    team = await factory.team()
    cp = await factory.charge_point(team)
    member = await factory.user(team=team, team_role="member")
    async with charger(app, cp.identity) as station:
        boot = await boot16(station, vendor="Zaptec", model="Go")
        assert (boot.status, boot.interval) == ("Accepted", 300)
        assert (await station.call(call16.Heartbeat())).current_time
        await station.call(
            call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging", timestamp=now_text())
        )
        await station.call(call16.StatusNotification(connector_id=2, error_code="GroundFailure", status="Faulted"))
        assert (await station.call(call16.Authorize(id_tag="TAG-1"))).id_tag_info["status"] == "Accepted"
        started = await station.call(
            call16.StartTransaction(connector_id=1, id_tag="TAG-1", meter_start=1000, timestamp=now_text())
        )
        await station.call(
            call16.MeterValues(
                connector_id=1,
                transaction_id=started.transaction_id,
                meter_value=[
                    {
                        "timestamp": now_text(),
                        "sampledValue": [
                            {"value": "7.2", "measurand": "Power.Active.Import", "unit": "kW"},
                            {"value": "1500", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                            {"value": "10.5", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                            {"value": "10.4", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
                            {"value": "10.3", "measurand": "Current.Import", "phase": "L3", "unit": "A"},
                        ],
                    }
                ],
            )
        )
        assert (await station.call(call16.DataTransfer(vendor_id="com.example"))).status == "UnknownVendorId"
        await station.call(call16.FirmwareStatusNotification(status="Installed"))
        await station.call(call16.DiagnosticsStatusNotification(status="Idle"))
        stopped = await station.call(
            call16.StopTransaction(
                meter_stop=2600, timestamp=now_text(), transaction_id=started.transaction_id, reason="Local"
            )
        )
        assert stopped is not None

        await registry_of(app).flush_last_seen()
        await reload(session, cp)
        assert (cp.reported_vendor, cp.reported_model, cp.reported_firmware, cp.reported_serial) == (
            "Zaptec",
            "Go",
            "4.2.1",
            "SN-77",
        )
        statuses = {s.connector_id: (s.status, s.error_code) for s in await session.exec(select(ConnectorStatus))}
        assert statuses == {1: ("Charging", None), 2: ("Faulted", "GroundFailure")}
        sample = (await session.exec(select(MeterSample))).one()
        assert (sample.power_w, sample.energy_wh) == (7200, 1500)
        assert (sample.current_l1_a, sample.current_l2_a, sample.current_l3_a) == (10.5, 10.4, 10.3)
        transaction = (await session.exec(select(ChargingTransaction))).one()
        assert (transaction.id, transaction.meter_start_wh, transaction.meter_stop_wh, transaction.stop_reason) == (
            started.transaction_id,
            1000,
            2600,
            "Local",
        )

        client = await login_as(member)
        page = await (await client.get(f"/charge-points/{cp.id}")).get_data(as_text=True)
        fragment = await (await client.get(f"/charge-points/{cp.id}/ocpp", headers={"HX-Request": "true"})).get_data(
            as_text=True
        )
        for html in (page, fragment):
            assert "ocpp1.6" in html and "4.2.1" in html
            assert "Charging" in html and "GroundFailure" in html
            assert "7.2 kW" in html and "7200 W" in html and "10.5 A / 10.4 A / 10.3 A" in html
            assert "OCPP log" in html and "StartTransaction" in html and "Hub → charger" in html
        assert 'hx-trigger="every 5s"' in fragment


async def test_ocpp201_messages_are_stored_and_shown(
    app: Quart,
    factory: Factory,
    session: AsyncSession,
    login_as: LoginAs,
) -> None:
    team = await factory.team()
    cp = await factory.charge_point(team)
    owner = await factory.user(team=team, team_role="owner")
    async with charger(app, cp.identity, protocol="ocpp2.0.1") as station:
        boot = await station.call(
            call201.BootNotification(
                charging_station={
                    "vendor_name": "Easee",
                    "model": "Charge",
                    "firmware_version": "9.9",
                    "serial_number": "E-1",
                },
                reason="PowerUp",
            )
        )
        assert boot.status == "Accepted"
        await station.call(call201.Heartbeat())
        await station.call(
            call201.StatusNotification(timestamp=now_text(), connector_status="Occupied", evse_id=1, connector_id=1)
        )
        await station.call(call201.Authorize(id_token={"id_token": "TOKEN", "type": "ISO14443"}))
        meter = [
            {
                "timestamp": now_text(),
                "sampled_value": [
                    {"value": 11.0, "measurand": "Power.Active.Import", "unit_of_measure": {"unit": "kW"}},
                    {"value": 3.5, "measurand": "Energy.Active.Import.Register", "unit_of_measure": {"unit": "kWh"}},
                    {"value": 16, "measurand": "Current.Import", "phase": "L1"},
                ],
            }
        ]
        await station.call(
            call201.TransactionEvent(
                event_type="Started",
                timestamp=now_text(),
                trigger_reason="CablePluggedIn",
                seq_no=0,
                transaction_info={"transaction_id": "TX-9"},
                evse={"id": 1},
                meter_value=meter,
                id_token={"id_token": "TOKEN", "type": "ISO14443"},
            )
        )
        await station.call(call201.MeterValues(evse_id=1, meter_value=meter))
        await station.call(call201.NotifyReport(request_id=1, generated_at=now_text(), seq_no=0))
        await station.call(
            call201.TransactionEvent(
                event_type="Ended",
                timestamp=now_text(),
                trigger_reason="EVDeparted",
                seq_no=1,
                transaction_info={"transaction_id": "TX-9", "stopped_reason": "EVDisconnected"},
            )
        )

        await registry_of(app).flush_last_seen()
        await reload(session, cp)
        assert (cp.ocpp_protocol, cp.reported_vendor, cp.reported_model, cp.reported_firmware) == (
            "ocpp2.0.1",
            "Easee",
            "Charge",
            "9.9",
        )
        samples = list(await session.exec(select(MeterSample)))
        assert [(s.power_w, s.energy_wh, s.current_l1_a, s.transaction_id) for s in samples] == [
            (11000, 3500, 16, "TX-9"),
            (11000, 3500, 16, None),
        ]
        transaction = (await session.exec(select(ChargingTransaction))).one()
        assert (transaction.remote_id, transaction.stop_reason) == ("TX-9", "EVDisconnected")
        html = await (await (await login_as(owner)).get(f"/charge-points/{cp.id}")).get_data(as_text=True)
        assert "ocpp2.0.1" in html and "Occupied" in html and "11.0 kW" in html and "TransactionEvent" in html


# Capability probe and compatibility ---------------------------------------------------------


@pytest.mark.parametrize(("smart", "signed_up"), [(True, True), (False, False)])
async def test_capability_probe_decides_compatibility_and_dk2_signs_up(
    app: Quart,
    factory: Factory,
    session: AsyncSession,
    smart: bool,
    signed_up: bool,
) -> None:
    operator = await factory.operator()
    cp = await factory.charge_point(await factory.team(operator), price_area="DK2", brand="Easee", model="Home")

    class Station(Charger16):
        smart_charging = smart

    async with charger(app, cp.identity, client=Station) as station:
        await boot16(station)

        async def probed() -> bool:
            return (await reload(session, cp)).smart_charging is not None

        await eventually(probed)
    assert cp.smart_charging is smart
    problem = model_problem(cp, await catalogue_keys(session, operator.id or 0))
    assert (problem is None) is smart
    participation = await get_participation(session, cp)
    assert (participation.state is ParticipationState.SIGNED_UP) is signed_up
    if signed_up:
        assert participation.source == ParticipationSource.AUTOMATIC


async def test_ocpp201_probe_reads_the_smart_charging_controller(
    app: Quart,
    factory: Factory,
    session: AsyncSession,
) -> None:
    cp = await factory.charge_point(await factory.team())
    async with charger(app, cp.identity, protocol="ocpp2.0.1") as station:
        await station.call(
            call201.BootNotification(charging_station={"vendor_name": "Easee", "model": "Home"}, reason="PowerUp")
        )

        async def probed() -> bool:
            return (await reload(session, cp)).smart_charging is not None

        await eventually(probed)
    assert cp.smart_charging is True


# Bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "frame", "code", "message_id"),
    [
        ("ocpp1.6", "this is not json", "FormationViolation", "-1"),
        ("ocpp2.0.1", "this is not json", "RpcFrameworkError", "-1"),
        ("ocpp1.6", '{"not": "an array"}', "FormationViolation", "-1"),
        ("ocpp1.6", '[2, "a1", "BootNotification"]', "FormationViolation", "a1"),
        ("ocpp1.6", '[7, "a2", "Heartbeat", {}]', "ProtocolError", "a2"),
        ("ocpp2.0.1", '[7, "a2", "Heartbeat", {}]', "MessageTypeNotSupported", "a2"),
        ("ocpp1.6", '[2, "a3", "NoSuchAction", {}]', "NotSupported", "a3"),
        ("ocpp1.6", '[2, "a4", "GetConfiguration", {}]', "NotImplemented", "a4"),
        ("ocpp1.6", '[2, "a5", "BootNotification", {"chargePointVendor": 5}]', "TypeConstraintViolation", "a5"),
        ("ocpp1.6", '[2, "a6", "BootNotification", {}]', "ProtocolError", "a6"),
        ("ocpp2.0.1", '[2, "a6", "BootNotification", {}]', "ProtocolError", "a6"),
    ],
)
async def test_malformed_frames_get_the_right_call_error_and_the_charger_carries_on(
    app: Quart,
    factory: Factory,
    protocol: str,
    frame: str,
    code: str,
    message_id: str,
) -> None:
    cp = await factory.charge_point(await factory.team())
    async with raw_socket(app, cp.identity, [protocol]) as websocket:
        await websocket.send(frame)
        answer = json.loads(await websocket.recv())
        assert answer[:3] == [4, message_id, code]
        await websocket.send('[2, "after", "Heartbeat", {}]')
        assert json.loads(await websocket.recv())[:2] == [3, "after"]


async def test_reused_call_id_is_refused(app: Quart, factory: Factory) -> None:
    cp = await factory.charge_point(await factory.team())
    async with raw_socket(app, cp.identity) as websocket:
        await websocket.send('[2, "same", "Heartbeat", {}]')
        assert json.loads(await websocket.recv())[:2] == [3, "same"]
        await websocket.send('[2, "same", "Heartbeat", {}]')
        assert json.loads(await websocket.recv())[:3] == [4, "same", "ProtocolError"]


async def test_frame_over_64_kib_closes_only_that_charger(app: Quart, factory: Factory) -> None:
    team = await factory.team()
    big, other = await factory.charge_point(team), await factory.charge_point(team)
    async with raw_socket(app, other.identity) as bystander, raw_socket(app, big.identity) as websocket:
        await websocket.send(json.dumps([2, "big", "DataTransfer", {"vendorId": "x", "data": "x" * 70_000}]))
        with pytest.raises(ConnectionClosed) as closed:
            await websocket.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await bystander.send('[2, "h", "Heartbeat", {}]')
        assert json.loads(await bystander.recv())[:2] == [3, "h"]


async def test_flooding_charger_is_disconnected_while_others_are_served(app: Quart, factory: Factory) -> None:
    team = await factory.team()
    flooder, other = await factory.charge_point(team), await factory.charge_point(team)
    async with raw_socket(app, other.identity) as bystander, raw_socket(app, flooder.identity) as websocket:
        for number in range(registry_of(app).message_burst * 3):
            await websocket.send(f'[2, "f{number}", "Heartbeat", {{}}]')
        await bystander.send('[2, "h", "Heartbeat", {}]')
        async with asyncio.timeout(2):
            assert json.loads(await bystander.recv())[:2] == [3, "h"]
        answered = 0
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                while True:
                    await websocket.recv()
                    answered += 1
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert answered < registry_of(app).message_burst * 2


# Connections ---------------------------------------------------------------------------------


async def test_second_connection_replaces_the_first(app: Quart, factory: Factory, session: AsyncSession) -> None:
    cp = await factory.charge_point(await factory.team())
    registry = registry_of(app)
    async with raw_socket(app, cp.identity) as first:
        await eventually(lambda: _true(registry.get(cp.identity) is not None))
        replaced = registry.get(cp.identity)
        async with raw_socket(app, cp.identity) as second:
            with pytest.raises(ConnectionClosed) as closed:
                await first.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.reason == "Replaced by a new connection"
            await second.send('[2, "h", "Heartbeat", {}]')
            assert json.loads(await second.recv())[:2] == [3, "h"]
            assert len(registry) == 1 and registry.get(cp.identity) is not replaced
            # The replaced connection's end must not take the charger offline.
            await eventually(lambda: _true(replaced is not None and replaced.serving_done))
            await registry.flush_last_seen()
            assert (await reload(session, cp)).online


# Changes to who a charger is ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("password", "OCPP password changed"),
        ("identity", "OCPP identity changed"),
        ("delete", "Charge point deleted"),
        ("delete team", "Team deleted"),
    ],
)
async def test_a_charger_is_disconnected_when_who_it_is_changes(
    app: Quart,
    factory: Factory,
    login_as: LoginAs,
    change: str,
    reason: str,
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    cp = await factory.charge_point(team)
    admin = await factory.user(operator=operator, operator_role="admin", team=team, team_role="owner")
    registry = registry_of(app)
    async with raw_socket(app, cp.identity) as websocket:
        await eventually(lambda: _true(registry.get(cp.identity) is not None))
        client = await login_as(admin)
        path, form = {
            "password": (f"/charge-points/{cp.id}/ocpp-password", {}),
            "identity": (f"/charge-points/{cp.id}/edit", {**EDIT_FORM, "identity": "RENAMED-1"}),
            "delete": (f"/charge-points/{cp.id}/delete", {}),
            "delete team": (f"/teams/{team.id}/delete", {}),
        }[change]
        response = await post_form(client, path, form)
        assert response.status_code in (200, 303), await response.get_data(as_text=True)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(websocket.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.reason == reason
    assert registry.get(cp.identity) is None


async def test_a_password_reset_while_a_charger_logs_in_with_the_old_one_closes_it(
    app: Quart,
    factory: Factory,
    login_as: LoginAs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    team = await factory.team()
    cp = await factory.charge_point(team)
    client = await login_as(await factory.user(team=team, team_role="owner"))
    checked, go_on = asyncio.Event(), asyncio.Event()
    check = chargers.check_password

    async def check_then_wait(*args: Any, **kwargs: Any) -> chargers.Authentication:
        outcome = await check(*args, **kwargs)  # The old password, still valid when read.
        checked.set()
        await go_on.wait()
        return outcome

    monkeypatch.setattr(chargers, "check_password", check_then_wait)

    async def connect_with_the_old_password() -> Any:
        async with raw_socket(app, cp.identity) as websocket:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(websocket.recv(), 5)
            return closed.value.rcvd

    connecting = asyncio.create_task(connect_with_the_old_password())
    await asyncio.wait_for(checked.wait(), 5)
    reset = await post_form(client, f"/charge-points/{cp.id}/ocpp-password")
    assert reset.status_code == 200
    go_on.set()
    received = await asyncio.wait_for(connecting, 10)
    assert received is not None and received.code == 1000
    assert received.reason == "Credentials changed while connecting; connect again"
    assert registry_of(app).get(cp.identity) is None


async def test_closing_gives_up_on_a_charger_that_never_lets_its_close_through() -> None:
    given_up: list[tuple[int, str]] = []

    class Stuck:
        serving_task = None

        async def close(self, code: int, reason: str) -> None:
            try:
                await asyncio.Event().wait()  # Its close frame waits behind frames it never reads.
            except asyncio.CancelledError:
                given_up.append((code, reason))
                raise

    # Closes that are never given up would wait forever: the guard turns that into a failure.
    async with asyncio.timeout(30):
        await Registry._close_together([Stuck(), Stuck()], grace_s=0.2)  # type: ignore[list-item]
    assert given_up == [(1001, "The hub is shutting down")] * 2


async def test_an_edit_that_is_refused_or_keeps_the_identity_leaves_the_charger_connected(
    app: Quart,
    factory: Factory,
    login_as: LoginAs,
) -> None:
    team = await factory.team()
    cp = await factory.charge_point(team)
    client = await login_as(await factory.user(team=team, team_role="owner"))
    async with raw_socket(app, cp.identity) as websocket:
        await eventually(lambda: _true(registry_of(app).get(cp.identity) is not None))
        refused = await post_form(
            client, f"/charge-points/{cp.id}/edit", {**EDIT_FORM, "identity": "RENAMED-2", "name": " "}
        )
        assert refused.status_code == 422
        kept = await post_form(client, f"/charge-points/{cp.id}/edit", {**EDIT_FORM, "identity": cp.identity})
        assert kept.status_code == 303
        await websocket.send('[2, "h", "Heartbeat", {}]')
        assert json.loads(await websocket.recv())[:2] == [3, "h"]


async def test_stopping_the_hub_closes_each_charger_properly(app: Quart, factory: Factory) -> None:
    cp = await factory.charge_point(await factory.team())
    registry = registry_of(app)
    async with raw_socket(app, cp.identity) as websocket:
        await eventually(lambda: _true(registry.get(cp.identity) is not None))
        app.config["TEST_SHUTDOWN"].set()
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(websocket.recv(), 5)
        # "Going away", so the charger reconnects to the next process, not a dropped connection.
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "The hub is shutting down")


def test_loop_errors_are_reported_but_cancelled_connections_are_not(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            report_loop_errors(loop, {"message": "Exception in callback", "exception": asyncio.CancelledError()})
            assert not caplog.records
            report_loop_errors(loop, {"message": "Exception in callback", "exception": RuntimeError("boom")})
            assert "boom" in caplog.text
    finally:
        loop.close()


async def test_a_charger_connecting_while_the_hub_closes_is_told_to_come_back(app: Quart, factory: Factory) -> None:
    cp = await factory.charge_point(await factory.team())
    registry = registry_of(app)
    async with raw_socket(app, cp.identity) as websocket:
        await eventually(lambda: _true(registry.get(cp.identity) is not None))
        await registry.close_all(grace_s=5)
        assert registry.get(cp.identity) is None
        with pytest.raises(ConnectionClosed):
            await websocket.recv()
    with pytest.raises(InvalidStatus) as refused:
        async with raw_socket(app, cp.identity):
            pass
    assert refused.value.response.status_code == 503
    assert refused.value.response.headers["Retry-After"] == "10"


async def test_pending_call_fails_fast_when_the_charger_disconnects(app: Quart, factory: Factory) -> None:
    cp = await factory.charge_point(await factory.team())
    registry = registry_of(app)
    async with raw_socket(app, cp.identity) as websocket:
        await eventually(lambda: _true(registry.get(cp.identity) is not None))
        connection = registry.get(cp.identity)
        assert connection is not None
        # An hour: only the lost connection, not the call's own timeout, can end it within the test.
        pending = asyncio.create_task(connection.call(call16.GetConfiguration(), timeout=3600))
        assert json.loads(await websocket.recv())[2] == "GetConfiguration"
    with pytest.raises(ConnectionLost):
        await asyncio.wait_for(pending, 30)


async def test_broadcast_sends_one_frame_to_many_and_matches_answers(app: Quart, factory: Factory) -> None:
    team = await factory.team()
    first, second = await factory.charge_point(team), await factory.charge_point(team)
    registry = registry_of(app)
    frame = '[2, "fan-1", "ClearChargingProfile", {}]'
    async with raw_socket(app, first.identity) as one, raw_socket(app, second.identity) as two:
        await eventually(lambda: _true(len(registry) == 2))
        futures = registry.broadcast(frame, "fan-1", [first.identity, second.identity, "NOT-CONNECTED"])
        assert set(futures) == {first.identity, second.identity}
        assert await one.recv() == frame and await two.recv() == frame
        await one.send('[3, "fan-1", {"status": "Accepted"}]')
        await two.send('[4, "fan-1", "NotSupported", "no", {}]')
        assert await futures[first.identity] == {"status": "Accepted"}
        with pytest.raises(Exception, match="NotSupported"):
            await futures[second.identity]


async def test_last_seen_is_kept_from_every_message(app: Quart, factory: Factory, session: AsyncSession) -> None:
    cp = await factory.charge_point(await factory.team())
    async with raw_socket(app, cp.identity) as websocket:
        await eventually(lambda: _online(session, cp))
        connected_at = cp.last_seen_at
        assert connected_at is not None
        await websocket.send('[2, "h", "Heartbeat", {}]')
        await websocket.recv()

        async def seen_later() -> bool:
            seen = (await reload(session, cp)).last_seen_at
            return seen is not None and seen > connected_at

        await eventually(seen_later)


async def _online(session: AsyncSession, cp: ChargePoint) -> bool:
    return (await reload(session, cp)).online


@pytest.mark.parametrize("hypercorn_overrides", [{"read_timeout": 0.5}])
async def test_a_charger_that_goes_silent_shows_offline(app: Quart, factory: Factory, session: AsyncSession) -> None:
    """A dead charger never answers the hub's pings; the read timeout closes it (production: 90 s)."""
    cp = await factory.charge_point(await factory.team())
    host, port = app.config["TEST_OCPP_URL"].removeprefix("ws://").removesuffix("/ocpp").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(b"0123456789abcdef").decode()
    credentials = basic(cp.identity, TEST_PASSWORD)["Authorization"]
    writer.write(
        (
            f"GET /ocpp/{cp.identity} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: ocpp1.6\r\nAuthorization: {credentials}\r\n\r\n"
        ).encode()
    )
    assert b" 101 " in await reader.readline()
    await eventually(lambda: _online(session, cp))

    async def offline() -> bool:
        return not await _online(session, cp)

    await eventually(offline, timeout=5)
    writer.close()


# Connection attempts page --------------------------------------------------------------------


async def _attempt(session: AsyncSession, identity: str, reason: str, operator: Operator | None) -> None:
    session.add(
        ConnectionAttempt(
            identity=identity, remote_address="192.0.2.7", reason=reason, operator_id=operator.id if operator else None
        )
    )
    await session.commit()


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("operator admin", 200),
        ("operator manager", 403),
        ("team owner", 403),
        ("other operator admin", 404),
    ],
)
async def test_connection_attempts_page_is_for_operator_admins(
    app: Quart,
    factory: Factory,
    login_as: LoginAs,
    role: str,
    expected: int,
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    users = {
        "operator admin": lambda: factory.user(operator=operator, operator_role="admin"),
        "operator manager": lambda: factory.user(operator=operator, operator_role="manager"),
        "team owner": lambda: factory.user(team=team, team_role="owner"),
        "other operator admin": lambda: _other_admin(factory),
    }
    client = await login_as(await users[role]())
    response = await client.get(f"/operators/{operator.id}/connection-attempts")
    assert response.status_code == expected


async def _other_admin(factory: Factory) -> Any:
    return await factory.user(operator=await factory.operator(), operator_role="admin")


async def test_attempts_are_scoped_to_the_operator_and_unknown_ones_can_be_registered(
    app: Quart,
    factory: Factory,
    session: AsyncSession,
    login_as: LoginAs,
) -> None:
    mine, theirs = await factory.operator(), await factory.operator()
    team = await factory.team(mine, name="Depot")
    await _attempt(session, "MY-CP", "Wrong password", mine)
    await _attempt(session, "THEIR-CP", "Wrong password", theirs)
    await _attempt(session, "NEW-CP", "Unknown identity", None)
    client = await login_as(await factory.user(operator=mine, operator_role="admin"))
    html = await (await client.get(f"/operators/{mine.id}/connection-attempts")).get_data(as_text=True)
    assert "MY-CP" in html and "NEW-CP" in html and "192.0.2.7" in html
    assert "THEIR-CP" not in html
    assert html.count("Register charge point") == 1

    shortcut = await client.get(f"/operators/{mine.id}/connection-attempts/register?identity=NEW-CP&team_id={team.id}")
    assert shortcut.status_code == 303
    form = await client.get(shortcut.headers["Location"])
    assert 'value="NEW-CP"' in await form.get_data(as_text=True)


async def test_attempts_of_an_identity_registered_since_are_no_longer_shown_to_others(
    app: Quart,
    factory: Factory,
    session: AsyncSession,
    login_as: LoginAs,
) -> None:
    mine, theirs = await factory.operator(), await factory.operator()
    await _attempt(session, "LATER-THEIRS", "Unknown identity", None)
    await factory.charge_point(await factory.team(theirs), identity="LATER-THEIRS")
    client = await login_as(await factory.user(operator=mine, operator_role="admin"))
    html = await (await client.get(f"/operators/{mine.id}/connection-attempts")).get_data(as_text=True)
    assert "LATER-THEIRS" not in html


async def test_home_links_connection_attempts_for_operator_admins_only(
    app: Quart,
    factory: Factory,
    login_as: LoginAs,
) -> None:
    operator = await factory.operator()
    admin = await factory.user(operator=operator, operator_role="admin")
    manager = await factory.user(operator=operator, operator_role="manager")
    link = f"/operators/{operator.id}/connection-attempts"
    assert link in await (await (await login_as(admin)).get("/")).get_data(as_text=True)
    assert link not in await (await (await login_as(manager)).get("/")).get_data(as_text=True)


async def test_repeated_attempts_are_counted_on_one_row(app: Quart, factory: Factory, session: AsyncSession) -> None:
    for _ in range(3):
        with pytest.raises(InvalidStatus):
            async with raw_socket(app, "GHOST-1"):
                pass
    rows = list(await session.exec(select(ConnectionAttempt).order_by(col(ConnectionAttempt.id))))
    assert [(row.identity, row.count) for row in rows] == [("GHOST-1", 3)]


async def test_a_scanning_address_cannot_fill_the_attempts(app: Quart, session: AsyncSession) -> None:
    for number in range(ATTEMPT_ROWS_PER_ADDRESS + 5):
        await record_attempt(session, f"GUESS-{number}", "198.51.100.9", "Unknown identity", None)
        await session.commit()
    await record_attempt(session, "GUESS-0", "203.0.113.1", "Unknown identity", None)
    await session.commit()
    stored = list(await session.exec(select(ConnectionAttempt.remote_address)))
    assert stored.count("198.51.100.9") == ATTEMPT_ROWS_PER_ADDRESS
    assert stored.count("203.0.113.1") == 1


async def test_team_list_polls_for_connection_status(app: Quart, factory: Factory, login_as: LoginAs) -> None:
    team = await factory.team()
    await factory.charge_point(team)
    owner = await factory.user(team=team, team_role="owner")
    html = await (await (await login_as(owner)).get(f"/teams/{team.id}/charge-points")).get_data(as_text=True)
    assert 'hx-trigger="every 5s"' in html


async def test_simulated_chargers_come_online_with_live_power(
    app: Quart,
    factory: Factory,
    session: AsyncSession,
) -> None:
    from powerbank.tools.simulator import ChargerSpec, SimulatedCharger

    team = await factory.team()
    cps = [await factory.charge_point(team), await factory.charge_point(team)]
    specs = [ChargerSpec(identity=cps[0].identity), ChargerSpec(identity=cps[1].identity, protocol="ocpp2.0.1")]
    chargers = [SimulatedCharger(spec, meter_interval=0.5) for spec in specs]
    tasks = [asyncio.create_task(c.run(app.config["TEST_OCPP_URL"], TEST_PASSWORD)) for c in chargers]
    try:

        async def powered() -> bool:
            ids = [cp.id for cp in cps]
            rows = await session.exec(
                select(MeterSample.charge_point_id)
                .where(col(MeterSample.charge_point_id).in_(ids), col(MeterSample.power_w) > 0)
                .distinct()
            )
            return len(set(rows)) == 2

        await eventually(powered, timeout=10)
        await registry_of(app).flush_last_seen()
        for cp in cps:
            await reload(session, cp)
            assert cp.online and cp.smart_charging is True and cp.booted_at is not None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
