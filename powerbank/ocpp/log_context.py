"""The charger a piece of work is for, so every log line it writes can name it.

Set once when a charger's connection starts serving; the tasks it starts (handlers, writes,
probes) inherit it. ``powerbank/runtime/logging_setup.py`` adds it to each log record.
"""

from __future__ import annotations

from contextvars import ContextVar

charger_identity: ContextVar[str | None] = ContextVar("charger_identity", default=None)
