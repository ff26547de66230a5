"""The role table of DESIGN.md, through the pages: every role × every action, allowed or not."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import AuditEntry
from tests.conftest import Factory, LoginAs, csrf_of
from tests.routes.world import ROLES, World, build_world

pytestmark = pytest.mark.usefixtures("fast_hashing")


async def client_for(app: Quart, login_as: LoginAs, world: World, role: str) -> QuartClient:
    """Log the role's user in; an anonymous visitor still holds a CSRF token, as a browser would."""
    if role == "anonymous":
        client = app.test_client()
        client.csrf_token = await csrf_of(client)  # type: ignore[attr-defined]
        return client
    return await login_as(world.users[role])


@dataclass(frozen=True)
class Action:
    """What a user does: an optional page to open first, then the request itself."""

    method: str
    path: str
    ok_status: int
    form: dict[str, str] = field(default_factory=dict)
    page: str | None = None


CHARGE_POINT_FORM = {
    "name": "New charger",
    "identity": "NEW-CP-1",
    "brand": "Zaptec",
    "model": "Go",
    "country": "SE",
    "price_area": "SE3",
    "facility_id": "",
}

ACTIONS: dict[str, Action] = {
    "view team tab": Action("GET", "/teams/{team}/charge-points", 200),
    "view charge point": Action("GET", "/charge-points/{cp}", 200),
    "add charge point": Action(
        "POST", "/teams/{team}/charge-points/new", 201, CHARGE_POINT_FORM, page="/teams/{team}/charge-points/new"
    ),
    "edit charge point": Action(
        "POST",
        "/charge-points/{cp}/edit",
        303,
        {**CHARGE_POINT_FORM, "identity": "EDITED-1"},
        page="/charge-points/{cp}/edit",
    ),
    "delete charge point": Action("POST", "/charge-points/{cp}/delete", 303, page="/charge-points/{cp}/delete"),
    "new OCPP password": Action("POST", "/charge-points/{cp}/ocpp-password", 200),
    "manage teams": Action(
        "POST", "/operators/{op}/teams", 303, {"name": "Brand new team"}, page="/operators/{op}/teams"
    ),
    "manage members": Action(
        "POST",
        "/operators/{op}/members",
        303,
        {"email": "bystander@example.test", "role": "team:member", "team_id": "{team}"},
        page="/operators/{op}/members",
    ),
    "view catalogue": Action("GET", "/operators/{op}/catalogue", 200),
    "edit catalogue": Action("POST", "/operators/{op}/catalogue", 303, {"brand": "Acme", "model": "Volt 1"}),
    "audit log": Action("GET", "/operators/{op}/audit", 200),
}

CONFIGURERS = {"operator admin", "operator manager", "team owner", "team admin with configure right"}
TEAM_VIEWERS = CONFIGURERS | {"team owner without configure right", "team admin without configure right", "team member"}
ALLOWED: dict[str, set[str]] = {
    "view team tab": TEAM_VIEWERS,
    "view charge point": TEAM_VIEWERS,
    "add charge point": CONFIGURERS,
    "edit charge point": CONFIGURERS,
    "delete charge point": CONFIGURERS,
    "new OCPP password": CONFIGURERS,
    "manage teams": {"operator admin"},
    "manage members": {"operator admin"},
    "view catalogue": {"operator admin", "operator manager"},
    "edit catalogue": {"operator admin"},
    "audit log": {"operator admin"},
}


def expected_outcome(role: str, action: str) -> str:
    if role == "anonymous":
        return "log in"
    if role == "another operator's admin":
        return "not found"
    return "allowed" if role in ALLOWED[action] else "forbidden"


MATRIX = [(role, action, expected_outcome(role, action)) for role in ROLES for action in ACTIONS]


async def audit_count(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(AuditEntry))).one()


def check(response: Any, outcome: str, ok_status: int) -> None:
    if outcome == "allowed":
        assert response.status_code == ok_status
    elif outcome == "forbidden":
        assert response.status_code == 403
    elif outcome == "not found":
        assert response.status_code == 404
    else:
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize(("role", "action", "outcome"), MATRIX, ids=[f"{r}-{a}" for r, a, _ in MATRIX])
async def test_permission_table(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs, role: str, action: str, outcome: str
) -> None:
    world = await build_world(factory, [role])
    client = await client_for(app, login_as, world, role)
    spec = ACTIONS[action]
    ids = world.ids()
    if spec.page:
        check(await client.get(spec.page.format(**ids)), outcome, 200)
    audit_before = await audit_count(session)
    path = spec.path.format(**ids)
    if spec.method == "GET":
        response = await client.get(path)
    else:
        form = {key: value.format(**ids) for key, value in spec.form.items()}
        response = await client.post(path, form={"csrf_token": client.csrf_token, **form})  # type: ignore[attr-defined]
    check(response, outcome, spec.ok_status)
    body = await response.get_data(as_text=True)
    assert "Secret" not in body
    if spec.method == "POST":
        # An allowed change is in the audit log; a refused one changed nothing.
        changed = await audit_count(session) - audit_before
        assert changed >= 1 if outcome == "allowed" else changed == 0


@pytest.mark.parametrize(
    "role", ["team admin without configure right", "team owner without configure right", "team member"]
)
async def test_refused_configure_controls_say_why(app: Quart, factory: Factory, login_as: LoginAs, role: str) -> None:
    world = await build_world(factory, [role])
    client = await client_for(app, login_as, world, role)
    tab = await (await client.get(f"/teams/{world.team.id}/charge-points")).get_data(as_text=True)
    page = await (await client.get(f"/charge-points/{world.charge_point.id}")).get_data(as_text=True)
    expected = "Team Members cannot configure" if role == "team member" else "does not include the right"
    assert expected in tab and expected in page
    assert f'href="/teams/{world.team.id}/charge-points/new"' not in tab
    assert f'href="/charge-points/{world.charge_point.id}/edit"' not in page
