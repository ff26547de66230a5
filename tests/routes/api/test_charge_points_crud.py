"""Charge points through the JSON API: add (the OCPP password once), change every field, delete (releasing
any limit, S2), and import a CSV file, with the pages' rules; each documented in the OpenAPI document."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import AuditEntry, ChargePoint, Dispatch
from powerbank.rules.gsrn import make_facility_id
from powerbank.services.charge_points import IDENTITY_TAKEN
from powerbank.services.imports import MAX_IMPORT_ROWS
from powerbank.services.passwords import verify_secret
from tests.conftest import Factory
from tests.dispatch.support import (
    FULL_POWER_W,
    HUB_CONFIG,
    activate,
    clears,
    connect_all,
    dk2_fleet,
    running,
    simulated,
    write_token,
)
from tests.helpers import eventually
from tests.routes.api.support import bearer, demo_ids, make_token

pytestmark = pytest.mark.usefixtures("fast_hashing")

PROBLEM = "application/problem+json"
GSRN = make_facility_id("30000000001")


async def call(client: QuartClient, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {"headers": bearer(token)}
    if body is not None:
        kwargs["json"] = body
    response = await client.open(path, method=method, **kwargs)
    body_out = await response.get_json(force=True)
    if response.status_code >= 400:
        assert response.mimetype == PROBLEM
    return response.status_code, body_out


async def stored(session: AsyncSession, identity: str) -> ChargePoint | None:
    query = select(ChargePoint).where(ChargePoint.identity == identity).execution_options(populate_existing=True)
    return (await session.exec(query)).first()


def errors_of(body: dict[str, Any]) -> dict[str, str]:
    return {error["field"]: error["message"] for error in body["errors"]}


async def test_adding_a_charge_point_answers_its_ocpp_password_once(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session)
    body = {
        "name": "Kista garage 2",
        "identity": "STO-NEW-1",
        "brand": "Zaptec",
        "model": "Go",
        "serial": "ZAP-123",
        "country": "SE",
        "price_area": "SE3",
        "facility_id": GSRN,
    }
    status, created = await call(client, "POST", f"/api/v1/teams/{ids['sto']}/charge-points", token, body)
    assert status == 201, created
    assert {key: created[key] for key in body} == body
    assert created["team_id"] == ids["sto"] and created["connection_status"] == "Never connected"
    assert created["ocpp_url"].endswith("/ocpp/STO-NEW-1")
    cp = await stored(session, "STO-NEW-1")
    assert cp is not None and cp.id == created["id"]
    assert verify_secret(cp.ocpp_password_hash, created["ocpp_password"])
    # Shown once: reading the charge point never shows it again.
    status, read = await call(client, "GET", f"/api/v1/charge-points/{cp.id}", token)
    assert status == 200 and "ocpp_password" not in read and created["ocpp_password"] not in str(read)

    # R6: a compatible charge point in DK2 is signed up by the system, as when added on the page.
    dk2 = {"name": "Amager 9", "identity": "CPH-NEW-1", "brand": "Easee", "model": "Home", "country": "DK"}
    status, created = await call(
        client, "POST", f"/api/v1/teams/{ids['cph']}/charge-points", token, {**dk2, "price_area": "DK2"}
    )
    assert status == 201 and created["powerbank"]["state"] == "Signed up"


BAD_NEW = [
    ({"identity": "STO-001"}, {"identity": IDENTITY_TAKEN}),
    # Another operator's identity: taken, without saying whose.
    ({"identity": "OSL-001"}, {"identity": IDENTITY_TAKEN}),
    ({"identity": "has space"}, {"identity": "OCPP identity may only contain letters, digits and - _ . :"}),
    ({"country": "XX"}, {"country": "Choose a country from the list."}),
    ({"price_area": "DK2"}, {"price_area": "Price area for Sweden must be one of SE1, SE2, SE3, SE4."}),
    ({"facility_id": "735999300000000010"}, {"facility_id": "Facility ID check digit is wrong"}),
    ({"name": ""}, {"name": "Name is required."}),
    ({"colour": "red"}, {"colour": "Extra inputs are not permitted"}),
]


@pytest.mark.parametrize(("change", "expected"), BAD_NEW, ids=[next(iter(c)) + " " + str(c) for c, _ in BAD_NEW])
async def test_adding_checks_what_the_form_checks_and_saves_nothing_when_wrong(
    client: QuartClient,
    session: AsyncSession,
    demo: list[ChargePoint],
    change: dict[str, str],
    expected: dict[str, str],
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session)
    before = (await session.exec(select(func.count()).select_from(ChargePoint))).one()
    body = {"name": "New", "identity": "STO-NEW-2", "country": "SE", "price_area": "SE3", **change}
    status, problem = await call(client, "POST", f"/api/v1/teams/{ids['sto']}/charge-points", token, body)
    assert status == 422
    found = errors_of(problem)
    for field, message in expected.items():
        assert message in found[field]
    assert "Oslo" not in str(problem) and "Bjørvika" not in str(problem)
    assert (await session.exec(select(func.count()).select_from(ChargePoint))).one() == before


async def test_every_field_can_be_changed_and_null_clears_an_optional_one(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session)
    changes = {
        "name": "Kista renamed",
        "identity": "STO-001-B",
        "brand": "Easee",
        "model": "Charge",
        "firmware": "4.2",
        "serial": "EAS-9",
        "country": "DK",
        "price_area": "DK1",
        "facility_id": None,
    }
    status, changed = await call(client, "PATCH", f"/api/v1/charge-points/{ids['kista']}", token, changes)
    assert status == 200, changed
    assert {key: changed[key] for key in changes} == changes
    cp = await stored(session, "STO-001-B")
    assert cp is not None and (cp.name, cp.firmware, cp.country, cp.facility_id) == ("Kista renamed", "4.2", "DK", None)
    status, changed = await call(client, "PATCH", f"/api/v1/charge-points/{ids['kista']}", token, {"brand": None})
    assert status == 200 and changed["brand"] == "" and changed["model"] == "Charge"
    # An identity in use elsewhere is refused, and nothing of the request is saved.
    status, problem = await call(
        client, "PATCH", f"/api/v1/charge-points/{ids['kista']}", token, {"name": "Other", "identity": "OSL-001"}
    )
    assert status == 422 and errors_of(problem) == {"identity": IDENTITY_TAKEN}
    cp = await stored(session, "STO-001-B")
    assert cp is not None and cp.name == "Kista renamed"
    status, problem = await call(client, "PATCH", f"/api/v1/charge-points/{ids['kista']}", token, {"name": None})
    assert status == 422 and errors_of(problem) == {"name": "Name is required."}


async def test_deleting_a_charge_point_removes_it_and_keeps_it_in_the_audit_log(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session)
    status, deleted = await call(client, "DELETE", f"/api/v1/charge-points/{ids['kista']}", token)
    assert status == 200, deleted
    assert deleted["id"] == ids["kista"] and deleted["identity"] == "STO-001"
    assert await stored(session, "STO-001") is None
    assert (await call(client, "GET", f"/api/v1/charge-points/{ids['kista']}", token))[0] == 404
    assert (await call(client, "DELETE", f"/api/v1/charge-points/{ids['kista']}", token))[0] == 404
    entry = (await session.exec(select(AuditEntry).where(AuditEntry.action == "charge_point.delete"))).one()
    assert entry.object_id == ids["kista"] and entry.actor == "API token script"
    # The identity is free again.
    body = {"name": "Kista again", "identity": "STO-001", "country": "SE", "price_area": "SE3"}
    assert (await call(client, "POST", f"/api/v1/teams/{ids['sto']}/charge-points", token, body))[0] == 201


WRITES = [
    ("POST", "/api/v1/teams/{team}/charge-points", {"name": "N", "identity": "W-1", "country": "NO"}),
    ("POST", "/api/v1/teams/{team}/charge-points:import", {"csv": "Name;Identity;Country\nN;W-1;NO\n"}),
    ("PATCH", "/api/v1/charge-points/{cp}", {"name": "Renamed"}),
    ("DELETE", "/api/v1/charge-points/{cp}", None),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
async def test_read_tokens_other_teams_and_other_operators_change_nothing(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint], method: str, path: str, body: Any
) -> None:
    ids = await demo_ids(session)
    read = await make_token(session, access="read", name="reader")
    team_write = await make_token(session, team="Stockholm Offices", name="team writer")
    cases = [
        (read, ids["sto"], ids["kista"], 403),
        (team_write, ids["lon"], ids["bay"], 404),
        (team_write, ids["oslo"], ids["oslo_cp"], 404),
    ]
    for token, team_id, cp_id, want in cases:
        status, _ = await call(client, method, path.format(team=team_id, cp=cp_id), token, body)
        assert status == want, (token, team_id)
    assert await stored(session, "W-1") is None
    everything = list(await session.exec(select(ChargePoint).execution_options(populate_existing=True)))
    assert "Renamed" not in {cp.name for cp in everything}
    assert {"STO-001", "LON-001", "OSL-001"} <= {cp.identity for cp in everything}


async def test_importing_a_file_through_the_api_all_or_nothing(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    ids = await demo_ids(session)
    token = await make_token(session)
    path = f"/api/v1/teams/{ids['sto']}/charge-points:import"
    heading = "Name,Identity,Brand,Model,Country,Price area,Facility ID"
    good = "\ufeff" + "\n".join(
        [heading]
        + [f"Solna {n},SOL-{n},Zaptec,Go,SE,SE3,{make_facility_id(f'{40000000000 + n}')}" for n in range(1, 4)]
    )
    status, preview = await call(client, "POST", path, token, {"csv": good, "dry_run": True})
    assert status == 200, preview
    assert preview["rows"] == 3 and [item["line"] for item in preview["items"]] == [2, 3, 4]
    assert await stored(session, "SOL-1") is None

    bad = good + "\nTaken,OSL-001,,,NO,,\nTwice,SOL-1,,,NO,,\nNowhere,NEW-9,,,Atlantis,,"
    status, problem = await call(client, "POST", path, token, {"csv": bad})
    assert status == 422
    assert errors_of(problem) == {
        "csv.line5.identity": f"Line 5, Identity: {IDENTITY_TAKEN}",
        "csv.line6.identity": "Line 6, Identity: SOL-1 is also on line 2.",
        "csv.line7.country": "Line 7, Country: Choose a country from the list.",
    }
    assert problem["detail"] == "Nothing was imported: 3 lines of the file have problems."
    assert await stored(session, "SOL-1") is None

    status, result = await call(client, "POST", path, token, {"csv": good})
    assert status == 201, result
    assert result["imported"] == 3
    for item in result["items"]:
        cp = await stored(session, item["identity"])
        assert cp is not None and cp.id == item["id"] and cp.team_id == ids["sto"]
        assert verify_secret(cp.ocpp_password_hash, item["ocpp_password"])
        assert item["ocpp_url"].endswith(f"/ocpp/{item['identity']}")

    too_many = "Name;Identity;Country\n" + "\n".join(f"C{n};M-{n};NO" for n in range(MAX_IMPORT_ROWS + 1))
    status, problem = await call(client, "POST", path, token, {"csv": too_many, "dry_run": True})
    assert status == 422
    assert errors_of(problem) == {
        "csv": f"File: The file holds {MAX_IMPORT_ROWS + 1:,} charge points. "
        f"Import at most {MAX_IMPORT_ROWS:,} charge points at once: split the file."
    }
    status, problem = await call(client, "POST", path, token, {"csv": "Name;Identity\nA;B\n"})
    assert status == 422 and "The column Country is missing" in problem["errors"][0]["message"]


async def test_the_new_operations_are_in_the_openapi_document(client: QuartClient) -> None:
    document = await (await client.get("/api/openapi.json")).get_json()
    paths = document["paths"]
    assert set(paths["/api/v1/teams/{team_id}/charge-points"]) == {"get", "post"}
    assert set(paths["/api/v1/charge-points/{cp_id}"]) == {"get", "patch", "delete"}
    importing = paths["/api/v1/teams/{team_id}/charge-points:import"]["post"]
    assert {"200", "201", "422", "413"} <= set(importing["responses"])
    assert "ocpp_password" in document["components"]["schemas"]["ChargePointCreated"]["properties"]
    changes = document["components"]["schemas"]["ChargePointChanges"]["properties"]
    assert set(changes) == {
        "name",
        "identity",
        "brand",
        "model",
        "firmware",
        "serial",
        "country",
        "price_area",
        "facility_id",
    }


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return HUB_CONFIG


@pytest.mark.served
async def test_deleting_through_the_api_releases_the_chargers_limit_at_once(
    app: Quart, factory: Factory, session: AsyncSession
) -> None:
    operator = await factory.operator()
    cp = (await dk2_fleet(factory, session, await factory.team(operator), 1))[0]
    charger = simulated(cp.identity)
    headers = await write_token(session, operator)
    async with running(app.config["TEST_OCPP_URL"], [charger]):
        await connect_all(app, session, [(cp, charger)])
        await activate(app, headers, price_area="DK2", action="pause", duration_s=30)
        await eventually(lambda: charger.power_w == 0, 2.0, "not paused")
        response = await app.test_client().delete(f"/api/v1/charge-points/{cp.id}", headers=headers)
        assert response.status_code == 200, await response.get_data(as_text=True)
        # S2: the limit leaves at once, not when the activation ends.
        await eventually(lambda: charger.power_w == FULL_POWER_W and bool(clears(charger)), 1.0, "not released")

        async def recorded() -> bool:
            await session.rollback()
            return (await session.exec(select(Dispatch.release_reason))).all() == ["charge point deleted"]

        await eventually(recorded, message="the release was not recorded")
