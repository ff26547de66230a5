"""Operator admin pages: teams, members, the compatibility catalogue and the audit log."""

from __future__ import annotations

import re

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import (
    AuditEntry,
    ChargePoint,
    CompatibleModel,
    MailMessage,
    Operator,
    OperatorMembership,
    Team,
    TeamMembership,
    User,
)
from powerbank.services.catalogue import SHIPPED_CATALOGUE
from tests.conftest import Factory, LoginAs, csrf_of, htmx_headers, post_form

pytestmark = pytest.mark.usefixtures("fast_hashing")


async def operator_admin(factory: Factory, login_as: LoginAs) -> tuple[Operator, QuartClient]:
    operator = await factory.operator("Nordic Test")
    user = await factory.user(operator=operator, operator_role="admin", email="boss@example.test")
    return operator, await login_as(user)


async def actions(session: AsyncSession) -> list[str]:
    return list((await session.exec(select(AuditEntry.action).order_by(AuditEntry.id))).all())


async def team_names(session: AsyncSession, operator: Operator) -> list[str]:
    return sorted((await session.exec(select(Team.name).where(Team.operator_id == operator.id))).all())


def field_error(body: str, input_id: str) -> str | None:
    match = re.search(rf'<p class="error" id="{input_id}-error">([^<]*)</p>', body)
    return match.group(1) if match else None


async def test_teams_page_full_and_fragment(factory: Factory, login_as: LoginAs) -> None:
    operator, client = await operator_admin(factory, login_as)
    team = await factory.team(operator, "Harbour")
    await factory.charge_point(team)
    path = f"/operators/{operator.id}/teams"
    full, fragment = await client.get(path), await client.get(path, headers=htmx_headers(client))
    full_body, fragment_body = await full.get_data(as_text=True), await fragment.get_data(as_text=True)
    assert "<html" in full_body and "Create a team" in full_body and "Harbour" in full_body
    assert "<html" not in fragment_body and "Create a team" not in fragment_body and "Harbour" in fragment_body
    assert "HX-Request" in full.headers["Vary"] and "HX-Request" in fragment.headers["Vary"]
    assert re.search(r"<td>Harbour</td>|>Harbour</a></td>\s*<td>1</td>", fragment_body)


async def test_create_team(session: AsyncSession, factory: Factory, login_as: LoginAs) -> None:
    operator, client = await operator_admin(factory, login_as)
    response = await post_form(client, f"/operators/{operator.id}/teams", {"name": "  Aarhus Yard "})
    assert response.status_code == 303 and response.headers["Location"] == f"/operators/{operator.id}/teams"
    assert await team_names(session, operator) == ["Aarhus Yard"]
    assert (await actions(session))[-1] == "team.create"
    home = await (await client.get("/")).get_data(as_text=True)
    assert "Aarhus Yard" in home


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Existing", "A team named 'Existing' already exists."),
        (" Existing ", "already exists"),
        ("", "Team name is required."),
        ("   ", "Team name is required."),
        ("t" * 121, "at most 120"),
        ("tab\there", "cannot be used"),
    ],
)
async def test_create_team_refused(
    session: AsyncSession, factory: Factory, login_as: LoginAs, name: str, message: str
) -> None:
    operator, client = await operator_admin(factory, login_as)
    await factory.team(operator, "Existing")
    before = await actions(session)
    response = await post_form(client, f"/operators/{operator.id}/teams", {"name": name})
    body = await response.get_data(as_text=True)
    assert response.status_code == 422
    error = field_error(body, "f-name")
    assert error and message in error.replace("&#39;", "'")
    if name.strip() and "\t" not in name:
        assert f'value="{name}"' in body
    assert await team_names(session, operator) == ["Existing"]
    assert await actions(session) == before


async def test_same_team_name_in_another_operator_is_fine(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    operator, client = await operator_admin(factory, login_as)
    await factory.team(await factory.operator("Elsewhere"), "Harbour")
    assert (await post_form(client, f"/operators/{operator.id}/teams", {"name": "Harbour"})).status_code == 303


async def test_rename_team(session: AsyncSession, factory: Factory, login_as: LoginAs) -> None:
    operator, client = await operator_admin(factory, login_as)
    team = await factory.team(operator, "Old Name")
    other = await factory.team(operator, "Taken")
    response = await post_form(client, f"/teams/{team.id}/rename", {"name": "Taken"})
    body = await response.get_data(as_text=True)
    assert response.status_code == 422
    assert "already exists" in (field_error(body, f"rename-{team.id}") or "")
    assert f'id="rename-{team.id}" name="name" value="Taken"' in body
    assert f'id="rename-{other.id}" name="name" value="Taken"' in body
    assert await team_names(session, operator) == ["Old Name", "Taken"]
    response = await post_form(client, f"/teams/{team.id}/rename", {"name": "New Name"})
    assert response.status_code == 303
    assert await team_names(session, operator) == ["New Name", "Taken"]
    entry = (await session.exec(select(AuditEntry).where(AuditEntry.action == "team.rename"))).one()
    assert entry.before == {"name": "Old Name"} and entry.after == {"name": "New Name"}


async def test_delete_team_asks_first_and_is_audited(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    operator, client = await operator_admin(factory, login_as)
    team = await factory.team(operator, "Doomed Team")
    await factory.charge_point(team)
    await factory.charge_point(team)
    team_id = team.id
    listing = await (await client.get(f"/operators/{operator.id}/teams")).get_data(as_text=True)
    assert f'href="/teams/{team_id}/delete"' in listing
    confirm = await client.get(f"/teams/{team_id}/delete")
    body = await confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "Delete the team Doomed Team?" in body and "audit log" in body
    assert await team_names(session, operator) == ["Doomed Team"]
    response = await post_form(client, f"/teams/{team_id}/delete")
    assert response.status_code == 303
    assert await team_names(session, operator) == []
    assert (await session.exec(select(ChargePoint.id))).all() == []
    entry = (await session.exec(select(AuditEntry).where(AuditEntry.action == "team.delete"))).one()
    assert entry.before == {"name": "Doomed Team", "charge_points": 2} and entry.operator_id == operator.id
    assert (await client.get(f"/teams/{team_id}/charge-points")).status_code == 404


async def test_add_existing_user_with_a_team_role(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    operator, client = await operator_admin(factory, login_as)
    team = await factory.team(operator, "Harbour")
    user = await factory.user(email="worker@example.test")
    assert "Harbour" not in await (await (await login_as(user)).get("/")).get_data(as_text=True)
    response = await post_form(
        client,
        f"/operators/{operator.id}/members",
        {"email": "Worker@Example.test", "role": "team:admin", "team_id": str(team.id)},
    )
    assert response.status_code == 303
    membership = (await session.exec(select(TeamMembership).where(TeamMembership.user_id == user.id))).one()
    assert (membership.role, membership.can_configure_charge_points) == ("admin", False)
    members = await (await client.get(f"/operators/{operator.id}/members")).get_data(as_text=True)
    assert "worker@example.test" in members and "Team Admin (may not configure charge points)" in members
    assert "Temporary password" not in members
    assert "Harbour" in await (await (await login_as(user)).get("/")).get_data(as_text=True)
    assert (await actions(session))[-1] == "member.add"


async def test_add_new_user_sends_an_invitation_and_shows_no_password(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    operator, client = await operator_admin(factory, login_as)
    team = await factory.team(operator, "Harbour")
    response = await post_form(
        client,
        f"/operators/{operator.id}/members",
        {
            "email": "newbie@example.test",
            "role": "team:owner",
            "team_id": str(team.id),
            "can_configure_charge_points": "1",
        },
    )
    body = await response.get_data(as_text=True)
    assert response.status_code == 201
    assert "Invitation sent to <strong>newbie@example.test</strong>" in body
    assert 'class="secret"' not in body
    user = (await session.exec(select(User).where(User.email == "newbie@example.test"))).one()
    assert user.password_hash == ""
    (mail,) = (await session.exec(select(MailMessage).where(MailMessage.to_address == "newbie@example.test"))).all()
    link = re.search(r"http://localhost/invitations/(\S+)", mail.body)
    assert link and "Team Owner in Harbour" in mail.body
    # The link is the person's alone: the admin's pages never show it.
    again = await (await client.get(f"/operators/{operator.id}/members")).get_data(as_text=True)
    assert link.group(1) not in body + again and "invited, no password yet" in again
    newbie = app.test_client()
    form = {"csrf_token": await csrf_of(newbie, f"/invitations/{link.group(1)}")}
    accepted = await newbie.post(
        f"/invitations/{link.group(1)}", form={**form, "password": "my own secret", "confirm": "my own secret"}
    )
    assert accepted.status_code == 303
    newbie.csrf_token = await csrf_of(newbie, "/")  # type: ignore[attr-defined]
    tab = await (await newbie.get(f"/teams/{team.id}/charge-points")).get_data(as_text=True)
    assert "Add charge point</a>" in tab
    assert (await actions(session))[-4:] == ["user.create", "user.invite", "member.add", "user.accept_invitation"]


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"email": "not-an-email", "role": "team:member", "team_id": "TEAM"}, "email", "Enter a valid email address."),
        ({"email": "", "role": "team:member", "team_id": "TEAM"}, "email", "Email is required."),
        ({"email": "a@example.test", "role": "", "team_id": "TEAM"}, "role", "Choose a role."),
        ({"email": "a@example.test", "role": "operator:owner"}, "role", "Choose a role."),
        (
            {"email": "a@example.test", "role": "team:member", "team_id": ""},
            "team_id",
            "Choose a team of this operator.",
        ),
        ({"email": "a@example.test", "role": "team:member", "team_id": "OTHER"}, "team_id", "Choose a team of this"),
        ({"email": "a@example.test", "role": "team:member", "team_id": "²"}, "team_id", "Choose a team of this"),
        ({"email": "boss@example.test", "role": "operator:manager"}, "email", "already has an operator role"),
    ],
)
async def test_add_member_refused(
    session: AsyncSession, factory: Factory, login_as: LoginAs, form: dict[str, str], field: str, message: str
) -> None:
    operator, client = await operator_admin(factory, login_as)
    team = await factory.team(operator, "Harbour")
    other_team = await factory.team(await factory.operator("Elsewhere"), "Foreign")
    form = {
        key: value.replace("OTHER", str(other_team.id)).replace("TEAM", str(team.id)) for key, value in form.items()
    }
    users_before = (await session.exec(select(User.email))).all()
    response = await post_form(client, f"/operators/{operator.id}/members", form)
    body = await response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in (field_error(body, f"f-{field}") or "")
    if form["email"]:
        assert f'value="{form["email"]}"' in body
    assert (await session.exec(select(User.email))).all() == users_before
    assert (await session.exec(select(TeamMembership).where(TeamMembership.team_id == team.id))).all() == []


async def test_change_and_remove_member(session: AsyncSession, factory: Factory, login_as: LoginAs) -> None:
    operator, client = await operator_admin(factory, login_as)
    team = await factory.team(operator, "Harbour")
    user = await factory.user(team=team, team_role="member", email="worker@example.test")
    membership = (await session.exec(select(TeamMembership).where(TeamMembership.user_id == user.id))).one()
    path = f"/operators/{operator.id}/members/team/{membership.id}"
    member_client = await login_as(user)
    assert "Add charge point</a>" not in await (await member_client.get(f"/teams/{team.id}/charge-points")).get_data(
        as_text=True
    )
    response = await post_form(client, path, {"role": "admin", "can_configure_charge_points": "1"})
    assert response.status_code == 303
    await session.refresh(membership)
    assert (membership.role, membership.can_configure_charge_points) == ("admin", True)
    assert "Add charge point</a>" in await (await member_client.get(f"/teams/{team.id}/charge-points")).get_data(
        as_text=True
    )
    response = await post_form(client, path, {"role": "manager"})
    assert response.status_code == 422
    assert "Choose a role of the same kind" in await response.get_data(as_text=True)
    response = await post_form(client, path, {"role": "admin", "remove": "1"})
    assert response.status_code == 303
    assert (await session.exec(select(TeamMembership).where(TeamMembership.user_id == user.id))).all() == []
    assert (await member_client.get(f"/teams/{team.id}/charge-points")).status_code == 404
    assert (await actions(session))[-2:] == ["member.change", "member.remove"]


async def test_catalogue_view_for_manager(factory: Factory, login_as: LoginAs) -> None:
    operator = await factory.operator()
    manager = await factory.user(operator=operator, operator_role="manager")
    client = await login_as(manager)
    response = await client.get(f"/operators/{operator.id}/catalogue")
    body = await response.get_data(as_text=True)
    assert response.status_code == 200
    for brand, model in SHIPPED_CATALOGUE:
        assert f"<td>{brand}</td><td>{model}</td>" in body
    assert "Add to catalogue" not in body and "Remove" not in body
    home = await (await client.get("/")).get_data(as_text=True)
    assert "Compatibility catalogue" in home and "Manage teams" not in home


async def test_catalogue_add_and_remove(session: AsyncSession, factory: Factory, login_as: LoginAs) -> None:
    operator, client = await operator_admin(factory, login_as)
    path = f"/operators/{operator.id}/catalogue"
    assert "Add to catalogue" in await (await client.get(path)).get_data(as_text=True)
    response = await post_form(client, path, {"brand": " Acme ", "model": "Volt  One"})
    assert response.status_code == 303
    entry = (await session.exec(select(CompatibleModel).where(CompatibleModel.brand == "Acme"))).one()
    assert (entry.model, entry.brand_key, entry.model_key) == ("Volt  One", "acme", "volt one")
    response = await post_form(client, path, {"brand": "ACME", "model": "volt one"})
    body = await response.get_data(as_text=True)
    assert response.status_code == 409
    assert "already in the catalogue" in (field_error(body, "f-model") or "")
    assert 'value="ACME"' in body and 'value="volt one"' in body
    response = await post_form(client, path, {"brand": "", "model": "X"})
    assert response.status_code == 422 and "Brand is required." in (
        field_error(await response.get_data(as_text=True), "f-brand") or ""
    )
    response = await post_form(client, path, {"brand": "Acme", "model": ""})
    assert response.status_code == 422 and "Model is required." in (
        field_error(await response.get_data(as_text=True), "f-model") or ""
    )
    response = await post_form(client, f"{path}/{entry.id}/delete")
    assert response.status_code == 303
    assert (await session.exec(select(CompatibleModel).where(CompatibleModel.brand == "Acme"))).all() == []
    assert (await actions(session))[-2:] == ["catalogue.add", "catalogue.remove"]


async def test_audit_log_page(session: AsyncSession, factory: Factory, login_as: LoginAs) -> None:
    operator, client = await operator_admin(factory, login_as)
    await post_form(client, f"/operators/{operator.id}/teams", {"name": "Logged Team"})
    other = await factory.operator("Elsewhere")
    await factory.team(other, "Hidden Team")
    body = await (await client.get(f"/operators/{operator.id}/audit")).get_data(as_text=True)
    assert "team.create" in body and "Logged Team" in body and "boss@example.test" in body
    assert "Elsewhere" not in body and "Hidden Team" not in body


async def test_the_last_operator_admin_stays(session: AsyncSession, factory: Factory, login_as: LoginAs) -> None:
    operator, client = await operator_admin(factory, login_as)
    (mine,) = (
        await session.exec(select(OperatorMembership.id).where(OperatorMembership.operator_id == operator.id))
    ).all()
    path = f"/operators/{operator.id}/members/operator/{mine}"
    for form in ({"role": "manager"}, {"role": "admin", "remove": "1"}):
        response = await post_form(client, path, form)
        assert response.status_code == 422
        assert "at least one Operator Admin" in await response.get_data(as_text=True)
    # With a second admin, the first may step down.
    await factory.user(operator=operator, operator_role="admin", email="second@example.test")
    assert (await post_form(client, path, {"role": "manager"})).status_code == 303
    roles = (await session.exec(select(OperatorMembership.role).where(OperatorMembership.id == mine))).all()
    assert roles == ["manager"]


async def test_team_names_are_unique_whatever_their_case(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    operator, client = await operator_admin(factory, login_as)
    await factory.team(operator, "Harbour")
    response = await post_form(client, f"/operators/{operator.id}/teams", {"name": "HARBOUR"})
    assert response.status_code == 422 and "already exists" in await response.get_data(as_text=True)
    team = await factory.team(operator, "Quay")
    assert (await post_form(client, f"/teams/{team.id}/rename", {"name": "harbour"})).status_code == 422
    # Changing only the case of a team's own name is a rename like any other.
    assert (await post_form(client, f"/teams/{team.id}/rename", {"name": "QUAY"})).status_code == 303
    assert await team_names(session, operator) == ["Harbour", "QUAY"]
    # Letters beyond ASCII too.
    await factory.team(operator, "Østerbro")
    response = await post_form(client, f"/operators/{operator.id}/teams", {"name": "ØSTERBRO"})
    assert response.status_code == 422 and "already exists" in await response.get_data(as_text=True)
