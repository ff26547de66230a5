"""The product page's PowerBank flows, done in a browser as a person does them.

The tests share one server; each works on its own team or charge point, so their order does not matter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from powerbank.rules.gsrn import make_facility_id
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

TERMS = re.compile("I accept the terms and conditions")


def charge_point_row(page: Page, name: str) -> Locator:
    """Return the table row of a charge point, found by its name link."""
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))


def test_copenhagen_bulk_sign_up_signs_up_the_dk1_charge_point(page: Page) -> None:
    log_in(page, "admin@demo.test")
    open_team(page, "Copenhagen Fleet")
    expect(charge_point_row(page, "Nørrebro 1")).to_contain_text("Signed up automatically (DK2)")
    expect(charge_point_row(page, "Valby Legacy")).to_contain_text("Not compatible")
    expect(charge_point_row(page, "Aarhus Hub")).to_contain_text("Not signed up")
    screenshot(page, "team-charge-points")

    open_actions_menu(page).get_by_role("link", name="Sign up for PowerBank").click()
    expect(page.get_by_role("heading", name="Sign up for PowerBank")).to_be_visible()
    expect(page.get_by_role("document", name=re.compile("Terms and conditions"))).to_be_visible()
    sign_up_all = page.get_by_role("button", name="Sign up all charge points")
    # Until the terms are accepted nothing can be saved.
    expect(sign_up_all).to_be_disabled()
    expect(page.get_by_role("button", name="Save")).to_be_disabled()
    expect(page.get_by_role("checkbox", name="Sign up Valby Legacy")).to_be_disabled()
    expect(page.get_by_role("checkbox", name="Sign up Nørrebro 1")).to_be_checked()

    page.get_by_role("checkbox", name=TERMS).check()
    expect(sign_up_all).to_be_enabled()
    sign_up_all.click()

    expect(page.get_by_role("status")).to_contain_text("1 charge point signed up")
    expect(charge_point_row(page, "Aarhus Hub")).to_contain_text("Signed up")
    expect(page.get_by_role("checkbox", name="Sign up Aarhus Hub")).to_be_checked()
    expect(page.get_by_role("checkbox", name="Sign up Valby Legacy")).not_to_be_checked()

    page.get_by_role("link", name="Back to charge points").click()
    expect(charge_point_row(page, "Aarhus Hub").get_by_role("cell").last).to_have_text("Signed up")
    expect(charge_point_row(page, "Valby Legacy")).to_contain_text("Not signed up")

    open_powerbank_tab(page)
    history_row = charge_point_row(page, "Aarhus Hub").first
    expect(history_row).to_contain_text("Signed up")
    expect(history_row).to_contain_text("admin@demo.test")
    expect(history_row).to_contain_text("bulk")


def type_the_moment_it_is_replaced(field: Locator, text: str) -> None:
    """Type into a field in the very moment a swap puts its new copy on the page, as a fast typist might.

    A mutation observer runs before the browser does anything else, so this types before any delayed step
    of the swap (such as htmx's settle) has wired up the new field's triggers.
    """
    field.evaluate(
        """(old, text) => {
            const observer = new MutationObserver(() => {
                const field = document.getElementById(old.id);
                if (!field || field === old) return;
                observer.disconnect();
                field.value = text;
                field.dispatchEvent(new Event("input", {bubbles: true}));
            });
            observer.observe(document.body, {childList: true, subtree: true});
        }""",
        text,
    )


def test_stockholm_needs_valid_facility_ids_before_sign_up(page: Page) -> None:
    log_in(page, "admin@demo.test")
    open_sign_up_flow(page, "Stockholm Offices")
    page.get_by_role("checkbox", name=TERMS).check()
    solna_1 = page.get_by_role("textbox", name="Facility ID for Solna 1")
    type_the_moment_it_is_replaced(solna_1, "12345")
    page.get_by_role("button", name="Sign up all charge points").click()

    # Blocked: nothing saved, and the rows that block it say why.
    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved: 3 charge points cannot be signed up yet")
    for name in ("Solna 2", "Södermalm"):
        facility_id = page.get_by_role("textbox", name=f"Facility ID for {name}")
        expect(facility_id).to_have_accessible_description("Facility ID is required for charge points in Sweden.")
    expect(charge_point_row(page, "Kista A")).to_contain_text("Not signed up")

    # A wrong Facility ID says what is wrong while typing, even when typed the moment the form came back.
    expect(solna_1).to_have_value("12345")
    expect(solna_1).to_have_accessible_description("Facility ID must be 18 digits; this has 5.")
    assert_accessible(page, "the sign-up flow with blocking rows")
    screenshot(page, "sign-up-stockholm-blocked")
    valid_solna_1 = make_facility_id("10000000003")
    wrong_check_digit = valid_solna_1[:-1] + str((int(valid_solna_1[-1]) + 1) % 10)
    solna_1.fill(wrong_check_digit)
    expect(solna_1).to_have_accessible_description(
        f"Facility ID check digit is wrong: the last digit should be {valid_solna_1[-1]}."
    )

    # Ticked with a wrong Facility ID, Save is refused and nothing is saved.
    page.get_by_role("checkbox", name=TERMS).check()
    page.get_by_role("checkbox", name="Sign up Solna 1").check()
    page.get_by_role("button", name="Save").click()
    # Not the message of the first attempt (3 charge points): wait for this answer.
    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved: 1 charge point cannot be signed up yet")
    expect(page.get_by_role("textbox", name="Facility ID for Solna 1")).to_have_accessible_description(
        re.compile("check digit is wrong")
    )
    expect(charge_point_row(page, "Solna 1")).to_contain_text("Not signed up")

    # Valid Facility IDs, every compatible row ticked, Save: signed up.
    facility_ids = {
        "Solna 1": valid_solna_1,
        "Solna 2": make_facility_id("10000000004"),
        "Södermalm": make_facility_id("10000000005"),
    }
    for name, value in facility_ids.items():
        field = page.get_by_role("textbox", name=f"Facility ID for {name}")
        field.fill(value)
        expect(field).to_have_accessible_description("Valid Facility ID")
    page.get_by_role("checkbox", name=TERMS).check()
    for name in ("Kista A", "Kista B", "Solna 1", "Solna 2", "Södermalm"):
        page.get_by_role("checkbox", name=f"Sign up {name}").check()
    expect(page.get_by_role("checkbox", name="Sign up Gamla Stan")).to_be_disabled()
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("status")).to_contain_text("5 charge points signed up")
    for name in ("Kista A", "Kista B", "Solna 1", "Solna 2", "Södermalm"):
        expect(charge_point_row(page, name)).to_contain_text("Signed up")
    expect(charge_point_row(page, "Gamla Stan")).to_contain_text("Not signed up")

    # The typed Facility ID was stored with the sign-up.
    page.get_by_role("link", name="Solna 1", exact=True).click()
    expect(page.get_by_role("definition").filter(has_text=valid_solna_1)).to_be_visible()
    expect(page.get_by_role("switch", name="PowerBank")).to_have_attribute("aria-checked", "true")


def test_powerbank_toggle_opts_out_and_signs_up_again(page: Page) -> None:
    log_in(page, "owner@demo.test")
    open_charge_point(page, "Copenhagen Fleet", "Vesterbro 1")
    functionalities = page.get_by_role("region", name="Charge point functionalities")
    toggle = functionalities.get_by_role("switch", name="PowerBank")
    expect(toggle).to_have_attribute("aria-checked", "true")

    toggle.click()
    expect(functionalities.get_by_text("Stop participating in PowerBank?")).to_be_visible()
    screenshot(page, "charge-point-stop-participating", of=functionalities)
    functionalities.get_by_role("button", name="Yes").click()
    expect(toggle).to_have_attribute("aria-checked", "false")
    expect(functionalities).to_contain_text("PowerBank Opted out")
    expect(functionalities.get_by_role("row").filter(has_text="owner@demo.test").first).to_contain_text("Opted out")

    toggle.click()
    yes = functionalities.get_by_role("button", name="Yes")
    expect(functionalities.get_by_role("document", name=re.compile("Terms and conditions"))).to_be_visible()
    expect(yes).to_be_disabled()
    functionalities.get_by_role("checkbox", name=TERMS).check()
    yes.click()
    expect(toggle).to_have_attribute("aria-checked", "true")
    expect(functionalities).to_contain_text("PowerBank Signed up")
    latest = functionalities.get_by_role("row").filter(has_text="owner@demo.test").first
    expect(latest).to_contain_text("single")
    screenshot(page, "charge-point-functionalities", of=functionalities)


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("readonly.admin@demo.test", "Your role in this team does not include the right to configure charge points."),
        ("member@demo.test", "Team Members cannot configure charge points."),
    ],
)
def test_users_without_the_right_see_powerbank_controls_disabled_with_the_reason(
    page: Page, email: str, reason: str
) -> None:
    log_in(page, email)
    open_team(page, "Copenhagen Fleet")
    menu = open_actions_menu(page)
    expect(menu.get_by_role("link", name="Sign up for PowerBank")).to_have_count(0)
    expect(menu.get_by_text("Sign up for PowerBank")).to_have_attribute("aria-disabled", "true")
    expect(menu.get_by_text(reason).first).to_be_visible()

    page.keyboard.press("Escape")
    page.get_by_role("link", name="Nørrebro 2", exact=True).click()
    toggle = page.get_by_role("switch", name="PowerBank")
    expect(toggle).to_be_disabled()
    expect(toggle).to_have_attribute("aria-checked", "true")
    expect(toggle).to_have_accessible_description(re.compile(re.escape(reason.split(".")[0])))


def test_team_history_filters_by_charge_point_and_exports_participation(page: Page) -> None:
    log_in(page, "admin@demo.test")
    open_team(page, "Copenhagen Fleet")
    open_powerbank_tab(page)
    history = page.get_by_role("table")
    expect(history.get_by_role("link", name="Amager Depot", exact=True).first).to_be_visible()

    page.get_by_role("combobox", name="Charge point").select_option(label="Nørrebro 2")
    expect(history.get_by_role("link", name="Amager Depot", exact=True)).to_have_count(0)
    automatic = history.get_by_role("row").filter(has=page.get_by_role("link", name="Nørrebro 2", exact=True))
    expect(automatic.first).to_contain_text("Signed up automatically (DK2)")
    expect(page).to_have_url(re.compile(r"charge_point=\d+"))

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export participation (CSV)").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    lines = Path(download.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "Charge point,Identity,Country,Area,State,Since,Source,Facility ID"
    assert any(line.startswith("Nørrebro 2,CPH-002,Denmark,DK2,Signed up,") for line in lines), lines
