"""The ``ocpp`` library's conversion of payload keys between camelCase and snake_case, remembered.

The library runs two regular expressions (and a dozen replacements the other way) over every key
of every message; a hub sees the same few dozen keys millions of times. The result for each key is
the library's own, computed once. Only short keys are remembered: a charger choosing its keys must
not fill the memory.
"""

from __future__ import annotations

import functools
from typing import Any

from ocpp.charge_point import camel_to_snake_case as _library_to_snake
from ocpp.charge_point import snake_to_camel_case as _library_to_camel

# Keys longer than this (none in OCPP) are converted without being remembered.
REMEMBERED_KEY_LENGTH = 64


@functools.lru_cache(maxsize=2048)
def _remembered_snake(key: str) -> str:
    return next(iter(_library_to_snake({key: None})))


@functools.lru_cache(maxsize=2048)
def _remembered_camel(key: str) -> str:
    return next(iter(_library_to_camel({key: None})))


def _snake(key: str) -> str:
    if len(key) > REMEMBERED_KEY_LENGTH:
        return next(iter(_library_to_snake({key: None})))
    return _remembered_snake(key)


def _camel(key: str) -> str:
    if len(key) > REMEMBERED_KEY_LENGTH:
        return next(iter(_library_to_camel({key: None})))
    return _remembered_camel(key)


def camel_to_snake_case(data: Any) -> Any:
    """Return ``data`` with every dictionary key in snake_case (as the library converts it)."""
    if isinstance(data, dict):
        return {_snake(key): camel_to_snake_case(value) for key, value in data.items()}
    if isinstance(data, list):
        return [camel_to_snake_case(value) for value in data]
    return data


def snake_to_camel_case(data: Any) -> Any:
    """Return ``data`` with every dictionary key in camelCase (as the library converts it)."""
    if isinstance(data, dict):
        return {_camel(key): snake_to_camel_case(value) for key, value in data.items()}
    if isinstance(data, list):
        return [snake_to_camel_case(value) for value in data]
    return data
