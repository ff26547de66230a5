"""The home page: the teams the user can see, grouped by operator."""

from __future__ import annotations

from quart import Blueprint, Response

from powerbank.rules.permissions import Permission, can_on_operator
from powerbank.services.teams import visible_teams
from powerbank.web.auth import login_required, principal
from powerbank.web.render import render_page
from powerbank.web.state import db_session

blueprint = Blueprint("home", __name__)


@blueprint.get("/")
@login_required
async def index() -> Response:
    me = await principal()
    groups = await visible_teams(await db_session(), me)
    return await render_page(
        "home/index.html",
        groups=groups,
        is_operator_admin={op.id: can_on_operator(me, Permission.MANAGE_TEAMS, op.id or 0) for op, _ in groups},
        operator_roles=me.operator_roles,
    )
