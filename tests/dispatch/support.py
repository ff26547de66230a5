"""What the activation tests share: the served hub, simulated chargers, a DK2 fleet, the activation API."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from quart import Quart
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.dispatch.gateway import find_gateway
from powerbank.models import ChargePoint, ChargerCapability, Operator, Team, TokenAccess
from powerbank.rules.permissions import load_principal
from powerbank.services import enrollment
from powerbank.services.api_tokens import TokenRequest, create_token
from powerbank.services.audit import SYSTEM
from powerbank.tools.simulator import ChargerSpec, SimulatedCharger
from tests import helpers
from tests.conftest import TEST_PASSWORD, Factory
from tests.helpers import SERVED_CONFIG, TEST_CONFIG, eventually

MARGIN_S = 0.5
# Calls to chargers and waits for their answers are given up sooner than in production.
HUB_CONFIG = {"OCPP_CALL_TIMEOUT_S": 3, "ACTIVATION_PROFILE_MARGIN_S": MARGIN_S, "ACTIVATION_ANSWER_TIMEOUT_S": 3}
FULL_POWER_W = 11_000


def served(database_url: str, port: int | None = None) -> AbstractAsyncContextManager[Quart]:
    """Serve a fresh hub on the database, as `powerbank serve` does (for tests that stop and start hubs)."""
    return helpers.served({**TEST_CONFIG, **SERVED_CONFIG, **HUB_CONFIG, "DATABASE_URL": database_url}, port=port)


def simulated(identity: str, **spec: Any) -> SimulatedCharger:
    return SimulatedCharger(
        ChargerSpec(identity=identity, **spec), meter_interval=1.0, reconnect_delay=0.05, max_reconnect_delay=0.2
    )


@asynccontextmanager
async def running(url: str, chargers: Iterable[SimulatedCharger]) -> AsyncIterator[None]:
    """Run simulated chargers against the hub while in use."""
    tasks = [asyncio.create_task(charger.run(url, TEST_PASSWORD)) for charger in chargers]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def set_profiles(charger: SimulatedCharger, since: int = 0) -> list[dict[str, Any]]:
    return [payload for action, payload in charger.received[since:] if action == "SetChargingProfile"]


def clears(charger: SimulatedCharger, since: int = 0) -> list[dict[str, Any]]:
    return [payload for action, payload in charger.received[since:] if action == "ClearChargingProfile"]


async def probed(session: AsyncSession, charge_points: Iterable[ChargePoint]) -> bool:
    """Tell whether every charger answered the capability probe (its rate unit is then known)."""
    ids = [cp.id for cp in charge_points]
    rows = await session.exec(
        select(ChargerCapability.charge_point_id)
        .where(col(ChargerCapability.charge_point_id).in_(ids))
        .execution_options(populate_existing=True)
    )
    return len(set(rows)) == len(ids)


async def connect_all(app: Quart, session: AsyncSession, pairs: list[tuple[ChargePoint, SimulatedCharger]]) -> None:
    """Wait until every charger booted, answered the probe and charges at full power."""
    for _, charger in pairs:
        await asyncio.wait_for(charger.booted.wait(), 5)
    await eventually(lambda: probed(session, [cp for cp, _ in pairs]), message="capability probe not answered")
    await eventually(lambda: all(charger.power_w == FULL_POWER_W for _, charger in pairs), message="not charging")
    # The hub looked up what each must carry (told again once a probe answer signed it up).
    gateway = find_gateway(app)
    assert gateway is not None
    await eventually(lambda: gateway.runner.boots_settled, message="boot look-ups still running")


async def write_token(
    session: AsyncSession, operator: Operator, access: str = TokenAccess.WRITE, team: Team | None = None
) -> dict[str, str]:
    _, secret = await create_token(
        session,
        SYSTEM,
        operator.id or 0,
        TokenRequest(
            name=f"grid {access}", access=TokenAccess(access), team_id=team.id if team else None, expires_in_days=None
        ),
    )
    await session.commit()
    return {"Authorization": f"Bearer {secret}"}


async def activate(app: Quart, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await app.test_client().post("/api/v1/activations", json=body, headers=headers)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()


async def read(app: Quart, headers: dict[str, str], activation_id: int) -> dict[str, Any]:
    response = await app.test_client().get(f"/api/v1/activations/{activation_id}", headers=headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()


def by_identity(activation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["identity"]: row for row in activation["chargers"]}


async def row_of(app: Quart, headers: dict[str, str], activation_id: int, identity: str) -> dict[str, Any]:
    """Return a charger's row of an activation, as the API shows it.

    A row not stored yet (a limit reaches a charger before its row is committed) reads as every
    field None, so a condition waiting for it is simply not met yet.
    """
    return defaultdict(lambda: None, by_identity(await read(app, headers, activation_id)).get(identity, {}))


async def dk2_fleet(
    factory: Factory, session: AsyncSession, team: Team, count: int, **fields: Any
) -> list[ChargePoint]:
    """Create compatible DK2 charge points; R6 signs them up automatically."""
    charge_points = [await factory.charge_point(team, price_area="DK2", **fields) for _ in range(count)]
    await enrollment.reevaluate(session, charge_points)
    await session.commit()
    return charge_points


async def dk2_fleet_and_a_signed_up_se3(
    factory: Factory, session: AsyncSession, team: Team
) -> tuple[ChargePoint, ChargePoint]:
    """Create a DK2 charge point (signed up by R6) and a Swedish SE3 one signed up by an admin."""
    dk2 = (await dk2_fleet(factory, session, team, 1))[0]
    se3 = await factory.charge_point(team, country="SE", price_area="SE3", facility_id="735999000000000013")
    admin = await factory.user(operator=await session.get(Operator, team.operator_id), operator_role="admin")
    await enrollment.sign_up_one(
        session,
        await load_principal(session, admin),
        se3,
        accept_terms_version=(await enrollment.current_terms(session)).version,
        facility_id=None,
    )
    await session.commit()
    return dk2, se3


@dataclass
class Paused:
    """One signed-up DK2 charger, connected, and the activation that paused it (its answer stored)."""

    team: Team
    charge_point: ChargePoint
    charger: SimulatedCharger
    headers: dict[str, str]
    activation: dict[str, Any]


@asynccontextmanager
async def one_paused_charger(
    app: Quart, factory: Factory, session: AsyncSession, duration_s: int = 30
) -> AsyncIterator[Paused]:
    """Connect one DK2 charger and pause it; it stays connected until the block ends."""
    operator = await factory.operator()
    team = await factory.team(operator)
    cp = (await dk2_fleet(factory, session, team, 1))[0]
    charger = simulated(cp.identity)
    headers = await write_token(session, operator)
    async with running(app.config["TEST_OCPP_URL"], [charger]):
        await connect_all(app, session, [(cp, charger)])
        created = await activate(app, headers, price_area="DK2", action="pause", duration_s=duration_s)

        async def stored() -> bool:
            return (await row_of(app, headers, created["id"], cp.identity))["status"] == "Accepted"

        await eventually(stored, message="the limit's answer was not stored")
        yield Paused(team, cp, charger, headers, created)
