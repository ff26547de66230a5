"""The language and time zone of each request, and the Jinja filters that format per locale.

The language is the signed-in person's setting, else the one picked in the header (a cookie, so the
picker works before logging in), else the browser's ``Accept-Language``, else English. Times are
stored in UTC and shown in the charge point's zone where a page is about one, otherwise in the
person's zone (their setting, else their language's country, else UTC).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date as babel_format_date
from babel.dates import format_datetime as babel_format_datetime
from babel.numbers import format_currency as babel_format_currency
from babel.numbers import format_decimal as babel_format_decimal
from babel.numbers import format_percent as babel_format_percent
from quart import Quart, g, request
from quart_auth import current_user
from sqlmodel import col, select

from powerbank import i18n
from powerbank.i18n import N_
from powerbank.models import User
from powerbank.rules.countries import country_name
from powerbank.web.state import db_session

LOCALE_COOKIE = "powerbank_locale"
LOCALE_COOKIE_MAX_AGE_S = 365 * 24 * 3600
# Where no person's language applies: the JSON API, OCPP and static files stay in English.
UNTRANSLATED_PREFIXES = ("/api/", "/ocpp/", "/static/")
# Without a time zone of their own, a Danish or Swedish reader sees their country's time.
LOCALE_TIME_ZONES = {"da": "Europe/Copenhagen", "sv": "Europe/Stockholm"}
# A charge point's times are shown in its country's zone.
COUNTRY_TIME_ZONES = {"DK": "Europe/Copenhagen", "SE": "Europe/Stockholm", "GB": "Europe/London", "IE": "Europe/Dublin"}
# Values that are stored or computed in English and shown through ``_()`` in templates (a charger's
# connection, a PowerBank state, source and stored reason); marked here so the catalogues hold them.
SHOWN_VALUES = (
    N_("Online"),
    N_("Offline"),
    N_("Never connected"),
    N_("Signed up"),
    N_("Not signed up"),
    N_("Opted out"),
    N_("Suspended"),
    N_("Eligible again"),
    N_("bulk"),
    N_("single"),
    N_("automatic"),
    N_("API"),
    N_("Operator Admin"),
    N_("Operator Manager"),
    N_("Team Owner"),
    N_("Team Admin"),
    N_("Team Member"),
    N_("Active"),
    N_("Revoked"),
    N_("Expired"),
    N_("system"),
    N_("delivered"),
    N_("partial"),
    N_("accepted but not delivered"),
    N_("not accepted"),
    N_("offline"),
    N_("no meter data"),
    N_("nothing to reduce"),
    N_("waiting"),
)
# Reasons stored in English in the PowerBank history, shown in the reader's language.
STORED_REASONS = (
    (re.compile(r"^Signed up automatically \((?P<area>[^)]*)\)$"), N_("Signed up automatically (%(area)s)")),
    (re.compile(r"^Opted out by (?P<who>.+)$"), N_("Opted out by %(who)s")),
    (re.compile(r"^Suspension lifted by (?P<who>.+)$"), N_("Suspension lifted by %(who)s")),
    (re.compile(r"^Suspended by (?P<who>[^:]+): (?P<why>.*)$", re.S), N_("Suspended by %(who)s: %(why)s")),
)


def stored_reason(reason: str | None) -> str:
    """A reason the history stored in English, in the reader's language (a text it does not know, unchanged)."""
    if not reason:
        return "—"
    for pattern, message in STORED_REASONS:
        found = pattern.match(reason)
        if found:
            return i18n.gettext(message, **found.groupdict())
    return i18n.gettext(reason)


# English dates stay as PowerBank has always shown them (ISO); Danish and Swedish in their own style.
ENGLISH_DATETIME = "yyyy-MM-dd HH:mm:ss"
ENGLISH_DATE = "yyyy-MM-dd"


async def _user_settings() -> tuple[str | None, str | None]:
    """Return the signed-in person's language and time zone settings (None when not signed in or not set).

    Only the two columns are read: the principal itself is loaded where the page needs it, after the
    route's own changes (loading it here would leave it expired by a route's rollback).
    """
    found = g.get("principal")
    if found is not None:
        return found.user.locale, found.user.time_zone
    user_id, _, version = (current_user.auth_id or "").partition(":")
    if not (user_id.isdigit() and version.isdigit() and len(user_id) <= 18 and len(version) <= 18):
        return None, None
    session = await db_session()
    row = (
        await session.exec(
            select(col(User.locale), col(User.time_zone), col(User.session_version)).where(col(User.id) == int(user_id))
        )
    ).first()
    if row is None or row[2] != int(version):
        return None, None
    return row[0], row[1]


async def request_locale() -> tuple[str, str]:
    """Return the language and time zone of this request."""
    user_locale, user_zone = await _user_settings()
    locale = (
        i18n.supported_locale(user_locale)
        or i18n.supported_locale(request.cookies.get(LOCALE_COOKIE))
        or i18n.supported_locale(request.accept_languages.best_match(list(i18n.LANGUAGES)))
        or i18n.DEFAULT_LOCALE
    )
    zone = i18n.supported_time_zone(user_zone) or LOCALE_TIME_ZONES.get(locale, i18n.DEFAULT_TIME_ZONE)
    return locale, zone


async def select_locale() -> None:
    """Translate this request into its reader's language (each request runs in a task of its own)."""
    if request.path.startswith(UNTRANSLATED_PREFIXES):
        return
    locale, zone = await request_locale()
    i18n.set_locale(locale, zone)


def _zone(zone: str | None) -> ZoneInfo:
    return ZoneInfo(zone or i18n.current_time_zone())


def format_datetime(value: datetime | None, zone: str | None = None) -> str:
    """A stored (UTC) time in ``zone`` (else the reader's), in the reader's language, with the zone's name."""
    if value is None:
        return "—"
    local = value.astimezone(_zone(zone))
    locale = i18n.current_locale()
    pattern = ENGLISH_DATETIME if locale == i18n.DEFAULT_LOCALE else "medium"
    return f"{babel_format_datetime(local, pattern, tzinfo=local.tzinfo, locale=locale)} {local.tzname()}"


def format_date(value: date | datetime | None, zone: str | None = None) -> str:
    """A date (or the date of a stored time in ``zone``) in the reader's language."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        value = value.astimezone(_zone(zone)).date()
    locale = i18n.current_locale()
    return babel_format_date(value, ENGLISH_DATE if locale == i18n.DEFAULT_LOCALE else "medium", locale=locale)


def format_number(value: float | Decimal | int | None, digits: int | None = None) -> str:
    """A number with the reader's separators (1,234.5 · 1.234,5 · 1 234,5), ``digits`` decimals if given."""
    if value is None:
        return "—"
    pattern = None if digits is None else "#,##0" + ("." + "0" * digits if digits else "")
    return babel_format_decimal(value, format=pattern, locale=i18n.current_locale())


def format_money(value: float | Decimal | int | None, currency: str) -> str:
    """An amount of ``currency`` as the reader writes it (1.234,50 kr. · 1 234,50 kr · £1,234.50)."""
    if value is None:
        return "—"
    return babel_format_currency(value, currency, locale=i18n.current_locale())


def format_percent(value: float | Decimal | None, digits: int = 0) -> str:
    """A fraction (0.5) as a percentage in the reader's style (50 % · 50%)."""
    if value is None:
        return "—"
    locale = i18n.current_locale()
    if not digits:
        return babel_format_percent(value, locale=locale)
    return babel_format_percent(value, format=f"#,##0.{'0' * digits} %", locale=locale)


def charge_point_time_zone(country: str | None) -> str | None:
    """The zone a charge point's times are shown in (its country's), or None to use the reader's."""
    return COUNTRY_TIME_ZONES.get(country or "")


def template_globals() -> dict[str, Any]:
    """What the language picker and ``<html lang>`` need."""
    return {
        "languages": i18n.LANGUAGES,
        "time_zones": i18n.TIME_ZONES,
        "current_locale": i18n.current_locale,
        "current_time_zone": i18n.current_time_zone,
        "charge_point_time_zone": charge_point_time_zone,
    }


def init_i18n(app: Quart) -> None:
    """Choose each request's language, and give templates the translating functions and filters."""
    app.jinja_env.add_extension("jinja2.ext.i18n")
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        i18n.translate, i18n.translate_plural, newstyle=True
    )
    app.jinja_env.globals.update(template_globals())
    app.jinja_env.filters.update(
        {
            "datetime": format_datetime,
            "date": format_date,
            "number": format_number,
            "money": format_money,
            "percent": format_percent,
            "country": country_name,
            "reason": stored_reason,
        }
    )
    app.before_request(select_locale)
