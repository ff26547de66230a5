"""Swedish Facility IDs (anläggnings-ID): the meter's GSRN, 18 digits under GS1 company prefix 735999 (R5)."""

from __future__ import annotations

import re

from powerbank.i18n import gettext as _
from powerbank.rules.validators import ValidationError

GSRN_PREFIX = "735999"
GSRN_LENGTH = 18


def gs1_check_digit(digits: str) -> int:
    """Return the GS1 mod-10 check digit for the digits before it."""
    total = 0
    # Weights 3 and 1 alternate, starting with 3 at the digit next to the check digit.
    for position, char in enumerate(reversed(digits)):
        total += int(char) * (3 if position % 2 == 0 else 1)
    return (10 - total % 10) % 10


def clean_facility_id(value: str | None) -> str:
    """Return a valid Swedish Facility ID (anläggnings-ID, a GSRN), spaces and dashes removed."""
    raw = (value or "").strip()
    digits = re.sub(r"[\s\-]", "", raw)
    if not digits:
        raise ValidationError(_("Facility ID is required for charge points in Sweden."))
    if not digits.isdigit() or not digits.isascii():
        raise ValidationError(_("Facility ID may only contain digits (spaces and dashes are ignored)."))
    if len(digits) != GSRN_LENGTH:
        raise ValidationError(
            _("Facility ID must be %(length)s digits; this has %(count)s.", length=GSRN_LENGTH, count=len(digits))
        )
    if not digits.startswith(GSRN_PREFIX):
        raise ValidationError(_("Facility ID must start with %(prefix)s.", prefix=GSRN_PREFIX))
    expected = gs1_check_digit(digits[:-1])
    if int(digits[-1]) != expected:
        raise ValidationError(
            _("Facility ID check digit is wrong: the last digit should be %(digit)s.", digit=expected)
        )
    return digits


def make_facility_id(body: str) -> str:
    """Return a valid Facility ID for an 11-digit body after the 735999 prefix (demo data, tests)."""
    stem = GSRN_PREFIX + body
    if len(stem) != GSRN_LENGTH - 1 or not stem.isdigit():
        raise ValueError("body must be 11 digits")
    return stem + str(gs1_check_digit(stem))
