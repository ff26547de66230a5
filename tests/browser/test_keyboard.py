"""The bulk sign-up done with the keyboard alone: Tab to move, Space to tick, Enter to press."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import loaded, log_in

MAX_TABS = 60
TERMS = re.compile("I accept the terms and conditions")


def tab_to(page: Page, target: Locator) -> None:
    """Press Tab until ``target`` has the focus, as a keyboard user does; fail if it never gets it."""
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        if target.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"{target} never got the focus within {MAX_TABS} presses of Tab")


def test_bulk_sign_up_with_the_keyboard_alone(page: Page) -> None:
    page.goto("/login")
    tab_to(page, page.get_by_label("Email"))
    page.keyboard.type("operator.manager@demo.test")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type("powerbank-demo")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Your teams")).to_be_visible()
    loaded(page)

    tab_to(page, page.get_by_role("link", name="London Depot", exact=True))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="London Depot", level=1)).to_be_visible()
    loaded(page)

    tab_to(page, page.get_by_text("Actions", exact=True))
    page.keyboard.press("Enter")
    sign_up_link = page.get_by_role("link", name="Sign up for PowerBank")
    expect(sign_up_link).to_be_visible()
    tab_to(page, sign_up_link)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Sign up for PowerBank")).to_be_visible()
    loaded(page)

    # Tick the terms and one charge point with Space, then Save with Enter.
    terms = page.get_by_role("checkbox", name=TERMS)
    tab_to(page, terms)
    page.keyboard.press("Space")
    expect(terms).to_be_checked()
    expect(page.get_by_role("button", name="Save")).to_be_enabled()
    tab_to(page, page.get_by_role("checkbox", name="Sign up Bay 1"))
    page.keyboard.press("Space")
    expect(page.get_by_role("checkbox", name="Sign up Bay 1")).to_be_checked()
    tab_to(page, page.get_by_role("button", name="Save"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("1 charge point signed up.")

    # Then the rest with Sign up all charge points; the fresh form asks for the terms again.
    expect(terms).not_to_be_checked()
    tab_to(page, terms)
    page.keyboard.press("Space")
    tab_to(page, page.get_by_role("button", name="Sign up all charge points"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("3 charge points signed up")
    for name in ("Bay 1", "Bay 2", "Bay 3", "Bay 4"):
        expect(page.get_by_role("checkbox", name=f"Sign up {name}")).to_be_checked()
        expect(page.get_by_role("checkbox", name=f"Sign up {name}")).to_be_disabled()


def test_escape_closes_the_actions_menu_and_returns_the_focus(page: Page) -> None:
    log_in(page, "member@demo.test")
    tab_to(page, page.get_by_role("link", name="Copenhagen Fleet", exact=True))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Copenhagen Fleet", level=1)).to_be_visible()
    loaded(page)
    actions = page.get_by_text("Actions", exact=True)
    tab_to(page, actions)
    page.keyboard.press("Enter")
    expect(page.get_by_text("Sign up for PowerBank")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_text("Sign up for PowerBank")).to_be_hidden()
    expect(actions).to_be_focused()


def test_skip_link_is_the_first_stop_and_moves_to_the_content(page: Page) -> None:
    page.goto("/login")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile("#main$"))
