"""Turn OCPP sampled values (1.6 and 2.0.1) into plain meter readings."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from powerbank.db import utcnow
from powerbank.services.chargers import MeterReading

POWER = "Power.Active.Import"
ENERGY = "Energy.Active.Import.Register"
CURRENT = "Current.Import"
# Scale of each unit to W, Wh or A.
UNIT_SCALE = {"W": 1.0, "kW": 1000.0, "Wh": 1.0, "kWh": 1000.0, "A": 1.0}
# The units each measurand may come in (the first when none is given). A power in Wh, VA or var, or a
# register in W, is not what the hub reads it as: it is left out rather than stored at a wrong scale.
UNITS = {POWER: ("W", "kW"), ENERGY: ("Wh", "kWh"), CURRENT: ("A",)}
# The 2.0.1 schema allows any integer as a unit's power-of-ten multiplier; meters use a few (k, M, m).
MAX_MULTIPLIER = 9
# Far beyond any charge point (a 10 MW site, a 10 GWh register, 10 kA): a larger value is a broken
# or hostile meter, and is dropped rather than stored.
MAX_MAGNITUDE = {POWER: 1e7, ENERGY: 1e10, CURRENT: 1e4}


def now_text() -> str:
    """Return now as an OCPP timestamp (UTC, "Z")."""
    return utcnow().isoformat().replace("+00:00", "Z")


def parse_timestamp(text: str | None) -> datetime:
    """Parse an OCPP timestamp into aware UTC; a missing or unreadable one means now."""
    if not text:
        return utcnow()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        # A time at the ends of the calendar overflows when moved to UTC (9999-12-31T23:59-14:00).
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return utcnow()


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _multiplier(unit_of_measure: dict[str, Any]) -> int | None:
    """Return a unit's power-of-ten multiplier, or None when no meter would send it."""
    multiplier = unit_of_measure.get("multiplier", 0)
    if multiplier is None:
        return 0
    if isinstance(multiplier, bool) or not isinstance(multiplier, int) or abs(multiplier) > MAX_MULTIPLIER:
        return None
    return multiplier


def _phase(phase: str | None) -> str | None:
    # "L1", "L1-N" and "L1-L2" all name the current of phase L1.
    if phase and phase[:2] in ("L1", "L2", "L3"):
        return phase[:2]
    return None


def reading_from(timestamp: str | None, sampled_values: Iterable[dict[str, Any]]) -> MeterReading:
    """Read power, the energy register and current per phase out of one meter value.

    1.6 sends values as strings with ``unit``; 2.0.1 sends numbers with ``unit_of_measure``
    (a unit and a power-of-ten multiplier). A missing measurand is the energy register. A charger
    that reports power per phase only (L1, L2, L3, without the whole charger's) has the sum of the
    phases it reports as its power; the whole charger's power wins when both are sent.
    """
    power = energy = None
    phase_power: dict[str, float] = {}
    currents: dict[str, float] = {}
    for sampled in sampled_values:
        value = _number(sampled.get("value"))
        unit_of_measure = sampled.get("unit_of_measure") or {}
        multiplier = _multiplier(unit_of_measure)
        if value is None or multiplier is None:
            continue
        measurand = sampled.get("measurand") or ENERGY
        if measurand not in UNITS:
            continue
        unit = sampled.get("unit") or unit_of_measure.get("unit") or UNITS[measurand][0]
        if unit not in UNITS[measurand]:
            continue
        whole = sampled.get("phase") in (None, "N")
        phase = _phase(sampled.get("phase"))
        value *= 10.0**multiplier * UNIT_SCALE[unit]
        if abs(value) > MAX_MAGNITUDE[measurand]:
            continue
        if measurand == POWER and whole:
            power = value
        elif measurand == POWER and phase is not None:
            phase_power[phase] = value
        elif measurand == ENERGY and whole:
            energy = value
        elif measurand == CURRENT and phase is not None:
            currents[phase] = value
    if power is None and phase_power:
        total = sum(phase_power.values())
        power = total if abs(total) <= MAX_MAGNITUDE[POWER] else None
    return MeterReading(parse_timestamp(timestamp), power, energy, currents)


def readings_from(meter_values: Iterable[dict[str, Any]] | None) -> list[MeterReading]:
    """Read every meter value of a MeterValues or TransactionEvent message."""
    return [reading_from(item.get("timestamp"), item.get("sampled_value") or []) for item in meter_values or []]
