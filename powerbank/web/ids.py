"""Database ids in URLs and form fields."""

from __future__ import annotations

from werkzeug.routing import IntegerConverter


def id_or_none(value: str | None) -> int | None:
    """Return the id typed in a form or query field, or None for anything that is not one."""
    # isdigit() alone lets "²" through to int(); ids have at most nine ASCII digits (DatabaseIdConverter).
    return int(value) if value and value.isascii() and value.isdigit() and len(value) <= 9 else None


class DatabaseIdConverter(IntegerConverter):
    """Match ids of up to nine digits, so a huge guessed id is a 404 rather than a database overflow.

    The limit is in the pattern (not a ``max``) so that such a path matches no route at all:
    a ``max`` is checked after routing and turns a POST into 405 when a GET shares the path.
    """

    regex = r"\d{1,9}"
