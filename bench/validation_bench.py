"""What checking a charger's message against its OCPP schema costs: the ocpp library against the compiled schemas.

    python -m bench.validation_bench            # prints µs per message for each, and the ratio

The payloads are the ones a fleet sends most: 1.6 MeterValues with five sampled values (energy,
power, three currents), StatusNotification and BootNotification, and 2.0.1 TransactionEvent with
the same readings. Both are timed in this one process, one after the other, in alternating rounds
(the machine is shared: read the ratio, not the absolute figure).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from ocpp.messages import Call, validate_payload

from powerbank.ocpp.validation import validate

NOW = "2026-12-07T20:00:00Z"
SAMPLED_16 = [
    {"value": "1234.5", "measurand": "Energy.Active.Import.Register", "unit": "Wh", "context": "Sample.Periodic"},
    {"value": "7400", "measurand": "Power.Active.Import", "unit": "W", "context": "Sample.Periodic"},
    *({"value": "16.0", "measurand": "Current.Import", "unit": "A", "phase": phase} for phase in ("L1", "L2", "L3")),
]
SAMPLED_201 = [
    {"value": 1234.5, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}},
    {"value": 7400, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}},
    *({"value": 16.0, "measurand": "Current.Import", "phase": phase} for phase in ("L1", "L2", "L3")),
]
MESSAGES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "1.6",
        "MeterValues",
        {"connectorId": 1, "transactionId": 5, "meterValue": [{"timestamp": NOW, "sampledValue": SAMPLED_16}]},
    ),
    (
        "1.6",
        "StatusNotification",
        {"connectorId": 1, "errorCode": "NoError", "status": "Charging", "timestamp": NOW},
    ),
    (
        "1.6",
        "BootNotification",
        {"chargePointVendor": "Easee", "chargePointModel": "Home", "firmwareVersion": "1.0"},
    ),
    (
        "2.0.1",
        "TransactionEvent",
        {
            "eventType": "Updated",
            "timestamp": NOW,
            "triggerReason": "MeterValuePeriodic",
            "seqNo": 7,
            "transactionInfo": {"transactionId": "tx-1", "chargingState": "Charging"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": NOW, "sampledValue": SAMPLED_201}],
        },
    ),
]


async def per_message_us(version: str, action: str, payload: dict[str, Any], compiled: bool, count: int) -> float:
    check = validate if compiled else validate_payload
    message = Call("1", action, payload)
    started = time.perf_counter()
    for _ in range(count):
        await check(message, version)
    return (time.perf_counter() - started) / count * 1e6


async def run(rounds: int, count: int) -> list[dict[str, Any]]:
    figures = []
    for version, action, payload in MESSAGES:
        await validate(Call("1", action, payload), version)  # compiled once, outside the timing
        library: list[float] = []
        ours: list[float] = []
        for _ in range(rounds):
            library.append(await per_message_us(version, action, payload, False, count))
            ours.append(await per_message_us(version, action, payload, True, count))
        figures.append(
            {
                "message": f"{version} {action}",
                "library_us": statistics.median(library),
                "compiled_us": statistics.median(ours),
            }
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OCPP schema checks: the ocpp library against the compiled schemas")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=2000, help="messages checked per round")
    args = parser.parse_args(argv)
    print("| message | ocpp library | compiled schema | ratio |")
    print("| --- | --- | --- | --- |")
    for row in asyncio.run(run(args.rounds, args.count)):
        ratio = row["library_us"] / row["compiled_us"]
        print(f"| {row['message']} | {row['library_us']:.1f} µs | {row['compiled_us']:.1f} µs | {ratio:.1f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
