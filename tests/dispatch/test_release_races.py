"""A charger withdrawn or an activation released while a limit is on its way is released all the same (S2).

The gaps a release could fall into, each driven here step by step:
- an opt-out (or a move to another area) written but not yet committed while a fan-out reads the
  area's signed-up chargers: the fan-out still sees the charger, and limits it;
- a charger that (re)connects during an activation is sent the limit again, and the dispatch row
  that a release looks for is stored a moment later;
- the release of one of two overlapping activations sends the other's limit to the chargers it
  read as signed up, one of which has just opted out and been released; or hands it to a charger
  no row of the other records, where no later release would find it;
- a charger that opts out while it is away keeps its limit until it comes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest
from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.dispatch import runner as runner_module
from powerbank.dispatch.gateway import find_gateway
from powerbank.models import ChargePoint, Operator, Team
from powerbank.ocpp.registry import registry_of
from powerbank.rules.permissions import load_principal
from powerbank.services import enrollment
from powerbank.services.activations import Target
from powerbank.services.audit import SYSTEM
from powerbank.services.charge_points import update_charge_point
from tests.conftest import Factory
from tests.dispatch.support import (
    FULL_POWER_W,
    HUB_CONFIG,
    activate,
    by_identity,
    clears,
    connect_all,
    dk2_fleet,
    one_paused_charger,
    read,
    row_of,
    running,
    simulated,
    write_token,
)
from tests.helpers import eventually

pytestmark = [pytest.mark.usefixtures("fast_hashing"), pytest.mark.served]


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return HUB_CONFIG


class Held:
    """Hold every call of a runner's service function until let go, noting that one arrived.

    With ``after_call`` the call is made first, and what it read is handed over once let go.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, *, after_call: bool = False) -> None:
        self.arrived, self.go = asyncio.Event(), asyncio.Event()
        function = getattr(runner_module.service, name)

        async def held(*args: Any, **kwargs: Any) -> Any:
            result = await function(*args, **kwargs) if after_call else None
            self.arrived.set()
            await self.go.wait()
            return result if after_call else await function(*args, **kwargs)

        monkeypatch.setattr(runner_module.service, name, held)


def area_reader(app: Quart) -> str:
    """Return the service function a fan-out reads its area with: a node of a cluster reads its share."""
    gateway = find_gateway(app)
    assert gateway is not None
    return "targets_held" if gateway.runner.clustered else "targets_in_area"


def noted_limits(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Return, as it grows, whom each limit the runner sends from now on goes to (releases left out)."""
    limits: list[list[str]] = []
    broadcast = runner_module.fanout.broadcast

    def noted_broadcast(registry: Any, targets: Iterable[Target], payload_for: Any, *args: Any) -> Any:
        targets = list(targets)
        if payload_for is not runner_module.fanout.clear_payload:
            limits.append([target.identity for target in targets])
        return broadcast(registry, targets, payload_for, *args)

    monkeypatch.setattr(runner_module.fanout, "broadcast", noted_broadcast)
    return limits


async def withdraw(session: AsyncSession, factory: Factory, team: Team, cp: ChargePoint, how: str) -> str:
    """Opt the charge point out, move it to DK1 or suspend it, without committing; return the release reason."""
    if how == "opt-out":
        manager = await factory.user(operator=await session.get(Operator, team.operator_id), operator_role="manager")
        await enrollment.opt_out(session, await load_principal(session, manager), cp)
        return "Opted out"
    fields = ("name", "identity", "brand", "model", "country", "price_area", "serial", "facility_id")
    values = {name: getattr(cp, name) or "" for name in fields}
    if how == "move":
        await update_charge_point(session, SYSTEM, team, cp, {**values, "price_area": "DK1"})
        return "moved to another area"
    # Suspended: PowerBank does not take part in Germany (R1).
    await update_charge_point(session, SYSTEM, team, cp, {**values, "country": "DE", "price_area": ""})
    return "Not available in Germany"


@pytest.mark.parametrize("how", ["opt-out", "move", "suspension"])
async def test_a_charger_withdrawn_while_the_fan_out_reads_its_area_is_released_once_that_commits(
    app: Quart, factory: Factory, session: AsyncSession, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    cp = (await dk2_fleet(factory, session, team, 1))[0]
    charger = simulated(cp.identity)
    headers = await write_token(session, operator)
    async with running(app.config["TEST_OCPP_URL"], [charger]):
        await connect_all(app, session, [(cp, charger)])
        reading = Held(monkeypatch, area_reader(app))
        try:
            created = await activate(app, headers, price_area="DK2", action="pause", duration_s=60)
            await eventually(reading.arrived.is_set, message="the fan-out did not read its area")
            # The change is written (and its release asked for) but not committed when the fan-out
            # reads the area: it still finds the charger signed up there, and pauses it.
            reason = await withdraw(session, factory, team, cp, how)
            reading.go.set()
            await eventually(lambda: charger.power_w == 0, 2.0, "not paused")
            await session.commit()
        finally:
            reading.go.set()
        await eventually(lambda: charger.power_w == FULL_POWER_W, 2.0, "the limit stayed on")

        async def recorded() -> bool:
            # The release may reach the charger before the fan-out's rows are stored.
            row = by_identity(await read(app, headers, created["id"])).get(cp.identity)
            return row is not None and row["release_status"] == "Accepted"

        await eventually(recorded, message="the release was not recorded")
        row = await row_of(app, headers, created["id"], cp.identity)
        assert row["release_reason"].startswith(reason)
        assert len(clears(charger)) == 1


@pytest.mark.parametrize("how", ["cancel", "opt-out"])
async def test_a_release_while_a_connecting_charger_is_sent_the_limit_again_reaches_it(
    app: Quart, factory: Factory, session: AsyncSession, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    cp = (await dk2_fleet(factory, session, team, 1))[0]
    charger = simulated(cp.identity)
    headers = await write_token(session, operator)
    # The charger is away when the activation starts: its row says offline, with nothing sent.
    created = await activate(app, headers, price_area="DK2", action="pause", duration_s=60)

    async def offline() -> bool:
        row = by_identity(await read(app, headers, created["id"])).get(cp.identity)
        return row is not None and row["status"] == "offline"

    await eventually(offline, message="the fan-out did not record the charger as offline")
    storing = Held(monkeypatch, "record_resent")
    async with running(app.config["TEST_OCPP_URL"], [charger]):
        try:
            # It connects and is sent the limit; the row saying so is not stored yet.
            await eventually(storing.arrived.is_set, 5.0, "the limit was not sent after the charger connected")
            await eventually(lambda: charger.power_w == 0, 2.0, "not paused")
            if how == "cancel":
                response = await app.test_client().delete(f"/api/v1/activations/{created['id']}", headers=headers)
                assert response.status_code == 200
            else:
                await withdraw(session, factory, team, cp, how)
                await session.commit()
        finally:
            storing.go.set()
        await eventually(lambda: charger.power_w == FULL_POWER_W, 2.0, "the limit stayed on")

        async def recorded() -> bool:
            return (await row_of(app, headers, created["id"], cp.identity))["released_at"] is not None

        await eventually(recorded, message="the release was not recorded")
        if how == "opt-out":
            assert (await row_of(app, headers, created["id"], cp.identity))["release_reason"].startswith("Opted out")


async def test_a_charger_opted_out_while_away_is_released_when_it_comes_back(
    app: Quart, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    cp = (await dk2_fleet(factory, session, team, 1))[0]
    charger = simulated(cp.identity)
    headers = await write_token(session, operator)
    async with running(app.config["TEST_OCPP_URL"], [charger]):
        await connect_all(app, session, [(cp, charger)])
        created = await activate(app, headers, price_area="DK2", action="pause", duration_s=60)
        await eventually(lambda: charger.power_w == 0, 2.0, "not paused")
    await eventually(lambda: registry_of(app).get(cp.identity) is None, message="the charger stayed connected")
    # The release of the opt-out finds the charger away; it keeps the limit it was given.
    await withdraw(session, factory, team, cp, "opt-out")
    await session.commit()
    async with running(app.config["TEST_OCPP_URL"], [charger]):
        await eventually(lambda: charger.connections == 2, 5.0, "the charger did not reconnect")
        await eventually(lambda: charger.power_w == FULL_POWER_W, 5.0, "the limit stayed on")

        async def recorded() -> bool:
            return (await row_of(app, headers, created["id"], cp.identity))["released_at"] is not None

        await eventually(recorded, message="the release was not recorded")
        assert len(clears(charger)) == 1


async def test_a_charger_withdrawn_while_a_release_sends_the_limit_that_continues_is_not_sent_it(
    app: Quart, factory: Factory, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    cp = (await dk2_fleet(factory, session, team, 1))[0]
    charger = simulated(cp.identity)
    headers = await write_token(session, operator)
    async with running(app.config["TEST_OCPP_URL"], [charger]):
        await connect_all(app, session, [(cp, charger)])
        first = await activate(app, headers, price_area="DK2", action="pause", duration_s=60)
        second = await activate(app, headers, price_area="DK2", action="pause", duration_s=60)

        async def both_sent() -> bool:
            rows = [by_identity(await read(app, headers, a["id"])).get(cp.identity) for a in (first, second)]
            return all(row is not None and row["status"] == "Accepted" for row in rows)

        await eventually(both_sent, message="the activations were not both answered")
        limits = noted_limits(monkeypatch)
        reading = Held(monkeypatch, "targets_in_area", after_call=True)
        try:
            # Cancelling the first sends the second's limit to the chargers the release reads as
            # signed up; the charger opts out (and is released) after that read, before that send.
            response = await app.test_client().delete(f"/api/v1/activations/{first['id']}", headers=headers)
            assert response.status_code == 200
            await eventually(reading.arrived.is_set, message="the release did not read the area")
            await withdraw(session, factory, team, cp, "opt-out")
            await session.commit()
            await eventually(lambda: charger.power_w == FULL_POWER_W, 2.0, "the opt-out did not release")
        finally:
            reading.go.set()

        await eventually(lambda: bool(limits), message="the release did not send the limit that continues")
        assert limits == [[]], "a charger that opted out was sent a limit after its release"
        assert charger.power_w == FULL_POWER_W


async def test_a_charger_withdrawn_while_it_is_looked_up_after_connecting_is_not_sent_the_limit_again(
    app: Quart, factory: Factory, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with one_paused_charger(app, factory, session, duration_s=60) as paused:
        team, cp, charger = paused.team, paused.charge_point, paused.charger
    await eventually(lambda: registry_of(app).get(cp.identity) is None, message="the charger stayed connected")
    limits = noted_limits(monkeypatch)
    looking_up = Held(monkeypatch, "targets_for", after_call=True)
    async with running(app.config["TEST_OCPP_URL"], [charger]):
        try:
            # Back, it is looked up (still signed up) to be sent the limit again; it opts out and is
            # released (it has its row from before) after that read, before that send.
            await eventually(looking_up.arrived.is_set, 5.0, "the charger was not looked up after connecting")
            await withdraw(session, factory, team, cp, "opt-out")
            await session.commit()
            await eventually(lambda: len(clears(charger)) == 1, 2.0, "the opt-out did not release")
        finally:
            looking_up.go.set()
        await eventually(lambda: bool(limits), message="the limit was not looked up for the charger that connected")
        assert limits == [[]], "a charger that opted out was sent a limit after its release"
        assert charger.power_w == FULL_POWER_W


async def test_a_charger_the_continuing_activation_never_limited_is_released_when_the_other_ends(
    app: Quart, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    cp = (await dk2_fleet(factory, session, team, 1))[0]
    manager = await load_principal(session, await factory.user(operator=operator, operator_role="manager"))
    charger = simulated(cp.identity)
    headers = await write_token(session, operator)
    async with running(app.config["TEST_OCPP_URL"], [charger]):
        await connect_all(app, session, [(cp, charger)])
        # Opted out when the longer activation starts, signed up again before the shorter one.
        await enrollment.opt_out(session, manager, cp)
        await session.commit()
        longer = await activate(app, headers, price_area="DK2", action="pause", duration_s=60)

        async def sent(activation: dict[str, Any]) -> bool:
            return (await read(app, headers, activation["id"]))["triggered_at"] is not None

        await eventually(lambda: sent(longer), message="the longer activation was not sent")
        terms = await enrollment.current_terms(session)
        await enrollment.sign_up_one(session, manager, cp, accept_terms_version=terms.version, facility_id=None)
        await session.commit()
        shorter = await activate(app, headers, price_area="DK2", action="pause", duration_s=60)
        await eventually(lambda: charger.power_w == 0, 2.0, "not paused")
        response = await app.test_client().delete(f"/api/v1/activations/{shorter['id']}", headers=headers)
        assert response.status_code == 200

        async def released() -> bool:
            return (await row_of(app, headers, shorter["id"], cp.identity))["released_at"] is not None

        await eventually(released, message="the release was not recorded")
        # Whether it is handed the longer one's limit or not, opting out now releases it.
        await enrollment.opt_out(session, manager, cp)
        await session.commit()
        await eventually(lambda: charger.power_w == FULL_POWER_W, 2.0, "the limit stayed on")
        assert cp.identity not in by_identity(await read(app, headers, longer["id"]))
