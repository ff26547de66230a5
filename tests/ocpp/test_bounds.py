"""Numbers a charger sends are bounded before the hub stores them: a bad one never spoils others' writes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from quart import Quart
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from websockets.asyncio.client import ClientConnection

from powerbank.models import ChargerCapability, ChargingTransaction, ConnectorStatus, MeterSample
from powerbank.ocpp.bounds import MAX_CONNECTOR_ID
from powerbank.ocpp.registry import registry_of
from tests.conftest import Factory
from tests.helpers import eventually
from tests.ocpp.support import Charger16, boot16, charger, now_text, raw_socket

pytestmark = pytest.mark.served

HUGE = 2**70
SAMPLE = {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "7200", "measurand": "Power.Active.Import"}]}
SAMPLE_201 = {
    "timestamp": "2026-01-01T00:00:00Z",
    "sampledValue": [{"value": 7200, "measurand": "Power.Active.Import"}],
}


def status16(connector_id: Any) -> dict[str, Any]:
    return {"connectorId": connector_id, "errorCode": "NoError", "status": "Available"}


def status201(evse_id: Any, connector_id: Any = 1) -> dict[str, Any]:
    return {"timestamp": now_text(), "connectorStatus": "Available", "evseId": evse_id, "connectorId": connector_id}


async def answer(websocket: ClientConnection) -> list[Any]:
    return list(json.loads(await asyncio.wait_for(websocket.recv(), 10)))


@pytest.mark.parametrize(
    ("protocol", "action", "payload"),
    [
        ("ocpp1.6", "StatusNotification", status16(HUGE)),
        ("ocpp1.6", "StatusNotification", status16(MAX_CONNECTOR_ID + 1)),
        ("ocpp1.6", "StatusNotification", status16(-1)),
        ("ocpp1.6", "MeterValues", {"connectorId": HUGE, "meterValue": [SAMPLE]}),
        ("ocpp2.0.1", "StatusNotification", status201(HUGE)),
        ("ocpp2.0.1", "StatusNotification", status201(1, HUGE)),
        ("ocpp2.0.1", "MeterValues", {"evseId": HUGE, "meterValue": [SAMPLE_201]}),
    ],
)
async def test_an_out_of_range_connector_is_refused_and_spoils_no_batch(
    app: Quart, factory: Factory, session: AsyncSession, protocol: str, action: str, payload: dict[str, Any]
) -> None:
    team = await factory.team()
    hostile, bystander, first = [await factory.charge_point(team) for _ in range(3)]
    registry = registry_of(app)
    # On SQLite the reports are written under the hub's write lock; PostgreSQL writes in parallel
    # and has none, so there the test gives the report writer a lock of its own to hold.
    held = asyncio.Lock()
    if not isinstance(registry.reports.write_lock, asyncio.Lock):
        registry.reports.write_lock = held
    else:
        held = registry.reports.write_lock
    async with (
        raw_socket(app, first.identity) as first_socket,
        raw_socket(app, bystander.identity) as bystander_socket,
        raw_socket(app, hostile.identity, [protocol]) as hostile_socket,
    ):
        # Holding the writer's lock, the first charger's report is the batch being written, so
        # the next two reports (the bystander's and the hostile one) wait for the same batch.
        async with held:
            batches = registry.reports.batches
            await first_socket.send(json.dumps([2, "first", "StatusNotification", status16(1)]))
            await eventually(lambda: registry.reports.batches > batches)
            await bystander_socket.send(json.dumps([2, "good", "StatusNotification", status16(2)]))
            await eventually(lambda: registry.reports.waiting == 1)
            await hostile_socket.send(json.dumps([2, "bad", action, payload]))
            hostile_answer = asyncio.create_task(answer(hostile_socket))
            await eventually(lambda: hostile_answer.done() or registry.reports.waiting == 2)
        assert (await hostile_answer)[:3] == [4, "bad", "PropertyConstraintViolation"]
        assert (await answer(bystander_socket))[:2] == [3, "good"]
        assert (await answer(first_socket))[:2] == [3, "first"]
    assert registry.reports.fallbacks == 0
    statuses = {(s.charge_point_id, s.connector_id) for s in await session.exec(select(ConnectorStatus))}
    assert statuses == {(first.id, 1), (bystander.id, 2)}
    assert (await session.exec(select(MeterSample))).all() == []


async def test_out_of_range_transaction_numbers_are_refused_or_dropped(
    app: Quart, factory: Factory, session: AsyncSession
) -> None:
    cp = await factory.charge_point(await factory.team())
    async with raw_socket(app, cp.identity) as websocket:
        start = {"connectorId": HUGE, "idTag": "T", "meterStart": 0, "timestamp": now_text()}
        await websocket.send(json.dumps([2, "s1", "StartTransaction", start]))
        assert (await answer(websocket))[:3] == [4, "s1", "PropertyConstraintViolation"]

        # A meter register no charger has is dropped; the transaction itself is kept.
        await websocket.send(json.dumps([2, "s2", "StartTransaction", {**start, "connectorId": 1, "meterStart": HUGE}]))
        started = await answer(websocket)
        assert started[:2] == [3, "s2"]
        transaction_id = started[2]["transactionId"]

        # No transaction of the hub has such an id: it is unknown, and its meter values keep no id.
        await websocket.send(
            json.dumps([2, "m", "MeterValues", {"connectorId": 1, "transactionId": HUGE, "meterValue": [SAMPLE]}])
        )
        assert (await answer(websocket))[:2] == [3, "m"]
        stop = {"meterStop": HUGE, "timestamp": now_text(), "transactionId": HUGE}
        await websocket.send(json.dumps([2, "x1", "StopTransaction", stop]))
        assert (await answer(websocket))[:2] == [3, "x1"]
        await websocket.send(json.dumps([2, "x2", "StopTransaction", {**stop, "transactionId": transaction_id}]))
        assert (await answer(websocket))[:2] == [3, "x2"]

    transaction = (await session.exec(select(ChargingTransaction))).one()
    assert (transaction.id, transaction.connector_id, transaction.meter_start_wh) == (transaction_id, 1, None)
    assert transaction.stopped_at is not None and transaction.meter_stop_wh is None
    sample = (await session.exec(select(MeterSample))).one()
    assert (sample.power_w, sample.transaction_id) == (7200, None)


async def test_ocpp201_transaction_on_an_out_of_range_evse_is_refused(
    app: Quart, factory: Factory, session: AsyncSession
) -> None:
    cp = await factory.charge_point(await factory.team())
    event = {
        "eventType": "Started",
        "timestamp": now_text(),
        "triggerReason": "Authorized",
        "seqNo": HUGE,
        "transactionInfo": {"transactionId": "TX-1"},
        "evse": {"id": HUGE, "connectorId": 1},
    }
    async with raw_socket(app, cp.identity, ["ocpp2.0.1"]) as websocket:
        await websocket.send(json.dumps([2, "t1", "TransactionEvent", event]))
        assert (await answer(websocket))[:3] == [4, "t1", "PropertyConstraintViolation"]
        await websocket.send(json.dumps([2, "t2", "TransactionEvent", {**event, "evse": {"id": 1}}]))
        assert (await answer(websocket))[:2] == [3, "t2"]
    transaction = (await session.exec(select(ChargingTransaction))).one()
    assert (transaction.remote_id, transaction.connector_id) == ("TX-1", 1)


class BoastingCharger16(Charger16):
    """A 1.6 charger whose configuration holds numbers no charger has."""

    @on(Action16.get_configuration)
    async def on_get_configuration(self, key: list[str] | None = None) -> result16.GetConfiguration:
        keys = [
            {"key": "SupportedFeatureProfiles", "readonly": True, "value": "Core,SmartCharging"},
            {"key": "MeterValueSampleInterval", "readonly": False, "value": str(HUGE)},
            {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": str(HUGE)},
        ]
        return result16.GetConfiguration(configuration_key=keys)


async def test_capability_numbers_out_of_range_are_dropped(app: Quart, factory: Factory, session: AsyncSession) -> None:
    cp = await factory.charge_point(await factory.team())
    registry = registry_of(app)
    async with charger(app, cp.identity, client=BoastingCharger16) as station:
        await boot16(station)
        await station.call(call16.Heartbeat())
        await eventually(lambda: registry.capabilities.batches > 0 and registry.capabilities.waiting == 0)

        async def probed() -> list[Any]:
            return list(
                await session.exec(
                    select(
                        ChargerCapability.smart_charging,
                        ChargerCapability.meter_interval_s,
                        ChargerCapability.max_stack_level,
                    ).where(ChargerCapability.charge_point_id == cp.id)
                )
            )

        await eventually(probed)
    assert [tuple(row) for row in await probed()] == [(True, None, None)]
    assert registry.capabilities.fallbacks == 0


async def test_a_time_beyond_the_calendar_is_taken_as_now(app: Quart, factory: Factory, session: AsyncSession) -> None:
    cp = await factory.charge_point(await factory.team())
    async with raw_socket(app, cp.identity) as websocket:
        status = {**status16(1), "timestamp": "9999-12-31T23:59:59-14:00"}
        await websocket.send(json.dumps([2, "late", "StatusNotification", status]))
        assert (await answer(websocket))[:2] == [3, "late"]
    stored = (await session.exec(select(ConnectorStatus))).one()
    assert stored.reported_at is not None and stored.reported_at.year < 9999
