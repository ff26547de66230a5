"""PowerBank pages: the bulk sign-up flow, the toggle in Charge point functionalities, history, CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from quart import Blueprint, Response, abort, current_app, flash, get_flashed_messages, request, url_for
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.errors import ConflictError
from powerbank.models import ChargePoint, ParticipationSource, ParticipationState, Team
from powerbank.routes.loaders import charge_point_for, team_for
from powerbank.rules.eligibility import facility_id_problem
from powerbank.rules.permissions import Permission, Principal, denial_reason
from powerbank.rules.validators import page_number
from powerbank.services import enrollment
from powerbank.services.charge_points import names_of_team
from powerbank.web.auth import login_required, principal
from powerbank.web.htmx import hx_trigger, is_htmx
from powerbank.web.ids import id_or_none
from powerbank.web.render import csv_download, discard_changes, redirect_to, render_page
from powerbank.web.state import db_session

blueprint = Blueprint("enrollment", __name__)

CHANGED_EVENT = "powerbank-changed"
HISTORY_PAGE_SIZE = 50


def _id_list(values: list[str]) -> list[int]:
    ids = [id_or_none(value) for value in values]
    # int() alone takes "١٢" and 5,000-digit numbers (a ValueError past 4,300 digits): nothing a form sends.
    if None in ids:
        abort(400, description="A charge point id is not an id.")
    return [cp_id for cp_id in ids if cp_id is not None]


def _typed_facility_ids(form: dict[str, str]) -> dict[int, str]:
    typed: dict[int, str] = {}
    for key, value in form.items():
        if key.startswith("facility_id_") and value.strip():
            charge_point_id = id_or_none(key.removeprefix("facility_id_"))
            if charge_point_id is None:
                abort(400, description="A Facility ID field is malformed.")
            typed[charge_point_id] = value
    return typed


async def _sign_up_page(
    session: AsyncSession,
    me: Principal,
    team: Team,
    *,
    status: int = 200,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    row_errors: dict[int, str] | None = None,
    result: str | None = None,
    rows: list[enrollment.RowStatus] | None = None,
    paste: enrollment.FacilityIdPaste | None = None,
) -> Response:
    response = await render_page(
        "enrollment/sign_up.html",
        "partials/powerbank_sign_up.html",
        status=status,
        team=team,
        terms=await enrollment.current_terms(session),
        rows=rows if rows is not None else await enrollment.eligibility_for_team(session, team),
        values=values or {"sign_up": [], "facility_ids": {}, "accept_terms": False},
        errors=errors or {},
        row_errors=row_errors or {},
        result=result,
        paste=paste,
        paste_limits=(enrollment.MAX_PASTE_LINES, enrollment.MAX_PASTE_BYTES),
        sign_up_reason=denial_reason(me, Permission.SIGN_UP_POWERBANK, team),
    )
    return response


@blueprint.get("/teams/<int:team_id>/powerbank/sign-up")
@login_required
async def sign_up_flow(team_id: int) -> Response:
    me = await principal()
    team = await team_for(me, team_id)
    session = await db_session()
    flashed = get_flashed_messages()
    return await _sign_up_page(session, me, team, result=str(flashed[0]) if flashed else None)


@blueprint.post("/teams/<int:team_id>/powerbank/sign-up")
@login_required
async def sign_up_save(team_id: int) -> Response:
    me = await principal()
    team = await team_for(me, team_id)
    session = await db_session()
    form = await request.form
    sign_up_all = form.get("action") == "all"
    ticked = _id_list(form.getlist("sign_up"))
    facility_ids = _typed_facility_ids(form.to_dict())
    accepted = form.get("terms_version") if form.get("accept_terms") else None
    values = {"sign_up": ticked, "facility_ids": facility_ids, "accept_terms": bool(form.get("accept_terms"))}
    try:
        result = await enrollment.bulk_sign_up(
            session,
            me,
            team,
            accept_terms_version=accepted,
            charge_point_ids=ticked,
            sign_up_all=sign_up_all,
            facility_ids=facility_ids,
            source=ParticipationSource.BULK,
        )
    except enrollment.SignUpError as exc:
        await discard_changes(session, team)
        return await _sign_up_page(
            session, me, team, status=422, values=values, errors=exc.errors, row_errors=exc.row_errors
        )
    except ConflictError as exc:
        await discard_changes(session, team)
        return await _sign_up_page(session, me, team, status=409, values=values, errors={"form": str(exc)})
    await session.commit()
    if not is_htmx():
        await flash(result.message)
        return redirect_to(url_for("enrollment.sign_up_flow", team_id=team_id), 303)
    return hx_trigger(await _sign_up_page(session, me, team, result=result.message), CHANGED_EVENT)


@blueprint.post("/teams/<int:team_id>/powerbank/sign-up/facility-ids")
@login_required
async def fill_facility_ids(team_id: int) -> Response:
    """Fill the sign-up table's Facility IDs from pasted or uploaded lines; nothing is saved until Save."""
    me = await principal()
    team = await team_for(me, team_id, may=Permission.SIGN_UP_POWERBANK)
    session = await db_session()
    form = await request.form
    upload = (await request.files).get("facility_ids_file")
    pasted = form.get(enrollment.PASTE_FIELD, "")
    values: dict[str, Any] = {
        "sign_up": _id_list(form.getlist("sign_up")),
        "facility_ids": _typed_facility_ids(form.to_dict()),
        "accept_terms": bool(form.get("accept_terms")),
        "pasted": pasted,
    }
    rows = await enrollment.eligibility_for_team(session, team)
    try:
        text = enrollment.facility_id_list(pasted, upload.read() if upload is not None and upload.filename else None)
        paste = enrollment.match_pasted_facility_ids(rows, text)
    except enrollment.SignUpError as exc:
        return await _sign_up_page(session, me, team, status=422, values=values, errors=exc.errors, rows=rows)
    values["facility_ids"] = {**values["facility_ids"], **paste.facility_ids}
    # The list stays in the box only while some of its lines still need fixing.
    values["pasted"] = pasted if paste.problems else ""
    return await _sign_up_page(session, me, team, values=values, rows=rows, paste=paste)


@blueprint.get("/teams/<int:team_id>/powerbank/facility-id/<int:cp_id>")
@login_required
async def check_facility_id(team_id: int, cp_id: int) -> Response:
    charge_point, team = await charge_point_for(await principal(), cp_id)
    if team.id != team_id:
        abort(404)
    # The bulk flow names the field per charge point; the toggle's form has a single one.
    typed = request.args.get(f"facility_id_{cp_id}", request.args.get("facility_id", ""))
    return await render_page(
        "partials/powerbank_facility_message.html",
        charge_point=charge_point,
        message=facility_id_problem(typed),
        typed=typed,
    )


async def functionality_context(
    session: AsyncSession,
    me: Principal,
    charge_point: ChargePoint,
    team: Team,
    *,
    confirm: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    history_page: int = 1,
) -> dict[str, Any]:
    """Return what the PowerBank row of Charge point functionalities renders with."""
    status = await enrollment.get_participation(session, charge_point)
    terms = await enrollment.current_terms(session)
    return {
        "pb_status": status,
        "pb_on": status.state in (ParticipationState.SIGNED_UP, ParticipationState.SUSPENDED),
        "pb_reason": denial_reason(me, Permission.SIGN_UP_POWERBANK, team),
        "pb_terms": terms,
        "pb_needs_terms": not await enrollment.has_accepted_terms(
            session, me.user.id or 0, team.id or 0, terms.version
        ),
        "pb_confirm": confirm,
        "pb_errors": errors or {},
        "pb_values": values or {},
        "pb_history": await enrollment.list_events(
            session, team.id or 0, charge_point_id=charge_point.id, page=history_page, page_size=20
        ),
    }


async def _functionality(
    session: AsyncSession, me: Principal, charge_point: ChargePoint, team: Team, *, status: int = 200, **kwargs: Any
) -> Response:
    return await render_page(
        "partials/powerbank_functionality.html",
        "partials/powerbank_functionality.html",
        status=status,
        charge_point=charge_point,
        team=team,
        **await functionality_context(session, me, charge_point, team, **kwargs),
    )


@blueprint.get("/charge-points/<int:cp_id>/powerbank")
@login_required
async def toggle(cp_id: int) -> Response:
    """Show the PowerBank row, asking to confirm when the switch was turned (?turn=on|off)."""
    me = await principal()
    charge_point, team = await charge_point_for(me, cp_id)
    session = await db_session()
    turn = request.args.get("turn")
    confirm = turn if turn in ("on", "off") else None
    if not is_htmx():
        target = (
            url_for("charge_points.detail", cp_id=cp_id, powerbank=confirm)
            if confirm
            else url_for("charge_points.detail", cp_id=cp_id)
        )
        return redirect_to(target + "#functionalities", 303)
    return await _functionality(session, me, charge_point, team, confirm=confirm)


@blueprint.post("/charge-points/<int:cp_id>/powerbank/sign-up")
@login_required
async def sign_up_one(cp_id: int) -> Response:
    me = await principal()
    charge_point, team = await charge_point_for(me, cp_id)
    session = await db_session()
    form = (await request.form).to_dict()
    accepted = form.get("terms_version") if form.get("accept_terms") else None
    try:
        await enrollment.sign_up_one(
            session,
            me,
            charge_point,
            accept_terms_version=accepted,
            facility_id=form.get("facility_id"),
            source=ParticipationSource.SINGLE,
        )
    except enrollment.SignUpError as exc:
        await discard_changes(session, charge_point, team)
        return await _functionality(
            session, me, charge_point, team, status=422, confirm="on", errors=exc.errors, values=form
        )
    except ConflictError as exc:
        await discard_changes(session, charge_point, team)
        return await _functionality(
            session, me, charge_point, team, status=409, confirm="on", errors={"form": str(exc)}, values=form
        )
    await session.commit()
    if not is_htmx():
        return redirect_to(url_for("charge_points.detail", cp_id=cp_id) + "#functionalities", 303)
    return hx_trigger(await _functionality(session, me, charge_point, team), CHANGED_EVENT)


@blueprint.post("/charge-points/<int:cp_id>/powerbank/opt-out")
@login_required
async def opt_out(cp_id: int) -> Response:
    me = await principal()
    charge_point, team = await charge_point_for(me, cp_id)
    session = await db_session()
    try:
        await enrollment.opt_out(session, me, charge_point, source=ParticipationSource.SINGLE)
    except ConflictError as exc:
        await discard_changes(session, charge_point, team)
        return await _functionality(
            session, me, charge_point, team, status=409, confirm="off", errors={"form": str(exc)}
        )
    await session.commit()
    if not is_htmx():
        return redirect_to(url_for("charge_points.detail", cp_id=cp_id) + "#functionalities", 303)
    return hx_trigger(await _functionality(session, me, charge_point, team), CHANGED_EVENT)


@blueprint.get("/teams/<int:team_id>/powerbank")
@login_required
async def history(team_id: int) -> Response:
    me = await principal()
    team = await team_for(me, team_id)
    session = await db_session()
    charge_points = await names_of_team(session, team_id)
    selected = id_or_none(request.args.get("charge_point"))
    events = await enrollment.list_events(
        session,
        team_id,
        charge_point_id=selected,
        page=page_number(request.args.get("page")),
        page_size=current_app.config.get("PAGE_SIZE", HISTORY_PAGE_SIZE),
    )
    return await render_page(
        "enrollment/history.html",
        "partials/powerbank_history.html",
        team=team,
        charge_points=charge_points,
        selected=selected,
        events=events,
        sign_up_reason=denial_reason(me, Permission.SIGN_UP_POWERBANK, team),
    )


@blueprint.get("/teams/<int:team_id>/powerbank/participation.csv")
@login_required
async def export_csv(team_id: int) -> Response:
    team = await team_for(await principal(), team_id)
    session = await db_session()
    buffer = io.StringIO()
    csv.writer(buffer).writerows(
        enrollment.participation_csv_rows(await enrollment.eligibility_for_team(session, team))
    )
    return csv_download(buffer.getvalue(), f"powerbank-participation-team-{team.id}.csv")
