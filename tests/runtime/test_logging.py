"""Log lines as JSON or text, each naming the request (its id) or the charger it was written for."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from quart import Quart

from powerbank import create_app
from powerbank.runtime.logging_setup import configure_logging
from tests.conftest import Factory
from tests.helpers import TEST_CONFIG, eventually
from tests.ocpp.support import raw_socket

logger = logging.getLogger("powerbank.test")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Where the configured logging writes; the root logger's own handlers and level are put back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    ocpp_level = logging.getLogger("ocpp").level
    stream = io.StringIO()
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("ocpp").setLevel(ocpp_level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def app_that_logs(database_url: str) -> Quart:
    app = create_app({**TEST_CONFIG, "DATABASE_URL": database_url})

    async def later() -> None:
        logger.info("work the request started")

    async def logs() -> str:
        logger.info("handling the request")
        await asyncio.create_task(later())
        return "ok"

    app.add_url_rule("/test-logs", "test_logs", logs)
    return app


async def test_json_lines_carry_the_request_id_the_proxy_sent_in_tasks_too(
    database_url: str, captured: io.StringIO
) -> None:
    configure_logging("json", stream=captured)
    app = await app_that_logs(database_url)
    async with app.test_app():
        response = await app.test_client().get("/test-logs", headers={"X-Request-ID": "edge-7f3a.1"})
    assert response.headers["X-Request-ID"] == "edge-7f3a.1"
    lines = [line for line in json_lines(captured) if line["logger"] == "powerbank.test"]
    assert [line["message"] for line in lines] == ["handling the request", "work the request started"]
    for line in lines:
        assert line["request_id"] == "edge-7f3a.1"
        assert line["level"] == "INFO"
        assert line["charger"] is None
        assert line["time"].endswith("+00:00")


@pytest.mark.parametrize("given", [None, "", "has spaces in it", "x" * 65, 'quote"d'])
async def test_a_request_without_a_usable_id_gets_a_new_one(
    database_url: str, captured: io.StringIO, given: str | None
) -> None:
    configure_logging("json", stream=captured)
    app = await app_that_logs(database_url)
    headers = {} if given is None else {"X-Request-ID": given}
    async with app.test_app():
        first = await app.test_client().get("/test-logs", headers=headers)
        second = await app.test_client().get("/test-logs", headers=headers)
    ids = [first.headers["X-Request-ID"], second.headers["X-Request-ID"]]
    assert ids[0] != ids[1] and given not in ids
    logged = [line["request_id"] for line in json_lines(captured) if line["logger"] == "powerbank.test"]
    assert logged == [ids[0], ids[0], ids[1], ids[1]]


async def test_text_lines_name_the_request(database_url: str, captured: io.StringIO) -> None:
    configure_logging("text", stream=captured)
    app = await app_that_logs(database_url)
    async with app.test_app():
        await app.test_client().get("/test-logs", headers={"X-Request-ID": "abc-123"})
    line = next(line for line in captured.getvalue().splitlines() if "handling the request" in line)
    assert " INFO powerbank.test [request=abc-123] handling the request" in line


def test_an_unknown_log_format_is_refused(captured: io.StringIO) -> None:
    with pytest.raises(ValueError, match="POWERBANK_LOG_FORMAT"):
        configure_logging("xml", stream=captured)


def test_exceptions_are_inside_the_json_line(captured: io.StringIO) -> None:
    configure_logging("json", stream=captured)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("it failed")
    (line,) = json_lines(captured)
    assert line["message"] == "it failed" and "RuntimeError: boom" in line["exception"]


@pytest.mark.served
async def test_a_chargers_lines_name_the_charger(app: Quart, factory: Factory, captured: io.StringIO) -> None:
    configure_logging("json", stream=captured)
    charge_point = await factory.charge_point(await factory.team())
    async with raw_socket(app, charge_point.identity) as socket:
        await socket.send("this is not a frame")
        await socket.recv()

    def malformed_logged() -> list[dict[str, Any]]:
        return [line for line in json_lines(captured) if "malformed frame" in line["message"]]

    await eventually(malformed_logged)
    (line,) = malformed_logged()
    assert line["charger"] == charge_point.identity
    assert line["logger"] == "powerbank.ocpp"
    # The upgrade was a request too: its id stays on the connection's lines.
    assert line["request_id"]
