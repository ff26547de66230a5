"""Log lines for people (text) or for a log collector (JSON, ``POWERBANK_LOG_FORMAT=json``).

Every line says which HTTP request (its request id) or which charger (its identity) it was written
for, when it was written for one: the id is kept in context variables that asyncio copies into
every task started meanwhile, and a logging filter adds them to each record. A request's id is the
``X-Request-ID`` its proxy sent (when it looks like one), else a new one; it is sent back in the
response's ``X-Request-ID``, so a person reporting a problem can quote it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from quart import Quart, Response, request

from powerbank.ocpp.log_context import charger_identity, new_or_given, request_id

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(context)s%(message)s"


class ContextFilter(logging.Filter):
    """Add ``request_id``, ``charger`` and ``context`` (the text format's prefix) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        current_request, charger = request_id.get(), charger_identity.get()
        shown = " ".join(
            part
            for part in (
                f"request={current_request}" if current_request else "",
                f"charger={charger}" if charger else "",
            )
            if part
        )
        record.__dict__.update(request_id=current_request, charger=charger, context=f"[{shown}] " if shown else "")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, charger (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "charger": getattr(record, "charger", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(log_format: str = "text", level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stderr) in ``log_format``, with its request or charger."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"POWERBANK_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The ocpp library logs every frame at INFO.
    logging.getLogger("ocpp").setLevel(logging.WARNING)


def install_request_ids(app: Quart) -> None:
    """Give every request a request id, in its log lines and in ``X-Request-ID`` (chargers: ``ocpp.endpoint``)."""

    @app.before_request
    async def take_request_id() -> None:
        request_id.set(new_or_given(request.headers.get("X-Request-ID")))

    @app.after_request
    async def send_request_id(response: Response) -> Response:
        current = request_id.get()
        if current is not None:
            response.headers["X-Request-ID"] = current
        return response
