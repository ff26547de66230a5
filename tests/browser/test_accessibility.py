"""axe-core on the main pages, reached as a user reaches them: no serious or critical violations.

Each page is also saved as a screenshot (test-results/screenshots/ by default).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    assert_accessible,
    log_in,
    open_actions_menu,
    open_charge_point,
    open_powerbank_tab,
    open_sign_up_flow,
    open_team,
    screenshot,
)


def _login(page: Page) -> None:
    page.goto("/login")
    expect(page.get_by_role("heading", name="Log in to PowerBank")).to_be_visible()


def _login_error(page: Page) -> None:
    _login(page)
    page.get_by_label("Email").fill("nobody@demo.test")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_be_visible()


def _home(page: Page) -> None:
    log_in(page, "operator.admin@demo.test")


def _team_charge_points(page: Page) -> None:
    log_in(page, "admin@demo.test")
    open_team(page, "Copenhagen Fleet")
    open_actions_menu(page)


def _team_charge_points_read_only(page: Page) -> None:
    log_in(page, "member@demo.test")
    open_team(page, "Stockholm Offices")
    open_actions_menu(page)


def _charge_point(page: Page) -> None:
    log_in(page, "admin@demo.test")
    open_charge_point(page, "Copenhagen Fleet", "Nørrebro 1")
    expect(page.get_by_role("switch", name="PowerBank")).to_be_visible()


def _charge_point_read_only(page: Page) -> None:
    log_in(page, "readonly.admin@demo.test")
    open_charge_point(page, "Copenhagen Fleet", "Nørrebro 1")
    expect(page.get_by_role("switch", name="PowerBank")).to_be_disabled()


def _bulk_sign_up(page: Page) -> None:
    log_in(page, "admin@demo.test")
    open_sign_up_flow(page, "Stockholm Offices")
    page.get_by_role("checkbox", name=re.compile("I accept the terms and conditions")).check()
    expect(page.get_by_role("button", name="Sign up all charge points")).to_be_enabled()


def _powerbank_history(page: Page) -> None:
    log_in(page, "admin@demo.test")
    open_team(page, "Copenhagen Fleet")
    open_powerbank_tab(page)


def _operator_page(link: str, heading: str) -> Callable[[Page], None]:
    def _open(page: Page) -> None:
        log_in(page, "operator.admin@demo.test")
        page.get_by_role("main").get_by_role("link", name=link, exact=True).click()
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()

    return _open


def _account(page: Page) -> None:
    log_in(page, "member@demo.test")
    page.get_by_role("link", name="member@demo.test").click()
    expect(page.get_by_role("heading", name="Your account", level=1)).to_be_visible()


def _mailbox(page: Page) -> None:
    page.goto("/dev/mail")
    expect(page.get_by_role("heading", name="Development mailbox", level=1)).to_be_visible()


def _not_found(page: Page) -> None:
    log_in(page, "member@demo.test")
    page.goto("/teams/999999/charge-points")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()


PAGES: dict[str, Callable[[Page], None]] = {
    "login": _login,
    "login-error": _login_error,
    "home": _home,
    "team-charge-points-actions": _team_charge_points,
    "team-charge-points-read-only": _team_charge_points_read_only,
    "charge-point": _charge_point,
    "charge-point-read-only": _charge_point_read_only,
    "sign-up-flow": _bulk_sign_up,
    "team-powerbank-history": _powerbank_history,
    "admin-teams": _operator_page("Manage teams", "Teams of Nordic Charge"),
    "admin-members": _operator_page("Members", "Members of Nordic Charge"),
    "admin-audit-log": _operator_page("Audit log", "Audit log"),
    "admin-catalogue": _operator_page("Compatibility catalogue", "Compatibility catalogue"),
    "admin-connection-attempts": _operator_page("Connection attempts", "Connection attempts"),
    "admin-api-tokens": _operator_page("API tokens", "API tokens of Nordic Charge"),
    "activations": _operator_page("Activations", "Activations"),
    "admin-nodes": _operator_page("Nodes", "Nodes"),
    "account": _account,
    "dev-mailbox": _mailbox,
    "not-found": _not_found,
}


@pytest.mark.parametrize("name", list(PAGES))
def test_page_has_no_serious_accessibility_violations(page: Page, name: str) -> None:
    PAGES[name](page)
    assert_accessible(page, name)
    # Charge point pages end with the charger's OCPP log, as long as the charger has talked.
    screenshot(page, name, full_page=not name.startswith("charge-point"))
