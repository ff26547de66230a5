"""Bounds on the numbers a charger sends, checked before anything is stored or computed with them.

The OCPP schemas say only "integer": a connectorId of 2**70 or -5 passes them. Such a number would
overflow the database (failing the batch it was written in, see ``reports``) or add rows without
end. A number that names something (a connector, an EVSE) is refused with a CALLERROR; a number
that is only reported (a meter register, an interval) is dropped and the rest of the message kept.
"""

from __future__ import annotations

from typing import Any

from ocpp.exceptions import PropertyConstraintViolationError

# Connector (1.6) and EVSE (2.0.1) ids: 0 is the charger as a whole, then one per outlet. The
# largest charge points behind one OCPP connection have a few dozen outlets at most (a parking
# garage controller); 32 bounds the rows and the charge point page per charger all the same.
MAX_CONNECTOR_ID = 32
# Ids the hub hands out (1.6 transactionId) are database ids: never beyond a signed 32-bit integer
# (PostgreSQL's INTEGER); a larger one is no transaction of the hub's.
MAX_DATABASE_ID = 2**31 - 1
# A meter register in Wh (meterStart, meterStop): as for meter values, 10 GWh is beyond any charger.
MAX_REGISTER_WH = 10**10
# Intervals a charger reports of itself (meter sample interval): one day at most.
MAX_INTERVAL_S = 86_400
# Charging profile stack levels a charger reports: the 1.6 and 2.0.1 examples use single digits.
MAX_STACK_LEVEL = 1_000


def _whole(value: Any, low: int, high: int) -> int | None:
    """Return ``value`` as an int when it is a whole number within [low, high], else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not low <= value <= high or value != int(value):
        return None
    return int(value)


def connector_id(value: Any, name: str = "connectorId") -> int:
    """Return a connector or EVSE id the charger sent; refuse one outside 0..MAX_CONNECTOR_ID."""
    checked = _whole(value, 0, MAX_CONNECTOR_ID)
    if checked is None:
        raise PropertyConstraintViolationError(
            description=f"{name} must be a whole number from 0 to {MAX_CONNECTOR_ID}", details={"field": name}
        )
    return checked


def database_id(value: Any) -> int | None:
    """Return an id the hub handed out, or None when ``value`` cannot be one."""
    return _whole(value, 1, MAX_DATABASE_ID)


def register_wh(value: Any) -> float | None:
    """Return a meter register reading in Wh, or None when no charger's meter could show it."""
    checked = _whole(value, 0, MAX_REGISTER_WH)
    return None if checked is None else float(checked)


def whole_text(text: str | None, high: int) -> int | None:
    """Return a configuration value (text) as a whole number in 0..high, or None."""
    if text is None:
        return None
    text = text.strip()
    # isdecimal before int(): a 5,000-digit value is refused without converting it.
    if not text.isascii() or not text.isdecimal() or len(text) > len(str(high)):
        return None
    return _whole(int(text), 0, high)
