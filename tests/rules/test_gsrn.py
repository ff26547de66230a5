"""The Swedish Facility ID (GSRN) validator over many valid and invalid numbers (R5)."""

from __future__ import annotations

import random

import pytest

from powerbank.rules.gsrn import clean_facility_id, gs1_check_digit, make_facility_id
from powerbank.rules.validators import ValidationError

# Check digits worked out by hand with GS1's table (weights 3,1,3,... from the left for 17 digits).
KNOWN_VALID = [
    "735999100000000010",
    "735999100000000027",
    "735999123456789018",
    "735999000000000006",
    "735999999999999999",
]
VALID_FACILITY_ID = make_facility_id("12345678901")


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


@pytest.mark.parametrize(
    ("body", "check"),
    [
        # The same GS1 mod-10 rule as for GSRNs, on well-known GTINs: EAN-13 4006381333931, UPC 036000291452.
        ("400638133393", 1),
        ("03600029145", 2),
        ("73599900000000000", 6),
    ],
)
def test_gs1_check_digit(body: str, check: int) -> None:
    assert gs1_check_digit(body) == check


@pytest.mark.parametrize(
    "typed",
    [
        VALID_FACILITY_ID,
        f" {VALID_FACILITY_ID} ",
        f"{VALID_FACILITY_ID[:6]} {VALID_FACILITY_ID[6:12]} {VALID_FACILITY_ID[12:]}",
        f"{VALID_FACILITY_ID[:6]}-{VALID_FACILITY_ID[6:]}",
        "-".join(VALID_FACILITY_ID),
    ],
)
def test_facility_id_accepts_with_spaces_and_dashes(typed: str) -> None:
    assert clean_facility_id(typed) == VALID_FACILITY_ID


def _wrong_check_digit(valid: str) -> str:
    return valid[:-1] + str((int(valid[-1]) + 1) % 10)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        (None, "required"),
        ("", "required"),
        (" - - ", "required"),
        (VALID_FACILITY_ID[:-1], "18 digits"),
        (VALID_FACILITY_ID + "0", "18 digits"),
        ("7" * 40, "18 digits"),
        ("735998" + VALID_FACILITY_ID[6:], "start with 735999"),
        ("123456" + VALID_FACILITY_ID[6:], "start with 735999"),
        (_wrong_check_digit(VALID_FACILITY_ID), "check digit"),
        (VALID_FACILITY_ID[:-1] + "x", "only contain digits"),
        ("73599912345678901O", "only contain digits"),
        (VALID_FACILITY_ID[:10] + "²" + VALID_FACILITY_ID[11:], "only contain digits"),
        ("٧٣٥٩٩٩١٢٣٤٥٦٧٨٩٠١٥", "only contain digits"),
        (VALID_FACILITY_ID.replace("7", "７", 1), "only contain digits"),
        (VALID_FACILITY_ID[:9] + "." + VALID_FACILITY_ID[9:], "only contain digits"),
        (VALID_FACILITY_ID[:9] + "_" + VALID_FACILITY_ID[9:], "only contain digits"),
        ("SE" + VALID_FACILITY_ID, "only contain digits"),
    ],
)
def test_facility_id_refuses(typed: str | None, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        clean_facility_id(typed)


def test_every_single_digit_error_is_caught_by_the_check_digit() -> None:
    for position in range(6, 17):
        for replacement in "0123456789":
            if replacement == VALID_FACILITY_ID[position]:
                continue
            typo = VALID_FACILITY_ID[:position] + replacement + VALID_FACILITY_ID[position + 1 :]
            with pytest.raises(ValidationError, match="check digit"):
                clean_facility_id(typo)


@pytest.mark.parametrize("body", ["1234567890", "123456789012", "1234567890a"])
def test_make_facility_id_needs_eleven_digits(body: str) -> None:
    with pytest.raises(ValueError):
        make_facility_id(body)
