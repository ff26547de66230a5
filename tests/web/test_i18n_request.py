"""Each request's language: the person's setting, else the picker's cookie, else Accept-Language, else English;
times in the charge point's or the person's zone; numbers and money per language."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank import i18n
from powerbank.models import User
from powerbank.web.i18n import LOCALE_COOKIE, format_date, format_datetime, format_money, format_number
from tests.conftest import Factory, LoginAs, csrf_of, post_form


@pytest.mark.parametrize(
    ("accept_language", "heading"),
    [
        ("da-DK,da;q=0.9,en;q=0.5", "Log ind i PowerBank"),
        ("sv-SE", "Logga in på PowerBank"),
        ("en-GB", "Log in to PowerBank"),
        ("de-DE", "Log in to PowerBank"),
        (None, "Log in to PowerBank"),
    ],
)
async def test_the_browser_language_chooses_before_logging_in(
    app: Quart, accept_language: str | None, heading: str
) -> None:
    headers = {"Accept-Language": accept_language} if accept_language else {}
    response = await app.test_client().get("/login", headers=headers)
    html = await response.get_data(as_text=True)
    assert f"<h1>{heading}</h1>" in html
    assert f'<html lang="{({"Log ind i PowerBank": "da", "Logga in på PowerBank": "sv"}).get(heading, "en")}">' in html


async def test_the_picker_sets_a_cookie_that_wins_over_the_browser(app: Quart) -> None:
    client = app.test_client()
    token = await csrf_of(client)
    response = await client.post("/language", form={"locale": "sv", "next": "/login", "csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert f"{LOCALE_COOKIE}=sv" in response.headers["Set-Cookie"]
    html = await (await client.get("/login", headers={"Accept-Language": "da"})).get_data(as_text=True)
    assert "<h1>Logga in på PowerBank</h1>" in html


async def test_the_picker_refuses_an_address_elsewhere(app: Quart) -> None:
    client = app.test_client()
    token = await csrf_of(client)
    response = await client.post("/language", form={"locale": "da", "next": "//evil.test/", "csrf_token": token})
    assert response.headers["Location"] == "/"


async def test_the_persons_setting_wins_and_is_saved_by_the_picker(
    factory: Factory, login_as: LoginAs, session: AsyncSession
) -> None:
    user = await factory.user()
    client = await login_as(user)
    await post_form(client, "/language", {"locale": "da", "next": "/"})
    await session.refresh(user)
    assert user.locale == "da"
    # Another browser of the same person, asking for Swedish, still gets Danish.
    client.cookie_jar.clear()  # type: ignore[attr-defined]
    other = await login_as(user)
    html = await (await other.get("/", headers={"Accept-Language": "sv"})).get_data(as_text=True)
    assert "<h1>Dine teams</h1>" in html


async def test_the_account_page_saves_language_and_time_zone(
    factory: Factory, login_as: LoginAs, session: AsyncSession
) -> None:
    user = await factory.user()
    client = await login_as(user)
    response = await post_form(client, "/account/settings", {"locale": "sv", "time_zone": "Europe/London"})
    assert response.status_code == 303
    stored = await session.get(User, user.id, populate_existing=True)
    assert stored is not None and (stored.locale, stored.time_zone) == ("sv", "Europe/London")
    html = await (await client.get("/account?saved=1")).get_data(as_text=True)
    assert "Ditt språk och din tidszon är sparade." in html
    await post_form(client, "/account/settings", {"locale": "xx", "time_zone": "Mars/Olympus"})
    stored = await session.get(User, user.id, populate_existing=True)
    assert stored is not None and (stored.locale, stored.time_zone) == (None, None)


async def test_the_api_stays_in_english(app: Quart) -> None:
    english = await app.test_client().get("/api/v1/teams")
    danish = await app.test_client().get("/api/v1/teams", headers={"Accept-Language": "da"})
    assert danish.status_code == english.status_code == 401
    assert await danish.get_json() == await english.get_json()


def test_times_are_shown_in_a_zone_and_the_readers_language() -> None:
    moment = datetime(2026, 12, 7, 10, 3, tzinfo=UTC)
    assert format_datetime(moment) == "2026-12-07 10:03:00 UTC"
    assert format_datetime(moment, "Europe/Copenhagen") == "2026-12-07 11:03:00 CET"
    with i18n.use_locale("da", "Europe/Copenhagen"):
        assert format_datetime(moment) == "7. dec. 2026 11.03.00 CET"
        assert format_datetime(moment, "Europe/London") == "7. dec. 2026 10.03.00 GMT"
        assert format_date(moment) == "7. dec. 2026"
    with i18n.use_locale("sv", "Europe/Stockholm"):
        assert format_datetime(datetime(2026, 7, 1, 10, 0, tzinfo=UTC)) == "1 juli 2026 12:00:00 CEST"


def test_numbers_and_money_per_language() -> None:
    assert format_number(1234.5, 2) == "1,234.50"
    with i18n.use_locale("da"):
        assert format_number(1234.5, 2) == "1.234,50"
        assert format_money(Decimal("1234.50"), "DKK") == "1.234,50\xa0kr."
    with i18n.use_locale("sv"):
        assert format_number(1234.5, 2) == "1\xa0234,50"
        assert format_money(Decimal("1234.50"), "SEK") == "1\xa0234,50\xa0kr"


@pytest.mark.parametrize(
    ("language", "names"),
    [("en", ["Denmark", "Sweden", "United Kingdom"]), ("da", ["Danmark", "Sverige", "Storbritannien"])],
)
async def test_the_charge_point_form_names_countries_in_the_readers_language_in_their_order(
    factory: Factory, login_as: LoginAs, language: str, names: list[str]
) -> None:
    team = await factory.team()
    client = await login_as(await factory.user(team=team, team_role="owner"))
    html = await (
        await client.get(f"/teams/{team.id}/charge-points/new", headers={"Accept-Language": language})
    ).get_data(as_text=True)
    shown = [name for name in names if f">{name}</option>" in html]
    assert shown == names, f"{names} not all shown"
    assert html.index(f">{names[0]}<") < html.index(f">{names[1]}<")
