"""A frame nested without end, or holding a NUL, is refused with a CALLERROR; nothing else is affected."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from quart import Quart

from tests.conftest import Factory
from tests.ocpp.support import raw_socket

pytestmark = pytest.mark.served


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def answer(websocket: Any) -> list[Any]:
    return list(json.loads(await asyncio.wait_for(websocket.recv(), 10)))


@pytest.mark.parametrize(
    ("protocol", "frame", "expected"),
    [
        # Deeper than Python's recursion limit: the JSON parser itself would give up.
        ("ocpp1.6", f'[2, "d1", "Heartbeat", {{"deep": {nested(30_000)}}}]', [4, "-1", "FormationViolation"]),
        ("ocpp2.0.1", nested(30_000), [4, "-1", "RpcFrameworkError"]),
        # Parsed, but deeper than any OCPP message: it would exhaust the stack of what handles it next.
        (
            "ocpp2.0.1",
            f'[2, "d2", "Heartbeat", {{"customData": {{"vendorId": "x", "deep": {nested(900)}}}}}]',
            [4, "d2", "FormatViolation"],
        ),
        (
            "ocpp1.6",
            f'[2, "d3", "DataTransfer", {{"vendorId": "x", "deep": {nested(900)}}}]',
            [4, "d3", "FormationViolation"],
        ),
        # A NUL in any text: PostgreSQL cannot store it, so it never reaches a handler.
        (
            "ocpp1.6",
            '[2, "n1", "BootNotification", {"chargePointVendor": "Ea\\u0000see", "chargePointModel": "Home"}]',
            [4, "n1", "FormationViolation"],
        ),
        (
            "ocpp2.0.1",
            '[2, "n2", "BootNotification", {"reason": "PowerUp", "chargingStation": '
            '{"vendorName": "Easee", "model": "Home", "serialNumber": "\\u0000"}}]',
            [4, "n2", "FormatViolation"],
        ),
    ],
)
async def test_a_deeply_nested_frame_is_refused_and_the_charger_carries_on(
    app: Quart, factory: Factory, caplog: pytest.LogCaptureFixture, protocol: str, frame: str, expected: list[Any]
) -> None:
    team = await factory.team()
    cp, other = await factory.charge_point(team), await factory.charge_point(team)
    with caplog.at_level(logging.INFO, logger="powerbank"):
        async with raw_socket(app, other.identity) as bystander, raw_socket(app, cp.identity, [protocol]) as websocket:
            await websocket.send(frame)
            assert (await answer(websocket))[:3] == expected
            await websocket.send('[2, "after", "Heartbeat", {}]')
            assert (await answer(websocket))[:2] == [3, "after"]
            await bystander.send('[2, "h", "Heartbeat", {}]')
            assert (await answer(bystander))[:2] == [3, "h"]
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []
