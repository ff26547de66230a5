"""PowerBank through the browser's eyes: the bulk flow, the toggle, history, CSV and permissions."""

from __future__ import annotations

import csv
import io
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from quart.testing import QuartClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import ChargePoint, Participation, ParticipationEvent, Team
from powerbank.rules.gsrn import make_facility_id
from powerbank.rules.permissions import load_principal
from powerbank.services import enrollment
from tests.conftest import Factory, LoginAs, htmx_headers, post_form

SIGN_UP_FORM = {"terms_version": "demo-v1", "accept_terms": "yes", "action": "selected"}


async def team_named(session: AsyncSession, name: str) -> Team:
    return (await session.exec(select(Team).where(Team.name == name))).one()


async def cps_of(session: AsyncSession, team: Team) -> dict[str, ChargePoint]:
    rows = await session.exec(select(ChargePoint).where(ChargePoint.team_id == team.id))
    return {cp.name: cp for cp in rows}


async def states(session: AsyncSession, team: Team) -> dict[str, str]:
    """Read the committed states afresh, as the next request would."""
    session.expire_all()
    await session.refresh(team)
    return {row.charge_point.name: row.state.label for row in await enrollment.eligibility_for_team(session, team)}


async def text(response: object) -> str:
    return await response.get_data(as_text=True)  # type: ignore[attr-defined]


async def post_pairs(client: QuartClient, path: str, pairs: list[tuple[str, str]], htmx: bool = False) -> Any:
    """POST a form whose fields repeat (several ticked checkboxes), as a browser encodes it."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", **(htmx_headers(client) if htmx else {})}
    body = urlencode([("csrf_token", client.csrf_token), *pairs])  # type: ignore[attr-defined]
    return await client.post(path, data=body.encode(), headers=headers)


def squash(html: str) -> str:
    return re.sub(r"\s+", " ", html)


# Permission table ------------------------------------------------------------------------------

ROLES = [
    # (who, operator role, team role, may configure, expected status for sign-up and opt-out)
    ("Operator Admin", "admin", None, True, 303),
    ("Operator Manager", "manager", None, True, 303),
    ("Team Owner with the right", None, "owner", True, 303),
    ("Team Owner without the right", None, "owner", False, 403),
    ("Team Admin with the right", None, "admin", True, 303),
    ("Team Admin without the right", None, "admin", False, 403),
    ("Team Member", None, "member", False, 403),
    ("another operator's Operator Admin", "other-admin", None, True, 404),
]


@pytest.mark.parametrize(
    ("who", "operator_role", "team_role", "may_configure", "expected"), ROLES, ids=[row[0] for row in ROLES]
)
async def test_permission_table_for_sign_up_and_opt_out(
    session: AsyncSession,
    factory: Factory,
    login_as: LoginAs,
    who: str,
    operator_role: str | None,
    team_role: str | None,
    may_configure: bool,
    expected: int,
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    to_sign_up = await factory.charge_point(team)
    to_opt_out = await factory.charge_point(team)
    boss = await factory.user(operator=operator, operator_role="admin")
    await enrollment.bulk_sign_up(
        session,
        await load_principal(session, boss),
        team,
        accept_terms_version="demo-v1",
        charge_point_ids=[to_opt_out.id or 0],
        sign_up_all=False,
        facility_ids={},
    )
    await session.commit()
    if operator_role == "other-admin":
        user = await factory.user(operator=await factory.operator(), operator_role="admin")
    else:
        user = await factory.user(
            operator=operator, operator_role=operator_role, team=team, team_role=team_role, can_configure=may_configure
        )
    client = await login_as(user)

    signed = await post_form(
        client, f"/teams/{team.id}/powerbank/sign-up", {**SIGN_UP_FORM, "sign_up": str(to_sign_up.id)}
    )
    opted = await post_form(client, f"/charge-points/{to_opt_out.id}/powerbank/opt-out")

    assert (signed.status_code, opted.status_code) == (expected, expected)
    after = ("Signed up", "Opted out") if expected == 303 else ("Not signed up", "Signed up")
    expected_states = dict(zip((to_sign_up.name, to_opt_out.name), after, strict=True))
    assert await states(session, team) == expected_states


async def test_actions_menu_offers_sign_up_or_says_why_not(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    team = await team_named(session, "Copenhagen Fleet")
    admin = await login_as("admin@demo.test")
    page = squash(await text(await admin.get(f"/teams/{team.id}/charge-points")))
    assert f'<a href="/teams/{team.id}/powerbank/sign-up">Sign up for PowerBank</a>' in page
    member = await login_as("member@demo.test")
    page = squash(await text(await member.get(f"/teams/{team.id}/charge-points")))
    assert (
        '<span class="disabled" aria-disabled="true">Sign up for PowerBank</span> <span class="reason">'
        "Team Members cannot configure charge points. Ask a Team Owner or an admin.</span>"
    ) in page
    readonly = await login_as("readonly.admin@demo.test")
    page = squash(await text(await readonly.get(f"/teams/{team.id}/powerbank/sign-up")))
    assert "Your role in this team does not include the right to configure charge points." in page
    assert 'value="all" class="primary" data-needs-terms disabled' in page


# Bulk flow: Copenhagen -------------------------------------------------------------------------


async def test_copenhagen_bulk_flow_signs_up_the_dk1_charge_point(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    team = await team_named(session, "Copenhagen Fleet")
    cps = await cps_of(session, team)
    client = await login_as("admin@demo.test")
    tab = squash(await text(await client.get(f"/teams/{team.id}/charge-points")))
    assert tab.count("Signed up automatically (DK2)") == 4

    page = squash(await text(await client.get(f"/teams/{team.id}/powerbank/sign-up")))
    assert "Version demo-v1" in page and "DEMO TERMS AND CONDITIONS" in page
    assert '<label for="accept-terms">I accept the terms and conditions (version demo-v1)</label>' in page
    aarhus, valby = cps["Aarhus Hub"].id, cps["Valby Legacy"].id
    assert f'<label for="sign-up-{aarhus}" class="visually-hidden">Sign up Aarhus Hub</label>' in page
    assert re.search(
        rf'id="sign-up-{valby}" name="sign_up" value="{valby}" disabled aria-describedby="why-{valby}"', page
    )
    assert (
        f'<span class="reason" id="why-{valby}">Not compatible: Tesla Wall Connector Gen 2 is not in the '
        "compatibility catalogue</span>"
    ) in page

    url = f"/teams/{team.id}/powerbank/sign-up"
    refused = await post_form(
        client,
        url,
        {"action": "selected", "terms_version": "demo-v1", "sign_up": str(aarhus)},
        headers=htmx_headers(client),
    )
    body = await text(refused)
    assert refused.status_code == 422
    assert "<html" not in body and 'id="powerbank-sign-up"' in body
    assert "Accept the terms and conditions to sign up." in body
    assert (await states(session, team))["Aarhus Hub"] == "Not signed up"

    saved = await post_form(client, url, {**SIGN_UP_FORM, "sign_up": str(aarhus)}, headers=htmx_headers(client))
    body = squash(await text(saved))
    assert saved.status_code == 200
    assert saved.headers["HX-Trigger"] == "powerbank-changed"
    assert '<p class="notice success" role="status">1 charge point signed up.</p>' in body
    assert body.count('<span class="reason" id="why-') == 6  # 5 already signed up + Valby not compatible
    assert await states(session, team) == {
        "Aarhus Hub": "Signed up",
        "Amager Depot": "Signed up",
        "Nørrebro 1": "Signed up",
        "Nørrebro 2": "Signed up",
        "Valby Legacy": "Not signed up",
        "Vesterbro 1": "Signed up",
    }
    [event] = (await session.exec(select(ParticipationEvent).where(ParticipationEvent.charge_point_id == aarhus))).all()
    assert (event.source, event.actor_label, event.terms_version) == ("bulk", "admin@demo.test", "demo-v1")


async def test_a_plain_form_post_redirects_and_shows_the_result(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    team = await team_named(session, "London Depot")
    client = await login_as("admin@demo.test")
    response = await post_form(client, f"/teams/{team.id}/powerbank/sign-up", {**SIGN_UP_FORM, "action": "all"})
    assert response.status_code == 303
    page = await text(await client.get(response.headers["Location"]))
    assert "4 charge points signed up." in page


async def test_a_forged_post_naming_another_teams_charge_point_changes_nothing(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    copenhagen = await team_named(session, "Copenhagen Fleet")
    fjord = await team_named(session, "Oslo Yard")
    aarhus_id = (await cps_of(session, copenhagen))["Aarhus Hub"].id
    oslo_id = next(iter((await cps_of(session, fjord)).values())).id
    client = await login_as("admin@demo.test")
    response = await post_pairs(
        client,
        f"/teams/{copenhagen.id}/powerbank/sign-up",
        [*SIGN_UP_FORM.items(), ("sign_up", str(aarhus_id)), ("sign_up", str(oslo_id))],
    )
    assert response.status_code == 404
    assert (await states(session, copenhagen))["Aarhus Hub"] == "Not signed up"
    response = await post_form(client, f"/charge-points/{oslo_id}/powerbank/opt-out")
    assert response.status_code == 404


# Bulk flow: Stockholm --------------------------------------------------------------------------


async def test_stockholm_sign_up_all_is_blocked_until_the_missing_facility_ids_are_typed(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    team = await team_named(session, "Stockholm Offices")
    cps = await cps_of(session, team)
    client = await login_as("admin@demo.test")
    url = f"/teams/{team.id}/powerbank/sign-up"
    page = squash(await text(await client.get(url)))
    for name in ("Kista A", "Solna 1", "Gamla Stan"):
        assert f'<label for="facility-id-{cps[name].id}" class="visually-hidden">Facility ID for {name}</label>' in page

    blocked = await post_form(client, url, {**SIGN_UP_FORM, "action": "all"}, headers=htmx_headers(client))
    body = squash(await text(blocked))
    assert blocked.status_code == 422
    assert "Nothing was saved: 3 charge points cannot be signed up yet" in body
    for name in ("Solna 1", "Solna 2", "Södermalm"):
        assert (
            f'<p class="error" id="facility-id-message-{cps[name].id}" aria-live="polite">Facility ID is required '
            "for charge points in Sweden.</p>"
        ) in body
    assert set((await states(session, team)).values()) == {"Not signed up"}

    # A ticked Swedish row without a valid Facility ID blocks Save too, with its row message.
    solna = cps["Solna 1"].id
    blocked = await post_pairs(
        client,
        url,
        [
            *SIGN_UP_FORM.items(),
            ("sign_up", str(cps["Kista A"].id)),
            ("sign_up", str(solna)),
            (f"facility_id_{solna}", "735999"),
        ],
        htmx=True,
    )
    assert blocked.status_code == 422
    assert "Facility ID must be 18 digits; this has 6." in await text(blocked)
    assert set((await states(session, team)).values()) == {"Not signed up"}

    typed = {
        f"facility_id_{cps[name].id}": make_facility_id(f"2000000000{n}")
        for n, name in enumerate(("Solna 1", "Solna 2", "Södermalm"))
    }
    saved = await post_form(client, url, {**SIGN_UP_FORM, "action": "all", **typed}, headers=htmx_headers(client))
    assert saved.status_code == 200
    assert "5 charge points signed up." in await text(saved)
    assert await states(session, team) == {
        "Kista A": "Signed up",
        "Kista B": "Signed up",
        "Solna 1": "Signed up",
        "Solna 2": "Signed up",
        "Södermalm": "Signed up",
        "Gamla Stan": "Not signed up",
    }
    stored = {cp.name: cp.facility_id for cp in (await cps_of(session, team)).values()}
    assert stored["Solna 2"] == make_facility_id("20000000001")


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("73599", "Facility ID must be 18 digits; this has 5."),
        ("123456100000000010", "Facility ID must start with 735999."),
        ("735999100000000011", "Facility ID check digit is wrong: the last digit should be 0."),
        ("", "Facility ID is required for charge points in Sweden."),
        ("735999100000000010", "Valid Facility ID"),
    ],
)
async def test_a_facility_id_is_checked_as_it_is_typed(
    session: AsyncSession, factory: Factory, login_as: LoginAs, typed: str, message: str
) -> None:
    team = await factory.team()
    solna = await factory.charge_point(team, name="Solna 1", country="SE", price_area="SE3")
    client = await login_as(await factory.user(team=team, team_role="member"))
    response = await client.get(
        f"/teams/{team.id}/powerbank/facility-id/{solna.id}",
        query_string={f"facility_id_{solna.id}": typed},
        headers=htmx_headers(client),
    )
    assert response.status_code == 200
    assert f'id="facility-id-message-{solna.id}" aria-live="polite">{message}</p>' in await text(response)


# Single flow -----------------------------------------------------------------------------------


async def test_the_toggle_opts_out_and_back_in_and_the_history_shows_it(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    team = await team_named(session, "Copenhagen Fleet")
    cp = (await cps_of(session, team))["Nørrebro 1"]
    client = await login_as("admin@demo.test")
    page = squash(await text(await client.get(f"/charge-points/{cp.id}")))
    assert '<span id="powerbank-name" class="functionality-name">PowerBank</span>' in page
    assert 'role="switch" aria-checked="true" aria-labelledby="powerbank-name"' in page

    asked = squash(
        await text(
            await client.get(
                f"/charge-points/{cp.id}/powerbank", query_string={"turn": "off"}, headers=htmx_headers(client)
            )
        )
    )
    assert "<strong>Stop participating in PowerBank?</strong>" in asked
    off = await post_form(client, f"/charge-points/{cp.id}/powerbank/opt-out", headers=htmx_headers(client))
    body = squash(await text(off))
    assert off.status_code == 200 and off.headers["HX-Trigger"] == "powerbank-changed"
    assert 'role="switch" aria-checked="false"' in body
    assert '<span class="status state-opted-out">Opted out</span>' in body
    assert "<td>Signed up</td> <td>Opted out</td> <td>single</td> <td>admin@demo.test</td>" in body

    asked = squash(
        await text(
            await client.get(
                f"/charge-points/{cp.id}/powerbank", query_string={"turn": "on"}, headers=htmx_headers(client)
            )
        )
    )
    assert '<label for="pb-accept-terms">I accept the terms and conditions (version demo-v1)</label>' in asked
    assert '<button type="submit" class="primary" data-needs-terms>Yes</button>' in asked
    url = f"/charge-points/{cp.id}/powerbank/sign-up"
    refused = await post_form(client, url, {"terms_version": "demo-v1"}, headers=htmx_headers(client))
    assert refused.status_code == 422
    assert "Accept the terms and conditions to sign up." in await text(refused)
    on = await post_form(client, url, {"terms_version": "demo-v1", "accept_terms": "yes"}, headers=htmx_headers(client))
    body = squash(await text(on))
    assert 'role="switch" aria-checked="true"' in body
    assert "<td>Opted out</td> <td>Signed up</td> <td>single</td> <td>admin@demo.test</td> <td>demo-v1</td>" in body

    # Accepted once for this team: the next time it is just "Yes".
    await post_form(client, f"/charge-points/{cp.id}/powerbank/opt-out")
    asked = await text(
        await client.get(f"/charge-points/{cp.id}/powerbank", query_string={"turn": "on"}, headers=htmx_headers(client))
    )
    assert "I accept the terms and conditions" not in asked
    assert (await post_form(client, url, {})).status_code == 303
    assert (await states(session, team))["Nørrebro 1"] == "Signed up"


async def test_without_htmx_the_switch_leads_to_the_same_question_on_the_page(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    team = await team_named(session, "Copenhagen Fleet")
    cp = (await cps_of(session, team))["Nørrebro 2"]
    client = await login_as("admin@demo.test")
    response = await client.get(f"/charge-points/{cp.id}/powerbank", query_string={"turn": "off"})
    assert response.status_code == 303
    # A browser never sends the #fragment of the Location.
    page = await text(await client.get(response.headers["Location"].split("#")[0]))
    assert "Stop participating in PowerBank?" in page


async def test_a_swedish_charge_point_asks_for_its_facility_id_in_the_toggle(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    team = await team_named(session, "Stockholm Offices")
    cp = (await cps_of(session, team))["Södermalm"]
    client = await login_as("owner@demo.test")
    asked = await text(
        await client.get(f"/charge-points/{cp.id}/powerbank", query_string={"turn": "on"}, headers=htmx_headers(client))
    )
    assert '<label for="pb-facility-id">Facility ID</label>' in asked
    url = f"/charge-points/{cp.id}/powerbank/sign-up"
    form = {"terms_version": "demo-v1", "accept_terms": "yes"}
    refused = await post_form(client, url, {**form, "facility_id": "735999100000000011"}, headers=htmx_headers(client))
    assert refused.status_code == 422
    assert "the last digit should be 0." in await text(refused)
    assert (await states(session, team))["Södermalm"] == "Not signed up"
    saved = await post_form(client, url, {**form, "facility_id": "735999100000000010"}, headers=htmx_headers(client))
    assert 'aria-checked="true"' in await text(saved)
    await session.refresh(cp)
    assert cp.facility_id == "735999100000000010"


async def test_a_member_sees_the_state_but_the_switch_is_disabled_with_the_reason(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    team = await team_named(session, "Copenhagen Fleet")
    cps = await cps_of(session, team)
    client = await login_as("member@demo.test")
    page = squash(await text(await client.get(f"/charge-points/{cps['Amager Depot'].id}")))
    assert 'aria-checked="true" aria-labelledby="powerbank-name" disabled aria-describedby="powerbank-blocked"' in page
    assert "Team Members cannot configure charge points." in page
    admin = await login_as("admin@demo.test")
    page = squash(await text(await admin.get(f"/charge-points/{cps['Valby Legacy'].id}")))
    assert 'aria-checked="false" aria-labelledby="powerbank-name" disabled' in page
    assert "Not compatible: Tesla Wall Connector Gen 2 is not in the compatibility catalogue" in page


# History and CSV -------------------------------------------------------------------------------


async def test_team_history_is_filterable_by_charge_point_and_exported_as_csv(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    team = await team_named(session, "Copenhagen Fleet")
    cps = await cps_of(session, team)
    client = await login_as("member@demo.test")
    page = squash(await text(await client.get(f"/teams/{team.id}/powerbank")))
    assert '<a href="/teams/1/powerbank" aria-current="page">PowerBank</a>' in page
    assert "4 changes" in page
    fragment = await client.get(
        f"/teams/{team.id}/powerbank",
        query_string={"charge_point": cps["Vesterbro 1"].id},
        headers=htmx_headers(client),
    )
    body = squash(await text(fragment))
    assert "<html" not in body and "1 change<" in body and "Vesterbro 1" in body and "Nørrebro 1" not in body

    export = await client.get(f"/teams/{team.id}/powerbank/participation.csv")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(await text(export))))
    assert rows[0] == ["Charge point", "Identity", "Country", "Area", "State", "Since", "Source", "Facility ID"]
    assert ["Valby Legacy", "CPH-005", "Denmark", "DK2", "Not signed up", "", "", ""] in rows
    assert len(rows) == 7


@pytest.mark.parametrize(
    "name", ['=HYPERLINK("https://evil.example","Open")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)"]
)
async def test_the_csv_export_never_hands_a_spreadsheet_a_formula(
    session: AsyncSession, factory: Factory, login_as: LoginAs, name: str
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    await factory.charge_point(team, name=name, identity="-1+1")
    owner = await factory.user(team=team, team_role="owner")
    client = await login_as(owner)
    rows = list(csv.reader(io.StringIO(await text(await client.get(f"/teams/{team.id}/powerbank/participation.csv")))))
    # A leading apostrophe makes a spreadsheet show the cell as text, exactly as typed after it.
    assert rows[1][:2] == [f"'{name}", "'-1+1"]


async def test_another_operator_cannot_see_the_history_or_export(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    team = await team_named(session, "Copenhagen Fleet")
    client = await login_as("fjord.admin@demo.test")
    for path in ("powerbank", "powerbank/participation.csv", "powerbank/sign-up"):
        assert (await client.get(f"/teams/{team.id}/{path}")).status_code == 404
    assert (await session.exec(select(Participation))).all()


@pytest.mark.parametrize(
    "query",
    ["charge_point=%C2%B2", "charge_point=99999999999999999999", "page=%C2%B2", "page=-3", "charge_point=abc&page=x"],
)
async def test_odd_history_filters_show_the_history_not_an_error(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs, query: str
) -> None:
    team = await team_named(session, "Copenhagen Fleet")
    client = await login_as("member@demo.test")
    response = await client.get(f"/teams/{team.id}/powerbank?{query}")
    assert response.status_code == 200
    assert "4 changes" in squash(await text(response))


@pytest.mark.parametrize(
    "field",
    [
        ("sign_up", "9" * 5000),
        ("sign_up", "1" + "0" * 9),
        ("sign_up", "١٢"),
        ("facility_id_" + "9" * 5000, "735999"),
        ("facility_id_" + "1" + "0" * 9, "735999"),
    ],
)
async def test_a_charge_point_id_beyond_any_database_id_is_a_bad_request(
    session: AsyncSession, factory: Factory, login_as: LoginAs, field: tuple[str, str]
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    await factory.charge_point(team)
    client = await login_as(await factory.user(operator=operator, operator_role="admin"))
    response = await post_pairs(client, f"/teams/{team.id}/powerbank/sign-up", [*SIGN_UP_FORM.items(), field])
    assert response.status_code == 400
    assert set((await states(session, team)).values()) == {"Not signed up"}
