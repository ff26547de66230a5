"""A Test activation started from the Activations page, and its results as the chargers answer."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import assert_accessible, expect_online, log_in, open_charge_point, screenshot

# The activation's page updates itself while the chargers answer.
ANSWER_TIMEOUT_MS = 30_000


def test_a_test_activation_shows_its_results(page: Page) -> None:
    log_in(page, "operator.admin@demo.test")
    # Nørrebro 1 is a signed-up DK2 charger: once it is online, a DK2 activation reaches it.
    open_charge_point(page, "Copenhagen Fleet", "Nørrebro 1")
    expect_online(page)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Teams").click()
    page.get_by_role("navigation", name="Nordic Charge administration").get_by_role("link", name="Activations").click()
    expect(page.get_by_role("heading", name="Activations", level=1)).to_be_visible()
    test_activation = page.get_by_role("region", name="Test activation")
    expect(test_activation.get_by_label("Price area")).to_have_value("DK2")
    test_activation.get_by_role("button", name=re.compile("Start a Test activation")).click()

    chargers = page.get_by_role("region", name="Chargers")
    expect(chargers.get_by_role("row").filter(has_text="CPH-001")).to_contain_text(
        "Accepted", timeout=ANSWER_TIMEOUT_MS
    )
    # Valby Legacy (CPH-005) is in DK2 but not compatible, so never signed up: nothing is sent to it (S3).
    expect(chargers.get_by_role("row").filter(has_text="CPH-005")).to_have_count(0)
    delivery = page.get_by_role("region", name="Delivery")
    expect(delivery).to_contain_text(re.compile(r"Accepted\s*[1-9]"))
    assert_accessible(page, "a Test activation's results")
    screenshot(page, "test-activation-results")
