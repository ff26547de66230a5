"""One call per resource for routes: load it, scope it to the caller's tenant, check the permission.

Another tenant's id, or one that does not exist, raises NotFoundError (404); a visible resource the
caller may not act on raises ForbiddenError (403). The decisions themselves are the domain's
(``services`` and ``rules.permissions``); these only put them in the order every route needs.
"""

from __future__ import annotations

from powerbank.models import Activation, ApiToken, ChargePoint, Operator, Team
from powerbank.rules.permissions import Permission, Principal
from powerbank.services import activations, api_tokens, teams
from powerbank.services.charge_points import get_charge_point_or_404
from powerbank.web.state import db_session


async def operator_for(me: Principal, operator_id: int, *, may: Permission | None = None) -> Operator:
    """Return an operator the caller sees, checking the operator-wide permission ``may`` when given."""
    operator = await teams.get_operator_or_404(await db_session(), me, operator_id)
    if may is not None:
        teams.require_operator(me, may, operator_id)
    return operator


async def team_for(me: Principal, team_id: int, *, may: Permission = Permission.VIEW_TEAM) -> Team:
    """Return a team the caller sees and may do ``may`` in."""
    team = await teams.get_team_or_404(await db_session(), me, team_id)
    teams.require_team(me, may, team)
    return team


async def team_with_operator_for(
    me: Principal, team_id: int, *, may: Permission = Permission.VIEW_TEAM
) -> tuple[Team, Operator]:
    """Return a team the caller sees and may do ``may`` in, with its operator (for the page's header)."""
    team = await team_for(me, team_id, may=may)
    return team, await teams.get_operator_or_404(await db_session(), me, team.operator_id)


async def charge_point_for(
    me: Principal, charge_point_id: int, *, may: Permission = Permission.VIEW_TEAM
) -> tuple[ChargePoint, Team]:
    """Return a charge point and its team, if the caller sees the team and may do ``may`` in it."""
    charge_point, team = await get_charge_point_or_404(await db_session(), me, charge_point_id)
    teams.require_team(me, may, team)
    return charge_point, team


async def activation_for(me: Principal, activation_id: int) -> Activation:
    """Return an activation of an operator whose activations the caller manages."""
    return await activations.get_activation_or_404(await db_session(), me, activation_id)


async def api_token_for(me: Principal, token_id: int) -> tuple[ApiToken, Team | None]:
    """Return an API token whose tokens the caller may manage, with its team (None: operator-wide)."""
    session = await db_session()
    token = await api_tokens.get_token_or_404(session, me, token_id)
    team = await session.get(Team, token.team_id) if token.team_id is not None else None
    return token, team
