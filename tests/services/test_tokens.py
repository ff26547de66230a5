"""API tokens never hold more than the person who made them may do, now (issue 13 finding 2)."""

from __future__ import annotations

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import OperatorMembership, Team, TeamMembership, TokenAccess, User
from powerbank.rules.permissions import Permission, can_on_operator, can_on_team, load_principal
from powerbank.services import api_tokens
from powerbank.services.audit import SYSTEM
from powerbank.services.users import change_member, remove_member
from tests.conftest import Factory

VIEW, CONFIGURE = Permission.VIEW_TEAM, Permission.CONFIGURE_CHARGE_POINTS


async def _token_of(session: AsyncSession, creator: User, team: Team, access: TokenAccess, *, scope: str) -> int:
    """Make a token as ``creator`` for ``team`` (scope "team") or its whole operator; return its id."""
    request = api_tokens.TokenRequest("script", access, team.id if scope == "team" else None, None)
    token, _ = await api_tokens.create_token(session, await load_principal(session, creator), team.operator_id, request)
    await session.commit()
    return token.id or 0


async def _acting(session: AsyncSession, token_id: int) -> api_tokens.TokenPrincipal:
    token = await session.get(api_tokens.ApiToken, token_id)
    assert token is not None
    return await api_tokens.principal_for_token(session, token)


# (creator's role, token scope, access) -> (sees the team, may configure its charge points, may manage activations)
MATRIX = [
    ("operator admin", "operator", TokenAccess.WRITE, (True, True, True)),
    ("operator admin", "operator", TokenAccess.READ, (True, False, False)),
    ("operator admin", "team", TokenAccess.WRITE, (True, True, False)),
    ("operator admin", "team", TokenAccess.READ, (True, False, False)),
    ("team owner", "team", TokenAccess.WRITE, (True, True, False)),
    ("team owner", "team", TokenAccess.READ, (True, False, False)),
    ("team owner without configure right", "team", TokenAccess.WRITE, (True, False, False)),
    ("team owner without configure right", "team", TokenAccess.READ, (True, False, False)),
]


@pytest.mark.parametrize(
    ("creator_role", "scope", "access", "expected"), MATRIX, ids=[f"{r}, {s} {a}" for r, s, a, _ in MATRIX]
)
async def test_what_a_token_may_do_by_the_role_of_its_creator(
    session: AsyncSession,
    factory: Factory,
    creator_role: str,
    scope: str,
    access: TokenAccess,
    expected: tuple[bool, bool, bool],
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    if creator_role == "operator admin":
        creator = await factory.user(operator=operator, operator_role="admin")
    else:
        creator = await factory.user(
            team=team, team_role="owner", can_configure=creator_role == "team owner", email="owner@example.test"
        )
    acting = await _acting(session, await _token_of(session, creator, team, access, scope=scope))
    assert (
        can_on_team(acting, VIEW, team),
        can_on_team(acting, CONFIGURE, team),
        can_on_operator(acting, Permission.MANAGE_ACTIVATIONS, operator.id or 0),
    ) == expected


async def test_a_team_token_follows_its_creators_role_at_once(session: AsyncSession, factory: Factory) -> None:
    team = await factory.team()
    owner = await factory.user(team=team, team_role="owner")
    token_id = await _token_of(session, owner, team, TokenAccess.WRITE, scope="team")
    assert can_on_team(await _acting(session, token_id), CONFIGURE, team)

    membership = (await session.exec(select(TeamMembership).where(TeamMembership.user_id == owner.id))).one()
    await change_member(session, SYSTEM, team.operator_id, "team", membership.id or 0, "owner", False)
    await session.commit()
    acting = await _acting(session, token_id)
    assert can_on_team(acting, VIEW, team) and not can_on_team(acting, CONFIGURE, team)

    await change_member(session, SYSTEM, team.operator_id, "team", membership.id or 0, "member", True)
    await session.commit()
    acting = await _acting(session, token_id)
    assert can_on_team(acting, VIEW, team) and not can_on_team(acting, CONFIGURE, team)

    await remove_member(session, SYSTEM, team.operator_id, "team", membership.id or 0)
    await session.commit()
    with pytest.raises(api_tokens.InvalidTokenError, match="no longer has a role"):
        await _acting(session, token_id)


async def test_an_operator_token_of_a_former_operator_admin_reaches_only_what_they_still_hold(
    session: AsyncSession, factory: Factory
) -> None:
    operator = await factory.operator()
    kept, other = await factory.team(operator), await factory.team(operator)
    admin = await factory.user(operator=operator, operator_role="admin")
    await factory.user(operator=operator, operator_role="admin")  # the operator keeps an admin
    token_id = await _token_of(session, admin, kept, TokenAccess.WRITE, scope="operator")
    session.add(
        TeamMembership(team_id=kept.id or 0, user_id=admin.id or 0, role="admin", can_configure_charge_points=False)
    )
    await session.commit()

    membership = (await session.exec(select(OperatorMembership).where(OperatorMembership.user_id == admin.id))).one()
    await remove_member(session, SYSTEM, operator.id or 0, "operator", membership.id or 0)
    await session.commit()
    acting = await _acting(session, token_id)
    assert can_on_team(acting, VIEW, kept) and not can_on_team(acting, CONFIGURE, kept)
    assert not can_on_team(acting, VIEW, other)
    assert not can_on_operator(acting, Permission.MANAGE_ACTIVATIONS, operator.id or 0)

    team_membership = (await session.exec(select(TeamMembership).where(TeamMembership.user_id == admin.id))).one()
    await remove_member(session, SYSTEM, operator.id or 0, "team", team_membership.id or 0)
    await session.commit()
    with pytest.raises(api_tokens.InvalidTokenError, match="no longer has a role"):
        await _acting(session, token_id)


async def test_a_token_made_by_the_command_line_keeps_the_tables_roles(session: AsyncSession, factory: Factory) -> None:
    team = await factory.team()
    token, _ = await api_tokens.create_token(
        session, SYSTEM, team.operator_id, api_tokens.TokenRequest("cron", TokenAccess.WRITE, team.id, None)
    )
    await session.commit()
    assert can_on_team(await _acting(session, token.id or 0), CONFIGURE, team)
