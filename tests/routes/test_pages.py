"""The pages through the test client: the Charge points tab, a charge point's page, add, edit, delete."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import AuditEntry, ChargePoint, Team
from powerbank.rules.gsrn import make_facility_id
from powerbank.services import charge_points as cp_service
from powerbank.services.passwords import verify_secret
from tests.conftest import _PASSWORD_HASH, Factory, LoginAs, htmx_headers, post_form

pytestmark = pytest.mark.usefixtures("fast_hashing")

VALID_FACILITY_ID = make_facility_id("20000000001")


async def configurer(factory: Factory, login_as: LoginAs) -> tuple[Team, QuartClient]:
    """Return a team and the client of its owner, who may configure charge points."""
    team = await factory.team(name="Depot Team")
    user = await factory.user(team=team, team_role="owner")
    return team, await login_as(user)


def rows(body: str) -> list[str]:
    """Return the charge point names in the table, in order."""
    return re.findall(r'<td><a href="/charge-points/\d+">([^<]+)</a></td>', body)


async def audit_actions(session: AsyncSession) -> list[str]:
    return list((await session.exec(select(AuditEntry.action).order_by(AuditEntry.id))).all())


async def count_charge_points(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(ChargePoint))).one()


async def test_tab_full_page_and_fragment(factory: Factory, login_as: LoginAs) -> None:
    team, client = await configurer(factory, login_as)
    await factory.charge_point(
        team, name="Alpha", identity="ALPHA-1", brand="Zaptec", model="Go", country="SE", price_area="SE3"
    )
    path = f"/teams/{team.id}/charge-points"
    full = await client.get(path)
    fragment = await client.get(path, headers=htmx_headers(client))
    full_body, fragment_body = await full.get_data(as_text=True), await fragment.get_data(as_text=True)
    assert full.status_code == fragment.status_code == 200
    assert "HX-Request" in full.headers["Vary"] and "HX-Request" in fragment.headers["Vary"]
    assert "<html" in full_body and "<h1>Depot Team</h1>" in full_body and 'id="charge-point-table"' in full_body
    assert "<html" not in fragment_body and "<h1>" not in fragment_body and "<table" in fragment_body
    for body in (full_body, fragment_body):
        assert rows(body) == ["Alpha"]
        assert "ALPHA-1" in body and "Zaptec Go" in body and "Sweden" in body and "SE3" in body
        assert "Never connected" in body
    assert "Add charge point" in full_body


async def make_many(session: AsyncSession, team: Team, count: int) -> None:
    """Add ``count`` charge points named Charger 001…, half in DK, half in SE."""
    for n in range(1, count + 1):
        country, area = ("DK", "DK1") if n % 2 else ("SE", "SE4")
        session.add(
            ChargePoint(
                team_id=team.id or 0,
                name=f"Charger {n:03d}",
                identity=f"ID-{1000 - n}",
                brand="Easee",
                model="Home",
                country=country,
                price_area=area,
                ocpp_password_hash=_PASSWORD_HASH,
            )
        )
    await session.commit()


async def test_pagination_50_a_page(session: AsyncSession, factory: Factory, login_as: LoginAs) -> None:
    team, client = await configurer(factory, login_as)
    await make_many(session, team, 120)
    path = f"/teams/{team.id}/charge-points"
    first = await (await client.get(path)).get_data(as_text=True)
    assert rows(first) == [f"Charger {n:03d}" for n in range(1, 51)]
    assert "120 charge points" in first and "Page 1 of 3" in first and "Next" in first
    second = await (await client.get(f"{path}?page=2", headers=htmx_headers(client))).get_data(as_text=True)
    assert rows(second) == [f"Charger {n:03d}" for n in range(51, 101)]
    assert "Previous" in second and "Next" in second
    last = await (await client.get(f"{path}?page=3")).get_data(as_text=True)
    assert rows(last) == [f"Charger {n:03d}" for n in range(101, 121)]
    assert "Page 3 of 3" in last
    beyond = await (await client.get(f"{path}?page=7")).get_data(as_text=True)
    assert rows(beyond) == rows(last) and "Page 3 of 3" in beyond


async def test_odd_page_numbers_still_answer(session: AsyncSession, factory: Factory, login_as: LoginAs) -> None:
    team, client = await configurer(factory, login_as)
    await make_many(session, team, 60)
    for page in ["0", "-1", "abc", "", "1.5", "99", "1e9", "9" * 40, "٣", "²", "%00"]:
        response = await client.get(f"/teams/{team.id}/charge-points", query_string={"page": page})
        assert response.status_code == 200, page
        assert "60 charge points" in await response.get_data(as_text=True), page


async def test_search_by_name_and_identity(session: AsyncSession, factory: Factory, login_as: LoginAs) -> None:
    team, client = await configurer(factory, login_as)
    await make_many(session, team, 12)
    path = f"/teams/{team.id}/charge-points"

    async def names(query: dict[str, str]) -> list[str]:
        response = await client.get(path, query_string=query, headers=htmx_headers(client))
        return rows(await response.get_data(as_text=True))

    assert await names({"q": "charger 01"}) == [f"Charger {n:03d}" for n in (10, 11, 12)]
    assert await names({"q": "ID-995"}) == ["Charger 005"]
    assert await names({"q": "id-99"}) == [f"Charger {n:03d}" for n in range(1, 11)]
    assert await names({"q": "nothing like this"}) == []
    # LIKE wildcards are taken literally.
    assert await names({"q": "%"}) == [] and await names({"q": "_"}) == []
    # Letters beyond ASCII match in either case too.
    await factory.charge_point(team, name="Södermalm Garage", identity="STO-9")
    await factory.charge_point(team, name="ÅRHUS DEPOT", identity="AAR-9")
    assert await names({"q": "SÖDERMALM"}) == ["Södermalm Garage"]
    assert await names({"q": "århus"}) == ["ÅRHUS DEPOT"]


async def test_filter_by_country(session: AsyncSession, factory: Factory, login_as: LoginAs) -> None:
    team, client = await configurer(factory, login_as)
    await make_many(session, team, 6)
    path = f"/teams/{team.id}/charge-points"
    body = await (await client.get(path, query_string={"country": "se"})).get_data(as_text=True)
    assert rows(body) == ["Charger 002", "Charger 004", "Charger 006"]
    assert '<option value="SE" selected>' in body and '<option value="DK">' in body
    body = await (await client.get(path, query_string={"country": "DK", "q": "5"})).get_data(as_text=True)
    assert rows(body) == ["Charger 005"]
    body = await (await client.get(path, query_string={"country": "NO"})).get_data(as_text=True)
    assert rows(body) == [] and "No charge points match" in body


SORTS = [
    ("name", "asc", ["Bravo", "alpha 2", "charlie"]),
    ("name", "desc", ["charlie", "alpha 2", "Bravo"]),
    ("identity", "asc", ["charlie", "Bravo", "alpha 2"]),
    ("identity", "desc", ["alpha 2", "Bravo", "charlie"]),
    ("country", "asc", ["Bravo", "charlie", "alpha 2"]),
    ("model", "asc", ["charlie", "alpha 2", "Bravo"]),
    ("nonsense", "sideways", ["Bravo", "alpha 2", "charlie"]),
    ("id; drop table team", "desc", ["charlie", "alpha 2", "Bravo"]),
]


async def test_sorting(factory: Factory, login_as: LoginAs) -> None:
    team, client = await configurer(factory, login_as)
    await factory.charge_point(team, name="alpha 2", identity="C-3", country="SE", price_area="SE1", brand="Easee")
    await factory.charge_point(team, name="Bravo", identity="B-2", country="DK", price_area="DK1", brand="Zaptec")
    await factory.charge_point(team, name="charlie", identity="A-1", country="GB", price_area="GB", brand="ABB")
    for sort, direction, expected in SORTS:
        response = await client.get(f"/teams/{team.id}/charge-points", query_string={"sort": sort, "dir": direction})
        assert response.status_code == 200
        assert rows(await response.get_data(as_text=True)) == expected, (sort, direction)


async def test_sort_links_toggle_direction(factory: Factory, login_as: LoginAs) -> None:
    team, client = await configurer(factory, login_as)
    body = await (await client.get(f"/teams/{team.id}/charge-points?sort=name&dir=asc")).get_data(as_text=True)
    assert 'aria-sort="ascending"' in body and "sort=name&dir=desc" in body and "sort=identity&dir=asc" in body


async def test_charge_point_page(factory: Factory, login_as: LoginAs) -> None:
    team, client = await configurer(factory, login_as)
    charge_point = await factory.charge_point(
        team,
        name="Kista A",
        identity="STO-9",
        brand="Zaptec",
        model="Pro",
        country="SE",
        price_area="SE3",
        facility_id=VALID_FACILITY_ID,
    )
    tab = await (await client.get(f"/teams/{team.id}/charge-points")).get_data(as_text=True)
    assert f'<a href="/charge-points/{charge_point.id}">Kista A</a>' in tab
    response = await client.get(f"/charge-points/{charge_point.id}")
    body = await response.get_data(as_text=True)
    assert response.status_code == 200
    for text in (
        "<h1>Kista A</h1>",
        "STO-9",
        "Zaptec Pro",
        "SE3",
        VALID_FACILITY_ID,
        "Never connected",
        "ws://localhost/ocpp/STO-9",
        "Charge point functionalities",
        "New OCPP password",
        "Delete",
    ):
        assert text in body, text


async def test_add_charge_point_shows_the_password_once(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    team, client = await configurer(factory, login_as)
    form_page = await client.get(f"/teams/{team.id}/charge-points/new")
    assert form_page.status_code == 200
    response = await post_form(
        client,
        f"/teams/{team.id}/charge-points/new",
        {
            "name": " Solna 3 ",
            "identity": "STO-100",
            "brand": "Charge Amps",
            "model": "Halo",
            "country": "SE",
            "price_area": "SE3",
            "facility_id": f"{VALID_FACILITY_ID[:6]} {VALID_FACILITY_ID[6:]}",
        },
    )
    body = await response.get_data(as_text=True)
    assert response.status_code == 201
    assert "ws://localhost/ocpp/STO-100" in body and "shown only now" in body
    password = re.search(r'<code class="secret">([^<]+)</code>', body)
    assert password and len(password.group(1)) >= 16
    stored = (await session.exec(select(ChargePoint).where(ChargePoint.identity == "STO-100"))).one()
    assert stored.name == "Solna 3" and stored.facility_id == VALID_FACILITY_ID and stored.team_id == team.id
    assert stored.price_area == "SE3" and stored.created_at.tzinfo is not None
    assert verify_secret(stored.ocpp_password_hash, password.group(1))
    assert password.group(1) not in stored.ocpp_password_hash
    page = await (await client.get(f"/charge-points/{stored.id}")).get_data(as_text=True)
    assert password.group(1) not in page
    assert await audit_actions(session) == ["operator.create", "charge_point.create"]


async def test_new_ocpp_password(session: AsyncSession, factory: Factory, login_as: LoginAs) -> None:
    team, client = await configurer(factory, login_as)
    charge_point = await factory.charge_point(team, identity="CPH-77")
    old_hash = charge_point.ocpp_password_hash
    response = await post_form(client, f"/charge-points/{charge_point.id}/ocpp-password")
    body = await response.get_data(as_text=True)
    password = re.search(r'<code class="secret">([^<]+)</code>', body)
    assert response.status_code == 200 and password and "ws://localhost/ocpp/CPH-77" in body
    await session.refresh(charge_point)
    assert charge_point.ocpp_password_hash != old_hash
    assert verify_secret(charge_point.ocpp_password_hash, password.group(1))
    assert (await audit_actions(session))[-1] == "charge_point.reset_password"


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        ("https://powerbank.example.com", "wss://powerbank.example.com/ocpp/CPH-78"),
        ("http://hub.example.test:8080/", "ws://hub.example.test:8080/ocpp/CPH-78"),
    ],
)
async def test_ocpp_url_uses_the_public_url_behind_a_proxy(
    app: Quart,
    factory: Factory,
    login_as: LoginAs,
    public_url: str,
    expected: str,
) -> None:
    team, client = await configurer(factory, login_as)
    charge_point = await factory.charge_point(team, identity="CPH-78")
    app.config["PUBLIC_URL"] = public_url
    page = await (await client.get(f"/charge-points/{charge_point.id}")).get_data(as_text=True)
    assert expected in page and "ws://localhost" not in page
    created = await post_form(client, f"/teams/{team.id}/charge-points/new", {**GOOD_FORM, "identity": "CPH-79"})
    assert expected.replace("CPH-78", "CPH-79") in await created.get_data(as_text=True)


GOOD_FORM = {
    "name": "Depot 1",
    "identity": "DEP-1",
    "brand": "Easee",
    "model": "Home",
    "firmware": "",
    "serial": "",
    "country": "DK",
    "price_area": "DK2",
    "facility_id": "",
}
BAD_FORMS = [
    ({"identity": ""}, "identity", "OCPP identity is required."),
    ({"identity": "has space"}, "identity", "may only contain"),
    ({"identity": "x" * 49}, "identity", "at most 48"),
    ({"identity": "TAKEN-1"}, "identity", "already uses this OCPP identity"),
    ({"name": "  "}, "name", "Name is required."),
    ({"name": "n" * 121}, "name", "at most 120"),
    ({"country": ""}, "country", "Country is required."),
    ({"country": "XX"}, "country", "Choose a country"),
    ({"country": "DK", "price_area": "SE3"}, "price_area", "must be one of DK1, DK2"),
    ({"country": "DK", "price_area": ""}, "price_area", "Choose the price area"),
    ({"country": "SE", "price_area": "SE5"}, "price_area", "SE1, SE2, SE3, SE4"),
    ({"country": "DE", "price_area": "DK1"}, "price_area", "leave it empty"),
    ({"country": "GB", "price_area": "IE"}, "price_area", "must be one of GB"),
    ({"country": "DK", "facility_id": VALID_FACILITY_ID}, "facility_id", "only used for charge points in Sweden"),
    ({"country": "SE", "price_area": "SE3", "facility_id": "735999"}, "facility_id", "18 digits"),
    (
        {"country": "SE", "price_area": "SE3", "facility_id": "123456" + VALID_FACILITY_ID[6:]},
        "facility_id",
        "start with 735999",
    ),
    (
        {
            "country": "SE",
            "price_area": "SE3",
            "facility_id": VALID_FACILITY_ID[:-1] + "0"
            if VALID_FACILITY_ID[-1] != "0"
            else VALID_FACILITY_ID[:-1] + "1",
        },
        "facility_id",
        "check digit",
    ),
    ({"brand": "b" * 81}, "brand", "at most 80"),
    ({"serial": "bad\u0007serial"}, "serial", "cannot be used"),
]


async def test_add_form_rerenders_with_values_and_message(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    team, client = await configurer(factory, login_as)
    await factory.charge_point(team, identity="TAKEN-1")
    before = (await count_charge_points(session), await audit_actions(session))
    for changes, field, message in BAD_FORMS:
        form = {**GOOD_FORM, **changes}
        response = await post_form(client, f"/teams/{team.id}/charge-points/new", form)
        body = await response.get_data(as_text=True)
        assert response.status_code == 422, changes
        assert "nothing was saved" in body
        error = re.search(rf'<p class="error" id="f-{field}-error">([^<]*)</p>', body)
        assert error and message in error.group(1), changes
        assert re.search(rf'id="f-{field}"[^>]*aria-invalid="true"[^>]*aria-describedby="f-{field}-error', body)
        assert 'value="Depot 1"' in body or field == "name"
        if field in ("identity", "name") and changes[field].strip() and "\x00" not in changes[field]:
            assert f'value="{changes[field]}"' in body
    # A NUL in any field is refused before the form is read (tests/web/test_inputs.py).
    refused = await post_form(client, f"/teams/{team.id}/charge-points/new", {**GOOD_FORM, "serial": "bad\x00serial"})
    assert refused.status_code == 400
    assert (await count_charge_points(session), await audit_actions(session)) == before


@pytest.mark.parametrize("action", ["add", "edit"])
async def test_two_people_giving_one_identity_at_once_get_a_message_not_an_error(
    session: AsyncSession,
    factory: Factory,
    login_as: LoginAs,
    monkeypatch: pytest.MonkeyPatch,
    action: str,
) -> None:
    team, first = await configurer(factory, login_as)
    second = await login_as(await factory.user(team=team, team_role="owner"))
    editing = [await factory.charge_point(team, identity=f"OLD-{n}") for n in (1, 2)]
    both_have_checked = asyncio.Barrier(2)
    check = cp_service.get_by_identity

    async def check_then_wait(session_: AsyncSession, identity: str) -> ChargePoint | None:
        found = await check(session_, identity)
        # Both have seen the identity free before either writes: the worst interleaving.
        await asyncio.wait_for(both_have_checked.wait(), timeout=10)
        return found

    monkeypatch.setattr(cp_service, "get_by_identity", check_then_wait)
    before = await count_charge_points(session)

    async def save(client: QuartClient, n: int) -> tuple[int, str]:
        path = f"/teams/{team.id}/charge-points/new" if action == "add" else f"/charge-points/{editing[n].id}/edit"
        response = await post_form(client, path, {**GOOD_FORM, "name": f"Depot {n}", "identity": "SAME-1"})
        return response.status_code, await response.get_data(as_text=True)

    outcomes = sorted(await asyncio.gather(save(first, 0), save(second, 1)))
    assert [status for status, _body in outcomes] == ([201, 422] if action == "add" else [303, 422])
    assert "Another charge point already uses this OCPP identity." in outcomes[1][1]
    identities = (await session.exec(select(ChargePoint.identity).where(ChargePoint.team_id == team.id))).all()
    assert identities.count("SAME-1") == 1 and len(identities) == (3 if action == "add" else 2)
    assert await count_charge_points(session) == before + (1 if action == "add" else 0)
    assert (await audit_actions(session)).count(
        "charge_point.create" if action == "add" else "charge_point.update"
    ) == 1


async def test_edit_form_rerenders_and_saves_nothing(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    team, client = await configurer(factory, login_as)
    charge_point = await factory.charge_point(team, name="Original", identity="ORIG-1", country="DK", price_area="DK1")
    edit = await (await client.get(f"/charge-points/{charge_point.id}/edit")).get_data(as_text=True)
    assert 'value="Original"' in edit and 'value="ORIG-1"' in edit
    response = await post_form(
        client,
        f"/charge-points/{charge_point.id}/edit",
        {**GOOD_FORM, "name": "Renamed", "country": "SE", "price_area": "DK1"},
    )
    body = await response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'value="Renamed"' in body and "Price area for Sweden must be one of" in body
    assert "<h1>Edit Original</h1>" in body
    await session.refresh(charge_point)
    assert (charge_point.name, charge_point.country, charge_point.price_area) == ("Original", "DK", "DK1")
    assert "charge_point.update" not in await audit_actions(session)


async def test_edit_saves_and_records_the_change(session: AsyncSession, factory: Factory, login_as: LoginAs) -> None:
    team, client = await configurer(factory, login_as)
    charge_point = await factory.charge_point(team, name="Original", identity="ORIG-1", country="DK", price_area="DK1")
    response = await post_form(
        client,
        f"/charge-points/{charge_point.id}/edit",
        {**GOOD_FORM, "name": "Renamed", "identity": "ORIG-1", "country": "GB", "price_area": ""},
    )
    assert response.status_code == 303 and response.headers["Location"] == f"/charge-points/{charge_point.id}"
    await session.refresh(charge_point)
    assert (charge_point.name, charge_point.country, charge_point.price_area) == ("Renamed", "GB", "GB")
    entry = (await session.exec(select(AuditEntry).where(AuditEntry.action == "charge_point.update"))).one()
    assert entry.before and entry.after
    assert entry.before["name"] == "Original" and entry.after["name"] == "Renamed"
    assert entry.after["price_area"] == "GB" and "identity" not in entry.after


async def test_delete_asks_first_and_is_audited(session: AsyncSession, factory: Factory, login_as: LoginAs) -> None:
    team, client = await configurer(factory, login_as)
    charge_point = await factory.charge_point(team, name="Doomed", identity="DOOM-1")
    cp_id = charge_point.id
    detail = await (await client.get(f"/charge-points/{cp_id}")).get_data(as_text=True)
    assert f'href="/charge-points/{cp_id}/delete"' in detail
    confirm = await client.get(f"/charge-points/{cp_id}/delete")
    body = await confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "Delete Doomed?" in body and "audit log" in body
    assert f'action="/charge-points/{cp_id}/delete"' in body and 'method="post"' in body
    assert await count_charge_points(session) == 1
    response = await post_form(client, f"/charge-points/{cp_id}/delete")
    assert response.status_code == 303 and response.headers["Location"] == f"/teams/{team.id}/charge-points"
    assert await count_charge_points(session) == 0
    entry = (await session.exec(select(AuditEntry).where(AuditEntry.action == "charge_point.delete"))).one()
    assert entry.object_id == cp_id and entry.before and entry.before["identity"] == "DOOM-1"
    assert entry.actor.endswith("@example.test")
    assert (await client.get(f"/charge-points/{cp_id}")).status_code == 404


ODD_VALUES = [
    "",
    "x" * 20_000,
    "💥\u202e" * 100,
    "\x00",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "²",
    "9" * 5000,
    "-1",
    "../../etc/passwd",
    "[]",
]
FIELD_NAMES = [
    "name",
    "identity",
    "brand",
    "model",
    "firmware",
    "serial",
    "country",
    "price_area",
    "facility_id",
    "email",
    "role",
    "team_id",
    "can_configure_charge_points",
    "remove",
    "password",
    "next",
    "remember",
    "q",
    "page",
    "sort",
    "dir",
    "confirm",
    "scope",
    "access",
    "charge_point_ids",
    "terms_version",
    "accept_terms",
    "enabled",
    "expires",
    "area",
    "direction",
    "limit",
    "start",
    "duration",
    "csrf_token",
]


def _routes() -> list[tuple[str, str]]:
    from tests.routes.rules import RULES

    return [
        (rule.rule, method)
        for rule in RULES
        for method in sorted(rule.methods or ())
        if method not in ("HEAD", "OPTIONS")
    ]


def _fill(rule: str, ids: dict[str, Any]) -> str:
    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", lambda m: str(ids.get(m.group(2), "operator")), rule)


ROUTES = _routes()


@pytest.mark.parametrize(("rule", "method"), ROUTES, ids=[f"{m} {r}" for r, m in ROUTES])
async def test_no_server_error_for_odd_input(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs, rule: str, method: str
) -> None:
    """Whatever a browser sends to any route, the answer is never a 500."""
    operator = await factory.operator()
    team = await factory.team(operator)
    user = await factory.user(operator=operator, operator_role="admin")
    charge_point = await factory.charge_point(team)
    ids = {
        "operator_id": operator.id,
        "team_id": team.id,
        "cp_id": charge_point.id,
        "entry_id": 1,
        "membership_id": 1,
        "token_id": 1,
        "identity": charge_point.identity,
    }
    client = await login_as(user)
    path = _fill(rule, ids)
    token = client.csrf_token  # type: ignore[attr-defined]
    attempts: list[dict[str, Any]] = [
        {"query_string": {name: value for name in FIELD_NAMES}} for value in ODD_VALUES[::3]
    ]
    if method != "GET":
        attempts = [{"form": {name: value for name in FIELD_NAMES} | {"csrf_token": token}} for value in ODD_VALUES]
        attempts.append({"form": {"csrf_token": token}})
        # Repeated fields, as a form with several inputs of one name sends them.
        attempts.append(
            {
                "data": "&".join(f"{name}=a&{name}=b" for name in FIELD_NAMES) + f"&csrf_token={token}",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            }
        )
        attempts.append(
            {
                "data": b"\xff\xfe\x00garbage",
                "headers": {"Content-Type": "multipart/form-data; boundary=x", "X-CSRF-Token": token},
            }
        )
        attempts.append({"json": {"name": ["array"], "identity": {"object": 1}}, "headers": {"X-CSRF-Token": token}})
    for n, attempt in enumerate(attempts):
        # Every other attempt as htmx sends it, for the fragment code paths.
        headers = {**attempt.get("headers", {}), **({"HX-Request": "true"} if n % 2 else {})}
        response = await client.open(path, method=method, **{**attempt, "headers": headers})
        assert response.status_code < 500, f"{method} {path} {str(attempt)[:200]}"
