"""Charger connections as people see them: refused attempts, and a charge point's live OCPP state."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request, url_for
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.dispatch.gateway import gateway
from powerbank.errors import NotFoundError
from powerbank.i18n import gettext as _
from powerbank.models import ChargePoint
from powerbank.routes.loaders import charge_point_for, operator_for, team_for
from powerbank.rules.permissions import Permission
from powerbank.services import charge_points as cp_service
from powerbank.services import chargers
from powerbank.services.teams import list_operator_teams
from powerbank.web.auth import login_required, principal
from powerbank.web.htmx import add_vary, is_htmx
from powerbank.web.ids import id_or_none
from powerbank.web.render import redirect_to, render_page
from powerbank.web.state import db_session

blueprint = Blueprint("connections", __name__)


@blueprint.get("/operators/<int:operator_id>/connection-attempts")
@login_required
async def attempts(operator_id: int) -> Response:
    operator = await operator_for(await principal(), operator_id, may=Permission.VIEW_CONNECTION_ATTEMPTS)
    session = await db_session()
    return await render_page(
        "connections/attempts.html",
        "partials/connection_attempts.html",
        operator=operator,
        rows=await chargers.list_attempts(session, operator_id),
        teams=[team for team, _count in await list_operator_teams(session, operator_id)],
    )


@blueprint.get("/operators/<int:operator_id>/connection-attempts/register")
@login_required
async def register(operator_id: int) -> Response:
    """Go to the add-charge-point form of the chosen team, with the refused identity filled in."""
    me = await principal()
    await operator_for(me, operator_id, may=Permission.VIEW_CONNECTION_ATTEMPTS)
    team_id = id_or_none(request.args.get("team_id"))
    team = await team_for(me, team_id) if team_id is not None else None
    if team is None or team.operator_id != operator_id:
        raise NotFoundError(_("No such team."))
    identity = request.args.get("identity", "")
    return redirect_to(url_for("teams.new_charge_point", team_id=team.id, identity=identity), 303)


async def live_context(session: AsyncSession, charge_point: ChargePoint) -> dict[str, Any]:
    """Return what the live OCPP section of a charge point's page shows."""
    return {
        "live": await chargers.live_status(session, charge_point.id or 0),
        "frames": await gateway().live_frames(session, charge_point),
    }


@blueprint.get("/charge-points/<int:cp_id>/ocpp")
@login_required
async def live(cp_id: int) -> Response:
    """Return the live OCPP section (htmx polls it); a browser gets the whole page."""
    charge_point, team = await charge_point_for(await principal(), cp_id)
    if not is_htmx():
        return add_vary(redirect_to(url_for("charge_points.detail", cp_id=cp_id) + "#ocpp"))
    return await render_page(
        "partials/ocpp_live.html",
        "partials/ocpp_live.html",
        charge_point=charge_point,
        team=team,
        connection=cp_service.connection_status(charge_point),
        **await live_context(await db_session(), charge_point),
    )
