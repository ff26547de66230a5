"""Translations: every user-visible text goes through ``gettext``/``ngettext`` here (pages, emails, errors).

The language of the current request, email or job is held in a context variable (``use_locale``), so
services, which know nothing of requests, translate in the reader's language too. Templates call
``_()``/``gettext()``/``ngettext()`` through Jinja's i18n extension, which uses these same functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

DEFAULT_LOCALE = "en"

_locale: ContextVar[str] = ContextVar("powerbank_locale", default=DEFAULT_LOCALE)


def current_locale() -> str:
    """The language texts are translated to now."""
    return _locale.get()


@contextmanager
def use_locale(locale: str) -> Iterator[None]:
    """Translate into ``locale`` inside the block (an email to one person, a page for one request)."""
    token = _locale.set(locale)
    try:
        yield
    finally:
        _locale.reset(token)


def gettext(message: str, **variables: Any) -> str:
    """``message`` in the current language, with ``%(name)s`` placeholders filled from ``variables``."""
    return message % variables if variables else message


def ngettext(singular: str, plural: str, n: int, **variables: Any) -> str:
    """The singular or plural form of a message for ``n`` (available as ``%(num)d``)."""
    variables.setdefault("num", n)
    return (singular if n == 1 else plural) % variables


_ = gettext
