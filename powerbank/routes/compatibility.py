"""The compatibility page: each operator's catalogue (R2), searched as you type, with the user's matches."""

from __future__ import annotations

from quart import Blueprint, Response, request

from powerbank.errors import NotFoundError
from powerbank.i18n import gettext as _
from powerbank.routes.loaders import operator_for
from powerbank.services import catalogue
from powerbank.web.auth import login_required, principal
from powerbank.web.ids import id_or_none
from powerbank.web.render import render_page
from powerbank.web.state import db_session

blueprint = Blueprint("compatibility", __name__)


@blueprint.get("/compatibility")
@login_required
async def compatibility() -> Response:
    """Show the catalogue of every operator the user belongs to, or of the one named by ?operator=."""
    me = await principal()
    chosen = request.args.get("operator", "")
    if chosen:
        operator_id = id_or_none(chosen)
        if operator_id is None:
            raise NotFoundError(_("No such operator."))
        operator_ids = {(await operator_for(me, operator_id)).id or 0}
    else:
        operator_ids = me.visible_operator_ids
    search = request.args.get("q", "")[: catalogue.MAX_SEARCH_LENGTH]
    return await render_page(
        "compatibility/index.html",
        "partials/powerbank_compatibility.html",
        catalogues=await catalogue.compatibility_for(await db_session(), me, operator_ids, search),
        chosen=operator_ids if chosen else None,
        operators_shown=len(me.visible_operator_ids),
        search=search,
        needs=catalogue.ENTRY_NEEDS,
    )
