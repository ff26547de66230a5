"""The compatibility page as users see it: the catalogue searched as you type, with their own matches."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy import event
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import ChargePoint, CompatibleModel, Team, TeamMembership
from powerbank.ocpp.endpoint import PROTOCOLS
from powerbank.services import catalogue
from powerbank.services.audit import SYSTEM
from powerbank.web import state
from tests.conftest import Factory, LoginAs, htmx_headers

ACTIVE_SEARCH = 'hx-trigger="input changed delay:200ms, search"'
ROW_RE = re.compile(r"<tr> <td>([^<]*)</td> <td>([^<]*)</td>(?: ?<td>[^<]*</td>){3} <td>(\d+)(.*?)</td> </tr>")


def squash(html: str) -> str:
    return re.sub(r"\s+", " ", html)


async def page(client: QuartClient, path: str, *, htmx: bool = False) -> tuple[int, str, Any]:
    response = await client.get(path, headers=htmx_headers(client) if htmx else None)
    return response.status_code, squash(await response.get_data(as_text=True)), response


def rows(html: str) -> dict[tuple[str, str], int]:
    """Return each listed (brand, model) with the user's number of matching charge points."""
    return {(brand, model): int(count) for brand, model, count, _ in ROW_RE.findall(html)}


async def count_queries(app: Quart, action: Callable[[], Awaitable[Any]]) -> int:
    """Run ``action`` and return how many SQL statements reached the database."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = state.engine(app).sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        await action()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(statements)


async def team_named(session: AsyncSession, name: str) -> Team:
    return (await session.exec(select(Team).where(Team.name == name))).one()


async def test_typing_zaptec_finds_zaptec_with_the_users_own_charge_points(
    demo: list[ChargePoint], login_as: LoginAs
) -> None:
    client = await login_as("owner@demo.test")

    status, full, response = await page(client, "/compatibility")
    assert status == 200
    assert '<label for="compatibility-q">Search brand or model</label>' in full
    assert 'hx-get="/compatibility"' in full and ACTIVE_SEARCH in full and 'hx-target="#compatibility-results"' in full
    assert '<th scope="col">Brand</th>' in full and '<th scope="col">Your charge points</th>' in full
    assert len(rows(full)) == len(catalogue.SHIPPED_CATALOGUE)

    status, fragment, response = await page(client, "/compatibility?q=zaptec", htmx=True)
    assert status == 200 and "HX-Request" in response.headers["Vary"]
    assert fragment.strip().startswith('<div id="compatibility-results">') and "<html" not in fragment
    # The owner's teams are Copenhagen Fleet (a Zaptec Go) and Stockholm Offices (two Zaptec Pro).
    assert rows(fragment) == {("Zaptec", "Go"): 1, ("Zaptec", "Pro"): 2}
    assert "2 models match “zaptec”" in fragment

    _, fragment, _ = await page(client, "/compatibility?q=%20ZAPTEC%20%20pro", htmx=True)
    assert rows(fragment) == {("Zaptec", "Pro"): 2}
    _, fragment, _ = await page(client, "/compatibility?q=tesla", htmx=True)
    assert rows(fragment) == {} and "No model of this catalogue matches “tesla”." in fragment


async def test_each_entry_says_what_it_needs(demo: list[ChargePoint], login_as: LoginAs) -> None:
    client = await login_as("owner@demo.test")
    _, html, _ = await page(client, "/compatibility?q=zaptec")
    for label, value, explanation in catalogue.ENTRY_NEEDS:
        assert f'<th scope="col">{label}</th>' in html
        assert f"<dt>{label}</dt><dd><strong>{value}</strong>. {explanation}</dd>" in html
    assert "<td>Zaptec</td> <td>Pro</td> <td>1.6J or 2.0.1</td><td>Required</td><td>A or W</td>" in html


def test_the_ocpp_versions_shown_are_the_ones_the_hub_speaks() -> None:
    shown = dict((label, value) for label, value, _ in catalogue.ENTRY_NEEDS)["OCPP"]
    assert sorted(PROTOCOLS) == ["ocpp1.6", "ocpp2.0.1"] and shown == "1.6J or 2.0.1"


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        # A team owner counts the charge points of their two teams only; an operator admin every team's.
        ("owner@demo.test", {("Easee", "Home"): 2, ("Easee", "Charge"): 0, ("Alfen", "Eve Double Pro-line"): 0}),
        (
            "operator.admin@demo.test",
            {("Easee", "Home"): 2, ("Easee", "Charge"): 2, ("Alfen", "Eve Double Pro-line"): 2},
        ),
    ],
    ids=["team owner", "operator admin"],
)
async def test_counts_only_charge_points_of_teams_the_user_sees(
    demo: list[ChargePoint], login_as: LoginAs, email: str, expected: dict[tuple[str, str], int]
) -> None:
    client = await login_as(email)
    _, html, _ = await page(client, "/compatibility", htmx=True)
    listed = rows(html)
    assert {key: listed[key] for key in expected} == expected


async def test_what_a_charger_reported_counts_and_no_smart_charging_is_said(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    await factory.charge_point(team, brand="Easee", model="Home")
    # Registered as an Easee, but it booted reporting a Zaptec Go: the report counts (R2).
    await factory.charge_point(
        team,
        brand="Easee",
        model="Home",
        reported_vendor="ZAPTEC",
        reported_model=" go ",
        booted_at=datetime.now(UTC),
        smart_charging=False,
    )
    user = await factory.user(team=team, team_role="member")
    client = await login_as(user)

    _, html, _ = await page(client, "/compatibility?q=e", htmx=True)

    assert rows(html)[("Easee", "Home")] == 1
    assert rows(html)[("Zaptec", "Go")] == 1
    assert "1 reports no smart charging support: not compatible" in html
    assert "2 of your 2 charge points here are of a catalogued model." in html


async def test_several_operators_each_with_its_catalogue_and_one_picked_by_query(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    first = await factory.operator("Alpha Grid")
    second = await factory.operator("Beta Power")
    stranger = await factory.operator("Gamma Secret")
    await catalogue.add_model(session, SYSTEM, second.id or 0, "Beta", "Only Here")
    await catalogue.add_model(session, SYSTEM, stranger.id or 0, "Gamma", "Hidden")
    await session.commit()
    user = await factory.user(operator=first, operator_role="manager")
    beta_team = await factory.team(second)
    await factory.charge_point(beta_team, brand="beta", model="only  here")
    session.add(
        TeamMembership(
            team_id=beta_team.id or 0, user_id=user.id or 0, role="member", can_configure_charge_points=False
        )
    )
    await session.commit()
    client = await login_as(user)

    _, html, _ = await page(client, "/compatibility?q=only")
    assert f'<h2 id="catalogue-{first.id}">Alpha Grid</h2>' in html
    assert f'<h2 id="catalogue-{second.id}">Beta Power</h2>' in html
    assert "Gamma" not in html
    assert rows(html) == {("Beta", "Only Here"): 1}
    assert f'href="/compatibility?operator={second.id}&amp;q=only">Only Beta Power</a>' in html

    _, html, _ = await page(client, f"/compatibility?operator={first.id}", htmx=True)
    assert "Alpha Grid" in html and "Beta Power" not in html
    assert "Show the catalogues of all your operators" in html

    for foreign in (str(stranger.id), "99999", "abc", "-1", "1" * 20):
        status, html, _ = await page(client, f"/compatibility?operator={foreign}")
        assert status == 404 and "Hidden" not in html


async def test_a_user_without_an_operator_is_told_so(factory: Factory, login_as: LoginAs) -> None:
    client = await login_as(await factory.user())
    status, html, _ = await page(client, "/compatibility")
    assert status == 200 and "You belong to no operator yet" in html and rows(html) == {}


async def test_signed_out_visitors_are_sent_to_log_in(client: QuartClient) -> None:
    response = await client.get("/compatibility?q=zaptec")
    assert response.status_code in (302, 303) and "/login" in response.headers["Location"]


async def test_the_page_runs_the_same_number_of_queries_for_a_small_and_a_large_fleet(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    counts = []
    for size in (2, 60):
        operator = await factory.operator()
        teams = [await factory.team(operator) for _ in range(3)]
        for n in range(size):
            session.add(
                CompatibleModel(
                    operator_id=operator.id or 0,
                    brand=f"Brand{size}",
                    model=f"M{n}",
                    brand_key=f"brand{size}",
                    model_key=f"m{n}",
                )
            )
            await factory.charge_point(teams[n % 3], brand=f"Brand{size}", model=f"M{n}")
        await session.commit()
        client = await login_as(await factory.user(operator=operator, operator_role="admin"))

        async def load(client: QuartClient = client, size: int = size) -> None:
            _, html, _ = await page(client, f"/compatibility?q=brand{size}", htmx=True)
            assert len(rows(html)) == size and set(rows(html).values()) == {1}

        counts.append(await count_queries(app, load))
    assert counts[0] == counts[1]


async def test_sign_up_flow_charge_points_tab_and_functionalities_link_to_it(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    team = await team_named(session, "Stockholm Offices")
    generic = (await session.exec(select(ChargePoint).where(ChargePoint.identity == "STO-006"))).one()
    client = await login_as("owner@demo.test")
    base = f"/compatibility?operator={team.operator_id}"

    _, sign_up, _ = await page(client, f"/teams/{team.id}/powerbank/sign-up")
    assert f'<a href="{base}">Which models are compatible?</a>' in sign_up
    # The "why not compatible" text of the Generic charger is followed by the link, searching its brand.
    assert (
        f'<span class="reason" id="why-{generic.id}">Not compatible: Generic Basic 7 is not in the compatibility '
        f'catalogue</span> <a class="reason" href="{base}&amp;q=Generic">See which models are compatible</a>'
    ) in sign_up

    _, tab, _ = await page(client, f"/teams/{team.id}/charge-points")
    assert f'<a href="{base}">Compatible models</a>' in tab

    _, detail, _ = await page(client, f"/charge-points/{generic.id}")
    assert f'<span class="reason" id="powerbank-why"><a href="{base}&amp;q=Generic">Not compatible</a></span>' in detail
    _, linked, _ = await page(client, f"{base}&q=Generic")
    assert "No model of this catalogue matches “Generic”." in linked
