"""The JSON API v1: every endpoint with each token scope, tenant isolation, the bulk sign-up's
Swedish rule and atomicity, problem documents, and the whole script an operator would write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import (
    AuditEntry,
    ChargePoint,
    ParticipationEvent,
    TermsVersion,
)
from powerbank.rules.gsrn import make_facility_id
from powerbank.services.api_tokens import TokenRateLimiter
from powerbank.web.state import hold_api_rate_limiter
from tests.conftest import LoginAs
from tests.routes.api.support import TERMS, bearer, demo_ids, make_token, state_of

PROBLEM = "application/problem+json"
SCOPES = {
    "operator read": (None, "read"),
    "operator write": (None, "write"),
    "team read": ("Stockholm Offices", "read"),
    "team write": ("Stockholm Offices", "write"),
}


async def call(client: QuartClient, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any, str]:
    kwargs: dict[str, Any] = {"headers": bearer(token)}
    if body is not None:
        kwargs["json"] = body
    response = await client.open(path, method=method, **kwargs)
    return response.status_code, await response.get_json(force=True), response.mimetype


def sign_up_ids(*names: str) -> Callable[[dict[str, int]], dict[str, Any]]:
    return lambda ids: {"accept_terms_version": TERMS, "charge_point_ids": [ids[name] for name in names]}


NOBODY_ELSE = (404, 404, 404, 404)
SAME_TEAM_READ = (200, 200, 200, 200)
OTHER_TEAM_READ = (200, 200, 404, 404)
SAME_TEAM_WRITE = (403, 200, 403, 200)
OTHER_TEAM_WRITE = (403, 200, 404, 404)

# (method, path, body, expected status for operator read, operator write, team read, team write).
# The team tokens are Stockholm Offices'; London Depot is another team of the same operator, Oslo
# Yard belongs to another operator.
MATRIX: list[tuple[str, str, Any, tuple[int, int, int, int]]] = [
    ("GET", "/api/v1/teams", None, SAME_TEAM_READ),
    ("GET", "/api/v1/teams/{sto}/charge-points", None, SAME_TEAM_READ),
    ("GET", "/api/v1/teams/{lon}/charge-points", None, OTHER_TEAM_READ),
    ("GET", "/api/v1/teams/{oslo}/charge-points", None, NOBODY_ELSE),
    ("GET", "/api/v1/charge-points/{kista}", None, SAME_TEAM_READ),
    ("GET", "/api/v1/charge-points/{bay}", None, OTHER_TEAM_READ),
    ("GET", "/api/v1/charge-points/{oslo_cp}", None, NOBODY_ELSE),
    ("PATCH", "/api/v1/charge-points/{kista}", lambda ids: {"name": "Kista A2"}, SAME_TEAM_WRITE),
    ("PATCH", "/api/v1/charge-points/{bay}", lambda ids: {"name": "Bay 1b"}, OTHER_TEAM_WRITE),
    ("PATCH", "/api/v1/charge-points/{oslo_cp}", lambda ids: {"name": "Bjørvika"}, NOBODY_ELSE),
    ("GET", "/api/v1/charge-points/{kista}/powerbank", None, SAME_TEAM_READ),
    ("GET", "/api/v1/charge-points/{bay}/powerbank", None, OTHER_TEAM_READ),
    ("GET", "/api/v1/charge-points/{oslo_cp}/powerbank", None, NOBODY_ELSE),
    ("PUT", "/api/v1/charge-points/{kista}/powerbank", lambda ids: {"accept_terms_version": TERMS}, SAME_TEAM_WRITE),
    ("PUT", "/api/v1/charge-points/{bay}/powerbank", lambda ids: {"accept_terms_version": TERMS}, OTHER_TEAM_WRITE),
    ("PUT", "/api/v1/charge-points/{oslo_cp}/powerbank", lambda ids: {"accept_terms_version": TERMS}, NOBODY_ELSE),
    ("DELETE", "/api/v1/charge-points/{kista}/powerbank", None, SAME_TEAM_WRITE),
    ("DELETE", "/api/v1/charge-points/{bay}/powerbank", None, OTHER_TEAM_WRITE),
    ("DELETE", "/api/v1/charge-points/{oslo_cp}/powerbank", None, NOBODY_ELSE),
    ("POST", "/api/v1/teams/{sto}/powerbank/signup", sign_up_ids("kista"), SAME_TEAM_WRITE),
    ("POST", "/api/v1/teams/{lon}/powerbank/signup", sign_up_ids("bay"), OTHER_TEAM_WRITE),
    ("POST", "/api/v1/teams/{oslo}/powerbank/signup", sign_up_ids("oslo_cp"), NOBODY_ELSE),
    ("GET", "/api/v1/teams/{sto}/powerbank/events", None, SAME_TEAM_READ),
    ("GET", "/api/v1/teams/{lon}/powerbank/events", None, OTHER_TEAM_READ),
    ("GET", "/api/v1/teams/{oslo}/powerbank/events", None, NOBODY_ELSE),
    ("GET", "/api/v1/terms/current", None, SAME_TEAM_READ),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
async def test_every_endpoint_with_each_token_scope(
    client: QuartClient,
    session: AsyncSession,
    demo: list[ChargePoint],
    method: str,
    path: str,
    body: Any,
    expected: tuple[int, ...],
) -> None:
    ids = await demo_ids(session)
    for (scope, (team, access)), want in zip(SCOPES.items(), expected, strict=True):
        token = await make_token(session, team=team, access=access, name=scope)
        status, document, mimetype = await call(client, method, path.format(**ids), token, body(ids) if body else None)
        assert status == want, (scope, document)
        if status >= 400:
            assert mimetype == PROBLEM and document["status"] == status, scope


async def test_teams_lists_what_the_token_reaches(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    operator_token = await make_token(session, access="read")
    team_token = await make_token(session, team="Stockholm Offices", access="read")
    _, operator_teams, _ = await call(client, "GET", "/api/v1/teams", operator_token)
    _, team_teams, _ = await call(client, "GET", "/api/v1/teams", team_token)
    assert [t["name"] for t in operator_teams["items"]] == [
        "Berlin Garage",
        "Copenhagen Fleet",
        "Dublin Hub",
        "London Depot",
        "Stockholm Offices",
    ]
    assert [(t["name"], t["operator_name"]) for t in team_teams["items"]] == [("Stockholm Offices", "Nordic Charge")]


async def test_writes_refused_by_scope_or_tenant_change_nothing(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    ids = await demo_ids(session)
    read_token = await make_token(session, access="read")
    team_token = await make_token(session, team="Stockholm Offices")
    status, document, _ = await call(
        client, "PATCH", f"/api/v1/charge-points/{ids['kista']}", read_token, {"name": "Hijacked"}
    )
    assert (status, document["detail"]) == (403, "This API token is read-only; changes need a token with write access.")
    await call(client, "PATCH", f"/api/v1/charge-points/{ids['bay']}", team_token, {"name": "Hijacked"})
    await call(client, "DELETE", f"/api/v1/charge-points/{ids['bay']}/powerbank", read_token)
    names = set(await session.exec(select(ChargePoint.name).where(col(ChargePoint.id).in_([ids["kista"], ids["bay"]]))))
    assert names == {"Kista A", "Bay 1"}
    assert (
        await session.exec(select(ParticipationEvent).where(ParticipationEvent.actor_label != "system"))
    ).all() == []


async def test_charge_points_are_paginated_and_filtered_by_country_area_and_state(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session, access="read")
    base = f"/api/v1/teams/{ids['cph']}/charge-points"
    _, first, _ = await call(client, "GET", f"{base}?page_size=4", token)
    _, second, _ = await call(client, "GET", f"{base}?page_size=4&page=2", token)
    assert (first["total"], first["pages"], len(first["items"]), len(second["items"])) == (6, 2, 4, 2)
    assert [cp["name"] for cp in first["items"] + second["items"]] == [
        "Aarhus Hub",
        "Amager Depot",
        "Nørrebro 1",
        "Nørrebro 2",
        "Valby Legacy",
        "Vesterbro 1",
    ]
    _, dk1, _ = await call(client, "GET", f"{base}?area=dk1", token)
    assert [cp["name"] for cp in dk1["items"]] == ["Aarhus Hub"]
    _, signed_up, _ = await call(client, "GET", f"{base}?state=Signed%20up", token)
    assert {cp["name"] for cp in signed_up["items"]} == {"Amager Depot", "Nørrebro 1", "Nørrebro 2", "Vesterbro 1"}
    assert {cp["powerbank"]["why"] for cp in signed_up["items"]} == {"Signed up automatically (DK2)"}
    _, swedish, _ = await call(client, "GET", f"/api/v1/teams/{ids['sto']}/charge-points?country=SE", token)
    _, german, _ = await call(client, "GET", f"/api/v1/teams/{ids['sto']}/charge-points?country=DE", token)
    assert (swedish["total"], german["total"]) == (6, 0)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page_size=501", "page_size"),
        ("page_size=0", "page_size"),
        ("page=0", "page"),
        ("page=two", "page"),
        ("state=Asleep", "state"),
        ("colour=red", "colour"),
    ],
)
async def test_bad_query_strings_are_refused_with_the_field(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint], query: str, field: str
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session, access="read")
    status, document, mimetype = await call(client, "GET", f"/api/v1/teams/{ids['sto']}/charge-points?{query}", token)
    assert (status, mimetype) == (422, PROBLEM)
    assert [error["field"] for error in document["errors"]] == [field]


async def test_patch_uses_the_forms_validation_and_changes_nothing_when_invalid(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session)
    cases = [
        (ids["solna1"], {"facility_id": "735999100000000011"}, "facility_id", "Facility ID check digit is wrong"),
        (ids["solna1"], {"facility_id": "12345"}, "facility_id", "Facility ID must be 18 digits; this has 5."),
        (
            ids["bay"],
            {"facility_id": make_facility_id("10000000009")},
            "facility_id",
            "A Facility ID is only used for charge points in Sweden.",
        ),
        (ids["bay"], {"country": "DK"}, "price_area", "Price area for Denmark must be one of DK1, DK2."),
        (ids["bay"], {"name": None}, "name", "Name is required."),
        (ids["bay"], {"name": "x" * 121}, "name", "Name can be at most 120 characters."),
    ]
    for cp_id, body, field, message in cases:
        status, document, _ = await call(client, "PATCH", f"/api/v1/charge-points/{cp_id}", token, body)
        assert status == 422, body
        assert document["errors"][0]["field"] == field and document["errors"][0]["message"].startswith(message)
    bay = await session.get(ChargePoint, ids["bay"])
    await session.refresh(bay)
    assert (bay.name, bay.country, bay.facility_id) == ("Bay 1", "GB", None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": 5}, "name"),
        # The identity may be changed now (issue 18); a charger's OCPP password never is, through PATCH.
        ({"name": "ok", "ocpp_password": "chosen-by-me"}, "ocpp_password"),
        ({"facility_id": ["735999"]}, "facility_id"),
        ([1, 2], "body"),
        ({"name": "\ud800"}, "body"),
    ],
)
async def test_wrong_types_and_unknown_fields_are_422_problems(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint], body: Any, field: str
) -> None:
    ids = await demo_ids(session)
    status, document, mimetype = await call(
        client, "PATCH", f"/api/v1/charge-points/{ids['bay']}", await make_token(session), body
    )
    assert (status, mimetype) == (422, PROBLEM)
    assert set(document) == {"type", "title", "status", "detail", "errors"}
    assert document["type"] == "/api/docs#problem-validation"
    assert document["errors"][0]["field"] == field


async def test_bodies_that_are_not_json_too_large_or_sent_wrongly_get_problems(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    ids = await demo_ids(session)
    headers = bearer(await make_token(session))
    path = f"/api/v1/charge-points/{ids['bay']}"
    cases = [
        (await client.patch(path, headers=headers, data="name=x"), 415),
        (await client.patch(path, headers={**headers, "Content-Type": "application/json"}, data="{name"), 400),
        (await client.patch(path, headers={**headers, "Content-Type": "application/json"}, data=b"\xff\xfe"), 400),
        (await client.patch(path, headers=headers, json={"name": "x" * (2 * 1024 * 1024)}), 413),
        (await client.post(path, headers=headers, json={}), 405),
        (await client.get("/api/v1/no-such-thing", headers=headers), 404),
        (await client.post("/api/v1/no-such-thing", headers=headers, json={}), 404),
    ]
    for response, status in cases:
        document = await response.get_json(force=True)
        assert (response.status_code, response.mimetype, document["status"]) == (status, PROBLEM, status)
    assert (await session.get(ChargePoint, ids["bay"])).name == "Bay 1"


@pytest.mark.parametrize(
    "authorization", [None, "Bearer", "Bearer pb_not-a-real-token", "Basic dXNlcjpwdw==", "Bearer " + "pb_" + "x" * 500]
)
async def test_requests_without_a_valid_token_are_401(
    client: QuartClient, demo: list[ChargePoint], authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.get("/api/v1/teams", headers=headers)
    document = await response.get_json(force=True)
    assert (response.status_code, response.mimetype, document["title"]) == (401, PROBLEM, "Unauthorized")
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="PowerBank API"')


async def test_a_logged_in_browser_session_is_not_an_api_token(login_as: LoginAs, demo: list[ChargePoint]) -> None:
    browser = await login_as("operator.admin@demo.test")
    assert (await browser.get("/api/v1/teams")).status_code == 401


async def test_a_token_over_its_rate_limit_gets_429_with_retry_after(
    app: Quart, client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    hold_api_rate_limiter(app, TokenRateLimiter(3, 60))
    busy, other = await make_token(session, name="busy"), await make_token(session, name="other")
    statuses = [(await client.get("/api/v1/teams", headers=bearer(busy))).status_code for _ in range(3)]
    refused = await client.get("/api/v1/teams", headers=bearer(busy))
    assert statuses == [200, 200, 200]
    assert (refused.status_code, refused.mimetype) == (429, PROBLEM)
    assert 1 <= int(refused.headers["Retry-After"]) <= 20
    assert (await client.get("/api/v1/teams", headers=bearer(other))).status_code == 200


async def test_bulk_sign_up_in_sweden_is_all_or_nothing_with_a_message_per_charge_point(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session, team="Stockholm Offices")
    path = f"/api/v1/teams/{ids['sto']}/powerbank/signup"
    status, blocked, _ = await call(client, "POST", path, token, {"accept_terms_version": TERMS, "all": True})
    assert (status, blocked["type"]) == (422, "/api/docs#problem-sign-up-blocked")
    assert {e["charge_point_id"] for e in blocked["errors"]} == {ids["solna1"], ids["solna2"], ids["soder"]}
    assert all(e["message"].endswith("Facility ID is required for charge points in Sweden.") for e in blocked["errors"])

    # Two valid Facility IDs and a wrong one: still nothing saved, not even the valid IDs.
    good1, good2 = make_facility_id("20000000001"), make_facility_id("20000000002")
    status, blocked, _ = await call(
        client,
        "POST",
        path,
        token,
        {
            "accept_terms_version": TERMS,
            "all": True,
            "facility_ids": {str(ids["solna1"]): good1, str(ids["solna2"]): good2, str(ids["soder"]): good1[:-1] + "0"},
        },
    )
    assert status == 422
    assert [(e["charge_point_id"], e["message"]) for e in blocked["errors"]] == [
        (ids["soder"], f"Södermalm: Facility ID check digit is wrong: the last digit should be {good1[-1]}.")
    ]
    stored = set(
        await session.exec(
            select(ChargePoint.facility_id)
            .where(col(ChargePoint.id).in_([ids["solna1"], ids["solna2"]]))
            .execution_options(populate_existing=True)
        )
    )
    assert stored == {None}
    assert [await state_of(session, ids[name]) for name in ("kista", "solna1")] == ["Not signed up"] * 2

    # A ticked incompatible charge point blocks too.
    status, blocked, _ = await call(client, "POST", path, token, sign_up_ids("kista", "gamla")(ids))
    assert status == 422 and blocked["errors"][0]["charge_point_id"] == ids["gamla"]
    assert "Not compatible" in blocked["errors"][0]["message"]


async def test_bulk_sign_up_refuses_other_terms_and_other_teams_charge_points(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session)
    path = f"/api/v1/teams/{ids['sto']}/powerbank/signup"
    status, document, _ = await call(
        client, "POST", path, token, {"accept_terms_version": "v0", "charge_point_ids": [ids["kista"]]}
    )
    assert status == 422 and document["errors"][0]["field"] == "accept_terms_version"
    status, document, _ = await call(
        client, "POST", path, token, {"accept_terms_version": TERMS, "charge_point_ids": [ids["kista"], ids["bay"]]}
    )
    assert status == 404
    status, document, _ = await call(client, "POST", path, token, {"accept_terms_version": TERMS})
    assert status == 422 and 'Give either "charge_point_ids" or "all": true.' in document["errors"][0]["message"]
    status, document, _ = await call(
        client, "POST", path, token, {"accept_terms_version": TERMS, "all": True, "facility_ids": {"Solna": "1"}}
    )
    assert status == 422 and document["errors"][0]["field"] == "facility_ids.Solna"
    assert await state_of(session, ids["kista"]) == "Not signed up"


async def test_single_sign_up_and_opt_out_through_the_api_are_in_the_history_as_the_token(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session, team="Stockholm Offices", name="fleet sync")
    path = f"/api/v1/charge-points/{ids['solna1']}/powerbank"
    status, document, _ = await call(client, "PUT", path, token, {"accept_terms_version": TERMS})
    assert status == 422 and [e["field"] for e in document["errors"]] == ["facility_id"]
    status, signed, _ = await call(
        client, "PUT", path, token, {"accept_terms_version": TERMS, "facility_id": make_facility_id("30000000003")}
    )
    assert (status, signed["state"], signed["source"], signed["eligible"]) == (200, "Signed up", "API", True)
    status, out, _ = await call(client, "DELETE", path, token)
    assert (status, out["state"], out["source"]) == (200, "Opted out", "API")
    _, history, _ = await call(client, "GET", f"/api/v1/teams/{ids['sto']}/powerbank/events", token)
    assert [
        (e["from_state"], e["to_state"], e["actor"], e["source"], e["terms_version"]) for e in history["items"]
    ] == [
        ("Signed up", "Opted out", "API token fleet sync", "API", None),
        ("Not signed up", "Signed up", "API token fleet sync", "API", TERMS),
    ]
    actors = set(
        await session.exec(
            select(AuditEntry.actor).where(col(AuditEntry.action).in_(["powerbank.sign_up", "powerbank.opt_out"]))
        )
    )
    assert actors == {"API token fleet sync"}


async def test_powerbank_status_says_why_a_charge_point_cannot_take_part(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session, access="read")
    _, solna, _ = await call(client, "GET", f"/api/v1/charge-points/{ids['solna1']}/powerbank", token)
    _, gamla, _ = await call(client, "GET", f"/api/v1/charge-points/{ids['gamla']}/powerbank", token)
    assert (solna["eligible"], solna["compatibility"], solna["reasons"]) == (
        False,
        "Compatible",
        ["Facility ID is required for charge points in Sweden."],
    )
    assert (gamla["eligible"], gamla["compatibility"]) == (False, "Not compatible")
    assert gamla["reasons"] == ["Not compatible: Generic Basic 7 is not in the compatibility catalogue"]


async def test_terms_cannot_be_accepted_with_a_token_no_person_created(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session, creator=None)
    status, document, _ = await call(
        client, "PUT", f"/api/v1/charge-points/{ids['kista']}/powerbank", token, {"accept_terms_version": TERMS}
    )
    assert status == 403 and "--created-by" in document["detail"]
    assert await state_of(session, ids["kista"]) == "Not signed up"


async def test_clearing_a_swedish_facility_id_through_the_api_suspends_the_charge_point(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session)
    await call(client, "PUT", f"/api/v1/charge-points/{ids['kista']}/powerbank", token, {"accept_terms_version": TERMS})
    status, kista, _ = await call(
        client, "PATCH", f"/api/v1/charge-points/{ids['kista']}", token, {"facility_id": None}
    )
    assert (status, kista["facility_id"], kista["powerbank"]["state"]) == (200, None, "Suspended")


async def test_without_published_terms_sign_up_is_a_conflict_and_there_are_no_current_terms(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session)
    await session.exec(delete(TermsVersion))
    await session.commit()
    status, document, mimetype = await call(
        client, "POST", f"/api/v1/teams/{ids['sto']}/powerbank/signup", token, sign_up_ids("kista")(ids)
    )
    assert (status, mimetype, document["type"]) == (409, PROBLEM, "/api/docs#problem-conflict")
    assert document["detail"].startswith("No terms and conditions are published")
    assert (await call(client, "GET", "/api/v1/terms/current", token))[0] == 404
    assert await state_of(session, ids["kista"]) == "Not signed up"


async def test_current_terms(client: QuartClient, session: AsyncSession, demo: list[ChargePoint]) -> None:
    status, terms, _ = await call(client, "GET", "/api/v1/terms/current", await make_token(session, access="read"))
    assert (status, terms["version"]) == (200, TERMS)
    assert terms["text"].startswith("DEMO TERMS AND CONDITIONS")


async def test_a_script_with_only_a_token_signs_stockholm_up_and_the_pages_show_it(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    token = await make_token(session, name="fleet import")

    # 1. Find Nordic Charge's Stockholm team and its charge points.
    _, teams, _ = await call(client, "GET", "/api/v1/teams", token)
    stockholm = next(t for t in teams["items"] if t["name"] == "Stockholm Offices")
    _, listing, _ = await call(client, "GET", f"/api/v1/teams/{stockholm['id']}/charge-points?page_size=500", token)
    missing = [cp for cp in listing["items"] if cp["powerbank"]["why"] == "Facility ID missing"]
    assert [cp["name"] for cp in missing] == ["Solna 1", "Solna 2", "Södermalm"]

    # 2. Set the missing Facility IDs from the fleet tool.
    for n, cp in enumerate(missing):
        status, _, _ = await call(
            client,
            "PATCH",
            f"/api/v1/charge-points/{cp['id']}",
            token,
            {"facility_id": make_facility_id(f"4000000000{n}")},
        )
        assert status == 200

    # 3. Sign the whole team up in one call.
    status, result, _ = await call(
        client,
        "POST",
        f"/api/v1/teams/{stockholm['id']}/powerbank/signup",
        token,
        {"accept_terms_version": TERMS, "all": True},
    )
    assert (status, result["signed_up"], result["message"]) == (200, 5, "5 charge points signed up.")
    assert {row["name"] for row in result["results"]} == {"Kista A", "Kista B", "Solna 1", "Solna 2", "Södermalm"}

    # 4. Read the history.
    _, history, _ = await call(client, "GET", f"/api/v1/teams/{stockholm['id']}/powerbank/events", token)
    assert history["total"] == 5
    assert {(e["to_state"], e["actor"], e["source"]) for e in history["items"]} == {
        ("Signed up", "API token fleet import", "API")
    }

    # The pages show the same.
    browser = await login_as("admin@demo.test")
    tab = await (await browser.get(f"/teams/{stockholm['id']}/charge-points")).get_data(as_text=True)
    assert tab.count("state-signed-up") == 5 and "Facility ID missing" not in tab
    page = await (await browser.get(f"/teams/{stockholm['id']}/powerbank")).get_data(as_text=True)
    assert page.count("API token fleet import") == 5


HUGE_IDS = ["9" * 5000, "1" + "0" * 9, str(2**63), "١٢"]


@pytest.mark.parametrize("key", HUGE_IDS)
async def test_a_facility_id_key_beyond_any_database_id_is_refused_not_an_error(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint], key: str
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session, team="Stockholm Offices")
    path = f"/api/v1/teams/{ids['sto']}/powerbank/signup"
    body = {"accept_terms_version": TERMS, "all": True, "facility_ids": {key: make_facility_id("20000000001")}}
    status, document, mimetype = await call(client, "POST", path, token, body)
    assert (status, mimetype) == (422, PROBLEM)
    assert document["errors"][0]["field"] == f"facility_ids.{key}"
    assert await state_of(session, ids["kista"]) == "Not signed up"


@pytest.mark.parametrize("cp_id", [10**9, 2**31, 2**63 - 1])
async def test_a_charge_point_id_beyond_any_database_id_is_refused_not_an_error(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint], cp_id: int
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session, team="Stockholm Offices")
    path = f"/api/v1/teams/{ids['sto']}/powerbank/signup"
    status, document, _ = await call(
        client, "POST", path, token, {"accept_terms_version": TERMS, "charge_point_ids": [cp_id]}
    )
    assert status == 422 and document["errors"][0]["field"].startswith("charge_point_ids")
    events = f"/api/v1/teams/{ids['sto']}/powerbank/events?charge_point_id={cp_id}"
    status, document, _ = await call(client, "GET", events, token)
    assert status == 422 and document["errors"][0]["field"] == "charge_point_id"
