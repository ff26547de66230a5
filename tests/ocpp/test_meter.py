"""What a charger's meter values become: readings in W, Wh and A, and nothing from numbers no meter sends."""

from __future__ import annotations

from typing import Any

import pytest

from powerbank.ocpp.meter import reading_from

TIMESTAMP = "2026-12-05T08:00:00Z"


def power(value: Any, **unit_of_measure: Any) -> dict[str, Any]:
    sampled: dict[str, Any] = {"value": value, "measurand": "Power.Active.Import"}
    if unit_of_measure:
        sampled["unit_of_measure"] = unit_of_measure
    return sampled


@pytest.mark.parametrize(
    ("sampled", "expected_w"),
    [
        (power(7400, unit="W"), 7400.0),
        (power(7.4, unit="kW"), 7400.0),
        (power(74, unit="W", multiplier=2), 7400.0),
        (power(7400000, unit="W", multiplier=-3), 7400.0),
        ({"value": "7.4", "unit": "kW", "measurand": "Power.Active.Import"}, 7400.0),
    ],
)
def test_power_is_read_in_watts_whatever_the_unit_and_multiplier(sampled: dict[str, Any], expected_w: float) -> None:
    assert reading_from(TIMESTAMP, [sampled]).power_w == pytest.approx(expected_w)


@pytest.mark.parametrize(
    "sampled",
    [
        # The 2.0.1 schema allows any integer multiplier: 10 ** 10**8 alone would stall the hub for minutes.
        power(1, unit="W", multiplier=10**6),
        power(1, unit="W", multiplier=-(10**6)),
        power(1, unit="W", multiplier=True),
        power(1, unit="W", multiplier="3"),
        power("1e400", unit="W"),
        power("nan", unit="W"),
        power("-inf", unit="W"),
        # Beyond any charge point: a 10 MW limit is far above the largest site.
        power(50, unit="kW", multiplier=6),
    ],
)
def test_a_number_no_meter_sends_is_ignored_not_stored(sampled: dict[str, Any]) -> None:
    reading = reading_from(TIMESTAMP, [sampled, {"value": 1200, "unit_of_measure": {"unit": "Wh"}}])
    assert reading.power_w is None
    assert reading.energy_wh == 1200.0  # the sensible value beside it is still read


def test_currents_and_energy_out_of_range_are_ignored() -> None:
    reading = reading_from(
        TIMESTAMP,
        [
            {"value": 16, "measurand": "Current.Import", "phase": "L1"},
            {"value": 10**9, "measurand": "Current.Import", "phase": "L2"},
            {"value": 10**15, "measurand": "Energy.Active.Import.Register", "unit_of_measure": {"unit": "Wh"}},
        ],
    )
    assert reading.currents_a == {"L1": 16.0}
    assert reading.energy_wh is None
