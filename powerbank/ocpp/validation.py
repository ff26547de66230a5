"""OCPP payloads checked against the official schemas, compiled once into Python code.

The ``ocpp`` library validates every payload with jsonschema's Draft4Validator, which walks the
schema for each message: about 0.6 ms for a MeterValues of five sampled values, a fifth of what
a charger's report costs the node's one core (bench/ANALYSIS.md). Here each schema the library
ships is compiled once by fastjsonschema into a function, read as the library reads it (draft 4,
formats unchecked, no defaults filled in): the same MeterValues takes some 16 µs
(``python -m bench.validation_bench``).

A payload the compiled schema accepts is accepted. One it refuses is handed to the library's own
``validate_payload``, so the charger gets exactly the error the library gives (FormatViolation,
ProtocolError, …), and a payload the library would accept is never refused here. The few messages
whose decimals the library reads as ``Decimal`` (1.6 schedules) always go to the library.
``tests/ocpp/test_validation.py`` holds both to the same verdict on payloads generated from every
schema a charger's messages and answers use.

    await validate(message, "1.6")   # a Call or CallResult; raises as ocpp.messages.validate_payload
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema
import ocpp
from ocpp.messages import Call, CallResult, MessageType, validate_payload

logger = logging.getLogger("powerbank.ocpp")

SCHEMAS = Path(ocpp.__file__).parent
DRAFT_4 = "http://json-schema.org/draft-04/schema#"

# Read by the library with decimals as Decimal (its precision checks): left to it.
LIBRARY_ONLY = {
    ("1.6", MessageType.Call, "SetChargingProfile"),
    ("1.6", MessageType.Call, "RemoteStartTransaction"),
    ("1.6", MessageType.CallResult, "GetCompositeSchedule"),
}

_compiled: dict[tuple[str, int, str], Callable[[Any], Any] | None] = {}


def schema_path(ocpp_version: str, message_type_id: int, action: str) -> Path:
    """The file of the schema the library validates this message with (its own naming)."""
    name = action
    if message_type_id == MessageType.CallResult:
        name += "Response"
    elif ocpp_version != "1.6":
        name += "Request"
    if ocpp_version == "2.0":
        name += "_v1p0"
    return SCHEMAS / f"v{ocpp_version.replace('.', '')}" / "schemas" / f"{name}.json"


def compiled(ocpp_version: str, message_type_id: int, action: str) -> Callable[[Any], Any] | None:
    """The compiled check of this message's schema; None where the library is to judge alone."""
    key = (ocpp_version, message_type_id, action)
    if key in _compiled:
        return _compiled[key]
    check: Callable[[Any], Any] | None = None
    path = schema_path(ocpp_version, message_type_id, action)
    # Only the library's own schema files: an action is a name the charger chose, never a path.
    if key not in LIBRARY_ONLY and action.isalnum() and path.is_file():
        schema = json.loads(path.read_text(encoding="utf-8-sig"))
        # The library reads every version's schemas as draft 4 (2.0.1's say draft 6).
        schema["$schema"] = DRAFT_4
        try:
            check = fastjsonschema.compile(schema, use_default=False, use_formats=False)
        except fastjsonschema.JsonSchemaDefinitionException:
            logger.exception("the schema of %s %s cannot be compiled; the library checks it", ocpp_version, action)
    if len(_compiled) < 1000:  # actions are few; an unknown one is remembered only while there is room
        _compiled[key] = check
    return check


async def validate(message: Call | CallResult, ocpp_version: str) -> None:
    """Validate a message's payload as ``ocpp.messages.validate_payload`` does (and raise its errors)."""
    check = compiled(ocpp_version, message.message_type_id, message.action)
    if check is not None:
        try:
            check(message.payload)
        except Exception:  # refused, or a payload the compiled check trips on
            pass  # the library says what is wrong (and whether it is)
        else:
            return
    await validate_payload(message, ocpp_version)
