"""A charge point's own page, editing, deleting, a new OCPP password, and an operator admin's PowerBank suspension."""

from __future__ import annotations

from quart import Blueprint, Response, request, url_for

from powerbank.errors import ConflictError, FormErrors
from powerbank.models import ChargePoint, Team
from powerbank.routes.connections import live_context
from powerbank.routes.enrollment import functionality_context as powerbank_functionality
from powerbank.routes.loaders import charge_point_for
from powerbank.routes.teams import form_choices, ocpp_url
from powerbank.rules.permissions import Permission, Principal, can_on_operator, can_on_team, denial_reason
from powerbank.services import charge_points as cp_service
from powerbank.services import enrollment, reliability
from powerbank.web.auth import login_required, principal
from powerbank.web.render import discard_changes, form_errors_status, redirect_to, render_page
from powerbank.web.state import db_session

blueprint = Blueprint("charge_points", __name__)


@blueprint.get("/charge-points/<int:cp_id>")
@login_required
async def detail(cp_id: int) -> Response:
    me = await principal()
    charge_point, team = await charge_point_for(me, cp_id)
    return await _detail_page(me, charge_point, team)


async def _detail_page(
    me: Principal,
    charge_point: ChargePoint,
    team: Team,
    *,
    status: int = 200,
    suspend_errors: dict[str, str] | None = None,
    suspend_values: dict[str, str] | None = None,
) -> Response:
    session = await db_session()
    return await render_page(
        "charge_points/detail.html",
        status=status,
        **await powerbank_functionality(session, me, charge_point, team, confirm=request.args.get("powerbank")),
        **await live_context(session, charge_point),
        charge_point=charge_point,
        team=team,
        # Not `status`: render_page takes that as the HTTP status.
        connection=cp_service.connection_status(charge_point),
        ocpp_url=ocpp_url(charge_point.identity),
        can_configure=can_on_team(me, Permission.CONFIGURE_CHARGE_POINTS, team),
        configure_reason=denial_reason(me, Permission.CONFIGURE_CHARGE_POINTS, team),
        reliability=await reliability.reliability_of_one(session, charge_point.id or 0),
        flag_at=reliability.FLAG_AT,
        recent=reliability.RECENT,
        can_view_activations=can_on_operator(me, Permission.MANAGE_ACTIVATIONS, team.operator_id),
        can_suspend=can_on_team(me, Permission.SUSPEND_POWERBANK, team),
        reason_max=enrollment.SUSPENSION_REASON_MAX,
        suspend_errors=suspend_errors or {},
        suspend_values=suspend_values or {},
    )


@blueprint.get("/charge-points/<int:cp_id>/edit")
@login_required
async def edit(cp_id: int) -> Response:
    charge_point, team = await charge_point_for(await principal(), cp_id, may=Permission.CONFIGURE_CHARGE_POINTS)
    values = {field: getattr(charge_point, field) or "" for field in cp_service.EDITABLE_FIELDS}
    return await render_page(
        "charge_points/form.html", team=team, charge_point=charge_point, values=values, errors={}, **form_choices()
    )


@blueprint.post("/charge-points/<int:cp_id>/edit")
@login_required
async def update(cp_id: int) -> Response:
    me = await principal()
    charge_point, team = await charge_point_for(me, cp_id, may=Permission.CONFIGURE_CHARGE_POINTS)
    session = await db_session()
    form = (await request.form).to_dict()
    try:
        await cp_service.update_charge_point(session, me, team, charge_point, form)
    except FormErrors as exc:
        await discard_changes(session, team, charge_point)
        return await render_page(
            "charge_points/form.html",
            status=form_errors_status(exc.errors),
            team=team,
            charge_point=charge_point,
            values=form,
            errors=exc.errors,
            **form_choices(),
        )
    await session.commit()
    return redirect_to(url_for("charge_points.detail", cp_id=cp_id), 303)


@blueprint.get("/charge-points/<int:cp_id>/delete")
@login_required
async def confirm_delete(cp_id: int) -> Response:
    charge_point, team = await charge_point_for(await principal(), cp_id, may=Permission.CONFIGURE_CHARGE_POINTS)
    return await render_page("charge_points/delete.html", charge_point=charge_point, team=team)


@blueprint.post("/charge-points/<int:cp_id>/delete")
@login_required
async def delete(cp_id: int) -> Response:
    me = await principal()
    charge_point, team = await charge_point_for(me, cp_id, may=Permission.CONFIGURE_CHARGE_POINTS)
    session = await db_session()
    await cp_service.delete_charge_point(session, me, team, charge_point)
    await session.commit()
    return redirect_to(url_for("teams.charge_points", team_id=team.id), 303)


@blueprint.post("/charge-points/<int:cp_id>/ocpp-password")
@login_required
async def reset_password(cp_id: int) -> Response:
    me = await principal()
    charge_point, team = await charge_point_for(me, cp_id, may=Permission.CONFIGURE_CHARGE_POINTS)
    session = await db_session()
    password = await cp_service.reset_ocpp_password(session, me, team, charge_point)
    await session.commit()
    return await render_page(
        "charge_points/credentials.html",
        team=team,
        charge_point=charge_point,
        password=password,
        ocpp_url=ocpp_url(charge_point.identity),
        created=False,
    )


@blueprint.post("/charge-points/<int:cp_id>/powerbank/suspend")
@login_required
async def suspend(cp_id: int) -> Response:
    """Suspend the charge point from PowerBank (operator admins); automation never lifts it."""
    me = await principal()
    charge_point, team = await charge_point_for(me, cp_id, may=Permission.SUSPEND_POWERBANK)
    session = await db_session()
    form = (await request.form).to_dict()
    try:
        await enrollment.suspend(session, me, charge_point, form.get("reason", ""))
    except FormErrors as exc:
        await discard_changes(session, charge_point, team)
        return await _detail_page(me, charge_point, team, status=422, suspend_errors=exc.errors, suspend_values=form)
    except ConflictError as exc:
        await discard_changes(session, charge_point, team)
        return await _detail_page(
            me, charge_point, team, status=409, suspend_errors={"form": str(exc)}, suspend_values=form
        )
    await session.commit()
    return redirect_to(url_for("charge_points.detail", cp_id=cp_id) + "#reliability", 303)


@blueprint.post("/charge-points/<int:cp_id>/powerbank/lift-suspension")
@login_required
async def lift_suspension(cp_id: int) -> Response:
    """End an operator admin's suspension: the charge point takes part again (if it is eligible)."""
    me = await principal()
    charge_point, team = await charge_point_for(me, cp_id, may=Permission.SUSPEND_POWERBANK)
    session = await db_session()
    try:
        await enrollment.lift_suspension(session, me, charge_point)
    except ConflictError as exc:
        await discard_changes(session, charge_point, team)
        return await _detail_page(me, charge_point, team, status=409, suspend_errors={"form": str(exc)})
    await session.commit()
    return redirect_to(url_for("charge_points.detail", cp_id=cp_id) + "#reliability", 303)
