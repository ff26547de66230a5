"""API token pages: operator admins manage their operator's tokens, team owners their team's."""

from __future__ import annotations

from quart import Blueprint, Response, redirect, request, url_for
from sqlmodel import col, select

from powerbank.errors import FormErrors
from powerbank.models import ApiToken, Operator, Team, TokenAccess
from powerbank.rules.permissions import Permission, Principal, can_on_operator, can_on_team
from powerbank.services import api_tokens
from powerbank.services.audit import Actor
from powerbank.services.teams import get_operator_or_404, get_team_or_404, require_operator, require_team
from powerbank.web.auth import login_required, principal
from powerbank.web.render import form_errors_status, render_page
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
        teams = list(await session.exec(select(Team).where(Team.operator_id == operator.id).order_by(col(Team.name))))
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
    if team is None:
        team_ids = set(await session.exec(select(Team.id).where(Team.operator_id == operator.id)))
    else:
        team_ids = {team.id}
    try:
        token_request = api_tokens.clean_token_form(
            form, team_ids={i for i in team_ids if i is not None}, operator_scope_allowed=team is None
        )
        created = await api_tokens.create_token(session, Actor.of(me.user), operator.id or 0, token_request)
    except FormErrors as exc:
        # The form is checked before anything is added, so there is nothing to roll back.
        return await _render(operator, team, status=form_errors_status(exc.errors), values=form, errors=exc.errors)
    await session.commit()
    return await _render(operator, team, status=201, created=created)


@blueprint.get("/operators/<int:operator_id>/api-tokens")
@login_required
async def operator_tokens(operator_id: int) -> Response:
    me = await principal()
    operator = await get_operator_or_404(await db_session(), me, operator_id)
    require_operator(me, Permission.MANAGE_API_TOKENS, operator_id)
    return await _render(operator, None)


@blueprint.post("/operators/<int:operator_id>/api-tokens")
@login_required
async def create_operator_token(operator_id: int) -> Response:
    me = await principal()
    operator = await get_operator_or_404(await db_session(), me, operator_id)
    require_operator(me, Permission.MANAGE_API_TOKENS, operator_id)
    return await _create(operator, None, me)


async def _team_and_operator(team_id: int, me: Principal) -> tuple[Team, Operator]:
    session = await db_session()
    team = await get_team_or_404(session, me, team_id)
    require_team(me, Permission.MANAGE_API_TOKENS, team)
    return team, await get_operator_or_404(session, me, team.operator_id)


@blueprint.get("/teams/<int:team_id>/api-tokens")
@login_required
async def team_tokens(team_id: int) -> Response:
    team, operator = await _team_and_operator(team_id, await principal())
    return await _render(operator, team)


@blueprint.post("/teams/<int:team_id>/api-tokens")
@login_required
async def create_team_token(team_id: int) -> Response:
    me = await principal()
    team, operator = await _team_and_operator(team_id, me)
    return await _create(operator, team, me)


@blueprint.post("/api-tokens/<int:token_id>/revoke")
@login_required
async def revoke(token_id: int) -> Response:
    session = await db_session()
    me = await principal()
    token = await api_tokens.get_token_or_404(session, token_id)
    operator_page = url_for("api_tokens.operator_tokens", operator_id=token.operator_id)
    if token.team_id is None:
        await get_operator_or_404(session, me, token.operator_id)
        require_operator(me, Permission.MANAGE_API_TOKENS, token.operator_id)
        back = operator_page
    else:
        team = await get_team_or_404(session, me, token.team_id)
        require_team(me, Permission.MANAGE_API_TOKENS, team)
        from_operator_page = (await request.form).get("back") == "operator"
        back = (
            operator_page
            if from_operator_page and can_on_operator(me, Permission.MANAGE_API_TOKENS, team.operator_id)
            else url_for("api_tokens.team_tokens", team_id=token.team_id)
        )
    await api_tokens.revoke_token(session, Actor.of(me.user), token)
    await session.commit()
    return redirect(back, 303)
