"""The flag on chargers that accept but do not deliver, and an operator admin's suspension from PowerBank."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import pytest
from quart.testing import QuartClient
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import AuditEntry, ChargePoint, Participation, ParticipationEvent, Team
from powerbank.rules.permissions import load_principal
from powerbank.services import enrollment
from tests.conftest import Factory, LoginAs, csrf_of, post_form
from tests.routes.world import ROLES, build_world
from tests.services.reliability_support import DELIVERS, IGNORES, judged_activation

pytestmark = pytest.mark.usefixtures("fast_hashing")

REASON = "Accepted but not delivered in 2 of its last 3 activations"


@pytest.fixture
async def released() -> AsyncIterator[list[tuple[list[int], str]]]:
    """Record what the release hooks are asked to release (the path that lifts a charger's limit, S2)."""
    calls: list[tuple[list[int], str]] = []

    async def hook(session: AsyncSession | None, charge_point_ids: list[int], reason: str) -> None:
        calls.append((list(charge_point_ids), reason))

    enrollment.register_release_hook(hook)
    yield calls
    enrollment.unregister_release_hook(hook)


async def signed_up(factory: Factory, session: AsyncSession, team: Team, **fields: str) -> ChargePoint:
    """Create a compatible DK2 charge point: R6 signs it up by itself."""
    cp = await factory.charge_point(team, price_area="DK2", **fields)
    await enrollment.reevaluate(session, [cp])
    await session.commit()
    return cp


async def participation(session: AsyncSession, cp: ChargePoint) -> Participation:
    found = await session.get(Participation, cp.id, populate_existing=True)
    assert found is not None
    return found


async def events(session: AsyncSession, cp: ChargePoint) -> list[ParticipationEvent]:
    rows = await session.exec(
        select(ParticipationEvent)
        .where(ParticipationEvent.charge_point_id == cp.id)
        .order_by(col(ParticipationEvent.id))
        .execution_options(populate_existing=True)
    )
    return list(rows)


def text_of(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


async def test_a_flagged_charger_shows_its_numbers_on_its_page_and_in_the_teams_list(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    flaky = await signed_up(factory, session, team, name="Flaky charger")
    steady = await signed_up(factory, session, team, name="Steady charger")
    runs = [
        await judged_activation(session, operator.id or 0, [(flaky, behaviour), (steady, DELIVERS)], hours_ago=hours)
        for behaviour, hours in ((IGNORES, 3), (DELIVERS, 2), (IGNORES, 1))
    ]
    admin = await login_as(await factory.user(operator=operator, operator_role="admin"))
    member = await login_as(await factory.user(team=team, team_role="member"))

    page = await (await admin.get(f"/charge-points/{flaky.id}")).get_data(as_text=True)
    assert "Accepts but does not deliver: accepted but not delivered in 2 of its last 3 activations." in text_of(page)
    for run in runs:
        assert f'href="/activations/{run.id}"' in page
    assert f'action="/charge-points/{flaky.id}/powerbank/suspend"' in page
    assert f'value="{REASON}"' in page  # the reason is offered, and can be changed

    steady_page = text_of(await (await admin.get(f"/charge-points/{steady.id}")).get_data(as_text=True))
    assert "Accepts but does not deliver" not in steady_page
    assert "Accepted but not delivered in 0 of its last 3 activations." in steady_page

    # Team members see the flag and the numbers, but neither the activations (an operator's) nor a suspend button.
    member_page = await (await member.get(f"/charge-points/{flaky.id}")).get_data(as_text=True)
    assert "accepted but not delivered in 2 of its last 3 activations" in text_of(member_page)
    assert f"/activations/{runs[0].id}" not in member_page and "/powerbank/suspend" not in member_page

    for client in (admin, member):
        tab = await (await client.get(f"/teams/{team.id}/charge-points")).get_data(as_text=True)
        rows = {name: row for row in tab.split("<tr>") for name in ("Flaky charger", "Steady charger") if name in row}
        assert "Accepts but does not deliver" in rows["Flaky charger"]
        assert f'href="/charge-points/{flaky.id}#reliability"' in rows["Flaky charger"]
        assert "Accepts but does not deliver" not in rows["Steady charger"]


async def test_an_operator_admin_suspends_a_charger_recorded_in_the_history_and_its_limit_released(
    session: AsyncSession, factory: Factory, login_as: LoginAs, released: list[tuple[list[int], str]]
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    cp = await signed_up(factory, session, team)
    admin_user = await factory.user(operator=operator, operator_role="admin", email="admin@example.test")
    admin = await login_as(admin_user)

    response = await post_form(admin, f"/charge-points/{cp.id}/powerbank/suspend", {"reason": f"  {REASON} "})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/charge-points/{cp.id}#reliability")

    state = await participation(session, cp)
    assert (state.state, state.source) == ("suspended", "single")
    assert state.reason == f"Suspended by admin@example.test: {REASON}"
    last = (await events(session, cp))[-1]
    assert (last.from_state, last.to_state, last.source, last.actor_user_id) == (
        "signed_up",
        "suspended",
        "single",
        admin_user.id,
    )
    assert last.reason == state.reason and last.charge_point_name == cp.name
    assert released == [([cp.id], state.reason)]
    audit = (await session.exec(select(AuditEntry).where(AuditEntry.action == "powerbank.suspend"))).one()
    assert audit.object_id == cp.id and audit.actor_user_id == admin_user.id

    page = text_of(await (await admin.get(f"/charge-points/{cp.id}")).get_data(as_text=True))
    assert f"Suspended Suspended by admin@example.test: {REASON}" in page
    assert "Lift the suspension" in page and "Suspend from PowerBank" not in page

    # Suspended once: a second suspension says so and changes nothing.
    again = await post_form(admin, f"/charge-points/{cp.id}/powerbank/suspend", {"reason": "again"})
    assert again.status_code == 409 and "suspended already" in await again.get_data(as_text=True)
    assert len(await events(session, cp)) == 2


@pytest.mark.parametrize(
    ("form", "problem"),
    [({"reason": "   "}, "Say why it is suspended"), ({"reason": "x" * 151}, "At most 150 characters")],
    ids=["no reason", "too long"],
)
async def test_a_suspension_needs_a_reason(
    session: AsyncSession, factory: Factory, login_as: LoginAs, form: dict[str, str], problem: str
) -> None:
    operator = await factory.operator()
    cp = await signed_up(factory, session, await factory.team(operator))
    admin = await login_as(await factory.user(operator=operator, operator_role="admin"))
    response = await post_form(admin, f"/charge-points/{cp.id}/powerbank/suspend", form)
    assert response.status_code == 422
    body = await response.get_data(as_text=True)
    assert problem in body and 'aria-invalid="true" aria-describedby="f-suspend-reason-error"' in body
    assert (await participation(session, cp)).state == "signed_up"


async def test_a_charger_that_does_not_take_part_cannot_be_suspended(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    operator = await factory.operator()
    cp = await factory.charge_point(await factory.team(operator), price_area="DK1")
    admin = await login_as(await factory.user(operator=operator, operator_role="admin"))
    page = await (await admin.get(f"/charge-points/{cp.id}")).get_data(as_text=True)
    assert "/powerbank/suspend" not in page
    response = await post_form(admin, f"/charge-points/{cp.id}/powerbank/suspend", {"reason": REASON})
    assert response.status_code == 409 and "nothing to suspend" in await response.get_data(as_text=True)
    assert await session.get(Participation, cp.id) is None


async def test_a_suspension_without_the_csrf_token_is_refused(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    operator = await factory.operator()
    cp = await signed_up(factory, session, await factory.team(operator))
    admin = await login_as(await factory.user(operator=operator, operator_role="admin"))
    response = await admin.post(f"/charge-points/{cp.id}/powerbank/suspend", form={"reason": REASON})
    assert response.status_code == 400
    assert (await participation(session, cp)).state == "signed_up"


OUTCOMES = {
    "operator admin": 303,
    "operator manager": 403,
    "team owner": 403,
    "team owner without configure right": 403,
    "team admin with configure right": 403,
    "team admin without configure right": 403,
    "team member": 403,
    "another operator's admin": 404,
    "anonymous": 302,
}


@pytest.mark.parametrize(("role", "status"), list(OUTCOMES.items()), ids=list(OUTCOMES))
@pytest.mark.parametrize("action", ["suspend", "lift-suspension"])
async def test_only_the_operators_admins_may_suspend_or_lift(
    session: AsyncSession,
    factory: Factory,
    login_as: LoginAs,
    client: QuartClient,
    released: list[tuple[list[int], str]],
    role: str,
    status: int,
    action: str,
) -> None:
    assert set(OUTCOMES) == set(ROLES)
    world = await build_world(factory, [role] if ROLES[role] else [])
    cp = await signed_up(factory, session, world.team)
    admin = await factory.user(operator=world.operator, operator_role="admin")
    if action == "lift-suspension":
        await enrollment.suspend(session, await load_principal(session, admin), cp, REASON)
        await session.commit()
    before = await participation(session, cp)
    if role == "anonymous":
        client.csrf_token = await csrf_of(client)  # type: ignore[attr-defined]
        user_client = client
    else:
        user_client = await login_as(world.users[role])
    response = await post_form(user_client, f"/charge-points/{cp.id}/powerbank/{action}", {"reason": REASON})
    assert response.status_code == status
    after = await participation(session, cp)
    if status == 303:
        assert after.state == ("suspended" if action == "suspend" else "signed_up")
    else:
        assert (after.state, after.version) == (before.state, before.version)
        if role != "anonymous":
            page = await (await user_client.get(f"/charge-points/{cp.id}")).get_data(as_text=True)
            assert "/powerbank/suspend" not in page and "/powerbank/lift-suspension" not in page
    # Another operator's charger is not found, whoever of ours asks.
    if role == "operator admin":
        other = await post_form(
            user_client, f"/charge-points/{world.other_charge_point.id}/powerbank/{action}", {"reason": REASON}
        )
        assert other.status_code == 404


async def test_automation_never_lifts_an_admins_suspension_but_still_lifts_its_own(
    session: AsyncSession, factory: Factory
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    by_admin, by_hub = await signed_up(factory, session, team), await signed_up(factory, session, team)
    admin = await load_principal(session, await factory.user(operator=operator, operator_role="admin"))
    await enrollment.suspend(session, admin, by_admin, REASON)
    await session.commit()

    # Both become ineligible (no smart charging reported): the hub suspends the signed-up one by itself.
    for cp in (by_admin, by_hub):
        cp.smart_charging = False
        session.add(cp)
    await enrollment.reevaluate(session, [by_admin, by_hub])
    await session.commit()
    assert (await participation(session, by_hub)).source == "automatic"
    assert (await participation(session, by_hub)).state == "suspended"

    # Eligible again: the hub lifts its own suspension, never the admin's.
    for cp in (by_admin, by_hub):
        cp.smart_charging = True
        session.add(cp)
    changed = await enrollment.reevaluate(session, [by_admin, by_hub])
    await session.commit()
    assert changed == [(by_hub.id, "signed_up")]
    kept = await participation(session, by_admin)
    assert (kept.state, kept.source) == ("suspended", "single") and REASON in kept.reason
    assert [e.to_state for e in await events(session, by_admin)] == ["signed_up", "suspended"]
    assert await enrollment.reevaluate_operator(session, operator.id or 0) == []


async def test_lifting_signs_it_up_again_or_the_hub_suspends_it_if_it_is_not_eligible(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    eligible, ineligible = await signed_up(factory, session, team), await signed_up(factory, session, team)
    admin_user = await factory.user(operator=operator, operator_role="admin", email="admin@example.test")
    admin = await load_principal(session, admin_user)
    for cp in (eligible, ineligible):
        await enrollment.suspend(session, admin, cp, REASON)
    await session.commit()
    ineligible.smart_charging = False
    session.add(ineligible)
    await session.commit()
    client = await login_as(admin_user)

    response = await post_form(client, f"/charge-points/{eligible.id}/powerbank/lift-suspension")
    assert response.status_code == 303
    back = await participation(session, eligible)
    assert (back.state, back.source, back.reason) == ("signed_up", "single", "Suspension lifted by admin@example.test")
    assert (await events(session, eligible))[-1].terms_version == (await enrollment.current_terms(session)).version

    response = await post_form(client, f"/charge-points/{ineligible.id}/powerbank/lift-suspension")
    assert response.status_code == 303
    history = await events(session, ineligible)
    assert [(e.to_state, e.source) for e in history[-2:]] == [("signed_up", "single"), ("suspended", "automatic")]
    assert (await participation(session, ineligible)).source == "automatic"

    # Nothing to lift now: an automatic suspension is the hub's.
    again = await post_form(client, f"/charge-points/{ineligible.id}/powerbank/lift-suspension")
    assert again.status_code == 409


async def test_a_person_signing_it_up_again_ends_an_admins_suspension(session: AsyncSession, factory: Factory) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    cp = await signed_up(factory, session, team)
    admin = await load_principal(session, await factory.user(operator=operator, operator_role="admin"))
    await enrollment.suspend(session, admin, cp, REASON)
    owner = await load_principal(session, await factory.user(team=team, team_role="owner"))
    terms = await enrollment.current_terms(session)
    row = await enrollment.sign_up_one(session, owner, cp, accept_terms_version=terms.version, facility_id=None)
    await session.commit()
    assert row.state.value == "signed_up" and not row.suspended_by_person


async def test_an_admin_can_make_the_hubs_suspension_their_own_so_the_hub_no_longer_lifts_it(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    operator = await factory.operator()
    cp = await signed_up(factory, session, await factory.team(operator))
    cp.smart_charging = False
    session.add(cp)
    await enrollment.reevaluate(session, [cp])
    await session.commit()
    assert (await participation(session, cp)).source == "automatic"
    admin = await login_as(await factory.user(operator=operator, operator_role="admin"))
    assert "Suspend from PowerBank" in await (await admin.get(f"/charge-points/{cp.id}")).get_data(as_text=True)
    response = await post_form(admin, f"/charge-points/{cp.id}/powerbank/suspend", {"reason": REASON})
    assert response.status_code == 303
    cp.smart_charging = True
    session.add(cp)
    assert await enrollment.reevaluate(session, [cp]) == []
    await session.commit()
    kept = await participation(session, cp)
    assert (kept.state, kept.source) == ("suspended", "single")
    history = [(e.from_state, e.to_state, e.source) for e in await events(session, cp)]
    assert history[-1] == ("suspended", "suspended", "single")
