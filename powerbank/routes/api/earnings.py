"""JSON API v1: a team's monthly earnings statement, and market prices for the operator's admins.

A statement follows the token's scope like the team's pages (a team token sees its team, an
operator token every team of its operator; another operator's team is not found). Entering prices
is operator-wide and needs a write token: like the page, a bad row names itself and nothing is saved.
Amounts are decimal strings, exact to the cent.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field
from quart import Response
from quart_schema import validate_querystring, validate_request, validate_response

from powerbank.errors import ForbiddenError, FormErrors
from powerbank.routes import api
from powerbank.routes.api import schemas
from powerbank.routes.loaders import team_for
from powerbank.rules.earnings import month_of, parse_month, previous_month
from powerbank.services import earnings as service
from powerbank.web.state import db_session

blueprint = api.blueprint


class EarningsQuery(schemas.Query):
    month: str | None = Field(
        default=None, pattern=r"^\d{4}-\d{2}$", description="The month, YYYY-MM (UTC); default: last month."
    )


class EarningsLine(BaseModel):
    kind: str = Field(description='"charge point", or "correction" (to the closed month before, dated).')
    charge_point_id: int | None
    charge_point_name: str
    price_area: str
    hours_signed_up: int
    average_available_kw: float
    activations: int
    delivered_kwh: float
    market_value: str = Field(description="Market revenue of the line, six decimal places.")
    share: str = Field(description="The team's share of it, as a fraction (0.7 is 70 %).")
    amount: str = Field(description="The team's earnings: market_value times share, rounded once to the cent.")
    currency: str
    corrects: str | None = None
    dated: datetime | None = None


class EarningsTotal(BaseModel):
    currency: str
    amount: str = Field(description="The sum of the lines' amounts in this currency.")


class EarningsStatement(BaseModel):
    team_id: int
    month: str
    state: str = Field(description='"closed" (never changes), "open" (may still change) or "not computed".')
    closed_at: datetime | None
    refreshed_at: datetime | None
    share: str
    lines: list[EarningsLine]
    totals: list[EarningsTotal]


class PriceIn(schemas.RequestBody):
    price_area: str
    market: str
    kind: str = Field(description='"capacity" (per MW per hour) or "energy" (per MWh).')
    currency: str
    starts_at: str = Field(description="ISO 8601 with a time zone.")
    ends_at: str | None = Field(default=None, description="Empty for a capacity price: one hour.")
    price: str = Field(description='A decimal string, at most four decimal places, e.g. "412.50".')


class PricesIn(schemas.RequestBody):
    prices: list[PriceIn] = Field(min_length=1, max_length=10_000)


class PricesSaved(BaseModel):
    added: int
    changed: int
    unchanged: int
    months: list[str]


@blueprint.get(f"/teams/<{api.ID}:team_id>/earnings")
@validate_querystring(EarningsQuery)
@validate_response(EarningsStatement)
@api.problems(*api.COMMON, 422)
async def get_team_earnings(team_id: int, query_args: EarningsQuery) -> EarningsStatement | Response:
    """A team's earnings statement of one month: a line per charge point, corrections, totals per currency."""
    me = api.current_principal()
    team = await team_for(me, team_id)
    month = parse_month(query_args.month) if query_args.month else previous_month(month_of(datetime.now(UTC)))
    if month is None:
        problem = schemas.FieldProblem(field="month", message="Give the month as YYYY-MM, e.g. 2026-11.")
        return api.problem(422, "The request is not valid; see errors.", errors=[problem])
    found = await service.statement(await db_session(), me, team, month)
    state = "closed" if found.closed else ("open" if found.refreshed_at else "not computed")
    return EarningsStatement(
        team_id=team.id or 0,
        month=month,
        state=state,
        closed_at=found.closed_at,
        refreshed_at=found.refreshed_at,
        share=f"{found.share:f}",
        lines=[
            EarningsLine(
                kind=line.kind,
                charge_point_id=line.charge_point_id,
                charge_point_name=line.charge_point_name,
                price_area=line.price_area,
                hours_signed_up=line.hours_signed_up,
                average_available_kw=round(service.average_kw(line), 3),
                activations=line.activations,
                delivered_kwh=round(line.delivered_kwh, 3),
                market_value=f"{line.market_value:f}",
                share=f"{line.share:f}",
                amount=f"{line.amount:f}",
                currency=line.currency,
                corrects=line.corrects,
                dated=line.dated,
            )
            for line in [*found.lines, *found.corrections]
        ],
        totals=[EarningsTotal(currency=t.currency, amount=f"{t.amount:f}") for t in found.totals],
    )


@blueprint.post("/earnings/prices")
@validate_request(PricesIn)
@validate_response(PricesSaved, 200)
@api.problems(*api.COMMON, *api.BODY)
async def enter_prices(data: PricesIn) -> PricesSaved | Response:
    """Enter market prices for the token's operator (an operator-wide write token), all or nothing.

    A price equal to a stored one changes nothing; one for a stored period replaces its price;
    an overlapping period, a closed month, an unknown area or market, a currency that is not the
    area's, or a negative or absurd price refuses them all, naming each (prices.N).
    """
    api.require_write()
    token = api.current_token()
    if token.team_id is not None:
        raise ForbiddenError("Prices are operator-wide: use a token for the whole operator, not one team.")
    operator_id = token.operator_id
    rows: list[service.PriceInput] = []
    problems: list[schemas.FieldProblem] = []
    for index, price in enumerate(data.prices):
        row, wrong = service.clean_price_row({k: v or "" for k, v in price.model_dump().items()}, index)
        if row is None:
            problems.append(schemas.FieldProblem(field=f"prices.{index}", message=" ".join(wrong)))
        else:
            rows.append(row)
    if problems:
        return api.problem(422, "Nothing was saved: some prices are not valid.", errors=problems)
    session = await db_session()
    try:
        saved = await service.save_prices(session, api.current_principal(), operator_id, rows, datetime.now(UTC))
    except FormErrors as exc:
        await session.rollback()
        refused = [
            schemas.FieldProblem(field=f"prices.{key.removeprefix('line ')}", message=message)
            for key, message in exc.errors.items()
        ]
        return api.problem(422, "Nothing was saved: some prices are not valid.", errors=refused)
    await session.commit()
    return PricesSaved(added=saved.added, changed=saved.changed, unchanged=saved.unchanged, months=list(saved.months))
