"""The hub lifts only its own suspensions: one a person made stays until a person ends it."""

from __future__ import annotations

import pytest

from powerbank.models import ParticipationSource, ParticipationState
from powerbank.rules.eligibility import ELIGIBLE_AGAIN, Eligibility, automatic_change, suspended_by_person

ELIGIBLE = Eligibility()
INELIGIBLE = Eligibility(model_problem="Acme Volt is not in the compatibility catalogue")


@pytest.mark.parametrize(
    ("source", "by_person"),
    [
        (ParticipationSource.AUTOMATIC, False),
        (ParticipationSource.SINGLE, True),
        (ParticipationSource.BULK, True),
        (ParticipationSource.API, True),
        ("automatic", False),
        ("single", True),
    ],
)
def test_only_a_suspension_by_the_hub_is_lifted_by_the_hub(source: ParticipationSource | str, by_person: bool) -> None:
    assert suspended_by_person(ParticipationState.SUSPENDED, source) is by_person
    lifted = automatic_change(ParticipationState.SUSPENDED, ELIGIBLE, "DK2", source)
    assert lifted == (None if by_person else (ParticipationState.SIGNED_UP, ELIGIBLE_AGAIN))
    # Ineligible, nothing changes either way.
    assert automatic_change(ParticipationState.SUSPENDED, INELIGIBLE, "DK2", source) is None


@pytest.mark.parametrize("state", [ParticipationState.SIGNED_UP, ParticipationState.OPTED_OUT])
def test_no_other_state_counts_as_a_persons_suspension(state: ParticipationState) -> None:
    assert not suspended_by_person(state, ParticipationSource.SINGLE)
