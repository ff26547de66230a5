"""Pure decisions of earnings: months, currencies, the rounding rule and what a price may be.

The rounding rule, written down once: a line's market value is the sum of its hours' capacity
values and its activations' energy values, kept to six decimal places (half up); the team's line
amount is that value times the team's share, rounded ONCE to the currency's cent (0.01, half up).
A statement's total is the sum of its lines' rounded amounts, so the lines add up to it exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum

from powerbank.rules.countries import PriceArea


class PriceKind(StrEnum):
    """What a market pays for."""

    # Available power: a price per MW per hour (FCR-D up, as the TSOs publish it).
    CAPACITY = "capacity"
    # Activated energy: a price per MWh delivered.
    ENERGY = "energy"


# Each price area's currency: a price in another one is refused.
CURRENCY_BY_AREA: dict[str, str] = {
    PriceArea.DK1: "DKK",
    PriceArea.DK2: "DKK",
    PriceArea.SE1: "SEK",
    PriceArea.SE2: "SEK",
    PriceArea.SE3: "SEK",
    PriceArea.SE4: "SEK",
    PriceArea.GB: "GBP",
    PriceArea.IE: "EUR",
}
CURRENCIES = ("DKK", "SEK", "GBP", "EUR")
# The highest price PowerBank takes (per MW per hour, or per MWh): about EUR 10,000, far above any
# cleared balancing price; a larger one is a typo (a price per kW, a missing decimal point).
MAX_PRICE: dict[str, Decimal] = {
    "DKK": Decimal("75000"),
    "SEK": Decimal("115000"),
    "GBP": Decimal("9000"),
    "EUR": Decimal("10000"),
}
PRICE_PLACES = Decimal("0.0001")
VALUE_PLACES = Decimal("0.000001")
CENT = Decimal("0.01")


def round_value(value: Decimal) -> Decimal:
    """Keep a market value to six decimal places (half up)."""
    return value.quantize(VALUE_PLACES, rounding=ROUND_HALF_UP)


def round_amount(value: Decimal) -> Decimal:
    """Round a line's amount to the cent, half up: the one rounding of each line."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def line_amount(market_value: Decimal, share: Decimal) -> Decimal:
    """Return a line's amount: its market value times the team's share, rounded once."""
    return round_amount(round_value(market_value) * share)


def parse_month(text: str | None) -> str | None:
    """Return "YYYY-MM" for a valid month (2000-01 to 2999-12), else None."""
    value = (text or "").strip()
    if len(value) != 7 or value[4] != "-" or not (value[:4].isdigit() and value[5:].isdigit()):
        return None
    year, month = int(value[:4]), int(value[5:])
    if not (2000 <= year <= 2999 and 1 <= month <= 12):
        return None
    return value


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """Return [start, end) of a "YYYY-MM" month in UTC."""
    year, number = int(month[:4]), int(month[5:])
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=UTC)
    return start, end


def month_of(moment: datetime) -> str:
    """Return the "YYYY-MM" month (UTC) of ``moment``."""
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def previous_month(month: str) -> str:
    """Return the month before ``month``."""
    start, _ = month_bounds(month)
    return month_of(start - timedelta(days=1))


def next_month(month: str) -> str:
    """Return the month after ``month``."""
    _, end = month_bounds(month)
    return month_of(end)


def parse_price(text: str, currency: str) -> tuple[Decimal | None, str | None]:
    """Return a price as a Decimal, or the reason it is not acceptable."""
    cleaned = (text or "").strip().replace(" ", "")
    if not cleaned:
        return None, "Give a price."
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None, f"{text!r} is not a number (write e.g. 412.50, with a point)."
    if not value.is_finite():
        return None, "Give a finite number."
    if value < 0:
        return None, "A price cannot be negative."
    ceiling = MAX_PRICE.get(currency)
    if ceiling is not None and value > ceiling:
        return None, f"{value} {currency} is beyond any balancing price (at most {ceiling} {currency}); check the unit."
    if value != value.quantize(PRICE_PLACES):
        return None, "Give at most four decimal places."
    return value.quantize(PRICE_PLACES), None


def parse_share(text: str) -> tuple[Decimal | None, str | None]:
    """Return a share given in percent ("70", "72.5 %") as a fraction, or the reason it is not acceptable."""
    cleaned = (text or "").strip().removesuffix("%").strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None, "Give the share in percent, e.g. 70."
    if not value.is_finite() or value < 0 or value > 100:
        return None, "The share is a percentage from 0 to 100."
    if value != value.quantize(CENT):
        return None, "Give at most two decimal places."
    return (value / 100).quantize(Decimal("0.0001")), None
