"""The simulated chargers `make run` connects, as the pages show them."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import assert_accessible, expect_online, log_in, open_charge_point, screenshot


def test_a_simulated_charger_shows_online(page: Page) -> None:
    log_in(page, "admin@demo.test")
    open_charge_point(page, "Copenhagen Fleet", "Nørrebro 1")
    expect_online(page)
    ocpp = page.get_by_role("region", name="OCPP")
    expect(ocpp.get_by_role("definition").filter(has_text=re.compile(r"^ocpp(1\.6|2\.0\.1)$"))).to_be_visible()
    assert_accessible(page, "a connected charge point")
    # The page ends with the charger's OCPP log, as long as the charger has talked: show the top.
    screenshot(page, "charge-point-online", full_page=False)

    page.get_by_role("navigation", name="Breadcrumbs").get_by_role("link", name="Copenhagen Fleet").click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="Nørrebro 1", exact=True))
    expect(row).to_contain_text("Online")
