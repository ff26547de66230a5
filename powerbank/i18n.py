"""Translations: every user-visible text goes through ``gettext``/``ngettext`` here (pages, emails, errors).

The language of the current request, email or job is held in a context variable (``use_locale``), so
services, which know nothing of requests, translate in the reader's language too. Templates call
``_()``/``gettext()``/``ngettext()`` through Jinja's i18n extension, which uses these same functions.

The catalogues are Babel ``.po`` files in ``powerbank/translations/<locale>/LC_MESSAGES/``. Their
compiled ``.mo`` files are not kept in version control: ``make`` compiles them (``make
translations-compile``), and the first translation in a process compiles any that is missing or older
than its ``.po`` (in memory when the package's folder cannot be written, as in a read-only install).
"""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from threading import Lock
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

log = logging.getLogger(__name__)

DEFAULT_LOCALE = "en"
# The languages PowerBank speaks, each named in itself (as the language picker shows them).
LANGUAGES: dict[str, str] = {"en": "English", "da": "Dansk", "sv": "Svenska"}
# The time zones of the participating countries (times are stored in UTC and shown in one of these).
TIME_ZONES: tuple[str, ...] = ("Europe/Copenhagen", "Europe/Stockholm", "Europe/London", "Europe/Dublin")
DEFAULT_TIME_ZONE = "UTC"
TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
DOMAIN = "messages"

_locale: ContextVar[str] = ContextVar("powerbank_locale", default=DEFAULT_LOCALE)
_time_zone: ContextVar[str] = ContextVar("powerbank_time_zone", default=DEFAULT_TIME_ZONE)
_catalogues: dict[str, NullTranslations] = {}
_loading = Lock()


def current_locale() -> str:
    """The language texts are translated to now."""
    return _locale.get()


def current_time_zone() -> str:
    """The time zone times are shown in now, when no charge point's own zone applies."""
    return _time_zone.get()


def supported_locale(locale: str | None) -> str | None:
    """Return ``locale`` when PowerBank speaks it (``da_DK`` and ``da-dk`` count as ``da``), else None."""
    if not locale:
        return None
    language = locale.replace("-", "_").split("_")[0].lower()
    return language if language in LANGUAGES else None


def supported_time_zone(zone: str | None) -> str | None:
    """Return ``zone`` when it is one PowerBank offers, else None."""
    return zone if zone in TIME_ZONES else None


@contextmanager
def use_locale(locale: str, time_zone: str | None = None) -> Iterator[None]:
    """Translate into ``locale`` (and show times in ``time_zone``) inside the block: an email, a request."""
    token = _locale.set(supported_locale(locale) or DEFAULT_LOCALE)
    zone_token = _time_zone.set(supported_time_zone(time_zone) or DEFAULT_TIME_ZONE) if time_zone else None
    try:
        yield
    finally:
        if zone_token is not None:
            _time_zone.reset(zone_token)
        _locale.reset(token)


def set_locale(locale: str, time_zone: str | None = None) -> None:
    """Translate into ``locale`` for the rest of the current task (a request: each runs in a task of its own)."""
    _locale.set(supported_locale(locale) or DEFAULT_LOCALE)
    _time_zone.set(supported_time_zone(time_zone) or DEFAULT_TIME_ZONE)


def catalogue_paths(locale: str) -> tuple[Path, Path]:
    """Return the ``.po`` and ``.mo`` file of a locale."""
    folder = TRANSLATIONS_DIR / locale / "LC_MESSAGES"
    return folder / f"{DOMAIN}.po", folder / f"{DOMAIN}.mo"


def compiled_catalogue(locale: str) -> bytes | None:
    """Return the compiled (``.mo``) catalogue of ``locale``, compiling it when missing or stale; None without one.

    A fresh compilation is written beside the ``.po`` when the folder is writable; otherwise it is
    used from memory only.
    """
    po_path, mo_path = catalogue_paths(locale)
    if not po_path.exists():
        return mo_path.read_bytes() if mo_path.exists() else None
    if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
        return mo_path.read_bytes()
    with po_path.open("rb") as po_file:
        catalogue = read_po(po_file, locale=locale, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalogue)
    data = buffer.getvalue()
    try:
        mo_path.write_bytes(data)
    except OSError as exc:
        log.info("Translations for %s compiled in memory only (%s)", locale, exc)
    return data


def compile_catalogues() -> list[str]:
    """Compile every locale's catalogue that is missing or stale; return the locales that have one."""
    return [locale for locale in LANGUAGES if locale != DEFAULT_LOCALE and compiled_catalogue(locale) is not None]


def translations(locale: str) -> NullTranslations:
    """Return the translations of ``locale`` (English, the source language, translates to itself)."""
    found = _catalogues.get(locale)
    if found is not None:
        return found
    with _loading:
        found = _catalogues.get(locale)
        if found is None:
            data = compiled_catalogue(locale) if locale != DEFAULT_LOCALE else None
            found = Translations(io.BytesIO(data), domain=DOMAIN) if data else NullTranslations()
            _catalogues[locale] = found
    return found


def translate(message: str) -> str:
    """``message`` in the current language, its placeholders left as they are (Jinja fills them, escaped)."""
    if not message:
        # The empty message id is the catalogue's header, never a text.
        return message
    return translations(_locale.get()).gettext(message)


def translate_plural(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n`` in the current language, its placeholders left as they are."""
    return translations(_locale.get()).ngettext(singular, plural, n)


def gettext(message: str, **variables: Any) -> str:
    """``message`` in the current language, with ``%(name)s`` placeholders filled from ``variables``."""
    translated = translate(message)
    return translated % variables if variables else translated


def ngettext(singular: str, plural: str, n: int, **variables: Any) -> str:
    """The singular or plural form of a message for ``n`` (available as ``%(num)d``)."""
    variables.setdefault("num", n)
    return translate_plural(singular, plural, n) % variables


def gettext_noop(message: str) -> str:
    """Mark ``message`` for translation where it is defined; it is translated where it is shown (``gettext``)."""
    return message


_ = gettext
N_ = gettext_noop

_PLACEHOLDER = re.compile(r"%(?:\(([A-Za-z_][A-Za-z0-9_]*)\))?[-#0 +]*\d*(?:\.\d+)?[sdifr%]")


def placeholders(text: str) -> list[str]:
    """The ``%(name)s``-style placeholders of a text, sorted (``%%`` included, so a lone ``%`` stands out)."""
    return sorted(match.group(0) for match in _PLACEHOLDER.finditer(text))


def catalogue_problems(locale: str) -> list[str]:
    """Return what a locale's catalogue lacks: untranslated, fuzzy or placeholder-mismatched messages.

    Messages of the extracted template (``messages.pot``) that the catalogue does not hold yet count
    as untranslated (``make translations-extract`` adds them).
    """
    po_path, _mo_path = catalogue_paths(locale)
    if not po_path.exists():
        return [f"{locale}: no catalogue at {po_path}"]
    with po_path.open("rb") as po_file:
        catalogue = read_po(po_file, locale=locale, domain=DOMAIN)
    problems = []
    pot_path = TRANSLATIONS_DIR / f"{DOMAIN}.pot"
    if pot_path.exists():
        with pot_path.open("rb") as pot_file:
            template = read_po(pot_file, domain=DOMAIN)
        problems += [
            f"{locale}: not in the catalogue yet: {message.id!r}"
            for message in template
            if message.id and catalogue.get(message.id) is None
        ]
    for message in catalogue:
        if not message.id:
            continue
        ids = [str(i) for i in message.id] if isinstance(message.id, tuple | list) else [str(message.id)]
        raw = message.string
        strings = [str(s or "") for s in raw] if isinstance(raw, tuple | list) else [str(raw or "")]
        if message.fuzzy or not all(strings):
            problems.append(f"{locale}: untranslated{' (fuzzy)' if message.fuzzy else ''}: {ids[0]!r}")
            continue
        wanted = placeholders(ids[-1])
        for string in strings:
            # A plural form may leave out %(num)d (Danish and Swedish "one" often says it in words).
            got = placeholders(string)
            if got != wanted and [p for p in wanted if "num" not in p] != [p for p in got if "num" not in p]:
                problems.append(f"{locale}: placeholders differ in {ids[0]!r}: {wanted} != {got} in {string!r}")
    return problems


def main(argv: list[str]) -> int:
    """``compile`` the catalogues, or ``check`` what lacks a translation (`python -m powerbank.tools.translations`)."""
    command = argv[0] if argv else ""
    if command == "compile":
        for locale in LANGUAGES:
            if locale != DEFAULT_LOCALE:
                _po, mo_path = catalogue_paths(locale)
                if mo_path.exists():
                    mo_path.unlink()
        print("Compiled translations:", ", ".join(compile_catalogues()) or "none")
        return 0
    if command == "check":
        problems = [
            problem for locale in LANGUAGES if locale != DEFAULT_LOCALE for problem in catalogue_problems(locale)
        ]
        for problem in problems:
            print(problem)
        print(
            f"{len(problems)} message(s) lack a Danish or Swedish translation."
            if problems
            else "Every message is translated."
        )
        return 1 if problems else 0
    print("usage: python -m powerbank.tools.translations compile|check", file=sys.stderr)
    return 2
