"""JSON API v1: what an operator could pause per price area, minute by minute, for the bidding side.

Availability is operator-wide, like activations: it needs a token for the whole operator (read
access is enough), and shows only the token's operator's chargers.
"""

from __future__ import annotations

from datetime import UTC, datetime

from quart import Response
from quart_schema import validate_querystring, validate_response

from powerbank.errors import FormErrors
from powerbank.routes import api
from powerbank.routes.api import schemas
from powerbank.routes.api.activations import token_operator_id
from powerbank.routes.api.schemas import AreaAvailabilitySeries, AvailabilityMinute, AvailabilityQuery
from powerbank.services import availability as service
from powerbank.web.state import db_session

blueprint = api.blueprint


@blueprint.get("/areas/<area>/availability")
@validate_querystring(AvailabilityQuery)
@validate_response(AreaAvailabilitySeries)
@api.problems(*api.COMMON, 403, 422)
async def get_area_availability(area: str, query_args: AvailabilityQuery) -> AreaAvailabilitySeries | Response:
    """The power the operator could pause in a price area, one value per sampled minute.

    Each minute: the sum of the newest measured power of the operator's signed-up chargers in the
    area (DK1, DK2, SE1-SE4, GB or IE) that were connected to the hub, and how many were signed up,
    online and reporting. Without from and to: the last 24 hours. A minute the hub did not sample
    is missing from the list, never filled in.
    """
    operator_id = token_operator_id()
    try:
        wanted = service.clean_range(area, query_args.from_, query_args.to, datetime.now(UTC))
    except FormErrors as exc:
        errors = [schemas.FieldProblem(field=field, message=message) for field, message in exc.errors.items()]
        return api.problem(422, "The request is not valid; see errors.", errors=errors)
    points = await service.series(await db_session(), operator_id, wanted)
    return AreaAvailabilitySeries(
        price_area=wanted.area,
        start=wanted.start,
        end=wanted.end,
        step_s=60,
        minutes=[
            AvailabilityMinute(
                minute=p.minute,
                available_kw=round(p.power_w / 1000, 3),
                signed_up=p.signed_up,
                online=p.online,
                reporting=p.reporting,
            )
            for p in points
        ],
    )
