"""API token pages: operator admins manage their operator's tokens, team owners their team's."""

from __future__ import annotations

from quart import Blueprint, Response, request, url_for

from powerbank.errors import FormErrors
from powerbank.models import ApiToken, Operator, Team, TokenAccess
from powerbank.routes.loaders import api_token_for, operator_for, team_with_operator_for
from powerbank.rules.permissions import Permission, Principal, can_on_operator, can_on_team
from powerbank.services import api_tokens
from powerbank.services.teams import teams_of
from powerbank.web.auth import login_required, principal
from powerbank.web.render import form_errors_status, redirect_to, render_page
from powerbank.web.state import db_session

blueprint = Blueprint("api_tokens", __name__)


@blueprint.app_template_global()
def may_manage_api_tokens(who: Principal | None, team: Team) -> bool:
    """Tell templates whether to offer a team's API tokens page."""
    return who is not None and can_on_team(who, Permission.MANAGE_API_TOKENS, team)


async def _render(
    operator: Operator,
    team: Team | None,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    created: tuple[ApiToken, str] | None = None,
) -> Response:
    session = await db_session()
    if team is None:
        teams = await teams_of(session, operator.id or 0)
        scopes = [(api_tokens.OPERATOR_SCOPE, f"All teams of {operator.name}")]
        scopes += [(str(t.id), t.name) for t in teams]
    else:
        teams = [team]
        scopes = [(str(team.id), team.name)]
    return await render_page(
        "api/tokens.html",
        status=status,
        operator=operator,
        team=team,
        tokens=await api_tokens.list_tokens(session, operator.id or 0, team.id if team else None),
        team_names={t.id: t.name for t in teams},
        scopes=scopes,
        values=values or {"scope": scopes[0][0], "access": TokenAccess.READ},
        errors=errors or {},
        created=created,
        status_of=api_tokens.token_status,
    )


async def _create(operator: Operator, team: Team | None, me: Principal) -> Response:
    session = await db_session()
    form = (await request.form).to_dict()
    teams = await teams_of(session, operator.id or 0) if team is None else [team]
    try:
        token_request = api_tokens.clean_token_form(
            form, team_ids={t.id for t in teams if t.id is not None}, operator_scope_allowed=team is None
        )
        created = await api_tokens.create_token(session, me, operator.id or 0, token_request)
    except FormErrors as exc:
        # The form is checked before anything is added, so there is nothing to roll back.
        return await _render(operator, team, status=form_errors_status(exc.errors), values=form, errors=exc.errors)
    await session.commit()
    return await _render(operator, team, status=201, created=created)


@blueprint.get("/operators/<int:operator_id>/api-tokens")
@login_required
async def operator_tokens(operator_id: int) -> Response:
    return await _render(await operator_for(await principal(), operator_id, may=Permission.MANAGE_API_TOKENS), None)


@blueprint.post("/operators/<int:operator_id>/api-tokens")
@login_required
async def create_operator_token(operator_id: int) -> Response:
    me = await principal()
    operator = await operator_for(me, operator_id, may=Permission.MANAGE_API_TOKENS)
    return await _create(operator, None, me)


@blueprint.get("/teams/<int:team_id>/api-tokens")
@login_required
async def team_tokens(team_id: int) -> Response:
    team, operator = await team_with_operator_for(await principal(), team_id, may=Permission.MANAGE_API_TOKENS)
    return await _render(operator, team)


@blueprint.post("/teams/<int:team_id>/api-tokens")
@login_required
async def create_team_token(team_id: int) -> Response:
    me = await principal()
    team, operator = await team_with_operator_for(me, team_id, may=Permission.MANAGE_API_TOKENS)
    return await _create(operator, team, me)


@blueprint.post("/api-tokens/<int:token_id>/revoke")
@login_required
async def revoke(token_id: int) -> Response:
    me = await principal()
    token, team = await api_token_for(me, token_id)
    session = await db_session()
    await api_tokens.revoke_token(session, me, token)
    await session.commit()
    return redirect_to(await _back_from_revoke(me, token, team), 303)


async def _back_from_revoke(me: Principal, token: ApiToken, team: Team | None) -> str:
    """Return the tokens page to go back to: the operator's, if the revoke came from there and may."""
    operator_page = url_for("api_tokens.operator_tokens", operator_id=token.operator_id)
    if team is None:
        return operator_page
    from_operator_page = (await request.form).get("back") == "operator"
    if from_operator_page and can_on_operator(me, Permission.MANAGE_API_TOKENS, team.operator_id):
        return operator_page
    return url_for("api_tokens.team_tokens", team_id=team.id)
