"""Tenant isolation over every route that takes an id: another tenant's id answers 404, never data.

The routes come from the app's url_map, so a new route is tested as soon as it exists; a route
with an id argument this module does not know fails `test_every_id_route_is_covered`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import ChargePoint, CompatibleModel, OperatorMembership, Team, TeamMembership
from powerbank.services.audit import SYSTEM
from tests.conftest import Factory, LoginAs
from tests.routes.rules import ARGUMENT_RE, RULES, arguments
from tests.routes.world import World, build_world

pytestmark = pytest.mark.usefixtures("fast_hashing")

# Every id a route may take, by argument name, and the kind of object it names.
ID_ARGUMENTS = {
    "operator_id": "operator",
    "team_id": "team",
    "cp_id": "charge_point",
    "entry_id": "catalogue_entry",
    "membership_id": "membership",
    "token_id": "api_token",
    "activation_id": "activation",
}
# Values for the other (non-id) arguments of routes that take an id.
OTHER_ARGUMENTS: dict[str, tuple[str, ...]] = {"scope": ("operator", "team")}
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Values a browser could send to any form; a route that wrongly accepts a foreign id would use them.
FORM = {
    "name": "Hijacked",
    "identity": "HIJACKED-1",
    "country": "DK",
    "price_area": "DK2",
    "brand": "Acme",
    "model": "X",
    "role": "admin",
    "remove": "1",
    "email": "x@example.test",
    "confirm": "1",
}
NOT_FOUND_MARKERS = ("Secret",)


ID_RULES = [rule for rule in RULES if any(converter == "int" for converter, _ in arguments(rule))]


def methods(rule: Any) -> list[str]:
    return sorted(method for method in rule.methods if method not in ("HEAD", "OPTIONS"))


def test_every_id_route_is_covered() -> None:
    uncovered = [
        f"{rule.rule} ({name})"
        for rule in ID_RULES
        for converter, name in arguments(rule)
        if (converter == "int" and name not in ID_ARGUMENTS) or (converter != "int" and name not in OTHER_ARGUMENTS)
    ]
    assert not uncovered, f"add these route arguments to the tenant isolation test: {uncovered}"
    assert {"teams.charge_points", "charge_points.detail", "admin.catalogue_remove"} <= {r.endpoint for r in ID_RULES}


Ids = dict[str, Any]


async def tenant_ids(session: AsyncSession, operator_id: int, team: Team, charge_point: ChargePoint) -> Ids:
    """Return the ids of one tenant's objects by kind (memberships by scope), and an API token's secret."""
    from powerbank.models import Activation, TokenAccess
    from powerbank.services.api_tokens import TokenRequest, create_token

    entry = (await session.exec(select(CompatibleModel.id).where(CompatibleModel.operator_id == operator_id))).first()
    operator_membership = (
        await session.exec(select(OperatorMembership.id).where(OperatorMembership.operator_id == operator_id))
    ).first()
    team_membership = (await session.exec(select(TeamMembership.id).where(TeamMembership.team_id == team.id))).first()
    token, secret = await create_token(
        session, SYSTEM, operator_id, TokenRequest("Tenancy test", TokenAccess.WRITE, None, None)
    )
    start = utcnow() + timedelta(hours=1)
    activation = Activation(
        operator_id=operator_id,
        price_area="DK2",
        market="FCR-D",
        action="pause",
        start_at=start,
        duration_s=600,
        end_at=start + timedelta(seconds=600),
        created_by="tenancy test",
    )
    session.add(activation)
    await session.commit()
    assert entry and operator_membership and team_membership
    return {
        "operator": operator_id,
        "team": team.id,
        "charge_point": charge_point.id,
        "catalogue_entry": entry,
        "membership": {"operator": operator_membership, "team": team_membership},
        "api_token": token.id,
        "activation": activation.id,
        "secret": secret,
    }


def id_value(ids: Ids, kind: str, values: dict[str, str]) -> int:
    if kind == "membership":
        return ids[kind][values["scope"]]
    return ids[kind]


def paths_with_a_foreign_id(rule: Any, own: Ids, foreign: Ids) -> Iterator[str]:
    """Yield the rule's paths with one id argument foreign (or unknown) and everything else the caller's own."""
    args = arguments(rule)
    other_names = [name for converter, name in args if converter != "int"]
    combos: list[dict[str, str]] = [{}]
    for name in other_names:
        combos = [{**combo, name: value} for combo in combos for value in OTHER_ARGUMENTS[name]]
    for combo in combos:
        for _, target in (arg for arg in args if arg[0] == "int"):
            # Huge and malformed ids: test_malformed_ids_answer_404.
            for guessed in ("foreign", 987654):
                values: dict[str, Any] = dict(combo)
                for converter, name in args:
                    if converter != "int":
                        continue
                    kind = ID_ARGUMENTS[name]
                    if name != target:
                        values[name] = id_value(own, kind, combo)
                    elif guessed == "foreign":
                        values[name] = id_value(foreign, kind, combo)
                    else:
                        values[name] = guessed
                yield ARGUMENT_RE.sub(lambda m: str(values[m.group(2)]), rule.rule)


async def request(client: QuartClient, method: str, path: str, bearer: str | None = None) -> Any:
    """Send what a page would (session cookie and CSRF token), or with ``bearer``, what an API client would."""
    if bearer is not None:
        headers = {"Authorization": f"Bearer {bearer}"}
        if method == "GET":
            return await client.get(path, headers=headers)
        return await client.open(path, method=method, json=FORM, headers=headers)
    token = client.csrf_token  # type: ignore[attr-defined]
    if method == "GET":
        return await client.get(path)
    return await client.open(path, method=method, form={"csrf_token": token, **FORM}, headers={"X-CSRF-Token": token})


def bearer_for(app: Quart, rule: Any, ids: Ids) -> str | None:
    """Return the API token to call a token-authenticated (CSRF-exempt) route with, else None."""
    blueprint = rule.endpoint.rsplit(".", 1)[0] if "." in rule.endpoint else ""
    return ids["secret"] if blueprint in app.config.get("CSRF_EXEMPT_BLUEPRINTS", ()) else None


async def snapshot(session: AsyncSession, world: World) -> tuple[Any, ...]:
    """Return what the other tenant has (columns, read afresh), to prove nothing of it changed."""
    team = (await session.exec(select(Team.name).where(Team.id == world.other_team.id))).all()
    charge_point = (
        await session.exec(
            select(ChargePoint.name, ChargePoint.identity, ChargePoint.ocpp_password_hash).where(
                ChargePoint.id == world.other_charge_point.id
            )
        )
    ).all()
    entries = (
        await session.exec(select(CompatibleModel.id).where(CompatibleModel.operator_id == world.other_operator.id))
    ).all()
    members = (await session.exec(select(OperatorMembership.id, OperatorMembership.role))).all()
    team_members = (
        await session.exec(select(TeamMembership.id, TeamMembership.role, TeamMembership.can_configure_charge_points))
    ).all()
    return tuple(team), tuple(charge_point), sorted(entries), sorted(members), sorted(team_members)


async def give_foreign_tenant_members(factory: Factory, world: World) -> None:
    await factory.user(operator=world.other_operator, operator_role="admin", email="secret.admin@example.test")
    await factory.user(team=world.other_team, team_role="owner", email="secret.owner@example.test")


@pytest.mark.parametrize("rule", ID_RULES, ids=[f"{rule.endpoint}" for rule in ID_RULES])
async def test_foreign_ids_answer_404(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs, rule: Any
) -> None:
    world = await build_world(factory, ["operator admin"])
    await factory.user(team=world.team, team_role="member", email="our.member@example.test")
    await give_foreign_tenant_members(factory, world)
    own = await tenant_ids(session, world.operator.id or 0, world.team, world.charge_point)
    foreign = await tenant_ids(session, world.other_operator.id or 0, world.other_team, world.other_charge_point)
    before = await snapshot(session, world)
    client = await login_as(world.users["operator admin"])
    for path in paths_with_a_foreign_id(rule, own, foreign):
        for method in methods(rule):
            bearer = bearer_for(app, rule, own)
            response = await request(client, method, path, bearer)
            body = await response.get_data(as_text=True)
            # The JSON API checks a body's schema before looking anything up; that 422 reveals nothing.
            allowed = {404, 422} if bearer and method != "GET" else {404}
            assert response.status_code in allowed, f"{method} {path} answered {response.status_code}"
            assert not any(marker in body for marker in NOT_FOUND_MARKERS), f"{method} {path} leaked data"
    assert await snapshot(session, world) == before


SIBLING_RULES = [
    rule
    for rule in ID_RULES
    if rule.endpoint.split(".")[0] != "api"
    and {name for c, name in arguments(rule) if c == "int"} <= {"team_id", "cp_id"}
]


@pytest.mark.parametrize("rule", SIBLING_RULES, ids=[f"{rule.endpoint}" for rule in SIBLING_RULES])
async def test_team_roles_do_not_reach_sibling_teams(
    session: AsyncSession, factory: Factory, login_as: LoginAs, rule: Any
) -> None:
    """A Team Owner of one team cannot reach another team of the same operator."""
    world = await build_world(factory, ["team owner"])
    sibling = await factory.team(world.operator, "Secret Sibling")
    sibling_cp = await factory.charge_point(sibling, name="Secret Sibling Charger")
    client = await login_as(world.users["team owner"])
    values = {"team_id": sibling.id, "cp_id": sibling_cp.id}
    path = ARGUMENT_RE.sub(lambda m: str(values[m.group(2)]), rule.rule)
    for method in methods(rule):
        response = await request(client, method, path)
        assert response.status_code == 404, f"{method} {path} answered {response.status_code}"
        assert "Secret" not in await response.get_data(as_text=True)
    assert (await session.exec(select(ChargePoint.name).where(ChargePoint.id == sibling_cp.id))).all() == [
        "Secret Sibling Charger"
    ]
    assert (await session.exec(select(Team.name).where(Team.id == sibling.id))).all() == ["Secret Sibling"]


@pytest.mark.parametrize(
    "path",
    [
        "/teams/abc/charge-points",
        "/charge-points/-1",
        "/charge-points/1.5",
        "/operators/%F0%9F%92%A5/teams",
        "/teams/99999999999999999999999999/charge-points",
    ],
)
async def test_malformed_ids_answer_404(factory: Factory, login_as: LoginAs, path: str) -> None:
    world = await build_world(factory, ["operator admin"])
    client = await login_as(world.users["operator admin"])
    assert (await client.get(path)).status_code == 404


async def test_home_lists_only_own_tenant(app: Quart, factory: Factory, login_as: LoginAs) -> None:
    world = await build_world(factory, ["operator admin", "team member"])
    for role in ("operator admin", "team member"):
        client = await login_as(world.users[role])
        body = await (await client.get("/")).get_data(as_text=True)
        assert "Our Team" in body and "Secret" not in body
