"""Payload keys convert exactly as the ocpp library converts them, remembered or not."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from ocpp.charge_point import camel_to_snake_case as library_to_snake
from ocpp.charge_point import snake_to_camel_case as library_to_camel

from powerbank.ocpp.case import REMEMBERED_KEY_LENGTH, camel_to_snake_case, snake_to_camel_case

KEYS = st.one_of(
    st.sampled_from(
        [
            "connectorId",
            "meterValue",
            "sampledValue",
            "ocppCSMSURL",
            "evseId",
            "stateOfChargeV2X",
            "V2GCertificate",
            "chargePointSerialNumber",
            "SoC",
            "soc_limit_reached",
            "ocpp_csms_url",
            "responder_url",
            "charging_rate_unit",
            "_v2x_thing",
        ]
    ),
    st.text(max_size=REMEMBERED_KEY_LENGTH + 20),
)
PAYLOADS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)


@given(PAYLOADS)
def test_to_snake_case_is_the_librarys(payload: Any) -> None:
    assert camel_to_snake_case(payload) == library_to_snake(payload)
    # Remembered keys give the same again.
    assert camel_to_snake_case(payload) == library_to_snake(payload)


@given(PAYLOADS)
def test_to_camel_case_is_the_librarys(payload: Any) -> None:
    assert snake_to_camel_case(payload) == library_to_camel(payload)
    assert snake_to_camel_case(payload) == library_to_camel(payload)
