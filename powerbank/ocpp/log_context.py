"""What a piece of work is for, so every log line it writes can name it.

``charger_identity``: set once when a charger's connection starts serving; the tasks it starts
(handlers, writes, probes) inherit it. ``request_id``: the request (or the websocket upgrade) a
line was written for. ``powerbank/runtime/logging_setup.py`` adds both to each log record.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

charger_identity: ContextVar[str | None] = ContextVar("charger_identity", default=None)
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# What a proxy's request id may look like to be taken over (anything else gets a new id).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def new_or_given(given: str | None) -> str:
    """Return the request id a proxy gave, when it looks like one; else a new one."""
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex[:16]
