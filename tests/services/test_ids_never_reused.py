"""Ids are never handed out twice, and a team's PowerBank history and terms acceptances stay its
operator's: a new tenant's team never shows what a deleted team did (issue 13 finding 5)."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import ChargePoint, Operator, ParticipationEvent, Team, TermsAcceptance, User
from powerbank.rules.permissions import load_principal
from powerbank.services import charge_points as cp_service
from powerbank.services import enrollment
from powerbank.services.teams import delete_team
from tests.conftest import Factory

TERMS = "demo-v1"


async def _signed_up_team(factory: Factory, operator: Operator) -> tuple[Team, ChargePoint, User]:
    """Return a team with one charge point signed up by its operator's admin (one event, one acceptance)."""
    team = await factory.team(operator)
    charge_point = await factory.charge_point(team)
    admin = await factory.user(operator=operator, operator_role="admin")
    await enrollment.bulk_sign_up(
        factory.session,
        await load_principal(factory.session, admin),
        team,
        accept_terms_version=TERMS,
        charge_point_ids=[charge_point.id or 0],
        sign_up_all=False,
        facility_ids={},
    )
    await factory.session.commit()
    return team, charge_point, admin


async def _delete_team(session: AsyncSession, admin: User, team: Team) -> None:
    await delete_team(session, await load_principal(session, admin), team)
    await session.commit()


async def test_the_highest_team_and_charge_point_ids_are_not_handed_out_again_after_a_deletion(
    session: AsyncSession, factory: Factory
) -> None:
    operator = await factory.operator()
    admin = await factory.user(operator=operator, operator_role="admin")
    principal = await load_principal(session, admin)
    team = await factory.team(operator)
    charge_point = await factory.charge_point(team)
    deleted_team_id, deleted_charge_point_id = team.id or 0, charge_point.id or 0

    await cp_service.delete_charge_point(session, principal, team, charge_point)
    await session.commit()
    assert ((await factory.charge_point(team)).id or 0) > deleted_charge_point_id

    await _delete_team(session, admin, team)
    new_team = await factory.team(await factory.operator())
    assert (new_team.id or 0) > deleted_team_id
    assert ((await factory.charge_point(new_team)).id or 0) > deleted_charge_point_id


async def test_a_new_tenants_team_never_shows_a_deleted_teams_history_or_terms_acceptances(
    session: AsyncSession, factory: Factory
) -> None:
    team, charge_point, admin = await _signed_up_team(factory, await factory.operator())
    await _delete_team(session, admin, team)

    other_operator = await factory.operator()
    new_team = await factory.team(other_operator)
    await _sees_nothing_of(session, new_team, charge_point, admin)
    # Even a team given the deleted team's id (a restored backup, a reset sequence) sees nothing of it.
    reused = Team(id=team.id, operator_id=other_operator.id or 0, name="Same id, other tenant")
    session.add(reused)
    await session.commit()
    await _sees_nothing_of(session, reused, charge_point, admin)


async def _sees_nothing_of(session: AsyncSession, team: Team, charge_point: ChargePoint, admin: User) -> None:
    assert (await enrollment.list_events(session, team.id or 0)).total == 0
    assert (await enrollment.list_events(session, team.id or 0, charge_point_id=charge_point.id)).total == 0
    assert not await enrollment.has_accepted_terms(session, admin.id or 0, team.id or 0, TERMS)


async def test_a_deleted_teams_history_and_terms_acceptances_stay_for_its_operators_audit(
    session: AsyncSession, factory: Factory
) -> None:
    operator = await factory.operator()
    team, charge_point, admin = await _signed_up_team(factory, operator)
    team_id = team.id
    await _delete_team(session, admin, team)

    events = (await session.exec(select(ParticipationEvent).where(ParticipationEvent.team_id == team_id))).all()
    assert [(e.charge_point_id, e.to_label, e.operator_id) for e in events] == [
        (charge_point.id, "Signed up", operator.id)
    ]
    acceptances = (await session.exec(select(TermsAcceptance).where(TermsAcceptance.team_id == team_id))).all()
    assert [(a.user_id, a.version, a.charge_point_ids, a.operator_id) for a in acceptances] == [
        (admin.id, TERMS, [charge_point.id], operator.id)
    ]
