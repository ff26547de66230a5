"""JSON API v1: charge points: reading, adding, changing, deleting, and importing a CSV file of them.

The routes live on ``powerbank.routes.api.blueprint`` so they share its token authentication,
rate limit and problem documents. Each change is the pages' service call (the Add charge point
and edit forms, the delete button, the import page), so the same validation and permission apply.
"""

from __future__ import annotations

from quart import Response
from quart_schema import validate_request, validate_response

from powerbank.routes import api
from powerbank.routes.api import schemas
from powerbank.routes.loaders import team_for
from powerbank.routes.teams import ocpp_url
from powerbank.services import charge_points as cp_service
from powerbank.services import enrollment, imports
from powerbank.web.state import db_session

blueprint = api.blueprint


@blueprint.errorhandler(imports.ImportRefused)
def import_refused(exc: imports.ImportRefused) -> Response:
    """Answer a refused import with one error per problem, each naming its line."""
    shown = exc.problems[: imports.SHOWN_PROBLEMS]
    errors = [
        schemas.FieldProblem(
            field="csv" + (f".line{p.line}" if p.line else "") + (f".{p.column}" if p.column else ""), message=p.text
        )
        for p in shown
    ]
    detail = imports.summary(exc.problems)
    if len(shown) < len(exc.problems):
        detail += f" The first {len(shown):,} of {len(exc.problems):,} problems are listed."
    return api.problem(422, detail, errors=errors)


@blueprint.post(f"/teams/<{api.ID}:team_id>/charge-points")
@validate_request(schemas.ChargePointCreate)
@validate_response(schemas.ChargePointCreated, 201)
@api.problems(*api.COMMON, *api.BODY)
async def create_charge_point(team_id: int, data: schemas.ChargePointCreate) -> tuple[schemas.ChargePointCreated, int]:
    """Add a charge point to a team; the answer holds its OCPP password, shown only this once.

    The same validation as the Add charge point form: the identity must be free in the hub, country and
    price area must match, a Facility ID is for Sweden only. A compatible charge point in DK2 is
    signed up for PowerBank by itself (R6).
    """
    team = await team_for(api.current_principal(), team_id)
    api.require_write()
    form = {field: getattr(data, field) or "" for field in type(data).model_fields}
    session = await db_session()
    charge_point, password = await cp_service.create_charge_point(session, api.current_principal(), team, form)
    await session.commit()
    shown = schemas.charge_point_out(await enrollment.get_participation(session, charge_point))
    return schemas.ChargePointCreated(
        **dict(shown), ocpp_password=password, ocpp_url=ocpp_url(charge_point.identity)
    ), 201


@blueprint.post(f"/teams/<{api.ID}:team_id>/charge-points:import")
@validate_request(schemas.ChargePointImport)
@validate_response(schemas.ChargePointImportPreview, 200)
@validate_response(schemas.ChargePointImportResult, 201)
@api.problems(*api.COMMON, *api.BODY)
async def import_charge_points(
    team_id: int, data: schemas.ChargePointImport
) -> tuple[schemas.ChargePointImportPreview | schemas.ChargePointImportResult, int]:
    """Import a CSV file of charge points into a team: all of them, or none.

    Every row is checked first, as the Add charge point form checks it, and so are identities used
    twice in the file or already in the hub; if anything is wrong the answer (422) lists each problem
    with its line ("csv.line7.identity") and nothing is saved. With "dry_run": true the file is only
    checked (200). Otherwise the answer (201) holds each new charge point's OCPP password, shown only
    this once.
    """
    team = await team_for(api.current_principal(), team_id)
    api.require_write()
    session = await db_session()
    if data.dry_run:
        preview = await imports.preview_import(session, api.current_principal(), team, data.csv)
        if not preview.ok:
            raise imports.ImportRefused(preview.problems)
        items = [schemas.ImportRowOut.model_validate({"line": row.line, **row.values}) for row in preview.rows]
        message = f"The file is good: importing it adds {len(items):,} charge points. Nothing was saved."
        return schemas.ChargePointImportPreview(message=message, rows=len(items), items=items), 200
    imported = await imports.import_charge_points(session, api.current_principal(), team, data.csv)
    await session.commit()
    return (
        schemas.ChargePointImportResult(
            message=f"{len(imported):,} charge points imported into {team.name}.",
            imported=len(imported),
            items=[
                schemas.ImportedChargePoint(
                    line=item.line,
                    id=item.id,
                    name=item.name,
                    identity=item.identity,
                    ocpp_password=item.ocpp_password,
                    ocpp_url=ocpp_url(item.identity),
                )
                for item in imported
            ],
        ),
        201,
    )


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
    """Change any of a charge point's details; fields left out keep their value.

    The same validation as the edit form: the identity must be free in the hub, country and price
    area must match, and a Swedish Facility ID must be 18 digits starting 735999 with a valid check
    digit. Null clears an optional field. A new identity disconnects the charger connected with the
    old one; a move to another price area releases any limit (S2).
    """
    charge_point, team = await api.charge_point_of_token(cp_id)
    api.require_write()
    form = {field: getattr(charge_point, field) or "" for field in cp_service.EDITABLE_FIELDS}
    form.update({field: getattr(data, field) or "" for field in data.model_fields_set})
    session = await db_session()
    await cp_service.update_charge_point(session, api.current_principal(), team, charge_point, form)
    await session.commit()
    return schemas.charge_point_out(await enrollment.get_participation(session, charge_point))


@blueprint.delete(f"/charge-points/<{api.ID}:cp_id>")
@validate_response(schemas.DeletedChargePoint)
@api.problems(*api.COMMON, 403)
async def delete_charge_point(cp_id: int) -> schemas.DeletedChargePoint:
    """Delete a charge point: any PowerBank limit on its charger is released at once (S2), and it is disconnected.

    Its PowerBank history stays. The OCPP identity is free again afterwards.
    """
    charge_point, team = await api.charge_point_of_token(cp_id)
    api.require_write()
    session = await db_session()
    deleted = schemas.DeletedChargePoint(
        id=charge_point.id or 0,
        team_id=charge_point.team_id,
        name=charge_point.name,
        identity=charge_point.identity,
        message=f"{charge_point.name} was deleted.",
    )
    await cp_service.delete_charge_point(session, api.current_principal(), team, charge_point)
    await session.commit()
    return deleted
