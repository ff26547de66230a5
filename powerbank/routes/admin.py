"""Operator administration: teams, members, the compatibility catalogue and the audit log."""

from __future__ import annotations

from quart import Blueprint, Response, request, url_for

from powerbank.errors import ConflictError, FormErrors
from powerbank.models import Operator
from powerbank.routes.loaders import operator_for, team_for, team_with_operator_for
from powerbank.rules.permissions import Permission, can_on_operator
from powerbank.rules.validators import ValidationError
from powerbank.services import audit, catalogue, teams, users
from powerbank.web.auth import login_required, principal
from powerbank.web.ids import id_or_none
from powerbank.web.mail import invitation_link, login_link
from powerbank.web.render import discard_changes, redirect_to, render_page
from powerbank.web.state import db_session

blueprint = Blueprint("admin", __name__)


async def _teams_page(
    operator: Operator, status: int = 200, values: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> Response:
    return await render_page(
        "admin/teams.html",
        "partials/team_list.html",
        status=status,
        operator=operator,
        teams=await teams.list_operator_teams(await db_session(), operator.id or 0),
        values=values or {},
        errors=errors or {},
    )


@blueprint.get("/operators/<int:operator_id>/teams")
@login_required
async def team_list(operator_id: int) -> Response:
    return await _teams_page(await operator_for(await principal(), operator_id, may=Permission.MANAGE_TEAMS))


@blueprint.post("/operators/<int:operator_id>/teams")
@login_required
async def create_team(operator_id: int) -> Response:
    me = await principal()
    operator = await operator_for(me, operator_id, may=Permission.MANAGE_TEAMS)
    session = await db_session()
    form = (await request.form).to_dict()
    try:
        await teams.create_team(session, me, operator_id, form.get("name"))
    except (ValidationError, ConflictError) as exc:
        await discard_changes(session, operator)
        return await _teams_page(operator, 422, form, {"name": str(exc)})
    await session.commit()
    return redirect_to(url_for("admin.team_list", operator_id=operator_id), 303)


@blueprint.post("/teams/<int:team_id>/rename")
@login_required
async def rename_team(team_id: int) -> Response:
    me = await principal()
    team, operator = await team_with_operator_for(me, team_id, may=Permission.MANAGE_TEAMS)
    session = await db_session()
    form = (await request.form).to_dict()
    try:
        await teams.rename_team(session, me, team, form.get("name"))
    except (ValidationError, ConflictError) as exc:
        await discard_changes(session, team, operator)
        return await _teams_page(operator, 422, {"rename_id": str(team_id), **form}, {f"rename-{team_id}": str(exc)})
    await session.commit()
    return redirect_to(url_for("admin.team_list", operator_id=team.operator_id), 303)


@blueprint.get("/teams/<int:team_id>/delete")
@login_required
async def confirm_delete_team(team_id: int) -> Response:
    team = await team_for(await principal(), team_id, may=Permission.MANAGE_TEAMS)
    return await render_page("admin/delete_team.html", team=team)


@blueprint.post("/teams/<int:team_id>/delete")
@login_required
async def delete_team(team_id: int) -> Response:
    me = await principal()
    team = await team_for(me, team_id, may=Permission.MANAGE_TEAMS)
    session = await db_session()
    await teams.delete_team(session, me, team)
    await session.commit()
    return redirect_to(url_for("admin.team_list", operator_id=team.operator_id), 303)


async def _members_page(
    operator: Operator,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    invited: str | None = None,
) -> Response:
    session = await db_session()
    operator_id = operator.id or 0
    return await render_page(
        "admin/members.html",
        status=status,
        operator=operator,
        members=await users.list_members(session, operator_id),
        team_options=[(str(team.id), team.name) for team, _ in await teams.list_operator_teams(session, operator_id)],
        role_choices=users.ROLE_CHOICES,
        values=values or {},
        errors=errors or {},
        invited=invited,
        can_invite=invitation_link() is not None,
    )


@blueprint.get("/operators/<int:operator_id>/members")
@login_required
async def member_list(operator_id: int) -> Response:
    return await _members_page(await operator_for(await principal(), operator_id, may=Permission.MANAGE_MEMBERS))


@blueprint.post("/operators/<int:operator_id>/members")
@login_required
async def add_member(operator_id: int) -> Response:
    me = await principal()
    operator = await operator_for(me, operator_id, may=Permission.MANAGE_MEMBERS)
    session = await db_session()
    form = (await request.form).to_dict()
    member_form = users.MemberForm(
        email=form.get("email", ""),
        role=form.get("role", ""),
        team_id=id_or_none(form.get("team_id")),
        can_configure_charge_points=bool(form.get("can_configure_charge_points")),
    )
    try:
        added = await users.add_member(
            session, me, operator_id, member_form, invitation_link=invitation_link(), login_url=login_link()
        )
    except FormErrors as exc:
        await discard_changes(session, operator)
        return await _members_page(operator, 422, form, exc.errors)
    await session.commit()
    if added.invited:
        return await _members_page(operator, 201, invited=added.user.email)
    return redirect_to(url_for("admin.member_list", operator_id=operator_id), 303)


@blueprint.post("/operators/<int:operator_id>/members/<scope>/<int:membership_id>/invitation")
@login_required
async def reinvite_member(operator_id: int, scope: str, membership_id: int) -> Response:
    me = await principal()
    operator = await operator_for(me, operator_id, may=Permission.MANAGE_MEMBERS)
    session = await db_session()
    try:
        user = await users.reinvite_member(session, me, operator_id, scope, membership_id, invitation_link())
    except FormErrors as exc:
        await discard_changes(session, operator)
        return await _members_page(operator, 422, errors={f"member-{scope}-{membership_id}": exc.errors["email"]})
    await session.commit()
    return await _members_page(operator, 201, invited=user.email)


@blueprint.post("/operators/<int:operator_id>/members/<scope>/<int:membership_id>")
@login_required
async def change_member(operator_id: int, scope: str, membership_id: int) -> Response:
    me = await principal()
    operator = await operator_for(me, operator_id, may=Permission.MANAGE_MEMBERS)
    session = await db_session()
    form = (await request.form).to_dict()
    try:
        if form.get("remove"):
            await users.remove_member(session, me, operator_id, scope, membership_id)
        else:
            await users.change_member(
                session,
                me,
                operator_id,
                scope,
                membership_id,
                form.get("role", ""),
                bool(form.get("can_configure_charge_points")),
            )
    except FormErrors as exc:
        await discard_changes(session, operator)
        return await _members_page(operator, 422, errors={f"member-{scope}-{membership_id}": exc.errors["role"]})
    await session.commit()
    return redirect_to(url_for("admin.member_list", operator_id=operator_id), 303)


async def _catalogue_page(
    operator: Operator, status: int = 200, values: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> Response:
    return await render_page(
        "admin/catalogue.html",
        status=status,
        operator=operator,
        entries=await catalogue.list_catalogue(await db_session(), operator.id or 0),
        can_edit=can_on_operator(await principal(), Permission.EDIT_CATALOGUE, operator.id or 0),
        values=values or {},
        errors=errors or {},
    )


@blueprint.get("/operators/<int:operator_id>/catalogue")
@login_required
async def catalogue_list(operator_id: int) -> Response:
    return await _catalogue_page(await operator_for(await principal(), operator_id, may=Permission.VIEW_CATALOGUE))


@blueprint.post("/operators/<int:operator_id>/catalogue")
@login_required
async def catalogue_add(operator_id: int) -> Response:
    me = await principal()
    operator = await operator_for(me, operator_id, may=Permission.EDIT_CATALOGUE)
    session = await db_session()
    form = (await request.form).to_dict()
    try:
        await catalogue.add_model(session, me, operator_id, form.get("brand"), form.get("model"))
    except ValidationError as exc:
        await discard_changes(session, operator)
        field = "model" if str(exc).startswith("Model") else "brand"
        return await _catalogue_page(operator, 422, form, {field: str(exc)})
    except ConflictError as exc:
        await discard_changes(session, operator)
        return await _catalogue_page(operator, 409, form, {"model": str(exc)})
    await session.commit()
    return redirect_to(url_for("admin.catalogue_list", operator_id=operator_id), 303)


@blueprint.post("/operators/<int:operator_id>/catalogue/<int:entry_id>/delete")
@login_required
async def catalogue_remove(operator_id: int, entry_id: int) -> Response:
    me = await principal()
    await operator_for(me, operator_id, may=Permission.EDIT_CATALOGUE)
    session = await db_session()
    await catalogue.remove_model(session, me, operator_id, entry_id)
    await session.commit()
    return redirect_to(url_for("admin.catalogue_list", operator_id=operator_id), 303)


@blueprint.get("/operators/<int:operator_id>/audit")
@login_required
async def audit_log(operator_id: int) -> Response:
    operator = await operator_for(await principal(), operator_id, may=Permission.MANAGE_MEMBERS)
    return await render_page(
        "admin/audit.html", operator=operator, entries=await audit.list_entries(await db_session(), operator_id)
    )
