"""The compiled schemas (powerbank/ocpp/validation.py) give the ``ocpp`` library's verdict on every payload.

For every schema the library ships for OCPP 1.6 and 2.0.1 (what chargers send and what they answer):
payloads generated from the schema itself (valid ones, through ``hypothesis-jsonschema``) and
payloads built from its property names with values of any JSON type (mostly invalid ones). A payload
the compiled check accepts must be one the library accepts, and the valid ones must be accepted by it
(else nothing is gained); what ``validate`` refuses, it refuses with the library's own error.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from ocpp.exceptions import FormatViolationError, OCPPError, ProtocolError
from ocpp.messages import Call, CallResult, MessageType, validate_payload

from powerbank.ocpp.validation import LIBRARY_ONLY, SCHEMAS, compiled, schema_path, validate

EXAMPLES = 6
READING = {"timestamp": "2026-12-07T20:00:00Z", "sampledValue": [{"value": "7400", "unit": "W"}]}


def _schemas() -> list[tuple[str, int, str]]:
    found = []
    for version, folder in (("1.6", "v16"), ("2.0.1", "v201")):
        for path in sorted((SCHEMAS / folder / "schemas").glob("*.json")):
            name = path.stem
            if name.endswith("Response"):
                found.append((version, MessageType.CallResult, name.removesuffix("Response")))
            else:
                found.append((version, MessageType.Call, name.removesuffix("Request")))
    return [key for key in found if key not in LIBRARY_ONLY]


SCHEMA_KEYS = _schemas()


def message(version: str, message_type_id: int, action: str, payload: Any) -> Call | CallResult:
    if message_type_id == MessageType.Call:
        return Call("1", action, payload)
    result = CallResult("1", payload)
    result.action = action
    return result


async def library_verdict(version: str, message_type_id: int, action: str, payload: Any) -> type | None:
    """The error class the library raises for this payload, None if it accepts it."""
    try:
        await validate_payload(message(version, message_type_id, action, json.loads(json.dumps(payload))), version)
    except OCPPError as error:
        return type(error)
    return None


def accepted_by_the_compiled_schema(version: str, message_type_id: int, action: str, payload: Any) -> bool:
    check = compiled(version, message_type_id, action)
    assert check is not None, f"{version} {action}: not compiled"
    try:
        check(json.loads(json.dumps(payload)))
    except Exception:
        return False
    return True


def schema_of(version: str, message_type_id: int, action: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path(version, message_type_id, action).read_text(encoding="utf-8-sig"))
    # hypothesis-jsonschema reads draft 4 to 7; the $schema and $id only name the draft and the file.
    schema.pop("$schema", None)
    schema.pop("$id", None)
    return schema


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


EDGES = st.sampled_from([True, False, 1.0, 0, -1, 2**63, 1e308, "", "x" * 600, "é" * 50, None, [], {}])


def near_misses(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Objects with the schema's own property names (and a stranger), any JSON value in each."""
    names = sorted(schema.get("properties", {})) + ["unexpectedField"]
    return st.dictionaries(st.sampled_from(names), JSON_VALUES, max_size=len(names)) | JSON_VALUES


@pytest.mark.parametrize(("version", "message_type_id", "action"), SCHEMA_KEYS, ids=lambda k: str(k))
async def test_the_compiled_schema_accepts_what_the_library_accepts_and_nothing_else(
    version: str, message_type_id: int, action: str
) -> None:
    schema = schema_of(version, message_type_id, action)
    valid: list[Any] = []
    other: list[Any] = []

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def collect(data: st.DataObject) -> None:
        payload = data.draw(from_schema(schema))
        valid.append(payload)
        other.append(data.draw(near_misses(schema)))
        if isinstance(payload, dict) and payload:
            # A valid payload with one field given a value at an edge of its type.
            other.append({**payload, data.draw(st.sampled_from(sorted(payload))): data.draw(EDGES)})

    collect()
    for payload in valid:
        assert await library_verdict(version, message_type_id, action, payload) is None, payload
        assert accepted_by_the_compiled_schema(version, message_type_id, action, payload), payload
    for payload in other:
        if accepted_by_the_compiled_schema(version, message_type_id, action, payload):
            assert await library_verdict(version, message_type_id, action, payload) is None, payload


async def test_what_is_refused_is_refused_with_the_librarys_error() -> None:
    cases: list[tuple[str, Call, type[OCPPError]]] = [
        ("1.6", Call("1", "MeterValues", {"meterValue": [READING]}), ProtocolError),  # connectorId missing
        ("1.6", Call("1", "MeterValues", {"connectorId": 1, "meterValue": []}), FormatViolationError),  # too few
        ("1.6", Call("1", "Heartbeat", {"extra": 1}), FormatViolationError),
        ("2.0.1", Call("1", "StatusNotification", {"connectorId": 1}), ProtocolError),
    ]
    for version, call, expected in cases:
        with pytest.raises(OCPPError) as ours:
            await validate(call, version)
        with pytest.raises(OCPPError) as library:
            await validate_payload(call, version)
        assert type(ours.value) is type(library.value) is expected


async def test_a_valid_meter_values_is_accepted_without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_called(*_args: Any) -> None:
        raise AssertionError("the library was asked")

    monkeypatch.setattr("powerbank.ocpp.validation.validate_payload", not_called)
    await validate(Call("1", "MeterValues", {"connectorId": 1, "meterValue": [READING]}), "1.6")


def test_an_action_a_charger_made_up_is_left_to_the_library() -> None:
    for action in ("../../etc/passwd", "NoSuchAction", ""):
        assert compiled("1.6", MessageType.Call, action) is None
