"""JSON API v1: the teams a token sees and their charge points.

The routes live on ``powerbank.routes.api.blueprint`` so they share its token authentication,
rate limit and problem documents; they load with the pages' loaders, acting as the token's
principal.
"""

from __future__ import annotations

from quart_schema import validate_querystring, validate_response

from powerbank.routes import api
from powerbank.routes.api import schemas
from powerbank.routes.loaders import team_for
from powerbank.services import enrollment
from powerbank.services.teams import visible_teams
from powerbank.web.state import db_session

blueprint = api.blueprint


@blueprint.get("/teams")
@validate_response(schemas.TeamList)
@api.problems(*api.COMMON)
async def list_teams() -> schemas.TeamList:
    """List the teams the token can see."""
    groups = await visible_teams(await db_session(), api.current_principal())
    return schemas.TeamList(
        items=[
            schemas.Team(id=team.id or 0, name=team.name, operator_id=operator.id or 0, operator_name=operator.name)
            for operator, teams in groups
            for team in teams
        ]
    )


@blueprint.get(f"/teams/<{api.ID}:team_id>/charge-points")
@validate_querystring(schemas.ChargePointFilter)
@validate_response(schemas.ChargePointPage)
@api.problems(*api.COMMON, 422)
async def list_charge_points(team_id: int, query_args: schemas.ChargePointFilter) -> schemas.ChargePointPage:
    """List a team's charge points with their PowerBank state, by name.

    Filter by country (ISO code), price area and PowerBank state; page_size is at most 500.
    """
    team = await team_for(api.current_principal(), team_id)
    session = await db_session()
    country = (query_args.country or "").strip().upper()
    area = (query_args.area or "").strip().upper()
    rows = [
        row
        for row in await enrollment.eligibility_for_team(session, team)
        if (not country or row.charge_point.country == country)
        and (not area or (row.charge_point.price_area or "") == area)
        and (query_args.state is None or row.state is query_args.state)
    ]
    start = (query_args.page - 1) * query_args.page_size
    return schemas.ChargePointPage(
        items=[schemas.charge_point_out(row) for row in rows[start : start + query_args.page_size]],
        page=query_args.page,
        page_size=query_args.page_size,
        total=len(rows),
        pages=schemas.pages(len(rows), query_args.page_size),
    )
