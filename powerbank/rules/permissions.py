"""Every permission decision of PowerBank, following the role table in DESIGN.md.

Routes, the API, the CLI and services ask this module; none of them decides on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import OperatorMembership, OperatorRole, Team, TeamMembership, TeamRole, User


class Permission(StrEnum):
    VIEW_TEAM = "view team"
    CONFIGURE_CHARGE_POINTS = "configure charge points"
    SIGN_UP_POWERBANK = "sign up for PowerBank"
    MANAGE_TEAMS = "manage teams"
    MANAGE_MEMBERS = "manage members"
    VIEW_CATALOGUE = "view catalogue"
    EDIT_CATALOGUE = "edit catalogue"
    MANAGE_ACTIVATIONS = "manage activations"
    VIEW_CONNECTION_ATTEMPTS = "view connection attempts"
    MANAGE_API_TOKENS = "manage API tokens"
    # Take a charge point out of PowerBank (an unreliable one, say), which automation never undoes.
    SUSPEND_POWERBANK = "suspend from PowerBank"
    # Enter market prices, set revenue shares, close earnings months.
    MANAGE_EARNINGS = "manage earnings"
    # Webhooks that receive a team's (or every team's) events, and their delivery logs.
    MANAGE_WEBHOOKS = "manage webhooks"


@dataclass(frozen=True)
class TeamGrant:
    role: TeamRole
    can_configure_charge_points: bool


@dataclass
class Principal:
    """A signed-in user with every role they hold, loaded once per request."""

    user: User
    operator_roles: dict[int, OperatorRole] = field(default_factory=dict)
    team_grants: dict[int, TeamGrant] = field(default_factory=dict)
    # Operator of each team the user holds a team role in (to list them without another query).
    team_operators: dict[int, int] = field(default_factory=dict)

    @property
    def visible_operator_ids(self) -> set[int]:
        """Return the operators of which the user sees at least one team."""
        return set(self.operator_roles) | set(self.team_operators.values())


async def load_principal(session: AsyncSession, user: User) -> Principal:
    """Load every operator and team role of ``user`` (two queries)."""
    principal = Principal(user=user)
    operator_rows = await session.exec(select(OperatorMembership).where(OperatorMembership.user_id == user.id))
    for operator_membership in operator_rows:
        principal.operator_roles[operator_membership.operator_id] = OperatorRole(operator_membership.role)
    team_rows = await session.exec(
        select(TeamMembership, Team.operator_id)
        .join(Team, col(Team.id) == col(TeamMembership.team_id))
        .where(TeamMembership.user_id == user.id)
    )
    for membership, operator_id in team_rows:
        principal.team_grants[membership.team_id] = TeamGrant(
            TeamRole(membership.role), membership.can_configure_charge_points
        )
        principal.team_operators[membership.team_id] = operator_id
    return principal


def _may_configure(grant: TeamGrant | None) -> bool:
    if grant is None:
        return False
    if grant.role in (TeamRole.OWNER, TeamRole.ADMIN):
        return grant.can_configure_charge_points
    return False


def can_on_team(principal: Principal, permission: Permission, team: Team) -> bool:
    """Decide whether ``principal`` may do ``permission`` on ``team``."""
    operator_role = principal.operator_roles.get(team.operator_id)
    grant = principal.team_grants.get(team.id) if team.id is not None else None
    match permission:
        case Permission.VIEW_TEAM:
            return operator_role is not None or grant is not None
        case Permission.CONFIGURE_CHARGE_POINTS | Permission.SIGN_UP_POWERBANK:
            return operator_role is not None or _may_configure(grant)
        case Permission.MANAGE_API_TOKENS | Permission.MANAGE_WEBHOOKS:
            return operator_role is OperatorRole.ADMIN or (grant is not None and grant.role is TeamRole.OWNER)
        case _:
            return can_on_operator(principal, permission, team.operator_id)


def can_on_operator(principal: Principal, permission: Permission, operator_id: int) -> bool:
    """Decide whether ``principal`` may do an operator-wide ``permission``."""
    role = principal.operator_roles.get(operator_id)
    match permission:
        case Permission.VIEW_CATALOGUE | Permission.MANAGE_ACTIVATIONS | Permission.MANAGE_EARNINGS:
            return role is not None
        case (
            Permission.MANAGE_TEAMS
            | Permission.MANAGE_MEMBERS
            | Permission.EDIT_CATALOGUE
            | Permission.VIEW_CONNECTION_ATTEMPTS
            | Permission.MANAGE_API_TOKENS
            | Permission.SUSPEND_POWERBANK
            | Permission.MANAGE_WEBHOOKS
        ):
            return role is OperatorRole.ADMIN
        case _:
            return False


def denial_reason(principal: Principal, permission: Permission, team: Team) -> str | None:
    """Return why ``principal`` may not do ``permission`` on ``team``, or None if allowed."""
    if can_on_team(principal, permission, team):
        return None
    grant = principal.team_grants.get(team.id) if team.id is not None else None
    if permission in (Permission.CONFIGURE_CHARGE_POINTS, Permission.SIGN_UP_POWERBANK) and grant is not None:
        if grant.role is TeamRole.MEMBER:
            return "Team Members cannot configure charge points. Ask a Team Owner or an admin."
        return "Your role in this team does not include the right to configure charge points."
    return "You do not have permission to do this."
