"""Operators and teams: loading them within the caller's tenant, creating, renaming, deleting."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.errors import ConflictError, NotFoundError
from powerbank.i18n import gettext as _
from powerbank.models import ChargePoint, Operator, Team
from powerbank.rules.permissions import Permission, Principal, can_on_team
from powerbank.rules.validators import clean_name
from powerbank.services.access import Acting, actor_of, require_on_operator, require_on_team
from powerbank.services.audit import SystemActor, record
from powerbank.services.catalogue import seed_catalogue
from powerbank.services.chargers import disconnect_after_commit
from powerbank.services.enrollment import release_charge_points


async def get_operator_or_404(session: AsyncSession, principal: Principal, operator_id: int) -> Operator:
    """Return an operator the caller sees a team of; otherwise NotFoundError."""
    if operator_id not in principal.visible_operator_ids:
        raise NotFoundError(_("No such operator."))
    operator = await session.get(Operator, operator_id)
    if operator is None:
        raise NotFoundError(_("No such operator."))
    return operator


def require_operator(principal: Principal, permission: Permission, operator_id: int) -> None:
    """Raise ForbiddenError unless the caller may do ``permission`` for the whole operator."""
    require_on_operator(principal, permission, operator_id)


async def get_team_or_404(session: AsyncSession, principal: Principal, team_id: int) -> Team:
    """Return a team the caller may see; another tenant's team is NotFoundError, never data."""
    team = await session.get(Team, team_id)
    if team is None or not can_on_team(principal, Permission.VIEW_TEAM, team):
        raise NotFoundError(_("No such team."))
    return team


def require_team(principal: Principal, permission: Permission, team: Team) -> None:
    """Raise ForbiddenError unless the caller may do ``permission`` on ``team``."""
    require_on_team(principal, permission, team)


async def visible_teams(session: AsyncSession, principal: Principal) -> list[tuple[Operator, list[Team]]]:
    """Return the teams the caller may see, grouped by operator, both sorted by name."""
    operator_ids = set(principal.operator_roles)
    team_ids = set(principal.team_grants)
    if not operator_ids and not team_ids:
        return []
    rows = await session.exec(
        select(Team, Operator)
        .join(Operator, col(Operator.id) == col(Team.operator_id))
        .where(col(Team.operator_id).in_(operator_ids) | col(Team.id).in_(team_ids))
        .order_by(col(Operator.name), col(Team.name))
    )
    grouped: dict[int, tuple[Operator, list[Team]]] = {}
    for team, operator in rows:
        grouped.setdefault(operator.id or 0, (operator, []))[1].append(team)
    # Operators where the user has a role but no team yet still appear (admins create the first).
    missing = operator_ids - set(grouped)
    if missing:
        for operator in await session.exec(select(Operator).where(col(Operator.id).in_(missing))):
            grouped[operator.id or 0] = (operator, [])
    return sorted(grouped.values(), key=lambda pair: pair[0].name.casefold())


async def teams_of(session: AsyncSession, operator_id: int) -> list[Team]:
    """Return an operator's teams by name."""
    return list(await session.exec(select(Team).where(Team.operator_id == operator_id).order_by(col(Team.name))))


async def list_operator_teams(session: AsyncSession, operator_id: int) -> list[tuple[Team, int]]:
    """Return an operator's teams with their number of charge points."""
    rows = await session.exec(
        select(Team, func.count(col(ChargePoint.id)))
        .outerjoin(ChargePoint, col(ChargePoint.team_id) == col(Team.id))
        .where(Team.operator_id == operator_id)
        .group_by(col(Team.id))
        .order_by(col(Team.name))
    )
    return [(team, count) for team, count in rows]


async def operator_name_taken(session: AsyncSession, name: str) -> bool:
    """Return True if an operator already has this name, whatever its case."""
    query = select(Operator.id).where(func.lower(Operator.name) == name.strip().lower())
    return (await session.exec(query)).first() is not None


async def create_operator(session: AsyncSession, actor: SystemActor, name: str) -> Operator:
    """Create an operator with the shipped compatibility catalogue (only the system does: no role may)."""
    clean = clean_name(name, label="Operator name")
    if await operator_name_taken(session, clean):
        raise ConflictError(f"An operator named {clean!r} already exists.")
    operator = Operator(name=clean)
    session.add(operator)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError(f"An operator named {clean!r} already exists.") from exc
    seed_catalogue(session, operator.id or 0)
    record(session, actor, "operator.create", operator, operator_id=operator.id, after={"name": operator.name})
    return operator


async def operator_by_name(session: AsyncSession, name: str) -> Operator:
    """Return the operator with this name (case-insensitive); NotFoundError if there is none."""
    operator = (await session.exec(select(Operator).where(func.lower(Operator.name) == name.strip().lower()))).first()
    if operator is None:
        raise NotFoundError(f"No operator named {name.strip()!r}.")
    return operator


async def team_by_name(session: AsyncSession, operator: Operator, name: str) -> Team:
    """Return the operator's team with this name (case-insensitive); NotFoundError if there is none."""
    query = select(Team).where(Team.operator_id == operator.id, func.lower(Team.name) == name.strip().lower())
    team = (await session.exec(query)).first()
    if team is None:
        raise NotFoundError(f"{operator.name} has no team named {name.strip()!r}.")
    return team


async def _name_taken(session: AsyncSession, operator_id: int, name: str, exclude_id: int | None = None) -> bool:
    # "Harbour" and "harbour" side by side would only confuse; compare without case.
    query = select(Team.id).where(Team.operator_id == operator_id, func.lower(Team.name) == name.lower())
    if exclude_id is not None:
        query = query.where(Team.id != exclude_id)
    return (await session.exec(query)).first() is not None


async def create_team(session: AsyncSession, by: Acting, operator_id: int, name: str | None) -> Team:
    """Create a team of an operator; names are unique within the operator."""
    require_on_operator(by, Permission.MANAGE_TEAMS, operator_id)
    clean = clean_name(name, label="Team name")
    if await _name_taken(session, operator_id, clean):
        raise ConflictError(_("A team named %(name)s already exists.", name=repr(clean)))
    team = Team(operator_id=operator_id, name=clean)
    session.add(team)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError(_("A team named %(name)s already exists.", name=repr(clean))) from exc
    record(session, actor_of(by), "team.create", team, operator_id=operator_id, after={"name": clean})
    return team


async def rename_team(session: AsyncSession, by: Acting, team: Team, name: str | None) -> Team:
    """Rename a team."""
    require_on_team(by, Permission.MANAGE_TEAMS, team)
    clean = clean_name(name, label="Team name")
    if await _name_taken(session, team.operator_id, clean, exclude_id=team.id):
        raise ConflictError(_("A team named %(name)s already exists.", name=repr(clean)))
    before = {"name": team.name}
    team.name = clean
    session.add(team)
    record(
        session, actor_of(by), "team.rename", team, operator_id=team.operator_id, before=before, after={"name": clean}
    )
    return team


async def delete_team(session: AsyncSession, by: Acting, team: Team) -> None:
    """Delete a team with its charge points and memberships."""
    require_on_team(by, Permission.MANAGE_TEAMS, team)
    charge_point_ids = [
        cp_id
        for cp_id in (await session.exec(select(ChargePoint.id).where(ChargePoint.team_id == team.id))).all()
        if cp_id is not None
    ]
    record(
        session,
        actor_of(by),
        "team.delete",
        team,
        operator_id=team.operator_id,
        before={"name": team.name, "charge_points": len(charge_point_ids)},
    )
    # S2: a limit on the team's chargers is lifted before they go.
    await release_charge_points(session, charge_point_ids, "team deleted")
    disconnect_after_commit(session, charge_point_ids, "Team deleted")
    await session.delete(team)
