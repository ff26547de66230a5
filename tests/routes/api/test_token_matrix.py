"""The permission matrix of API tokens: a token made by each role may do, over every API operation,
exactly what its creator may do with the token's access level and scope, never more, and follows
its creator's role at once when that role is lowered or removed (issue 13, close the class).

The operations come from the app's URL rules, so a new API endpoint fails
`test_every_api_operation_is_in_the_matrix` until this table says what it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from quart.testing import QuartClient
from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.errors import ForbiddenError
from powerbank.models import (
    Activation,
    ActivationState,
    ChargePoint,
    Operator,
    OperatorMembership,
    Participation,
    ParticipationState,
    Team,
    TeamMembership,
    TokenAccess,
    User,
)
from powerbank.rules.permissions import load_principal
from powerbank.services import api_tokens
from tests.conftest import Factory
from tests.routes.api.support import TERMS, bearer
from tests.routes.rules import ARGUMENT_RE, RULES

# What each role lets its holder do in our operator's two teams ("team" and "sibling"): the teams it
# sees, those whose charge points it may configure and sign up, and whether it manages activations.
# DESIGN.md's role table, for a person holding the role in "team" (or operator-wide).


@dataclass(frozen=True)
class Rights:
    sees: frozenset[str] = frozenset()
    configures: frozenset[str] = frozenset()
    activations: str = "none"  # none, read or write
    valid: bool = True


BOTH, TEAM, NONE = frozenset({"team", "sibling"}), frozenset({"team"}), frozenset[str]()
CREATOR_RIGHTS: dict[str | None, Rights] = {
    "operator admin": Rights(BOTH, BOTH, "write"),
    "operator manager": Rights(BOTH, BOTH, "write"),
    "team owner": Rights(TEAM, TEAM),
    "team owner without configure right": Rights(TEAM, NONE),
    "team admin with configure right": Rights(TEAM, TEAM),
    "team admin without configure right": Rights(TEAM, NONE),
    "team member": Rights(TEAM, NONE),
    None: Rights(valid=False),
}
ROLE_ROWS: dict[str, dict[str, Any]] = {
    "operator admin": {"operator_role": "admin"},
    "operator manager": {"operator_role": "manager"},
    "team owner": {"team_role": "owner", "can_configure": True},
    "team owner without configure right": {"team_role": "owner", "can_configure": False},
    "team admin with configure right": {"team_role": "admin", "can_configure": True},
    "team admin without configure right": {"team_role": "admin", "can_configure": False},
    "team member": {"team_role": "member", "can_configure": False},
}


def token_rights(creator_role: str | None, scope: str, access: TokenAccess) -> Rights:
    """Return what a token may do: its creator's rights now, within its scope and access level."""
    held = CREATOR_RIGHTS[creator_role]
    if not held.valid or (scope == "team" and "team" not in held.sees):
        return Rights(valid=False)
    reach = TEAM if scope == "team" else BOTH
    write = access == TokenAccess.WRITE
    activations = "none" if scope == "team" or held.activations == "none" else ("write" if write else "read")
    return Rights(
        sees=held.sees & reach, configures=held.configures & reach if write else NONE, activations=activations
    )


# Each API operation, by endpoint and method: what it needs, and whether it names a team or a charge point.
OPERATIONS: dict[tuple[str, str], str] = {
    ("api.list_teams", "GET"): "list teams",
    ("api.current_terms", "GET"): "any token",
    ("api.list_charge_points", "GET"): "view",
    ("api.list_events", "GET"): "view",
    ("api.bulk_sign_up", "POST"): "configure",
    ("api.get_charge_point", "GET"): "view",
    ("api.update_charge_point", "PATCH"): "configure",
    ("api.create_charge_point", "POST"): "configure",
    ("api.delete_charge_point", "DELETE"): "configure",
    ("api.import_charge_points", "POST"): "configure",
    ("api.get_powerbank", "GET"): "view",
    ("api.sign_up", "PUT"): "configure",
    ("api.opt_out", "DELETE"): "configure",
    ("api.list_activations", "GET"): "read activations",
    ("api.get_activation", "GET"): "read activations",
    ("api.get_response", "GET"): "read activations",
    ("api.get_response_csv", "GET"): "read activations",
    ("api.get_chargers_csv", "GET"): "read activations",
    ("api.create_activation", "POST"): "write activations",
    ("api.cancel_activation", "DELETE"): "write activations",
    ("api.get_area_availability", "GET"): "read activations",
    ("api.get_team_earnings", "GET"): "view",
    # Market prices are operator-wide writes, like activations.
    ("api.enter_prices", "POST"): "write activations",
}
SUCCESS = {
    ("api.create_activation", "POST"): 201,
    ("api.create_charge_point", "POST"): 201,
    ("api.import_charge_points", "POST"): 201,
}


def api_operations() -> list[tuple[str, str, str]]:
    """Return (endpoint, method, path rule) of every operation of the JSON API."""
    return sorted(
        (rule.endpoint, method, rule.rule)
        for rule in RULES
        if rule.endpoint.startswith("api.")
        for method in rule.methods
        if method not in ("HEAD", "OPTIONS")
    )


def test_every_api_operation_is_in_the_matrix() -> None:
    found = {(endpoint, method) for endpoint, method, _ in api_operations()}
    assert found == set(OPERATIONS), f"say in OPERATIONS what these need: {found ^ set(OPERATIONS)}"


@dataclass
class World:
    operator: Operator
    teams: dict[str, Team]
    creator: User


@dataclass
class Round:
    """Fresh objects for one pass over the operations, so each write starts from the same state."""

    charge_points: dict[tuple[str, str], ChargePoint] = field(default_factory=dict)
    activation: Activation | None = None


async def build_world(factory: Factory, creator_role: str) -> World:
    operator = await factory.operator("Our Operator")
    teams = {"team": await factory.team(operator, "Our Team"), "sibling": await factory.team(operator, "Sibling")}
    # The operator keeps an admin of its own when the creator loses theirs.
    await factory.user(operator=operator, operator_role="admin", email="keeper@example.test")
    creator = await factory.user(email="creator@example.test")
    world = World(operator, teams, creator)
    await set_role(factory.session, world, creator_role)
    return world


async def set_role(session: AsyncSession, world: World, role: str | None) -> None:
    """Give the creator exactly ``role`` (operator-wide, or in "team"), or no role at all."""
    user_id = world.creator.id or 0
    await session.exec(delete(OperatorMembership).where(col(OperatorMembership.user_id) == user_id))
    await session.exec(delete(TeamMembership).where(col(TeamMembership.user_id) == user_id))
    spec = ROLE_ROWS.get(role or "", {})
    if "operator_role" in spec:
        session.add(OperatorMembership(operator_id=world.operator.id or 0, user_id=user_id, role=spec["operator_role"]))
    elif "team_role" in spec:
        session.add(
            TeamMembership(
                team_id=world.teams["team"].id or 0,
                user_id=user_id,
                role=spec["team_role"],
                can_configure_charge_points=spec["can_configure"],
            )
        )
    await session.commit()


async def new_round(factory: Factory, world: World, n: int) -> Round:
    round_ = Round()
    for key, team in world.teams.items():
        for use in ("edit", "sign up", "opt out", "bulk", "delete"):
            round_.charge_points[(key, use)] = await factory.charge_point(team, name=f"{key} {use} {n}")
    start = utcnow() + timedelta(hours=1 + n)
    round_.activation = Activation(
        operator_id=world.operator.id or 0,
        price_area="DK1",
        market="FCR-D",
        action="pause",
        start_at=start,
        duration_s=300,
        end_at=start + timedelta(seconds=300),
        created_by="keeper@example.test",
    )
    factory.session.add(round_.activation)
    await factory.session.commit()
    return round_


def request_of(endpoint: str, rule: str, target: str, round_: Round, world: World) -> tuple[str, dict[str, Any] | None]:
    """Return the path and JSON body of one operation aimed at ``target`` ("team" or "sibling")."""
    use = {
        "api.update_charge_point": "edit",
        "api.sign_up": "sign up",
        "api.opt_out": "opt out",
        "api.bulk_sign_up": "bulk",
        "api.delete_charge_point": "delete",
    }.get(endpoint, "edit")
    assert round_.activation is not None
    values = {
        "team_id": world.teams[target].id,
        "cp_id": round_.charge_points[(target, use)].id,
        "activation_id": round_.activation.id,
        "area": "DK1",
    }
    path = ARGUMENT_RE.sub(lambda m: str(values[m.group(2)]), rule)
    bodies: dict[str, dict[str, Any]] = {
        "api.update_charge_point": {"name": "Renamed by a token"},
        "api.sign_up": {"accept_terms_version": TERMS},
        "api.bulk_sign_up": {
            "accept_terms_version": TERMS,
            "charge_point_ids": [round_.charge_points[(target, "bulk")].id],
        },
        "api.create_charge_point": {
            "name": "Added by a token",
            "identity": new_identity("ADD", target, round_),
            "country": "NO",
        },
        "api.import_charge_points": {
            "csv": f"Name;Identity;Country\nImported;{new_identity('IMP', target, round_)};NO\n"
        },
        "api.enter_prices": {
            "prices": [
                {
                    "price_area": "DK2",
                    "market": "FCR-D up",
                    "kind": "energy",
                    "currency": "DKK",
                    "starts_at": "2026-01-01T00:00:00Z",
                    "ends_at": "2026-01-02T00:00:00Z",
                    "price": "100",
                }
            ]
        },
        "api.create_activation": {
            "price_area": "DK1",
            "action": "pause",
            "duration_s": 300,
            "market": "Token matrix",
            "start_at": (round_.activation.start_at + timedelta(minutes=30)).isoformat(),
        },
    }
    return path, bodies.get(endpoint)


def new_identity(kind: str, target: str, round_: Round) -> str:
    """Return an identity no other request of any round uses (a round's charge point ids are its own)."""
    return f"{kind}-{round_.charge_points[(target, 'edit')].id}"


def expected_status(rights: Rights, endpoint: str, method: str, target: str) -> int:
    """Return what the API must answer a token with ``rights``."""
    if not rights.valid:
        return 401
    need = OPERATIONS[(endpoint, method)]
    success = SUCCESS.get((endpoint, method), 200)
    if need in ("list teams", "any token"):
        return success
    if need == "view":
        return success if target in rights.sees else 404
    if need == "configure":
        if target not in rights.sees:
            return 404
        return success if target in rights.configures else 403
    wanted = ("read", "write") if need == "read activations" else ("write",)
    return success if rights.activations in wanted else 403


async def state_of(session: AsyncSession, charge_point: ChargePoint) -> str | None:
    row = (
        await session.exec(
            select(Participation.state)
            .where(Participation.charge_point_id == charge_point.id)
            .execution_options(populate_existing=True)
        )
    ).first()
    return ParticipationState(row).label if row is not None else None


async def effect_seen(session: AsyncSession, endpoint: str, target: str, round_: Round) -> bool | None:
    """Tell whether a write operation's effect is in the database (None for reads)."""
    cps = round_.charge_points
    assert round_.activation is not None
    match endpoint:
        case "api.create_charge_point" | "api.import_charge_points":
            kind = "ADD" if endpoint == "api.create_charge_point" else "IMP"
            made = select(func.count()).where(ChargePoint.identity == new_identity(kind, target, round_))
            return bool((await session.exec(made)).one())
        case "api.delete_charge_point":
            left = select(func.count()).where(ChargePoint.id == cps[(target, "delete")].id)
            return not (await session.exec(left)).one()
        case "api.update_charge_point":
            name = (
                await session.exec(select(ChargePoint.name).where(ChargePoint.id == cps[(target, "edit")].id))
            ).one()
            return name == "Renamed by a token"
        case "api.sign_up" | "api.bulk_sign_up":
            use = "sign up" if endpoint == "api.sign_up" else "bulk"
            return await state_of(session, cps[(target, use)]) == "Signed up"
        case "api.opt_out":
            return await state_of(session, cps[(target, "opt out")]) == "Opted out"
        case "api.create_activation":
            started = select(func.count()).select_from(Activation).where(Activation.market == "Token matrix")
            return bool((await session.exec(started)).one())
        case "api.cancel_activation":
            state = (await session.exec(select(Activation.state).where(Activation.id == round_.activation.id))).one()
            return state == ActivationState.CANCELLED
    return None


async def check_every_operation(
    client: QuartClient, session: AsyncSession, factory: Factory, world: World, secret: str, rights: Rights, n: int
) -> None:
    """Run every API operation with ``secret`` (on both teams) and compare each answer with ``rights``."""
    round_ = await new_round(factory, world, n)
    await session.exec(delete(Activation).where(col(Activation.market) == "Token matrix"))
    await session.commit()
    wrong = []
    for endpoint, method, rule in api_operations():
        operator_wide = "activation_id" in rule or "area" in rule
        targets = ("team", "sibling") if "<" in rule and not operator_wide else ("team",)
        for target in targets:
            path, body = request_of(endpoint, rule, target, round_, world)
            kwargs: dict[str, Any] = {"headers": bearer(secret)}
            if body is not None:
                kwargs["json"] = body
            response = await client.open(path, method=method, **kwargs)
            want = expected_status(rights, endpoint, method, target)
            if response.status_code != want:
                wrong.append(
                    f"{method} {path}: {response.status_code}, want {want}: {await response.get_data(as_text=True)}"
                )
                continue
            effect = await effect_seen(session, endpoint, target, round_)
            if effect is not None and effect != (want < 300):
                wrong.append(f"{method} {path}: answered {want} but the change was {'' if effect else 'not '}made")
            if endpoint == "api.list_teams" and want == 200:
                listed = {item["id"] for item in (await response.get_json())["items"]}
                assert listed == {world.teams[key].id for key in rights.sees}
    assert not wrong, "\n".join(wrong)


async def make_token(session: AsyncSession, world: World, scope: str, access: TokenAccess) -> str:
    """Make a token as the creator, as the API tokens page does."""
    team_id = world.teams["team"].id if scope == "team" else None
    _, secret = await api_tokens.create_token(
        session,
        await load_principal(session, world.creator),
        world.operator.id or 0,
        api_tokens.TokenRequest(f"{scope} {access} token", access, team_id, None),
    )
    await session.commit()
    return secret


# (creator's role, token scope) for every role that may make tokens, then the roles the creator is
# lowered to one after the other (None: every role removed).
MAKERS = [
    ("operator admin", "operator", ["operator manager", "team owner", "team member", None]),
    ("operator admin", "team", ["operator manager", "team owner without configure right", "team member", None]),
    ("team owner", "team", ["team admin with configure right", "team owner without configure right", None]),
    ("team owner without configure right", "team", ["team member", None]),
]
CASES = [(role, scope, access, lowered) for role, scope, lowered in MAKERS for access in TokenAccess]


@pytest.mark.parametrize(
    ("creator_role", "scope", "access", "lowered"), CASES, ids=[f"{r}, {s} {a}" for r, s, a, _ in CASES]
)
async def test_a_token_may_do_what_its_creator_may_and_follows_the_creators_role_at_once(
    client: QuartClient,
    session: AsyncSession,
    factory: Factory,
    creator_role: str,
    scope: str,
    access: TokenAccess,
    lowered: list[str | None],
) -> None:
    world = await build_world(factory, creator_role)
    secret = await make_token(session, world, scope, access)
    await check_every_operation(client, session, factory, world, secret, token_rights(creator_role, scope, access), 0)
    for n, role in enumerate(lowered, start=1):
        await set_role(session, world, role)
        await check_every_operation(client, session, factory, world, secret, token_rights(role, scope, access), n)


NOT_MAKERS = [
    "operator manager",
    "team admin with configure right",
    "team admin without configure right",
    "team member",
]


@pytest.mark.parametrize("creator_role", NOT_MAKERS)
@pytest.mark.parametrize("scope", ["operator", "team"])
async def test_roles_that_may_not_manage_tokens_make_none(
    session: AsyncSession, factory: Factory, creator_role: str, scope: str
) -> None:
    world = await build_world(factory, creator_role)
    with pytest.raises(ForbiddenError):
        await make_token(session, world, scope, TokenAccess.READ)
