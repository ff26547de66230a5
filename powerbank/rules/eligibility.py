"""Who may take part in PowerBank, and what the hub changes by itself: pure decisions (R1, R2, R5, R6).

Each function judges plain values or a loaded charge point; none reads the database. The
enrollment service loads what they need (the operator's catalogue, the participation) and applies
their verdicts.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from powerbank.i18n import N_
from powerbank.i18n import gettext as _
from powerbank.models import ChargePoint, ParticipationSource, ParticipationState
from powerbank.rules.countries import AUTOMATIC_AREAS, FACILITY_ID_COUNTRIES, PARTICIPATING_COUNTRIES, country_name
from powerbank.rules.gsrn import clean_facility_id
from powerbank.rules.validators import ValidationError

# A catalogued brand/model as it is matched: case- and space-insensitive.
CatalogueKey = tuple[str, str]

# Shown in the reader's language (``_(COMPATIBLE)``); ELIGIBLE_AGAIN is stored in English and translated when shown.
COMPATIBLE = N_("Compatible")
NOT_COMPATIBLE = N_("Not compatible")
FACILITY_ID_MISSING = N_("Facility ID missing")
FACILITY_ID_INVALID = N_("Facility ID invalid")
ELIGIBLE_AGAIN = N_("Eligible again")


def catalogue_key(brand: str, model: str) -> CatalogueKey:
    """Return the key a brand/model is matched by in the compatibility catalogue."""
    return (" ".join(brand.split()).casefold(), " ".join(model.split()).casefold())


def country_problem(country: str) -> str | None:
    """Return why PowerBank is not available in a country, or None when it is (R1)."""
    if country in PARTICIPATING_COUNTRIES:
        return None
    return _("Not available in %(country)s", country=country_name(country))


def model_problem(charge_point: ChargePoint, catalogue: Set[CatalogueKey]) -> str | None:
    """Return why a charge point's brand/model cannot take part, or None when it can (R2).

    Once the charger has connected, what it reported counts: its BootNotification vendor
    and model, and whether it reported smart charging support.
    """
    if charge_point.smart_charging is False:
        return _("The charger reports no smart charging support")
    brand, model = charge_point.effective_brand, charge_point.effective_model
    if catalogue_key(brand, model) not in catalogue:
        shown = f"{brand} {model}".strip() or _("Unknown model")
        return _("%(model)s is not in the compatibility catalogue", model=shown)
    return None


def needs_facility_id(country: str) -> bool:
    """Return True when a charge point in this country needs a Facility ID to take part (R5)."""
    return country in FACILITY_ID_COUNTRIES


def facility_id_problem(facility_id: str | None) -> str | None:
    """Return what is wrong with a Facility ID (missing, length, prefix, check digit), or None if valid (R5)."""
    try:
        clean_facility_id(facility_id)
    except ValidationError as exc:
        return str(exc)
    return None


def signs_up_automatically(price_area: str | None) -> bool:
    """Return True when a compatible charge point in this price area takes part unless it opts out (R6)."""
    return price_area in AUTOMATIC_AREAS


@dataclass(frozen=True)
class Eligibility:
    """The verdict of R1, R2 and R5 on one charge point as stored: each problem None when its rule is met."""

    country_problem: str | None = None
    model_problem: str | None = None
    # R5: whether the country needs a Facility ID; if so, what is wrong with the stored one (the full
    # message, e.g. "Facility ID must be 18 digits; ...") and whether none is stored at all.
    facility_id_needed: bool = False
    facility_id_problem: str | None = None
    facility_id_missing: bool = False

    @property
    def compatibility(self) -> str:
        """Return the Compatibility column: Compatible, Not compatible or Not available in <country>."""
        if self.country_problem is not None:
            return self.country_problem
        return _(NOT_COMPATIBLE) if self.model_problem is not None else _(COMPATIBLE)

    @property
    def selectable(self) -> bool:
        """Return True when country and compatibility allow a sign-up (a Facility ID may still be due)."""
        return self.country_problem is None and self.model_problem is None

    @property
    def eligible(self) -> bool:
        """Return True when the charge point may take part as stored now."""
        return self.selectable and self.facility_id_problem is None

    @property
    def why_unselectable(self) -> str | None:
        """Return why the charge point cannot be selected for sign-up, or None when it can."""
        if self.country_problem is not None:
            return self.country_problem
        if self.model_problem is not None:
            return _("Not compatible: %(problem)s", problem=self.model_problem)
        return None

    @property
    def why_ineligible(self) -> str | None:
        """Return in a few words why the charge point cannot take part as stored, or None when it can."""
        if not self.selectable:
            return self.compatibility
        if self.facility_id_problem is not None:
            return _(FACILITY_ID_MISSING) if self.facility_id_missing else _(FACILITY_ID_INVALID)
        return None


def judge(charge_point: ChargePoint, catalogue: Set[CatalogueKey]) -> Eligibility:
    """Return the verdict of R1, R2 and R5 on a charge point, given its operator's catalogue keys."""
    problem_with_country = country_problem(charge_point.country)
    needed = needs_facility_id(charge_point.country)
    return Eligibility(
        country_problem=problem_with_country,
        model_problem=None if problem_with_country else model_problem(charge_point, catalogue),
        facility_id_needed=needed,
        facility_id_problem=facility_id_problem(charge_point.facility_id) if needed else None,
        facility_id_missing=needed and not charge_point.facility_id,
    )


def suspended_by_person(state: ParticipationState, source: ParticipationSource | str | None) -> bool:
    """Return True for a suspension a person made (an operator admin's), not the hub's own.

    The hub suspends a charge point that stops being eligible with the source "automatic"; any
    other source is a person's decision, which only a person ends (signing it up again, or lifting it).
    """
    return state is ParticipationState.SUSPENDED and source is not None and source != ParticipationSource.AUTOMATIC


def automatic_change(
    state: ParticipationState,
    eligibility: Eligibility,
    price_area: str | None,
    source: ParticipationSource | str | None = ParticipationSource.AUTOMATIC,
) -> tuple[ParticipationState, str] | None:
    """Return the state the hub moves a charge point to by itself, and why; None when it stays.

    ``source`` is how the current state was reached. A signed-up charge point that stops being
    eligible is suspended, and signed up again once eligible; an eligible one that was never signed
    up takes part where sign-up is automatic (R6). An opted-out one is left alone: automation never
    overrides an opt-out; nor does it lift a suspension a person made (``suspended_by_person``).
    """
    problem = eligibility.why_ineligible
    if state is ParticipationState.SIGNED_UP and problem is not None:
        return ParticipationState.SUSPENDED, problem
    if state is ParticipationState.SUSPENDED and problem is None and not suspended_by_person(state, source):
        return ParticipationState.SIGNED_UP, ELIGIBLE_AGAIN
    if state is ParticipationState.NOT_SIGNED_UP and problem is None and signs_up_automatically(price_area):
        return ParticipationState.SIGNED_UP, automatic_sign_up_reason(price_area)
    return None


def automatic_sign_up_reason(price_area: str | None) -> str:
    """Return what the history and the Charge points tab say of an automatic sign-up (R6)."""
    return _("Signed up automatically (%(area)s)", area=price_area)
