"""JSON API v1: a charge point: reading it and changing its details.

The routes live on ``powerbank.routes.api.blueprint`` so they share its token authentication,
rate limit and problem documents. A change is the edit form's service call, so the same
validation and permission apply.
"""

from __future__ import annotations

from quart_schema import validate_request, validate_response

from powerbank.routes import api
from powerbank.routes.api import schemas
from powerbank.services import charge_points as cp_service
from powerbank.services import enrollment
from powerbank.web.state import db_session

blueprint = api.blueprint


@blueprint.get(f"/charge-points/<{api.ID}:cp_id>")
@validate_response(schemas.ChargePoint)
@api.problems(*api.COMMON)
async def get_charge_point(cp_id: int) -> schemas.ChargePoint:
    """Show a charge point."""
    charge_point, _team = await api.charge_point_of_token(cp_id)
    return schemas.charge_point_out(await enrollment.get_participation(await db_session(), charge_point))


@blueprint.patch(f"/charge-points/<{api.ID}:cp_id>")
@validate_request(schemas.ChargePointChanges)
@validate_response(schemas.ChargePoint)
@api.problems(*api.COMMON, *api.BODY)
async def update_charge_point(cp_id: int, data: schemas.ChargePointChanges) -> schemas.ChargePoint:
    """Change a charge point's name, country, price area or Facility ID.

    The same validation as the edit form: country and price area must match, and a Swedish
    Facility ID must be 18 digits starting 735999 with a valid check digit. Fields left out
    keep their value; null clears the price area or the Facility ID.
    """
    charge_point, team = await api.charge_point_of_token(cp_id)
    api.require_write()
    form = {field: getattr(charge_point, field) or "" for field in cp_service.EDITABLE_FIELDS}
    form.update({field: getattr(data, field) or "" for field in data.model_fields_set})
    session = await db_session()
    await cp_service.update_charge_point(session, api.current_principal(), team, charge_point, form)
    await session.commit()
    return schemas.charge_point_out(await enrollment.get_participation(session, charge_point))
