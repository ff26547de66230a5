"""The role table of DESIGN.md, asked of the services themselves: every role × every change.

Pages, the API and the command line all call these services, so a refusal here is a refusal
everywhere, whichever way the change comes in. A caller who cannot see the object gets
NotFoundError (so a guessed id tells nothing); one who sees it but may not change it,
ForbiddenError; and a refused change leaves nothing behind, not even an audit entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.errors import ForbiddenError, NotFoundError
from powerbank.models import (
    ApiToken,
    AuditEntry,
    ChargePoint,
    CompatibleModel,
    Operator,
    Team,
    TeamMembership,
    TokenAccess,
)
from powerbank.rules.permissions import load_principal
from powerbank.services import api_tokens, catalogue, teams, users
from powerbank.services import charge_points as cp_service
from powerbank.services.access import Acting
from powerbank.services.audit import SYSTEM
from tests.conftest import Factory

# Adding a member creates an account, whose password is hashed.
pytestmark = pytest.mark.usefixtures("fast_hashing")


@dataclass
class World:
    """Our operator with two teams (a charge point, a token and a Team Member in the first), and another operator."""

    operator: Operator
    team: Team
    charge_point: ChargePoint
    team_token: ApiToken
    membership: TeamMembership
    catalogue_entry: CompatibleModel
    sibling_team: Team
    other_operator: Operator


async def build_world(session: AsyncSession, factory: Factory) -> World:
    operator = await factory.operator("Our Operator")
    team = await factory.team(operator, "Our Team")
    member = await factory.user(team=team, team_role="member", can_configure=False, email="member@example.test")
    membership = (await session.exec(select(TeamMembership).where(TeamMembership.user_id == member.id))).one()
    team_token, _ = await api_tokens.create_token(
        session, SYSTEM, operator.id or 0, api_tokens.TokenRequest("Team token", TokenAccess.READ, team.id, None)
    )
    await session.commit()
    entry = (await session.exec(select(CompatibleModel).where(CompatibleModel.operator_id == operator.id))).first()
    assert entry is not None
    return World(
        operator=operator,
        team=team,
        charge_point=await factory.charge_point(team, name="Our Charger"),
        team_token=team_token,
        membership=membership,
        catalogue_entry=entry,
        sibling_team=await factory.team(operator, "Sibling Team"),
        other_operator=await factory.operator("Secret Operator"),
    )


async def _user_role(
    session: AsyncSession,
    factory: Factory,
    *,
    operator: Operator | None = None,
    operator_role: str | None = None,
    team: Team | None = None,
    team_role: str | None = None,
    can_configure: bool = True,
) -> Acting:
    user = await factory.user(
        operator=operator, operator_role=operator_role, team=team, team_role=team_role, can_configure=can_configure
    )
    return await load_principal(session, user)


async def _token(session: AsyncSession, world: World, access: TokenAccess, team: Team | None) -> Acting:
    token, _ = await api_tokens.create_token(
        session,
        SYSTEM,
        world.operator.id or 0,
        api_tokens.TokenRequest("Acting token", access, team.id if team else None, None),
    )
    await session.commit()
    return await api_tokens.principal_for_token(session, token)


RoleMaker = Callable[[AsyncSession, Factory, World], Awaitable[Acting]]


async def _system(session: AsyncSession, factory: Factory, world: World) -> Acting:
    return SYSTEM


ROLES: dict[str, RoleMaker] = {
    "operator admin": lambda s, f, w: _user_role(s, f, operator=w.operator, operator_role="admin"),
    "operator manager": lambda s, f, w: _user_role(s, f, operator=w.operator, operator_role="manager"),
    "team owner": lambda s, f, w: _user_role(s, f, team=w.team, team_role="owner"),
    "team owner without configure right": lambda s, f, w: _user_role(
        s, f, team=w.team, team_role="owner", can_configure=False
    ),
    "team admin with configure right": lambda s, f, w: _user_role(s, f, team=w.team, team_role="admin"),
    "team admin without configure right": lambda s, f, w: _user_role(
        s, f, team=w.team, team_role="admin", can_configure=False
    ),
    "team member": lambda s, f, w: _user_role(s, f, team=w.team, team_role="member", can_configure=False),
    "owner of another team": lambda s, f, w: _user_role(s, f, team=w.sibling_team, team_role="owner"),
    "another operator's admin": lambda s, f, w: _user_role(s, f, operator=w.other_operator, operator_role="admin"),
    "operator write token": lambda s, f, w: _token(s, w, TokenAccess.WRITE, None),
    "operator read token": lambda s, f, w: _token(s, w, TokenAccess.READ, None),
    "team write token": lambda s, f, w: _token(s, w, TokenAccess.WRITE, w.team),
    "the system (command line)": _system,
}

CHARGE_POINT_FORM = {
    "name": "Depot charger",
    "identity": "DEPOT-NEW",
    "brand": "Zaptec",
    "model": "Go",
    "country": "DK",
    "price_area": "DK1",
    "facility_id": "",
}

Action = Callable[[AsyncSession, Acting, World], Awaitable[object]]

ACTIONS: dict[str, Action] = {
    "add a charge point": lambda s, by, w: cp_service.create_charge_point(s, by, w.team, CHARGE_POINT_FORM),
    "edit a charge point": lambda s, by, w: cp_service.update_charge_point(
        s, by, w.team, w.charge_point, {**CHARGE_POINT_FORM, "identity": w.charge_point.identity}
    ),
    "delete a charge point": lambda s, by, w: cp_service.delete_charge_point(s, by, w.team, w.charge_point),
    "new OCPP password": lambda s, by, w: cp_service.reset_ocpp_password(s, by, w.team, w.charge_point),
    "create a team": lambda s, by, w: teams.create_team(s, by, w.operator.id or 0, "Brand new team"),
    "rename a team": lambda s, by, w: teams.rename_team(s, by, w.team, "Renamed team"),
    "delete a team": lambda s, by, w: teams.delete_team(s, by, w.team),
    "add a member": lambda s, by, w: users.add_member(
        s,
        by,
        w.operator.id or 0,
        users.MemberForm("newcomer@example.test", "team:member", w.team.id, False),
        invitation_link=lambda token: f"http://powerbank.test/invitations/{token}",
        login_url="http://powerbank.test/login",
    ),
    "change a member's role": lambda s, by, w: users.change_member(
        s, by, w.operator.id or 0, "team", w.membership.id or 0, "admin", True
    ),
    "remove a member": lambda s, by, w: users.remove_member(s, by, w.operator.id or 0, "team", w.membership.id or 0),
    "add to the catalogue": lambda s, by, w: catalogue.add_model(s, by, w.operator.id or 0, "Acme", "Volt 1"),
    "remove from the catalogue": lambda s, by, w: catalogue.remove_model(
        s, by, w.operator.id or 0, w.catalogue_entry.id or 0
    ),
    "create a team API token": lambda s, by, w: api_tokens.create_token(
        s, by, w.operator.id or 0, api_tokens.TokenRequest("New", TokenAccess.WRITE, w.team.id, None)
    ),
    "create an operator API token": lambda s, by, w: api_tokens.create_token(
        s, by, w.operator.id or 0, api_tokens.TokenRequest("New", TokenAccess.WRITE, None, None)
    ),
    "revoke a team API token": lambda s, by, w: api_tokens.revoke_token(s, by, w.team_token),
}

SYSTEM_ROLE = "the system (command line)"
CONFIGURERS = {
    "operator admin",
    "operator manager",
    "team owner",
    "team admin with configure right",
    "operator write token",
    "team write token",
    SYSTEM_ROLE,
}
ADMINS = {"operator admin", SYSTEM_ROLE}
TEAM_TOKEN_MANAGERS = {"operator admin", "team owner", "team owner without configure right", SYSTEM_ROLE}
ALLOWED: dict[str, set[str]] = {
    "add a charge point": CONFIGURERS,
    "edit a charge point": CONFIGURERS,
    "delete a charge point": CONFIGURERS,
    "new OCPP password": CONFIGURERS,
    "create a team": ADMINS,
    "rename a team": ADMINS,
    "delete a team": ADMINS,
    "add a member": ADMINS,
    "change a member's role": ADMINS,
    "remove a member": ADMINS,
    "add to the catalogue": ADMINS,
    "remove from the catalogue": ADMINS,
    "create a team API token": TEAM_TOKEN_MANAGERS,
    "create an operator API token": ADMINS,
    "revoke a team API token": TEAM_TOKEN_MANAGERS,
}
# Changes to one team: whoever cannot see that team is told it does not exist.
TEAM_ACTIONS = {
    "add a charge point",
    "edit a charge point",
    "delete a charge point",
    "new OCPP password",
    "rename a team",
    "delete a team",
    "create a team API token",
    "revoke a team API token",
}


def expected_outcome(role: str, action: str) -> str:
    if role == "another operator's admin" or (role == "owner of another team" and action in TEAM_ACTIONS):
        return "not found"
    return "allowed" if role in ALLOWED[action] else "forbidden"


MATRIX = [(role, action, expected_outcome(role, action)) for role in ROLES for action in ACTIONS]
RAISED = {"not found": NotFoundError, "forbidden": ForbiddenError}


async def audit_count(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(AuditEntry))).one()


@pytest.mark.parametrize(("role", "action", "outcome"), MATRIX, ids=[f"{r}-{a}" for r, a, _ in MATRIX])
async def test_the_services_hold_every_role_to_the_role_table(
    session: AsyncSession, factory: Factory, role: str, action: str, outcome: str
) -> None:
    world = await build_world(session, factory)
    by = await ROLES[role](session, factory, world)
    before = await audit_count(session)
    if outcome == "allowed":
        await ACTIONS[action](session, by, world)
        await session.commit()
        assert await audit_count(session) > before
    else:
        with pytest.raises(RAISED[outcome]):
            await ACTIONS[action](session, by, world)
        await session.commit()
        assert await audit_count(session) == before


async def test_a_charge_point_named_with_a_team_it_is_not_in_is_not_found(
    session: AsyncSession, factory: Factory
) -> None:
    # An owner of one team cannot reach another team's charge point by naming their own team.
    world = await build_world(session, factory)
    owner = await factory.user(team=world.sibling_team, team_role="owner")
    by = await load_principal(session, owner)
    with pytest.raises(NotFoundError):
        await cp_service.delete_charge_point(session, by, world.sibling_team, world.charge_point)
    await session.commit()
    assert await session.get(ChargePoint, world.charge_point.id) is not None


async def test_a_refusal_names_what_was_refused(session: AsyncSession, factory: Factory) -> None:
    world = await build_world(session, factory)
    by = await ROLES["team admin without configure right"](session, factory, world)
    with pytest.raises(ForbiddenError, match="You may not configure charge points in this team."):
        await cp_service.reset_ocpp_password(session, by, world.team, world.charge_point)
