"""PowerBank enrollment rules R1-R8, suspension and the release hook, through the domain service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.errors import ForbiddenError, NotFoundError
from powerbank.models import ChargePoint, Participation, ParticipationEvent, Team, TermsAcceptance, TermsVersion, User
from powerbank.rules.gsrn import make_facility_id
from powerbank.rules.permissions import Principal, load_principal
from powerbank.services import catalogue, enrollment
from powerbank.services import charge_points as cp_service
from powerbank.services.audit import SYSTEM
from tests.conftest import Factory

VALID_FID = make_facility_id("12345678901")


@pytest.fixture
async def release_calls() -> AsyncIterator[list[tuple[list[int], str]]]:
    """Record every call of the release hook (the grid-activation work registers the real one)."""
    calls: list[tuple[list[int], str]] = []

    async def hook(_session: AsyncSession | None, charge_point_ids: list[int], reason: str) -> None:
        calls.append((sorted(charge_point_ids), reason))

    enrollment.register_release_hook(hook)
    yield calls
    enrollment.unregister_release_hook(hook)


async def admin_of(factory: Factory, team: Team) -> tuple[User, Principal]:
    user = await factory.user(team=team, team_role="admin", can_configure=True)
    return user, await load_principal(factory.session, user)


async def rollback(session: AsyncSession, *objects: Any) -> None:
    """Roll back as a failed request does, then reload what the test goes on using."""
    await session.rollback()
    for obj in objects:
        await session.refresh(obj)


async def state_of(session: AsyncSession, charge_point: ChargePoint) -> str:
    # A rolled-back session has expired every object; read the charge point afresh.
    await session.refresh(charge_point)
    return (await enrollment.get_participation(session, charge_point)).state.label


async def events_of(session: AsyncSession, charge_point: ChargePoint) -> list[ParticipationEvent]:
    await session.refresh(charge_point)
    rows = await session.exec(
        select(ParticipationEvent)
        .where(ParticipationEvent.charge_point_id == charge_point.id)
        .order_by(col(ParticipationEvent.id))
    )
    return list(rows)


async def sign_up(session: AsyncSession, principal: Principal, team: Team, ids: list[int], **kwargs: Any) -> Any:
    terms = await enrollment.current_terms(session)
    values: dict[str, Any] = {
        "accept_terms_version": terms.version,
        "charge_point_ids": ids,
        "sign_up_all": False,
        "facility_ids": {},
    }
    values.update(kwargs)
    result = await enrollment.bulk_sign_up(session, principal, team, **values)
    await session.commit()
    return result


# R1 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "area", "allowed"),
    [
        ("DK", "DK1", True),
        ("SE", "SE3", True),
        ("GB", "GB", True),
        ("IE", "IE", True),
        ("DE", None, False),
        ("NO", None, False),
        ("FI", None, False),
    ],
)
async def test_r1_only_denmark_sweden_uk_and_ireland(
    session: AsyncSession, factory: Factory, country: str, area: str | None, allowed: bool
) -> None:
    team = await factory.team()
    _, principal = await admin_of(factory, team)
    cp = await factory.charge_point(
        team, country=country, price_area=area, facility_id=VALID_FID if country == "SE" else None
    )
    row = (await enrollment.eligibility_for_team(session, team))[0]
    if allowed:
        assert row.eligibility.compatibility == "Compatible"
        await sign_up(session, principal, team, [cp.id])
        assert await state_of(session, cp) == "Signed up"
    else:
        from powerbank.rules.countries import COUNTRIES

        assert row.eligibility.compatibility == f"Not available in {COUNTRIES[country]}"
        with pytest.raises(enrollment.SignUpError) as caught:
            await sign_up(session, principal, team, [cp.id])
        assert caught.value.row_errors == {cp.id: f"Not available in {COUNTRIES[country]}"}
        await rollback(session, team, principal.user, cp)
        assert await state_of(session, cp) == "Not signed up"


# R2 ---------------------------------------------------------------------------------------------


async def test_r2_only_catalogued_models_and_what_the_charger_reported_counts(
    session: AsyncSession, factory: Factory
) -> None:
    team = await factory.team()
    _, principal = await admin_of(factory, team)
    unknown = await factory.charge_point(team, brand="Tesla", model="Wall Connector")
    row = (await enrollment.eligibility_for_team(session, team))[0]
    assert row.eligibility.compatibility == "Not compatible"
    assert (
        row.eligibility.why_unselectable == "Not compatible: Tesla Wall Connector is not in the compatibility catalogue"
    )
    with pytest.raises(enrollment.SignUpError):
        await sign_up(session, principal, team, [unknown.id])
    await rollback(session, team, principal.user, unknown)
    # Once the charger has booted, its BootNotification vendor/model is what counts.
    unknown.booted_at, unknown.reported_vendor, unknown.reported_model = utcnow(), "Easee", "Home"
    session.add(unknown)
    await session.commit()
    await sign_up(session, principal, team, [unknown.id])
    assert await state_of(session, unknown) == "Signed up"


# R3 ---------------------------------------------------------------------------------------------


async def test_r3_bulk_works_on_one_team_and_another_teams_charge_point_changes_nothing(
    session: AsyncSession, factory: Factory
) -> None:
    operator = await factory.operator()
    team, other_team = await factory.team(operator), await factory.team(operator)
    _, principal = await admin_of(factory, team)
    mine = await factory.charge_point(team)
    theirs = await factory.charge_point(other_team)
    with pytest.raises(NotFoundError):
        await sign_up(session, principal, team, [mine.id, theirs.id])
    await rollback(session, team, principal.user, mine, theirs)
    assert await state_of(session, mine) == "Not signed up"
    assert await state_of(session, theirs) == "Not signed up"
    assert await events_of(session, mine) == []


# R4 ---------------------------------------------------------------------------------------------


async def test_r4_nothing_is_signed_up_before_the_current_terms_are_accepted(
    session: AsyncSession, factory: Factory
) -> None:
    team = await factory.team()
    user, principal = await admin_of(factory, team)
    cp = await factory.charge_point(team)
    with pytest.raises(enrollment.SignUpError) as caught:
        await sign_up(session, principal, team, [cp.id], accept_terms_version=None)
    assert "Accept the terms and conditions" in caught.value.errors["terms"]
    await rollback(session, team, user, cp)
    session.add(TermsVersion(version="v2", published_at=utcnow(), text="Newer terms"))
    await session.commit()
    with pytest.raises(enrollment.SignUpError) as caught:
        await enrollment.bulk_sign_up(
            session,
            principal,
            team,
            accept_terms_version="demo-v1",
            charge_point_ids=[cp.id or 0],
            sign_up_all=False,
            facility_ids={},
        )
    assert "version v2" in caught.value.errors["terms"]
    await rollback(session, team, user, cp)
    assert await state_of(session, cp) == "Not signed up"
    await sign_up(session, principal, team, [cp.id], accept_terms_version="v2")
    acceptance = (await session.exec(select(TermsAcceptance))).one()
    assert (acceptance.user_id, acceptance.team_id, acceptance.version, acceptance.charge_point_ids) == (
        user.id,
        team.id,
        "v2",
        [cp.id],
    )
    assert acceptance.accepted_at.tzinfo is not None


# R5 ---------------------------------------------------------------------------------------------


async def test_r5_sign_up_all_in_sweden_needs_every_facility_id_and_saves_nothing_otherwise(
    session: AsyncSession, factory: Factory
) -> None:
    team = await factory.team()
    _, principal = await admin_of(factory, team)
    with_id = await factory.charge_point(team, country="SE", price_area="SE3", facility_id=VALID_FID)
    missing = await factory.charge_point(team, country="SE", price_area="SE3")
    typo = await factory.charge_point(team, country="SE", price_area="SE3")
    typed_ok = make_facility_id("99999999999")
    with pytest.raises(enrollment.SignUpError) as caught:
        await sign_up(
            session, principal, team, [], sign_up_all=True, facility_ids={typo.id: "735999123", with_id.id: VALID_FID}
        )
    assert caught.value.row_errors == {
        missing.id: "Facility ID is required for charge points in Sweden.",
        typo.id: "Facility ID must be 18 digits; this has 9.",
    }
    await rollback(session, team, principal.user, with_id, missing, typo)
    assert {await state_of(session, cp) for cp in (with_id, missing, typo)} == {"Not signed up"}
    result = await sign_up(
        session,
        principal,
        team,
        [],
        sign_up_all=True,
        facility_ids={missing.id: typed_ok, typo.id: make_facility_id("88888888888")},
    )
    assert result.message == "3 charge points signed up."
    await session.refresh(missing)
    assert missing.facility_id == typed_ok


async def test_r5_a_facility_id_typed_in_a_blocked_save_is_not_stored(session: AsyncSession, factory: Factory) -> None:
    team = await factory.team()
    _, principal = await admin_of(factory, team)
    first = await factory.charge_point(team, country="SE", price_area="SE3")
    second = await factory.charge_point(team, country="SE", price_area="SE3")
    with pytest.raises(enrollment.SignUpError) as caught:
        await sign_up(
            session,
            principal,
            team,
            [first.id, second.id],
            facility_ids={first.id: VALID_FID, second.id: VALID_FID[:-1] + "0"},
        )
    assert "check digit" in caught.value.row_errors[second.id]
    await rollback(session, first)
    assert first.facility_id is None


# R6 ---------------------------------------------------------------------------------------------


def cp_form(**fields: str) -> dict[str, str]:
    values = {
        "name": "Depot",
        "identity": "DEPOT-1",
        "brand": "Easee",
        "model": "Home",
        "country": "DK",
        "price_area": "DK2",
    }
    values.update(fields)
    return values


async def test_r6_a_compatible_charge_point_created_in_dk2_is_signed_up_by_the_system(
    session: AsyncSession, factory: Factory
) -> None:
    team = await factory.team()
    _, principal = await admin_of(factory, team)
    created, _ = await cp_service.create_charge_point(session, principal, team, cp_form())
    dk1, _ = await cp_service.create_charge_point(
        session, principal, team, cp_form(identity="DEPOT-2", price_area="DK1")
    )
    incompatible, _ = await cp_service.create_charge_point(
        session, principal, team, cp_form(identity="DEPOT-3", brand="Tesla")
    )
    await session.commit()
    assert await state_of(session, created) == "Signed up"
    assert await state_of(session, dk1) == "Not signed up"
    assert await state_of(session, incompatible) == "Not signed up"
    [event] = await events_of(session, created)
    assert (event.actor_user_id, event.actor_label, event.source, event.from_label, event.to_label) == (
        None,
        "system",
        "automatic",
        "Not signed up",
        "Signed up",
    )
    assert (await enrollment.get_participation(session, created)).state_explanation == "Signed up automatically (DK2)"


async def test_r6_moved_to_dk2_or_becoming_compatible_signs_up_but_never_after_an_opt_out(
    session: AsyncSession, factory: Factory
) -> None:
    team = await factory.team()
    user, principal = await admin_of(factory, team)
    mover, _ = await cp_service.create_charge_point(session, principal, team, cp_form(price_area="DK1"))
    newcomer, _ = await cp_service.create_charge_point(
        session, principal, team, cp_form(identity="DEPOT-2", brand="Acme", model="One")
    )
    refuser, _ = await cp_service.create_charge_point(
        session, principal, team, cp_form(identity="DEPOT-3", brand="Acme", model="One")
    )
    await session.commit()
    await enrollment.opt_out(session, principal, refuser)
    await session.commit()
    await cp_service.update_charge_point(session, principal, team, mover, cp_form(price_area="DK2"))
    await catalogue.add_model(session, SYSTEM, team.operator_id, "Acme", "One")
    await session.commit()
    assert await state_of(session, mover) == "Signed up"
    assert await state_of(session, newcomer) == "Signed up"
    assert await state_of(session, refuser) == "Opted out"


# R7 ---------------------------------------------------------------------------------------------


async def test_r7_opt_out_stops_at_once_and_releases_active_limits(
    session: AsyncSession, factory: Factory, release_calls: list[tuple[list[int], str]]
) -> None:
    team = await factory.team()
    user, principal = await admin_of(factory, team)
    cp = await factory.charge_point(team)
    await sign_up(session, principal, team, [cp.id])
    assert release_calls == []
    status = await enrollment.opt_out(session, principal, cp)
    await session.commit()
    assert status.state.label == "Opted out"
    assert release_calls == [([cp.id], f"Opted out by {user.email}")]
    # Opting out twice changes nothing and releases nothing more.
    await enrollment.opt_out(session, principal, cp)
    assert len(release_calls) == 1
    assert len(await events_of(session, cp)) == 2


# R8 ---------------------------------------------------------------------------------------------


async def test_r8_every_change_is_an_event_with_who_when_from_to_source_and_terms(
    session: AsyncSession, factory: Factory
) -> None:
    team = await factory.team()
    user, principal = await admin_of(factory, team)
    cp = await factory.charge_point(team)
    before = utcnow()
    await sign_up(session, principal, team, [cp.id])
    await enrollment.opt_out(session, principal, cp)
    await enrollment.sign_up_one(session, principal, cp, accept_terms_version=None, facility_id=None)
    await session.commit()
    events = await events_of(session, cp)
    assert [(e.from_label, e.to_label, e.source, e.actor_user_id, e.actor_label, e.terms_version) for e in events] == [
        ("Not signed up", "Signed up", "bulk", user.id, user.email, "demo-v1"),
        ("Signed up", "Opted out", "single", user.id, user.email, None),
        ("Opted out", "Signed up", "single", user.id, user.email, "demo-v1"),
    ]
    assert all(e.at >= before for e in events)
    page = await enrollment.list_events(session, team.id or 0, charge_point_id=cp.id, page=1, page_size=2)
    assert (page.total, [e.to_label for e in page.items]) == (3, ["Signed up", "Opted out"])


# Suspension -------------------------------------------------------------------------------------


async def test_a_signed_up_charge_point_that_stops_being_eligible_is_suspended_and_comes_back(
    session: AsyncSession, factory: Factory, release_calls: list[tuple[list[int], str]]
) -> None:
    team = await factory.team()
    user, principal = await admin_of(factory, team)
    cp, _ = await cp_service.create_charge_point(session, principal, team, cp_form(price_area="DK1"))
    await session.commit()
    await sign_up(session, principal, team, [cp.id])
    await cp_service.update_charge_point(session, principal, team, cp, cp_form(country="DE", price_area=""))
    await session.commit()
    status = await enrollment.get_participation(session, cp)
    assert (status.state.label, status.state_explanation) == ("Suspended", "Not available in Germany")
    assert release_calls == [([cp.id], "Not available in Germany")]
    await cp_service.update_charge_point(session, principal, team, cp, cp_form(price_area="DK1"))
    await session.commit()
    assert await state_of(session, cp) == "Signed up"
    # Removing the model from the catalogue suspends it too.
    entry = next(
        e for e in await catalogue.list_catalogue(session, team.operator_id) if e.brand == "Easee" and e.model == "Home"
    )
    await catalogue.remove_model(session, SYSTEM, team.operator_id, entry.id or 0)
    await session.commit()
    assert (await enrollment.get_participation(session, cp)).state_explanation == "Not compatible"


async def test_a_swedish_charge_point_whose_facility_id_is_removed_is_suspended(
    session: AsyncSession, factory: Factory, release_calls: list[tuple[list[int], str]]
) -> None:
    team = await factory.team()
    user, principal = await admin_of(factory, team)
    cp, _ = await cp_service.create_charge_point(
        session, principal, team, cp_form(country="SE", price_area="SE3", facility_id=VALID_FID)
    )
    await session.commit()
    await sign_up(session, principal, team, [cp.id])
    await cp_service.update_charge_point(session, principal, team, cp, cp_form(country="SE", price_area="SE3"))
    await session.commit()
    status = await enrollment.get_participation(session, cp)
    assert (status.state.label, status.state_explanation) == ("Suspended", "Facility ID missing")
    assert release_calls == [([cp.id], "Facility ID missing")]


async def test_a_suspended_charge_point_opted_out_meanwhile_stays_opted_out(
    session: AsyncSession, factory: Factory
) -> None:
    team = await factory.team()
    user, principal = await admin_of(factory, team)
    cp, _ = await cp_service.create_charge_point(session, principal, team, cp_form(price_area="DK1"))
    await session.commit()
    await sign_up(session, principal, team, [cp.id])
    await cp_service.update_charge_point(session, principal, team, cp, cp_form(country="DE", price_area=""))
    await session.commit()
    await enrollment.opt_out(session, principal, cp)
    await cp_service.update_charge_point(session, principal, team, cp, cp_form(price_area="DK2"))
    await session.commit()
    assert await state_of(session, cp) == "Opted out"


# Permissions inside the service -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "can_configure", "error"),
    [
        ("member", False, ForbiddenError),
        ("admin", False, ForbiddenError),
        ("owner", False, ForbiddenError),
        (None, False, NotFoundError),
    ],
)
async def test_the_service_itself_refuses_callers_without_the_right(
    session: AsyncSession, factory: Factory, role: str | None, can_configure: bool, error: type[Exception]
) -> None:
    team = await factory.team()
    cp = await factory.charge_point(team)
    user = await factory.user(team=team if role else None, team_role=role, can_configure=can_configure)
    principal = await load_principal(session, user)
    with pytest.raises(error):
        await sign_up(session, principal, team, [cp.id])
    with pytest.raises(error):
        await enrollment.sign_up_one(session, principal, cp, accept_terms_version="demo-v1", facility_id=None)
    with pytest.raises(error):
        await enrollment.opt_out(session, principal, cp)
    await session.rollback()
    assert (await session.exec(select(Participation))).all() == []


# Demo data --------------------------------------------------------------------------------------


async def test_demo_copenhagen_has_its_four_compatible_dk2_charge_points_signed_up_automatically(
    session: AsyncSession, demo: list[ChargePoint]
) -> None:
    team = (await session.exec(select(Team).where(Team.name == "Copenhagen Fleet"))).one()
    rows = {row.charge_point.name: row for row in await enrollment.eligibility_for_team(session, team)}
    assert {name: (row.state.label, row.state_explanation) for name, row in rows.items()} == {
        "Aarhus Hub": ("Not signed up", None),
        "Amager Depot": ("Signed up", "Signed up automatically (DK2)"),
        "Nørrebro 1": ("Signed up", "Signed up automatically (DK2)"),
        "Nørrebro 2": ("Signed up", "Signed up automatically (DK2)"),
        "Valby Legacy": ("Not signed up", "Not compatible"),
        "Vesterbro 1": ("Signed up", "Signed up automatically (DK2)"),
    }
    berlin = (await session.exec(select(Team).where(Team.name == "Berlin Garage"))).one()
    assert {row.state_explanation for row in await enrollment.eligibility_for_team(session, berlin)} == {
        "Not available in Germany"
    }
    stockholm = (await session.exec(select(Team).where(Team.name == "Stockholm Offices"))).one()
    assert sorted(
        row.charge_point.name
        for row in await enrollment.eligibility_for_team(session, stockholm)
        if row.state_explanation == "Facility ID missing"
    ) == ["Solna 1", "Solna 2", "Södermalm"]


async def test_csv_rows_hold_the_current_participation(session: AsyncSession, demo: list[ChargePoint]) -> None:
    team = (await session.exec(select(Team).where(Team.name == "Copenhagen Fleet"))).one()
    lines = enrollment.participation_csv_rows(await enrollment.eligibility_for_team(session, team))
    assert lines[0] == ["Charge point", "Identity", "Country", "Area", "State", "Since", "Source", "Facility ID"]
    amager = next(line for line in lines if line[0] == "Amager Depot")
    assert amager[:5] == ["Amager Depot", "CPH-004", "Denmark", "DK2", "Signed up"]
    assert amager[6] == "automatic"
