"""What the OCPP tests share: library chargers that answer the hub's probe, raw sockets, a boot."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint as LibraryClient16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as LibraryClient201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from powerbank.models import (
    ChargePoint,
)
from tests.conftest import TEST_PASSWORD


def basic(identity: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Charger16(LibraryClient16):
    """A 1.6 charger that answers the capability probe."""

    smart_charging = True
    hold_probe: asyncio.Event | None = None

    @on(Action16.get_configuration)
    async def on_get_configuration(self, key: list[str] | None = None) -> result16.GetConfiguration:
        if self.hold_probe is not None:
            await self.hold_probe.wait()
        profiles = "Core,FirmwareManagement" + (",SmartCharging" if self.smart_charging else "")
        keys = [
            {"key": "SupportedFeatureProfiles", "readonly": True, "value": profiles},
            {"key": "MeterValueSampleInterval", "readonly": False, "value": "10"},
        ]
        if self.smart_charging:
            keys += [
                {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "8"},
                {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current,Power"},
            ]
        return result16.GetConfiguration(configuration_key=keys)


class Charger201(LibraryClient201):
    """A 2.0.1 station that answers the capability probe."""

    @on(Action201.get_variables)
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> result201.GetVariables:
        values = {
            ("SmartChargingCtrlr", "Available"): "true",
            ("SmartChargingCtrlr", "Enabled"): "true",
            ("SmartChargingCtrlr", "ProfileStackLevel"): "4",
            ("SmartChargingCtrlr", "RateUnit"): "A,W",
        }
        results = []
        for item in get_variable_data:
            key = (item["component"]["name"], item["variable"]["name"])
            result = {"component": item["component"], "variable": item["variable"]}
            if key in values:
                result.update(attribute_status="Accepted", attribute_value=values[key])
            else:
                result["attribute_status"] = "UnknownVariable"
            results.append(result)
        return result201.GetVariables(get_variable_result=results)


@asynccontextmanager
async def charger(
    app: Quart, identity: str, password: str = TEST_PASSWORD, protocol: str = "ocpp1.6", client: type[Any] | None = None
) -> AsyncIterator[Any]:
    """Connect a library charger and serve its side of the conversation while in use."""
    client = client or (Charger201 if protocol == "ocpp2.0.1" else Charger16)
    async with connect(
        f"{app.config['TEST_OCPP_URL']}/{identity}",
        subprotocols=[protocol],  # type: ignore[list-item]
        additional_headers=basic(identity, password),
    ) as websocket:
        station = client(identity, websocket)
        serving = asyncio.create_task(station.start())
        try:
            yield station
        finally:
            serving.cancel()
            with pytest.raises((asyncio.CancelledError, ConnectionClosed)):
                await serving


@asynccontextmanager
async def raw_socket(
    app: Quart, identity: str, protocols: list[str] | None = None, password: str = TEST_PASSWORD
) -> AsyncIterator[ClientConnection]:
    async with connect(
        f"{app.config['TEST_OCPP_URL']}/{identity}",
        subprotocols=protocols or ["ocpp1.6"],  # type: ignore[arg-type]
        additional_headers=basic(identity, password),
    ) as websocket:
        yield websocket


async def reload(session: AsyncSession, charge_point: ChargePoint) -> ChargePoint:
    await session.refresh(charge_point)
    return charge_point


def now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


async def boot16(station: Charger16, vendor: str = "Easee", model: str = "Home") -> result16.BootNotification:
    return await station.call(
        call16.BootNotification(
            charge_point_vendor=vendor,
            charge_point_model=model,
            firmware_version="4.2.1",
            charge_point_serial_number="SN-77",
        )
    )


EDIT_FORM = {
    "name": "Depot 1",
    "brand": "Easee",
    "model": "Home",
    "firmware": "",
    "serial": "",
    "country": "DK",
    "price_area": "DK2",
    "facility_id": "",
}
