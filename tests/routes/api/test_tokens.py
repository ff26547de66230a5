"""API tokens: the pages that make and revoke them, who may, their lifecycle (use, last use,
revocation, expiry), the `powerbank api-token` command, and the OpenAPI document and docs page."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank import cli
from powerbank.db import standalone_session, utcnow
from powerbank.models import ApiToken, AuditEntry, ChargePoint, Operator, Team, TeamMembership, TokenAccess, User
from powerbank.services import api_tokens, users
from powerbank.services.audit import SYSTEM
from tests.conftest import LoginAs, post_form
from tests.routes.api.support import TERMS, bearer, demo_ids, make_token, state_of

TOKEN_RE = re.compile(r'value="(pb_[A-Za-z0-9_\-]{43})"')


async def ids_of(session: AsyncSession) -> dict[str, int]:
    operators = {o.name: o.id or 0 for o in await session.exec(select(Operator))}
    teams = {t.name: t.id or 0 for t in await session.exec(select(Team))}
    return {"nordic": operators["Nordic Charge"], "sto": teams["Stockholm Offices"], "lon": teams["London Depot"]}


async def token_row(session: AsyncSession, name: str) -> ApiToken:
    return (
        await session.exec(select(ApiToken).where(ApiToken.name == name).execution_options(populate_existing=True))
    ).one()


async def test_an_operator_admin_creates_a_token_that_is_shown_once_and_stored_hashed(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    ids = await ids_of(session)
    browser = await login_as("operator.admin@demo.test")
    page = f"/operators/{ids['nordic']}/api-tokens"
    response = await post_form(
        browser, page, {"name": "fleet import", "scope": "operator", "access": "write", "expires_in_days": ""}
    )
    assert response.status_code == 201
    created = await response.get_data(as_text=True)
    secret = TOKEN_RE.search(created).group(1)
    assert "it is shown only this once" in created

    token = await token_row(session, "fleet import")
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert (token.team_id, token.access, token.prefix, token.expires_at) == (None, "write", secret[:9], None)
    listing = await (await browser.get(page)).get_data(as_text=True)
    assert secret not in listing and f"{token.prefix}…" in listing and "All teams" in listing
    audit = (await session.exec(select(AuditEntry).where(AuditEntry.action == "api_token.create"))).one()
    assert audit.actor == "operator.admin@demo.test" and secret not in str(audit.after)

    assert (await client.get("/api/v1/teams", headers=bearer(secret))).status_code == 200


@pytest.mark.parametrize(
    ("email", "operator_page", "team_page"),
    [
        ("operator.admin@demo.test", 200, 200),
        ("operator.manager@demo.test", 403, 403),
        ("owner@demo.test", 403, 200),
        ("admin@demo.test", 403, 403),
        ("readonly.admin@demo.test", 403, 403),
        ("member@demo.test", 403, 403),
        ("fjord.admin@demo.test", 404, 404),
    ],
)
async def test_who_may_manage_api_tokens(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs, email: str, operator_page: int, team_page: int
) -> None:
    ids = await ids_of(session)
    browser = await login_as(email)
    assert (await browser.get(f"/operators/{ids['nordic']}/api-tokens")).status_code == operator_page
    assert (await browser.get(f"/teams/{ids['sto']}/api-tokens")).status_code == team_page
    refused = await post_form(
        browser, f"/teams/{ids['sto']}/api-tokens", {"name": "x", "scope": str(ids["sto"]), "access": "read"}
    )
    assert refused.status_code == (201 if team_page == 200 else team_page)


async def test_a_team_owner_makes_tokens_only_for_their_team(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    ids = await ids_of(session)
    browser = await login_as("owner@demo.test")
    page = f"/teams/{ids['sto']}/api-tokens"
    for scope in ("operator", str(ids["lon"])):
        response = await post_form(browser, page, {"name": "sneaky", "scope": scope, "access": "write"})
        assert response.status_code == 422
        assert "Choose what the token may reach." in await response.get_data(as_text=True)
    assert (
        await post_form(
            browser, f"/teams/{ids['lon']}/api-tokens", {"name": "x", "scope": str(ids["lon"]), "access": "write"}
        )
    ).status_code == 404
    response = await post_form(browser, page, {"name": "office sync", "scope": str(ids["sto"]), "access": "write"})
    assert response.status_code == 201
    token = await token_row(session, "office sync")
    assert (token.team_id, token.operator_id) == (ids["sto"], ids["nordic"])


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"name": "", "scope": "operator", "access": "read"}, "name", "Name is required."),
        ({"name": "x" * 81, "scope": "operator", "access": "read"}, "name", "Name can be at most 80 characters."),
        ({"name": "x", "scope": "operator", "access": "admin"}, "access", "Choose read or write."),
        (
            {"name": "x", "scope": "operator", "access": "read", "expires_in_days": "0"},
            "expires_in_days",
            "Enter a number of days from 1 to 3650, or leave it empty.",
        ),
        (
            {"name": "x", "scope": "operator", "access": "read", "expires_in_days": "soon"},
            "expires_in_days",
            "Enter a number of days from 1 to 3650, or leave it empty.",
        ),
        ({"name": "x", "scope": "", "access": "read"}, "scope", "Choose what the token may reach."),
        ({"name": "x", "scope": "²", "access": "read"}, "scope", "Choose what the token may reach."),
        (
            {"name": "x", "scope": "operator", "access": "read", "expires_in_days": "²"},
            "expires_in_days",
            "Enter a number of days from 1 to 3650, or leave it empty.",
        ),
    ],
)
async def test_the_new_token_form_says_what_is_wrong_and_keeps_the_values(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs, form: dict[str, str], field: str, message: str
) -> None:
    ids = await ids_of(session)
    browser = await login_as("operator.admin@demo.test")
    response = await post_form(browser, f"/operators/{ids['nordic']}/api-tokens", form)
    body = await response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'id="f-{field}-error">{message}' in body.replace("&#39;", "'")
    assert (await session.exec(select(ApiToken))).all() == []


async def test_revoking_stops_the_token_at_once_and_only_its_managers_may(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    ids = await ids_of(session)
    team_secret = await make_token(session, team="Stockholm Offices", name="team sync")
    operator_secret = await make_token(session, name="operator sync")
    team_token, operator_token = await token_row(session, "team sync"), await token_row(session, "operator sync")

    for email, token, status in [
        ("fjord.admin@demo.test", team_token, 404),
        ("member@demo.test", team_token, 403),
        ("owner@demo.test", operator_token, 403),
    ]:
        browser = await login_as(email)
        assert (await post_form(browser, f"/api-tokens/{token.id}/revoke")).status_code == status
    assert (await client.get("/api/v1/teams", headers=bearer(team_secret))).status_code == 200

    owner = await login_as("owner@demo.test")
    response = await post_form(owner, f"/api-tokens/{team_token.id}/revoke", {"back": "team"})
    assert (response.status_code, response.headers["Location"]) == (303, f"/teams/{ids['sto']}/api-tokens")
    refused = await client.get("/api/v1/teams", headers=bearer(team_secret))
    assert refused.status_code == 401
    assert (await refused.get_json(force=True))["detail"] == "The API token has been revoked."
    assert "Revoked" in await (await owner.get(f"/teams/{ids['sto']}/api-tokens")).get_data(as_text=True)
    assert (await client.get("/api/v1/teams", headers=bearer(operator_secret))).status_code == 200


async def test_an_expired_token_is_refused(client: QuartClient, session: AsyncSession, demo: list[ChargePoint]) -> None:
    ids = await ids_of(session)
    _, secret = await api_tokens.create_token(
        session, SYSTEM, ids["nordic"], api_tokens.TokenRequest("short-lived", TokenAccess.READ, None, 1)
    )
    await session.commit()
    assert (await client.get("/api/v1/teams", headers=bearer(secret))).status_code == 200
    token = await token_row(session, "short-lived")
    token.expires_at = utcnow() - timedelta(seconds=1)
    session.add(token)
    await session.commit()
    refused = await client.get("/api/v1/teams", headers=bearer(secret))
    assert refused.status_code == 401
    assert (await refused.get_json(force=True))["detail"].startswith("The API token expired at ")


async def test_last_use_is_recorded_without_a_write_on_every_request(
    app: Quart, client: QuartClient, session: AsyncSession, demo: list[ChargePoint]
) -> None:
    secret = await make_token(session, name="dashboard", access="read")
    assert (await token_row(session, "dashboard")).last_used_at is None
    await client.get("/api/v1/teams", headers=bearer(secret))
    first = (await token_row(session, "dashboard")).last_used_at
    assert first is not None and utcnow() - first < timedelta(seconds=30)
    await client.get("/api/v1/teams", headers=bearer(secret))
    assert (await token_row(session, "dashboard")).last_used_at == first
    app.config["API_TOKEN_LAST_USED_INTERVAL_S"] = 0
    await client.get("/api/v1/teams", headers=bearer(secret))
    assert (await token_row(session, "dashboard")).last_used_at > first


def test_the_rate_limit_refills_over_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(api_tokens.time, "monotonic", lambda: clock[0])
    limiter = api_tokens.TokenRateLimiter(2, 10)
    assert [limiter.take(1), limiter.take(1), limiter.take(1), limiter.take(2)] == [0, 0, 5, 0]
    clock[0] += 5
    assert [limiter.take(1), limiter.take(1)] == [0, 5]


async def test_home_links_to_the_token_pages_of_those_who_may(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    ids = await ids_of(session)
    pages = {
        email: await (await (await login_as(email)).get("/")).get_data(as_text=True)
        for email in ("operator.admin@demo.test", "owner@demo.test", "member@demo.test")
    }
    assert f"/operators/{ids['nordic']}/api-tokens" in pages["operator.admin@demo.test"]
    assert f'/teams/{ids["sto"]}/api-tokens" aria-label="API tokens of Stockholm Offices"' in pages["owner@demo.test"]
    assert "api-tokens" not in pages["member@demo.test"]


# ---- the `powerbank api-token create` command ----


@pytest.fixture
def cli_database(migrated_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "cli.db"
    shutil.copy(migrated_template, path)
    url = f"sqlite+aiosqlite:///{path}"
    monkeypatch.setenv("POWERBANK_DATABASE_URL", url)
    return url


async def _stored_token(url: str, secret: str) -> ApiToken | None:
    async with standalone_session(url) as session:
        return (
            await session.exec(select(ApiToken).where(ApiToken.token_hash == api_tokens.hash_token(secret)))
        ).first()


def test_the_command_prints_the_token_alone_and_demo_data_prints_a_demo_token(
    cli_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["demo-data"]) == 0
    demo_output = capsys.readouterr().out
    demo_secret = re.search(r"Demo API token \(write, all Nordic Charge teams; demo only\): (pb_\S+)", demo_output)
    demo_token = asyncio.run(_stored_token(cli_database, demo_secret.group(1)))
    assert (demo_token.access, demo_token.team_id, demo_token.created_by_user_id is not None) == ("write", None, True)

    assert (
        cli.main(
            [
                "api-token",
                "create",
                "--operator",
                "Nordic Charge",
                "--team",
                "Stockholm Offices",
                "--scope",
                "read",
                "--name",
                "nightly report",
                "--expires-days",
                "30",
            ]
        )
        == 0
    )
    output = capsys.readouterr().out
    assert re.fullmatch(r"pb_[A-Za-z0-9_\-]{43}\n", output)
    token = asyncio.run(_stored_token(cli_database, output.strip()))
    assert (token.name, token.access, token.created_by_user_id) == ("nightly report", "read", None)
    assert timedelta(days=29) < token.expires_at - utcnow() <= timedelta(days=30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--operator", "Nobody"], "No operator named 'Nobody'."),
        (["--operator", "Nordic Charge", "--team", "Oslo Yard"], "Nordic Charge has no team named 'Oslo Yard'."),
        (
            ["--operator", "Nordic Charge", "--created-by", "member@demo.test"],
            "member@demo.test may not manage the API tokens of Nordic Charge.",
        ),
        (["--operator", "Nordic Charge", "--expires-days", "0"], "Enter a number of days from 1 to 3650"),
    ],
)
def test_the_command_refuses_what_does_not_exist_or_is_not_allowed(
    cli_database: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert cli.main(["demo-data"]) == 0
    capsys.readouterr()
    assert cli.main(["api-token", "create", "--scope", "write", *args]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err


# ---- the OpenAPI document and the docs page ----


async def test_the_openapi_document_describes_every_endpoint_and_nothing_else(client: QuartClient) -> None:
    document = await (await client.get("/api/openapi.json")).get_json()
    operations = {(method.upper(), path): op for path, item in document["paths"].items() for method, op in item.items()}
    assert set(operations) >= {
        ("GET", "/api/v1/teams"),
        ("GET", "/api/v1/teams/{team_id}/charge-points"),
        ("GET", "/api/v1/charge-points/{cp_id}"),
        ("PATCH", "/api/v1/charge-points/{cp_id}"),
        ("GET", "/api/v1/charge-points/{cp_id}/powerbank"),
        ("PUT", "/api/v1/charge-points/{cp_id}/powerbank"),
        ("DELETE", "/api/v1/charge-points/{cp_id}/powerbank"),
        ("POST", "/api/v1/teams/{team_id}/powerbank/signup"),
        ("GET", "/api/v1/teams/{team_id}/powerbank/events"),
        ("GET", "/api/v1/terms/current"),
    }
    assert all(path.startswith("/api/v1/") for _, path in operations)
    for (method, path), operation in operations.items():
        success = [code for code in operation["responses"] if code.startswith("2")]
        assert success, (method, path)
        assert operation["responses"]["401"]["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
        if method in ("PUT", "PATCH", "POST"):
            assert "requestBody" in operation, (method, path)
    assert document["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert document["components"]["schemas"]["BulkSignUp"]["additionalProperties"] is False


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redocs", "/scalar"])
async def test_quart_schema_adds_no_routes_outside_api(client: QuartClient, path: str) -> None:
    assert (await client.get(path)).status_code == 404


async def test_the_docs_page_renders_the_document_without_scripts_from_elsewhere(client: QuartClient) -> None:
    response = await client.get("/api/docs")
    page = await response.get_data(as_text=True)
    assert response.status_code == 200 and "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert re.findall(r'<script src="([^"]+)"', page) == ["/static/htmx.min.js", "/static/app.js"]
    for heading in ("GET /api/v1/teams", "POST /api/v1/teams/{team_id}/powerbank/signup", "GET /api/v1/terms/current"):
        assert f"<code>{heading}</code>" in page
    assert 'id="problem-sign-up-blocked"' in page and 'id="schema-BulkSignUp"' in page


# ---- a token never holds more than its creator may do (issue 13 finding 2) ----


async def _owners_membership(session: AsyncSession, team_id: int) -> TeamMembership:
    owner = (await session.exec(select(User).where(User.email == "owner@demo.test"))).one()
    return (
        await session.exec(
            select(TeamMembership)
            .where(TeamMembership.user_id == owner.id, TeamMembership.team_id == team_id)
            .execution_options(populate_existing=True)
        )
    ).one()


async def _api_statuses(client: QuartClient, secret: str, ids: dict[str, int]) -> dict[str, int]:
    """Return what reading, editing and signing up Kista answer with ``secret``."""
    kista = f"/api/v1/charge-points/{ids['kista']}"
    signup = {"accept_terms_version": TERMS, "charge_point_ids": [ids["kista"]]}
    requests = {
        "read": ("GET", kista, None),
        "edit": ("PATCH", kista, {"name": "Kista A2"}),
        "sign up": ("PUT", f"{kista}/powerbank", {"accept_terms_version": TERMS}),
        "bulk sign up": ("POST", f"/api/v1/teams/{ids['sto']}/powerbank/signup", signup),
    }
    statuses = {}
    for what, (method, path, body) in requests.items():
        kwargs: dict[str, object] = {"headers": bearer(secret)}
        if body is not None:
            kwargs["json"] = body
        statuses[what] = (await client.open(path, method=method, **kwargs)).status_code
    return statuses


READ_ONLY = {"read": 200, "edit": 403, "sign up": 403, "bulk sign up": 403}


async def test_an_owner_without_the_configure_right_gets_no_more_from_a_write_token(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    ids = await demo_ids(session)
    membership = await _owners_membership(session, ids["sto"])
    membership.can_configure_charge_points = False
    session.add(membership)
    await session.commit()
    owner = await login_as("owner@demo.test")
    response = await post_form(
        owner, f"/teams/{ids['sto']}/api-tokens", {"name": "office sync", "scope": str(ids["sto"]), "access": "write"}
    )
    assert response.status_code == 201
    secret = TOKEN_RE.search(await response.get_data(as_text=True)).group(1)

    assert await _api_statuses(client, secret, ids) == READ_ONLY
    assert await state_of(session, ids["kista"]) == "Not signed up"


async def test_a_token_loses_its_creators_right_and_role_at_once(
    client: QuartClient, session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    ids = await demo_ids(session)
    owner = await login_as("owner@demo.test")
    response = await post_form(
        owner, f"/teams/{ids['sto']}/api-tokens", {"name": "office sync", "scope": str(ids["sto"]), "access": "write"}
    )
    secret = TOKEN_RE.search(await response.get_data(as_text=True)).group(1)
    admins_token = await make_token(session, team="Stockholm Offices", name="admin's sync")
    assert (await _api_statuses(client, secret, ids))["edit"] == 200

    membership = await _owners_membership(session, ids["sto"])
    operator_id = (await ids_of(session))["nordic"]
    await users.change_member(session, SYSTEM, operator_id, "team", membership.id or 0, "owner", False)
    await session.commit()
    assert await _api_statuses(client, secret, ids) == READ_ONLY

    await users.remove_member(session, SYSTEM, operator_id, "team", membership.id or 0)
    await session.commit()
    refused = await client.get(f"/api/v1/charge-points/{ids['kista']}", headers=bearer(secret))
    assert refused.status_code == 401
    assert "no longer has a role" in (await refused.get_json(force=True))["detail"]
    # The operator admin's token for the same team works as before.
    assert (await _api_statuses(client, admins_token, ids))["edit"] == 200
