"""Validators of what people type: identities, countries and price areas, names, emails."""

from __future__ import annotations

import pytest

from powerbank.rules.countries import COUNTRIES
from powerbank.rules.validators import (
    ValidationError,
    clean_country,
    clean_email,
    clean_identity,
    clean_name,
    clean_optional,
    clean_price_area,
)


@pytest.mark.parametrize(
    ("typed", "clean"),
    [
        ("CP-1", "CP-1"),
        ("a", "a"),
        ("x" * 48, "x" * 48),
        ("  cp_2.site:3  ", "cp_2.site:3"),
        ("ABC.def-123_x:y", "ABC.def-123_x:y"),
        ("0", "0"),
    ],
)
def test_identity_accepts(typed: str, clean: str) -> None:
    assert clean_identity(typed) == clean


@pytest.mark.parametrize(
    "typed",
    [
        None,
        "",
        "   ",
        "x" * 49,
        "with space",
        "slash/cp",
        "back\\slash",
        "quote'",
        'dq"',
        "semi;colon",
        "hash#",
        "q?x",
        "pct%20",
        "amp&",
        "plus+",
        "at@",
        "ümlaut",
        "日本",
        "emoji💥",
        "tab\tcp",
        "new\nline",
        "nul\x00",
        "<script>",
        "a,b",
        "(x)",
        "cp\u200b",
        "٣٤",
    ],
)
def test_identity_refuses(typed: str | None) -> None:
    with pytest.raises(ValidationError):
        clean_identity(typed)


@pytest.mark.parametrize(("typed", "clean"), [("dk", "DK"), (" se ", "SE"), ("GB", "GB"), ("de", "DE"), ("no", "NO")])
def test_country_accepts_iso_codes(typed: str, clean: str) -> None:
    assert clean_country(typed) == clean


@pytest.mark.parametrize("typed", [None, "", "XX", "UK", "Denmark", "D", "DNK", "ÅÅ", "1", "dk2", "\x00"])
def test_country_refuses(typed: str | None) -> None:
    with pytest.raises(ValidationError):
        clean_country(typed)


AREAS = {"DK": {"DK1", "DK2"}, "SE": {"SE1", "SE2", "SE3", "SE4"}, "GB": {"GB"}, "IE": {"IE"}}
ALL_AREAS = {"DK1", "DK2", "SE1", "SE2", "SE3", "SE4", "GB", "IE"}
CONSISTENCY = [
    (country, area, area in AREAS.get(country, set()))
    for country in ("DK", "SE", "GB", "IE", "DE", "NO", "FI", "FR")
    for area in sorted(ALL_AREAS)
]


@pytest.mark.parametrize(("country", "area", "consistent"), CONSISTENCY)
def test_price_area_matches_country(country: str, area: str, consistent: bool) -> None:
    if consistent:
        assert clean_price_area(country, area) == area
        assert clean_price_area(country, area.lower()) == area
    else:
        with pytest.raises(ValidationError):
            clean_price_area(country, area)


@pytest.mark.parametrize(
    ("country", "expected"), [("GB", "GB"), ("IE", "IE"), ("DE", None), ("NO", None), ("FI", None)]
)
def test_price_area_defaults_when_there_is_one_choice_or_none(country: str, expected: str | None) -> None:
    assert clean_price_area(country, "") == expected
    assert clean_price_area(country, None) == expected


@pytest.mark.parametrize("country", ["DK", "SE"])
def test_price_area_must_be_chosen_where_there_are_several(country: str) -> None:
    with pytest.raises(ValidationError, match="Choose the price area"):
        clean_price_area(country, "")


@pytest.mark.parametrize("area", ["DK3", "SE5", "XX", "NO1", "💥", "DK2 ", "x" * 1000])
def test_price_area_refuses_unknown_areas(area: str) -> None:
    for country in ("DK", "SE", "GB", "IE", "DE"):
        if area.strip() in AREAS.get(country, set()):
            continue
        with pytest.raises(ValidationError):
            clean_price_area(country, area)


def test_every_country_has_a_consistent_area_rule() -> None:
    for country in COUNTRIES:
        allowed = {area for area in ALL_AREAS if _accepts(country, area)}
        assert allowed == AREAS.get(country, set()), country


def _accepts(country: str, area: str) -> bool:
    try:
        clean_price_area(country, area)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    ("typed", "clean"),
    [
        ("Depot", "Depot"),
        ("  Nørrebro 1 ", "Nørrebro 1"),
        ("x" * 120, "x" * 120),
        ("Bay 1 — east", "Bay 1 — east"),
        ("充电站", "充电站"),
    ],
)
def test_name_accepts(typed: str, clean: str) -> None:
    assert clean_name(typed) == clean


@pytest.mark.parametrize("typed", [None, "", "   ", "\t\n", "x" * 121, "bad\x00name", "bell\x07", "esc\x1b[31m"])
def test_name_refuses(typed: str | None) -> None:
    with pytest.raises(ValidationError):
        clean_name(typed)


def test_name_message_uses_the_label() -> None:
    with pytest.raises(ValidationError, match="Team name is required"):
        clean_name("", label="Team name")
    with pytest.raises(ValidationError, match="at most 5"):
        clean_name("abcdef", label="Brand", max_length=5)


def test_optional_text() -> None:
    assert clean_optional(None, label="Firmware") == ""
    assert clean_optional(" 1.2.3 ", label="Firmware") == "1.2.3"
    with pytest.raises(ValidationError, match="Firmware can be at most 80"):
        clean_optional("x" * 81, label="Firmware")
    with pytest.raises(ValidationError):
        clean_optional("nul\x00", label="Serial number")


@pytest.mark.parametrize(
    ("typed", "clean"),
    [
        ("someone@example.com", "someone@example.com"),
        ("  Someone@Example.COM ", "someone@example.com"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
    ],
)
def test_email_accepts_and_lowercases(typed: str, clean: str) -> None:
    assert clean_email(typed) == clean


@pytest.mark.parametrize(
    "typed",
    [
        None,
        "",
        "   ",
        "plain",
        "@example.com",
        "someone@",
        "someone@example",
        "two@@example.com",
        "a b@example.com",
        "someone@exa mple.com",
        "a@b@c.com",
        "x" * 250 + "@example.com",
        "someone@example.com\nBcc: x@evil.test",
        "nul\x00@example.com",
    ],
)
def test_email_refuses(typed: str | None) -> None:
    with pytest.raises(ValidationError):
        clean_email(typed)
