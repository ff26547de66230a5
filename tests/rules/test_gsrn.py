"""The Swedish Facility ID (GSRN) validator over many valid and invalid numbers (R5)."""

from __future__ import annotations

import random

import pytest

from powerbank.rules.validators import ValidationError, clean_facility_id, gs1_check_digit, make_facility_id

# Check digits worked out by hand with GS1's table (weights 3,1,3,... from the left for 17 digits).
KNOWN_VALID = [
    "735999100000000010",
    "735999100000000027",
    "735999123456789018",
    "735999000000000006",
    "735999999999999999",
]


def reference_check_digit(body: str) -> int:
    """GS1 mod 10 as GS1 writes it: weight 3 on every digit whose distance from the end is odd."""
    weights = [3 if (len(body) - index) % 2 == 1 else 1 for index in range(len(body))]
    return (10 - sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 10) % 10


def test_check_digit_follows_gs1_mod_10() -> None:
    # GS1's own worked example: GTIN-13 629104150021 has check digit 3.
    assert gs1_check_digit("629104150021") == 3
    rng = random.Random(3)
    for _ in range(1000):
        body = "735999" + "".join(rng.choice("0123456789") for _ in range(11))
        assert gs1_check_digit(body) == reference_check_digit(body)


@pytest.mark.parametrize("number", KNOWN_VALID)
def test_known_valid_numbers_pass(number: str) -> None:
    assert clean_facility_id(number) == number


def test_many_generated_numbers_pass_and_every_wrong_check_digit_fails() -> None:
    rng = random.Random(7)
    for _ in range(500):
        body = "".join(rng.choice("0123456789") for _ in range(11))
        valid = make_facility_id(body)
        assert clean_facility_id(valid) == valid
        for wrong in set("0123456789") - {valid[-1]}:
            with pytest.raises(ValidationError, match="check digit"):
                clean_facility_id(valid[:-1] + wrong)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("735 999 100 000 000 010", "735999100000000010"),
        ("735999-100000-000010", "735999100000000010"),
        ("  735999100000000010 ", "735999100000000010"),
    ],
)
def test_spaces_and_dashes_are_ignored(typed: str, expected: str) -> None:
    assert clean_facility_id(typed) == expected


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        (None, "required"),
        ("", "required"),
        ("   ", "required"),
        ("73599910000", "18 digits; this has 11"),
        ("7359991000000000101", "18 digits; this has 19"),
        ("123456100000000010", "start with 735999"),
        ("735998100000000011", "start with 735999"),
        ("73599910000000001X", "only contain digits"),
        ("7359991000000000１0", "only contain digits"),
        ("735999100000000015", "last digit should be 0"),
        ("735999100000000029", "last digit should be 7"),
    ],
)
def test_invalid_numbers_say_what_is_wrong(typed: str | None, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        clean_facility_id(typed)


def test_make_facility_id_refuses_a_wrong_body() -> None:
    with pytest.raises(ValueError):
        make_facility_id("123")
