"""A team's pages: the Charge points tab and adding a charge point."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, current_app, request, url_for

from powerbank.errors import FormErrors
from powerbank.routes.loaders import team_for, team_with_operator_for
from powerbank.rules.countries import AREAS_BY_COUNTRY, COUNTRIES
from powerbank.rules.permissions import Permission, can_on_team, denial_reason
from powerbank.services import charge_points as cp_service
from powerbank.services import enrollment
from powerbank.web.auth import login_required, principal
from powerbank.web.render import discard_changes, form_errors_status, public_url, redirect_to, render_page
from powerbank.web.state import db_session

blueprint = Blueprint("teams", __name__)


def ocpp_url(identity: str) -> str:
    """Return the websocket URL a charger is configured with."""
    base = public_url()
    base = base.replace("https://", "wss://", 1) if base.startswith("https://") else base.replace("http://", "ws://", 1)
    return f"{base}ocpp/{identity}"


def form_choices() -> dict[str, Any]:
    return {"countries": COUNTRIES, "areas_by_country": AREAS_BY_COUNTRY}


@blueprint.get("/teams/<int:team_id>")
@login_required
async def team(team_id: int) -> Response:
    await team_for(await principal(), team_id)
    return redirect_to(url_for("teams.charge_points", team_id=team_id))


@blueprint.get("/teams/<int:team_id>/charge-points")
@login_required
async def charge_points(team_id: int) -> Response:
    me = await principal()
    team_, operator = await team_with_operator_for(me, team_id)
    session = await db_session()
    query = cp_service.parse_query(request.args.to_dict(), current_app.config["PAGE_SIZE"])
    page = await cp_service.list_charge_points(session, team_id, query)
    return await render_page(
        "teams/charge_points.html",
        "partials/charge_point_table.html",
        team=team_,
        operator=operator,
        page=page,
        query=query,
        countries=COUNTRIES,
        status_of=cp_service.connection_status,
        can_configure=can_on_team(me, Permission.CONFIGURE_CHARGE_POINTS, team_),
        configure_reason=denial_reason(me, Permission.CONFIGURE_CHARGE_POINTS, team_),
        powerbank_statuses=await enrollment.statuses_for(session, team_, page.items),
        powerbank_reason=denial_reason(me, Permission.SIGN_UP_POWERBANK, team_),
    )


@blueprint.get("/teams/<int:team_id>/charge-points/new")
@login_required
async def new_charge_point(team_id: int) -> Response:
    team_ = await team_for(await principal(), team_id, may=Permission.CONFIGURE_CHARGE_POINTS)
    # The Connection attempts page links here with a refused charger's identity filled in.
    values = {"identity": request.args.get("identity", "")}
    return await render_page(
        "charge_points/form.html", team=team_, charge_point=None, values=values, errors={}, **form_choices()
    )


@blueprint.post("/teams/<int:team_id>/charge-points/new")
@login_required
async def create_charge_point(team_id: int) -> Response:
    me = await principal()
    team_ = await team_for(me, team_id, may=Permission.CONFIGURE_CHARGE_POINTS)
    session = await db_session()
    form = (await request.form).to_dict()
    try:
        charge_point, password = await cp_service.create_charge_point(session, me, team_, form)
    except FormErrors as exc:
        await discard_changes(session, team_)
        return await render_page(
            "charge_points/form.html",
            status=form_errors_status(exc.errors),
            team=team_,
            charge_point=None,
            values=form,
            errors=exc.errors,
            **form_choices(),
        )
    await session.commit()
    return await render_page(
        "charge_points/credentials.html",
        status=201,
        team=team_,
        charge_point=charge_point,
        password=password,
        ocpp_url=ocpp_url(charge_point.identity),
        created=True,
    )
