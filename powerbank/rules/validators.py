"""Validation of the values people type: names, identities, emails, countries and price areas.

Facility IDs are checked in ``powerbank.rules.gsrn``.

Each validator returns the cleaned value or raises ``ValidationError`` with a message meant
for the person who typed it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from powerbank.i18n import gettext as _
from powerbank.rules.countries import AREAS_BY_COUNTRY, COUNTRIES, country_name

IDENTITY_RE = re.compile(r"^[A-Za-z0-9\-_.:]{1,48}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ValidationError(ValueError):
    """A value a person typed is not acceptable; the message says why."""


def _refuse_control_characters(text: str, label: str) -> None:
    # NUL and other control characters break some databases and terminals; no one types them on purpose.
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise ValidationError(_("%(label)s contains characters that cannot be used.", label=_(label)))


def clean_name(value: str | None, *, label: str = "Name", max_length: int = 120) -> str:
    """Return a trimmed, non-empty name."""
    name = (value or "").strip()
    if not name:
        raise ValidationError(_("%(label)s is required.", label=_(label)))
    if len(name) > max_length:
        raise ValidationError(_("%(label)s can be at most %(count)s characters.", label=_(label), count=max_length))
    _refuse_control_characters(name, label)
    return name


def clean_optional(value: str | None, *, label: str, max_length: int = 80) -> str:
    """Return a trimmed optional text (empty when not given)."""
    text = (value or "").strip()
    if len(text) > max_length:
        raise ValidationError(_("%(label)s can be at most %(count)s characters.", label=_(label), count=max_length))
    _refuse_control_characters(text, label)
    return text


def page_number(value: str | None) -> int:
    """Return the page asked for in a query string: 1 when missing or malformed, capped."""
    try:
        return max(1, min(int(value or "1"), 1_000_000))
    except ValueError:
        return 1


def clean_identity(value: str | None) -> str:
    """Return a valid OCPP charge point identity."""
    identity = (value or "").strip()
    if not identity:
        raise ValidationError(_("OCPP identity is required."))
    if len(identity) > 48:
        raise ValidationError(_("OCPP identity can be at most 48 characters."))
    if not IDENTITY_RE.match(identity):
        raise ValidationError(_("OCPP identity may only contain letters, digits and - _ . :"))
    return identity


def clean_email(value: str | None) -> str:
    """Return a lower-cased email address."""
    email = (value or "").strip().lower()
    if not email:
        raise ValidationError(_("Email is required."))
    if len(email) > 254 or not EMAIL_RE.fullmatch(email) or any(unicodedata.category(c) == "Cc" for c in email):
        raise ValidationError(_("Enter a valid email address."))
    return email


def clean_country(value: str | None) -> str:
    """Return an ISO 3166-1 alpha-2 country code."""
    code = (value or "").strip().upper()
    if not code:
        raise ValidationError(_("Country is required."))
    if code not in COUNTRIES:
        raise ValidationError(_("Choose a country from the list."))
    return code


def clean_price_area(country: str, value: str | None) -> str | None:
    """Return the price area, which must belong to the country (none outside DK, SE, GB, IE)."""
    area = (value or "").strip().upper() or None
    allowed = AREAS_BY_COUNTRY.get(country, ())
    if not allowed:
        if area:
            raise ValidationError(
                _("%(country)s has no PowerBank price area; leave it empty.", country=country_name(country))
            )
        return None
    if len(allowed) == 1 and area is None:
        return str(allowed[0])
    if area is None:
        raise ValidationError(_("Choose the price area: %(areas)s.", areas=", ".join(allowed)))
    if area not in allowed:
        raise ValidationError(
            _(
                "Price area for %(country)s must be one of %(areas)s.",
                country=country_name(country),
                areas=", ".join(allowed),
            )
        )
    return area


def holds_nul(value: Any) -> bool:
    """Return True if any text in a parsed JSON or form value (keys too) holds a NUL character.

    No input of PowerBank needs one, and PostgreSQL refuses to store one in text.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False
