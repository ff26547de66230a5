"""Who may take part, decided on plain values: country × area × compatibility × Facility ID (R1, R2, R5, R6)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from powerbank.models import ChargePoint, ParticipationState
from powerbank.rules.eligibility import (
    Eligibility,
    automatic_change,
    catalogue_key,
    country_problem,
    facility_id_problem,
    judge,
    model_problem,
    needs_facility_id,
    signs_up_automatically,
)
from powerbank.rules.gsrn import make_facility_id

CATALOGUE = {catalogue_key("Easee", "Home"), catalogue_key("Zaptec", "Pro")}
VALID_FID = make_facility_id("12345678901")
WRONG_CHECK_DIGIT = VALID_FID[:-1] + str((int(VALID_FID[-1]) + 1) % 10)
BOOTED = datetime(2026, 1, 1, tzinfo=UTC)


def charge_point(
    country: str = "DK",
    price_area: str | None = "DK1",
    brand: str = "Easee",
    model: str = "Home",
    facility_id: str | None = None,
    **reported: object,
) -> ChargePoint:
    return ChargePoint(
        team_id=1,
        name="Depot",
        identity="DEPOT-1",
        brand=brand,
        model=model,
        country=country,
        price_area=price_area,
        facility_id=facility_id,
        ocpp_password_hash="x",
        **reported,
    )


# Each row: country, area, brand/model catalogued, stored Facility ID →
# (Compatibility column, selectable, eligible, why not selectable, why not eligible in a few words).
VERDICTS = [
    ("DK", "DK1", True, None, ("Compatible", True, True, None, None)),
    ("DK", "DK2", True, None, ("Compatible", True, True, None, None)),
    ("GB", "GB", True, None, ("Compatible", True, True, None, None)),
    ("IE", "IE", True, None, ("Compatible", True, True, None, None)),
    ("SE", "SE3", True, VALID_FID, ("Compatible", True, True, None, None)),
    ("SE", "SE1", True, None, ("Compatible", True, False, None, "Facility ID missing")),
    ("SE", "SE4", True, VALID_FID[:-1], ("Compatible", True, False, None, "Facility ID invalid")),
    ("SE", "SE2", True, WRONG_CHECK_DIGIT, ("Compatible", True, False, None, "Facility ID invalid")),
    (
        "DK",
        "DK2",
        False,
        None,
        (
            "Not compatible",
            False,
            False,
            "Not compatible: Tesla Wall Connector is not in the compatibility catalogue",
            "Not compatible",
        ),
    ),
    (
        "SE",
        "SE3",
        False,
        VALID_FID,
        (
            "Not compatible",
            False,
            False,
            "Not compatible: Tesla Wall Connector is not in the compatibility catalogue",
            "Not compatible",
        ),
    ),
    # Outside the four countries the model does not matter, and a Facility ID is never asked for.
    (
        "DE",
        None,
        True,
        None,
        ("Not available in Germany", False, False, "Not available in Germany", "Not available in Germany"),
    ),
    (
        "NO",
        None,
        False,
        None,
        ("Not available in Norway", False, False, "Not available in Norway", "Not available in Norway"),
    ),
    ("XX", None, True, None, ("Not available in XX", False, False, "Not available in XX", "Not available in XX")),
]


@pytest.mark.parametrize(("country", "area", "catalogued", "facility_id", "verdict"), VERDICTS)
def test_country_compatibility_and_facility_id_decide_who_may_take_part(
    country: str,
    area: str | None,
    catalogued: bool,
    facility_id: str | None,
    verdict: tuple[str, bool, bool, str | None, str | None],
) -> None:
    brand, model = ("Easee", "Home") if catalogued else ("Tesla", "Wall Connector")
    found = judge(charge_point(country, area, brand, model, facility_id), CATALOGUE)
    assert found.facility_id_needed is (country == "SE")
    assert (
        found.compatibility,
        found.selectable,
        found.eligible,
        found.why_unselectable,
        found.why_ineligible,
    ) == verdict


@pytest.mark.parametrize(
    ("country", "problem"),
    [
        ("DK", None),
        ("SE", None),
        ("GB", None),
        ("IE", None),
        ("FI", "Not available in Finland"),
        ("US", "Not available in United States"),
        ("", "Not available in "),
    ],
)
def test_r1_four_countries(country: str, problem: str | None) -> None:
    assert country_problem(country) == problem


@pytest.mark.parametrize(
    ("reported", "problem"),
    [
        ({}, None),
        # Catalogue matching ignores case and repeated spaces.
        ({"brand": " easee ", "model": "HOME"}, None),
        ({"brand": "Zaptec", "model": "Pro"}, None),
        ({"brand": "Zaptec", "model": "Go"}, "Zaptec Go is not in the compatibility catalogue"),
        ({"brand": "", "model": ""}, "Unknown model is not in the compatibility catalogue"),
        # Once booted, what the charger reported counts, whatever was typed.
        (
            {"booted_at": BOOTED, "reported_vendor": "Zaptec", "reported_model": "Go"},
            "Zaptec Go is not in the compatibility catalogue",
        ),
        ({"brand": "Tesla", "booted_at": BOOTED, "reported_vendor": "Zaptec", "reported_model": "Pro"}, None),
        # Reported values count only once the charger has booted.
        (
            {"brand": "Tesla", "reported_vendor": "Zaptec", "reported_model": "Pro"},
            "Tesla Home is not in the compatibility catalogue",
        ),
        ({"smart_charging": False}, "The charger reports no smart charging support"),
        ({"smart_charging": True}, None),
    ],
)
def test_r2_the_catalogue_and_what_the_charger_reported(reported: dict[str, object], problem: str | None) -> None:
    assert model_problem(charge_point(**reported), CATALOGUE) == problem  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("country", "needed"), [("SE", True), ("DK", False), ("GB", False), ("IE", False), ("DE", False)]
)
def test_r5_only_sweden_needs_a_facility_id(country: str, needed: bool) -> None:
    assert needs_facility_id(country) is needed


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        (VALID_FID, None),
        (f"{VALID_FID[:6]} {VALID_FID[6:]}", None),
        (None, "Facility ID is required for charge points in Sweden."),
        ("", "Facility ID is required for charge points in Sweden."),
        (VALID_FID[:-1], "Facility ID must be 18 digits; this has 17."),
        ("735998" + VALID_FID[6:], "Facility ID must start with 735999."),
    ],
)
def test_r5_a_typed_facility_id_says_what_is_wrong(typed: str | None, problem: str | None) -> None:
    assert facility_id_problem(typed) == problem


@pytest.mark.parametrize(
    ("area", "automatic"), [("DK2", True), ("DK1", False), ("SE3", False), ("GB", False), ("IE", False), (None, False)]
)
def test_r6_only_dk2_signs_up_by_itself(area: str | None, automatic: bool) -> None:
    assert signs_up_automatically(area) is automatic


ELIGIBLE = Eligibility()
NOT_COMPATIBLE = Eligibility(model_problem="Tesla Wall Connector is not in the compatibility catalogue")
NO_FACILITY_ID = Eligibility(
    facility_id_needed=True, facility_id_problem="Facility ID is required", facility_id_missing=True
)
SIGNED_UP, NOT_SIGNED_UP = ParticipationState.SIGNED_UP, ParticipationState.NOT_SIGNED_UP
OPTED_OUT, SUSPENDED = ParticipationState.OPTED_OUT, ParticipationState.SUSPENDED


@pytest.mark.parametrize(
    ("state", "eligibility", "area", "change"),
    [
        # R6: an eligible charge point in DK2 that was never signed up takes part.
        (NOT_SIGNED_UP, ELIGIBLE, "DK2", (SIGNED_UP, "Signed up automatically (DK2)")),
        (NOT_SIGNED_UP, ELIGIBLE, "DK1", None),
        (NOT_SIGNED_UP, ELIGIBLE, None, None),
        (NOT_SIGNED_UP, NOT_COMPATIBLE, "DK2", None),
        # An explicit opt-out is never overridden.
        (OPTED_OUT, ELIGIBLE, "DK2", None),
        (OPTED_OUT, NOT_COMPATIBLE, "DK2", None),
        # A signed-up charge point that stops being eligible is suspended, and comes back once eligible.
        (SIGNED_UP, NOT_COMPATIBLE, "DK2", (SUSPENDED, "Not compatible")),
        (SIGNED_UP, NO_FACILITY_ID, "SE3", (SUSPENDED, "Facility ID missing")),
        (SIGNED_UP, ELIGIBLE, "DK1", None),
        (SUSPENDED, ELIGIBLE, "DK1", (SIGNED_UP, "Eligible again")),
        (SUSPENDED, NOT_COMPATIBLE, "DK2", None),
    ],
)
def test_what_the_hub_changes_by_itself(
    state: ParticipationState,
    eligibility: Eligibility,
    area: str | None,
    change: tuple[ParticipationState, str] | None,
) -> None:
    assert automatic_change(state, eligibility, area) == change
