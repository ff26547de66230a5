"""Each demo user logs in and sees what their role may, and nothing of another operator."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in, open_actions_menu, open_team

NORDIC_TEAMS = ["Copenhagen Fleet", "Stockholm Offices", "London Depot", "Dublin Hub", "Berlin Garage"]
OPERATOR_ADMIN_ONLY_LINKS = ["Manage teams", "Members", "Audit log", "Connection attempts", "API tokens"]
OPERATOR_LINKS = ["Compatibility catalogue", "Activations"]
OPERATOR_ADMIN_LINKS = [*OPERATOR_ADMIN_ONLY_LINKS, *OPERATOR_LINKS]


@pytest.mark.parametrize(
    ("email", "teams_seen", "teams_not_seen", "links_seen", "links_not_seen"),
    [
        ("operator.admin@demo.test", NORDIC_TEAMS, ["Oslo Yard"], OPERATOR_ADMIN_LINKS, []),
        ("operator.manager@demo.test", NORDIC_TEAMS, ["Oslo Yard"], OPERATOR_LINKS, OPERATOR_ADMIN_ONLY_LINKS),
        (
            "owner@demo.test",
            ["Copenhagen Fleet", "Stockholm Offices"],
            ["London Depot", "Oslo Yard"],
            [],
            OPERATOR_ADMIN_LINKS,
        ),
        ("admin@demo.test", NORDIC_TEAMS, ["Oslo Yard"], [], OPERATOR_ADMIN_LINKS),
        (
            "readonly.admin@demo.test",
            ["Copenhagen Fleet", "Stockholm Offices"],
            ["London Depot", "Oslo Yard"],
            [],
            OPERATOR_ADMIN_LINKS,
        ),
        (
            "member@demo.test",
            ["Copenhagen Fleet", "Stockholm Offices"],
            ["London Depot", "Oslo Yard"],
            [],
            OPERATOR_ADMIN_LINKS,
        ),
        ("fjord.admin@demo.test", ["Oslo Yard"], NORDIC_TEAMS, OPERATOR_ADMIN_LINKS, []),
    ],
)
def test_each_demo_user_sees_their_teams_and_links(
    page: Page,
    email: str,
    teams_seen: list[str],
    teams_not_seen: list[str],
    links_seen: list[str],
    links_not_seen: list[str],
) -> None:
    log_in(page, email)
    main = page.get_by_role("main")
    for team in teams_seen:
        expect(main.get_by_role("link", name=team, exact=True)).to_be_visible()
    for team in teams_not_seen:
        expect(main.get_by_text(team, exact=True)).to_have_count(0)
    for link in links_seen:
        expect(main.get_by_role("link", name=link, exact=True)).to_be_visible()
    for link in links_not_seen:
        expect(main.get_by_role("link", name=link, exact=True)).to_have_count(0)
    expect(page.get_by_role("banner").get_by_text(email)).to_be_visible()


def test_wrong_password_is_refused_and_says_so(page: Page) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Log in to PowerBank")).to_be_visible()
    page.get_by_label("Email").fill("member@demo.test")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    expect(page.get_by_label("Email")).to_have_value("member@demo.test")


def test_log_out_ends_the_session(page: Page) -> None:
    log_in(page, "member@demo.test")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to PowerBank")).to_be_visible()
    page.goto("/")
    expect(page.get_by_role("heading", name="Log in to PowerBank")).to_be_visible()


def test_operator_admin_manages_teams_and_members(page: Page) -> None:
    log_in(page, "operator.admin@demo.test")
    page.get_by_role("link", name="Manage teams").click()
    expect(page.get_by_role("heading", name="Teams of Nordic Charge", level=1)).to_be_visible()
    for team in NORDIC_TEAMS:
        expect(page.get_by_role("textbox", name=f"New name for {team}")).to_have_value(team)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Teams").click()
    page.get_by_role("link", name="Members", exact=True).click()
    expect(page.get_by_role("heading", name="Members of Nordic Charge", level=1)).to_be_visible()
    expect(page.get_by_role("cell", name="readonly.admin@demo.test").first).to_be_visible()
    expect(page.get_by_role("combobox", name="Role of member@demo.test").first).to_be_visible()
    expect(page.get_by_role("cell", name="fjord.admin@demo.test")).to_have_count(0)


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("readonly.admin@demo.test", "Your role in this team does not include the right to configure charge points."),
        ("member@demo.test", "Team Members cannot configure charge points."),
    ],
)
def test_users_without_the_right_see_actions_disabled_with_the_reason(page: Page, email: str, reason: str) -> None:
    log_in(page, email)
    open_team(page, "Copenhagen Fleet")
    menu = open_actions_menu(page)
    expect(menu.get_by_role("link", name="Add charge point")).to_have_count(0)
    expect(menu.get_by_text("Add charge point")).to_have_attribute("aria-disabled", "true")
    expect(menu.get_by_text(reason).first).to_be_visible()


def test_owner_may_add_a_charge_point(page: Page) -> None:
    log_in(page, "owner@demo.test")
    open_team(page, "Copenhagen Fleet")
    open_actions_menu(page).get_by_role("link", name="Add charge point").click()
    expect(page.get_by_role("heading", name="Add charge point", level=1)).to_be_visible()


def test_another_operators_team_answers_not_found(page: Page, new_page: Callable[[], Page]) -> None:
    nordic = new_page()
    log_in(nordic, "operator.admin@demo.test")
    team_url = nordic.get_by_role("link", name="Copenhagen Fleet", exact=True).get_attribute("href")
    members_url = nordic.get_by_role("link", name="Members", exact=True).get_attribute("href")
    open_team(nordic, "Copenhagen Fleet")
    charge_point_url = nordic.get_by_role("link", name="Nørrebro 1", exact=True).get_attribute("href")
    assert team_url and members_url and charge_point_url

    log_in(page, "fjord.admin@demo.test")
    for url in (team_url, members_url, charge_point_url):
        response = page.goto(url)
        assert response is not None and response.status == 404, url
        expect(page.get_by_role("heading", name="Not found", level=1)).to_be_visible()
        expect(page.get_by_text("Copenhagen Fleet")).to_have_count(0)
        expect(page.get_by_text("Nordic Charge")).to_have_count(0)
