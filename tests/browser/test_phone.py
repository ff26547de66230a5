"""PowerBank on a phone (390 × 844, touch): the pages fit, the header keeps "Log out", the Charge points
tab shows each charge point's name and PowerBank state, and the controls are big enough to tap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.browser.conftest import (
    AXE_SCRIPT,
    AXE_URL_PATH,
    EXPECT_TIMEOUT_MS,
    Server,
    assert_accessible,
    loaded,
    log_in,
    open_charge_point,
    open_team,
    screenshot,
)
from tests.browser.test_languages import back_to_english

PHONE = {"width": 390, "height": 844}
# The smallest touch target WCAG 2.5.5 asks for, in CSS pixels.
TOUCH_TARGET_PX = 44


@pytest.fixture
def phone(browser: Browser, server: Server) -> Iterator[Page]:
    """A page in a phone-sized, touch browser profile of its own."""
    context: BrowserContext = browser.new_context(
        base_url=server.base_url,
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="en-GB",
        timezone_id="UTC",
    )
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    context.route(
        f"**{AXE_URL_PATH}",
        lambda route: route.fulfill(
            status=200, content_type="text/javascript", body=AXE_SCRIPT.read_text(encoding="utf-8")
        ),
    )
    yield context.new_page()
    context.close()


def assert_fits(page: Page, what: str) -> None:
    """The page does not scroll sideways: nothing is wider than the screen."""
    widths = page.evaluate(
        "() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth,"
        " widest: [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right >"
        " window.innerWidth + 0.5 && getComputedStyle(e).position !== 'absolute').slice(0, 5)"
        ".map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))})"
    )
    assert widths["scroll"] <= widths["inner"], f"{what} overflows sideways on a phone: {widths}"


def assert_on_screen(locator: Locator, what: str) -> None:
    """The element is visible and lies within the screen's width."""
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None, what
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, f"{what} is off screen: {box}"


def assert_tappable(locator: Locator, what: str) -> None:
    """The element is at least 44 × 44 CSS pixels."""
    box = locator.bounding_box()
    assert box is not None, what
    assert box["width"] >= TOUCH_TARGET_PX - 0.5 and box["height"] >= TOUCH_TARGET_PX - 0.5, (
        f"{what} is {box['width']:.0f} × {box['height']:.0f} px, less than {TOUCH_TARGET_PX} px"
    )


def test_the_charge_points_tab_on_a_phone(phone: Page) -> None:
    log_in(phone, "admin@demo.test")
    assert_fits(phone, "the teams page")
    assert_on_screen(phone.get_by_role("button", name="Log out"), "Log out")
    open_team(phone, "Copenhagen Fleet")
    assert_fits(phone, "the Charge points tab")
    assert_on_screen(phone.get_by_role("button", name="Log out"), "Log out")

    # Each charge point shows its name and PowerBank state on screen, without scrolling sideways.
    for name in ("Nørrebro 1", "Valby Legacy", "Aarhus Hub"):
        row = phone.get_by_role("row").filter(has=phone.get_by_role("link", name=name, exact=True))
        assert_on_screen(row.get_by_role("link", name=name, exact=True), f"the name of {name}")
        state = row.locator(".card-powerbank .status")
        expect(state).to_have_text(re.compile("Signed up|Not signed up|Opted out|Suspended"))
        assert_on_screen(state, f"the PowerBank state of {name}")

    actions = phone.get_by_text("Actions", exact=True)
    assert_tappable(actions, "the Actions menu")
    actions.tap()
    sign_up = phone.get_by_role("link", name="Sign up for PowerBank")
    assert_on_screen(sign_up, "Sign up for PowerBank in the Actions menu")
    assert_tappable(sign_up, "Sign up for PowerBank in the Actions menu")
    assert_fits(phone, "the Charge points tab with its Actions menu open")
    assert_accessible(phone, "the Charge points tab on a phone")
    screenshot(phone, "phone-charge-points")


def test_the_bulk_sign_up_in_swedish_on_a_phone(phone: Page) -> None:
    log_in(phone, "admin@demo.test")
    phone.get_by_label("Language").select_option(label="Svenska")
    phone.get_by_role("button", name="Change", exact=True).tap()
    expect(phone.locator("html")).to_have_attribute("lang", "sv")
    loaded(phone)
    try:
        sign_up_in_swedish_on_a_phone(phone)
    finally:
        back_to_english(phone)


def sign_up_in_swedish_on_a_phone(phone: Page) -> None:
    phone.get_by_role("link", name="Stockholm Offices", exact=True).tap()
    expect(phone.get_by_role("heading", name="Stockholm Offices", level=1)).to_be_visible()
    loaded(phone)
    assert_on_screen(phone.get_by_role("button", name="Logga ut"), "Logga ut")
    phone.get_by_text("Åtgärder", exact=True).tap()
    phone.get_by_role("link", name="Anmäl till PowerBank").tap()
    expect(phone.get_by_role("heading", name="Anmäl till PowerBank")).to_be_visible()
    loaded(phone)
    assert_fits(phone, "the sign-up flow")

    terms = phone.get_by_role("checkbox", name=re.compile("Jag godkänner villkoren"))
    assert_tappable(terms, "the terms check mark")
    for name in ("Kista A", "Solna 1", "Gamla Stan"):
        check_mark = phone.get_by_role("checkbox", name=f"Anmäl {name}")
        assert_on_screen(check_mark, f"the Sign up check mark of {name}")
        assert_tappable(check_mark, f"the Sign up check mark of {name}")
    assert_on_screen(phone.get_by_role("textbox", name="Anläggnings-ID för Solna 1"), "the Facility ID of Solna 1")

    terms.tap()
    expect(terms).to_be_checked()
    sign_up_all = phone.get_by_role("button", name="Anmäl alla laddpunkter")
    assert_tappable(sign_up_all, "Sign up all charge points")
    sign_up_all.tap()
    # Saved, or refused for the rows without a valid anläggnings-ID (other tests may have filled them in).
    expect(phone.get_by_role("alert").or_(phone.get_by_role("status")).first).to_contain_text(
        re.compile("Inget sparades|anmäld")
    )
    assert_fits(phone, "the sign-up flow after Sign up all")
    assert_accessible(phone, "the sign-up flow in Swedish on a phone")
    screenshot(phone, "phone-sign-up-swedish")


def test_the_charge_point_page_and_its_toggle_on_a_phone(phone: Page) -> None:
    log_in(phone, "admin@demo.test")
    open_charge_point(phone, "Dublin Hub", "Docklands 1")
    assert_fits(phone, "the charge point page")
    assert_on_screen(phone.get_by_role("button", name="Log out"), "Log out")
    switch = phone.get_by_role("switch", name="PowerBank")
    assert_on_screen(switch, "the PowerBank toggle")
    assert_tappable(switch, "the PowerBank toggle")
    was_on = switch.get_attribute("aria-checked") == "true"

    for turn_on in (not was_on, was_on):
        phone.get_by_role("switch", name="PowerBank").tap()
        confirm = phone.locator("form.confirm")
        expect(confirm).to_be_visible()
        assert_fits(phone, "the charge point page asking to confirm")
        terms = confirm.get_by_role("checkbox", name=re.compile("I accept the terms"))
        if turn_on and terms.count():
            assert_tappable(terms, "the terms check mark")
            terms.tap()
        yes = confirm.get_by_role("button", name="Yes")
        assert_tappable(yes, "Yes")
        yes.tap()
        expect(phone.get_by_role("switch", name="PowerBank")).to_have_attribute(
            "aria-checked", "true" if turn_on else "false"
        )
    assert_fits(phone, "the charge point page")
    assert_accessible(phone, "the charge point page on a phone")
    screenshot(phone, "phone-charge-point")


def test_every_page_fits_a_phone(phone: Page) -> None:
    log_in(phone, "operator.admin@demo.test")
    links = {
        "the teams page": None,
        "Activations": "Activations",
        "Members": "Members",
        "Audit log": "Audit log",
        "Connection attempts": "Connection attempts",
        "Nodes": "Nodes",
        "API tokens": "API tokens",
        "Compatibility catalogue": "Compatibility catalogue",
        "Manage teams": "Manage teams",
    }
    for what, link in links.items():
        phone.goto("/")
        loaded(phone)
        if link is not None:
            phone.get_by_role("navigation", name="Nordic Charge administration").get_by_role(
                "link", name=link, exact=True
            ).click()
            loaded(phone)
        assert_fits(phone, what)
        assert_on_screen(phone.get_by_role("button", name="Log out"), f"Log out on {what}")
    open_team(phone, "Stockholm Offices")
    phone.get_by_role("navigation", name="Team").get_by_role("link", name="PowerBank").click()
    loaded(phone)
    assert_fits(phone, "a team's PowerBank tab")
    for path, heading in (("/account", "Your account"), ("/api/docs", re.compile("PowerBank"))):
        phone.goto(path)
        expect(phone.get_by_role("heading", name=heading, level=1)).to_be_visible()
        loaded(phone)
        assert_fits(phone, path)
