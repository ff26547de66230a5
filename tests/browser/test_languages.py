"""The bulk sign-up in Danish and in Swedish, chosen with the header's language picker.

Each test adds a charge point of its own (in English, before switching), so it does not depend on
what other tests signed up on the shared server.
"""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import Browser, Locator, Page, expect

from powerbank.rules.gsrn import make_facility_id
from tests.browser.conftest import (
    EXPECT_TIMEOUT_MS,
    Server,
    assert_accessible,
    loaded,
    log_in,
    open_team,
    screenshot,
)


def add_charge_point(page: Page, team: str, *, brand: str, model: str, country: str, area: str) -> str:
    """Add a charge point to a team through its Actions menu (in English); return its name."""
    suffix = uuid.uuid4().hex[:6].upper()
    name = f"Sprog {suffix}"
    open_team(page, team)
    page.get_by_text("Actions", exact=True).click()
    page.get_by_role("link", name="Add charge point").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("OCPP identity").fill(f"LANG-{suffix}")
    page.get_by_label("Brand").fill(brand)
    page.get_by_label("Model", exact=True).fill(model)
    page.get_by_label("Country").select_option(country)
    page.get_by_label("Price area").select_option(area)
    page.get_by_role("button", name="Add charge point").click()
    expect(page.get_by_role("heading", name="Charge point added")).to_be_visible()
    return name


def choose_language(page: Page, language: str, button: str) -> None:
    """Pick a language in the header and wait for the page to come back in it."""
    page.get_by_label(re.compile("^(Language|Sprog|Språk)$")).select_option(label=language)
    page.get_by_role("button", name=button, exact=True).click()
    expect(page.locator("html")).to_have_attribute("lang", {"Dansk": "da", "Svenska": "sv", "English": "en"}[language])
    loaded(page)


def back_to_english(page: Page) -> None:
    """Set the person's language back to English (it is stored with them, and other tests log them in)."""
    page.goto("/")
    page.locator("form.language-picker select").select_option("en")
    page.locator("form.language-picker button").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")


def row_of(page: Page, name: str) -> Locator:
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))


def open_sign_up(page: Page, team: str, actions: str, sign_up: str, teams: str) -> None:
    page.get_by_role("link", name=teams, exact=True).first.click()
    page.get_by_role("link", name=team, exact=True).click()
    expect(page.get_by_role("heading", name=team, level=1)).to_be_visible()
    loaded(page)
    page.get_by_text(actions, exact=True).click()
    page.get_by_role("link", name=sign_up).click()
    expect(page.get_by_role("heading", name=sign_up)).to_be_visible()
    loaded(page)


def test_bulk_sign_up_in_danish(page: Page) -> None:
    log_in(page, "admin@demo.test")
    name = add_charge_point(
        page, "Copenhagen Fleet", brand="Alfen", model="Eve Single Pro-line", country="DK", area="DK1"
    )
    choose_language(page, "Dansk", "Change")
    try:
        sign_up_in_danish(page, name)
    finally:
        back_to_english(page)


def sign_up_in_danish(page: Page, name: str) -> None:
    # The header and the page are Danish; the choice stays for the next pages.
    expect(page.get_by_role("button", name="Log ud")).to_be_visible()
    open_sign_up(page, "Copenhagen Fleet", "Handlinger", "Tilmeld til PowerBank", "Teams")

    expect(page.get_by_role("heading", name="Vilkår og betingelser")).to_be_visible()
    sign_up_all = page.get_by_role("button", name="Tilmeld alle ladestandere")
    expect(sign_up_all).to_be_disabled()
    expect(row_of(page, "Valby Legacy")).to_contain_text("Ikke kompatibel")
    page.get_by_role("checkbox", name=re.compile("Jeg accepterer vilkår og betingelser")).check()
    sign_up_all.click()

    expect(page.get_by_role("status")).to_contain_text(re.compile(r"\d+ ladestandere? tilmeldt"))
    expect(page.get_by_role("checkbox", name=f"Tilmeld {name}")).to_be_checked()
    expect(row_of(page, name)).to_contain_text("Tilmeldt")
    assert_accessible(page, "the sign-up flow in Danish")
    screenshot(page, "sign-up-danish")

    page.get_by_role("link", name="Tilbage til ladestandere").click()
    expect(row_of(page, name).get_by_role("cell").last).to_have_text("Tilmeldt")
    expect(row_of(page, "Nørrebro 1")).to_contain_text("Danmark")


def test_bulk_sign_up_in_swedish_needs_the_anlaggnings_id(page: Page) -> None:
    log_in(page, "admin@demo.test")
    name = add_charge_point(page, "Stockholm Offices", brand="Zaptec", model="Pro", country="SE", area="SE3")
    choose_language(page, "Svenska", "Change")
    try:
        sign_up_in_swedish(page, name)
    finally:
        back_to_english(page)


def sign_up_in_swedish(page: Page, name: str) -> None:
    open_sign_up(page, "Stockholm Offices", "Åtgärder", "Anmäl till PowerBank", "Team")

    page.get_by_role("checkbox", name=re.compile("Jag godkänner villkoren")).check()
    page.get_by_role("button", name="Anmäl alla laddpunkter").click()
    # Blocked: nothing saved; the new charge point's row says, in Swedish, what it lacks.
    expect(page.get_by_role("alert")).to_contain_text(
        re.compile(r"Inget sparades: \d+ laddpunkt(er)? kan inte anmälas än")
    )
    facility_id = page.get_by_role("textbox", name=f"Anläggnings-ID för {name}")
    expect(facility_id).to_have_accessible_description("Anläggnings-ID krävs för laddpunkter i Sverige.")
    assert_accessible(page, "the blocked sign-up flow in Swedish")
    screenshot(page, "sign-up-swedish-blocked")

    facility_id.fill("12345")
    expect(facility_id).to_have_accessible_description("Anläggnings-ID måste vara 18 siffror; detta har 5.")
    valid = make_facility_id(str(uuid.uuid4().int)[:11])
    facility_id.fill(valid)
    expect(facility_id).to_have_accessible_description("Giltigt anläggnings-ID")
    page.get_by_role("checkbox", name=re.compile("Jag godkänner villkoren")).check()
    page.get_by_role("checkbox", name=f"Anmäl {name}").check()
    page.get_by_role("button", name="Spara").click()

    expect(page.get_by_role("status")).to_contain_text(re.compile(r"\d+ laddpunkte?r? anmäld"))
    expect(row_of(page, name)).to_contain_text("Anmäld")
    page.get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", name="Laddpunktens funktioner")).to_be_visible()
    expect(page.get_by_role("switch", name="PowerBank")).to_have_attribute("aria-checked", "true")
    expect(page.get_by_role("definition").filter(has_text=valid)).to_be_visible()


def test_the_browser_language_and_the_picker_before_logging_in(browser: Browser, server: Server) -> None:
    context = browser.new_context(base_url=server.base_url, locale="sv-SE", timezone_id="Europe/Stockholm")
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto("/login")
        expect(page.get_by_role("heading", name="Logga in på PowerBank")).to_be_visible()
        loaded(page)
        choose_language(page, "English", "Byt")
        expect(page.get_by_role("heading", name="Log in to PowerBank")).to_be_visible()
        # The cookie keeps the choice over the browser's language.
        page.reload()
        expect(page.get_by_role("heading", name="Log in to PowerBank")).to_be_visible()
    finally:
        context.close()
