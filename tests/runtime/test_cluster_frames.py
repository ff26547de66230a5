"""A charge point's page served by one node shows the live OCPP frames of the charger another node holds.

Two real `powerbank serve` nodes on one PostgreSQL; a simulated charger connected to node 2 only; a
person logged in on node 1 opens the charge point's live OCPP section, as the page polls it.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from powerbank.db import standalone_session
from powerbank.models import ChargePoint, SharedFrames
from powerbank.tools.simulator import ChargerSpec, SimulatedCharger
from tests.conftest import CSRF_RE, TEST_PASSWORD, Factory
from tests.helpers import eventually
from tests.runtime.cluster_support import Node, holders, nodes_on

pytestmark = pytest.mark.postgres_only

ADMIN_EMAIL = "admin@frames.example"


@pytest.fixture
def nodes(database_url: str, tmp_path: Path) -> Iterator[list[Node]]:
    with nodes_on(database_url, tmp_path) as started:
        yield started


class Browser:
    """A person's browser on one node: cookies kept."""

    def __init__(self, node: Node) -> None:
        self.base = f"http://127.0.0.1:{node.port}"
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def open(self, path: str, form: dict[str, str] | None = None, **headers: str) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers)
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def log_in(self, email: str) -> None:
        _status, form = self.open("/login")
        token = CSRF_RE.search(form)
        assert token is not None
        status, page = self.open("/login", {"email": email, "password": TEST_PASSWORD, "csrf_token": token.group(1)})
        assert status == 200 and email in page, page[:500]

    async def live(self, charge_point: ChargePoint) -> str:
        """Return the live OCPP section of the charge point's page, as the page's poll fetches it."""
        status, text = await asyncio.to_thread(
            self.open, f"/charge-points/{charge_point.id}/ocpp", **{"HX-Request": "true"}
        )
        assert status == 200, text[:500]
        return text


async def test_a_page_on_one_node_shows_the_frames_of_a_charger_held_by_another(
    nodes: list[Node], database_url: str
) -> None:
    one, two = nodes
    async with standalone_session(database_url) as session:
        factory = Factory(session)
        operator = await factory.operator()
        charge_point = await factory.charge_point(await factory.team(operator))
        # Another tenant's charger on node 2: its frames are never asked for nor shown.
        stranger = await factory.charge_point(await factory.team(await factory.operator()))
        await factory.user(operator=operator, operator_role="admin", email=ADMIN_EMAIL)
        await session.commit()
    await asyncio.gather(one.listening(), two.listening())
    chargers = [
        SimulatedCharger(ChargerSpec(identity=cp.identity), meter_interval=1.0) for cp in (charge_point, stranger)
    ]
    tasks = [asyncio.create_task(charger.run(two.ocpp_url, TEST_PASSWORD)) for charger in chargers]
    try:

        async def held_by_node_2() -> bool:
            shown = await holders(database_url)
            return shown[charge_point.identity] == "node-2" and shown[stranger.identity] == "node-2"

        await eventually(held_by_node_2, 20.0, "the chargers are not shown held by node 2")
        browser = Browser(one)
        await asyncio.to_thread(browser.log_in, ADMIN_EMAIL)

        # Node 1 never saw the charger: it asks node 2, which publishes its frames at once.
        first = await browser.live(charge_point)
        assert "Node node-2 holds this charger" in first
        assert "BootNotification" not in first

        async def published() -> bool:
            section = await browser.live(charge_point)
            return "as node node-2, which holds its connection" in section and "BootNotification" in section

        await eventually(published, 10.0, "node 1 does not show the frames node 2 holds")

        # While the page is open, newer frames follow: the charger's meter values every second.
        counts: list[int] = []

        async def newer_frames() -> bool:
            counts.append((await browser.live(charge_point)).count("MeterValues"))
            return counts[-1] > counts[0]

        await eventually(newer_frames, 10.0, "newer frames did not reach node 1")

        # Another tenant's charge point is not found; nothing of its charger was published.
        status, _text = await asyncio.to_thread(
            browser.open, f"/charge-points/{stranger.id}/ocpp", **{"HX-Request": "true"}
        )
        assert status == 404
        async with standalone_session(database_url) as session:
            assert await session.get(SharedFrames, stranger.id) is None
            assert await session.get(SharedFrames, charge_point.id) is not None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
