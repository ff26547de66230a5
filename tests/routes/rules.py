"""Every URL rule of the app, and the ids each one takes, for the tests that walk them."""

from __future__ import annotations

import re
from typing import Any

from powerbank import create_app

ARGUMENT_RE = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def app_rules() -> list[Any]:
    """Return the app's HTTP rules (not static files, not websockets)."""
    app = create_app({"DEMO": True, "DATABASE_URL": "sqlite+aiosqlite://"})
    return [rule for rule in app.url_map.iter_rules() if not rule.websocket and rule.endpoint != "static"]


def arguments(rule: Any) -> list[tuple[str, str]]:
    """Return (converter, name) for each argument of a rule, in path order."""
    return [(converter or "default", name) for converter, name in ARGUMENT_RE.findall(rule.rule)]


RULES = app_rules()
