"""JSON API v1: PowerBank participation: sign-up (one or bulk), opt-out, history, terms.

The routes live on ``powerbank.routes.api.blueprint`` so they share its token authentication,
rate limit and problem documents. Every endpoint calls the enrollment service the pages call,
so R1–R8 are the same.
"""

from __future__ import annotations

from quart import g
from quart_schema import validate_querystring, validate_request, validate_response

from powerbank.errors import ConflictError, FormErrors, NotFoundError
from powerbank.models import ParticipationSource, ParticipationState
from powerbank.routes import api
from powerbank.routes.api import schemas
from powerbank.routes.loaders import team_for
from powerbank.services import enrollment
from powerbank.web.ids import id_or_none
from powerbank.web.state import db_session

blueprint = api.blueprint


@blueprint.get(f"/charge-points/<{api.ID}:cp_id>/powerbank")
@validate_response(schemas.PowerBankStatus)
@api.problems(*api.COMMON)
async def get_powerbank(cp_id: int) -> schemas.PowerBankStatus:
    """Show a charge point's PowerBank state, since when, how, and whether it may take part."""
    charge_point, _team = await api.charge_point_of_token(cp_id)
    return schemas.status_out(await enrollment.get_participation(await db_session(), charge_point))


@blueprint.put(f"/charge-points/<{api.ID}:cp_id>/powerbank")
@validate_request(schemas.PowerBankSignUp)
@validate_response(schemas.PowerBankStatus)
@api.problems(*api.COMMON, *api.BODY)
async def sign_up(cp_id: int, data: schemas.PowerBankSignUp) -> schemas.PowerBankStatus:
    """Sign a charge point up for PowerBank, accepting the current terms.

    A Swedish charge point needs a valid Facility ID: stored already, or given here (it is
    stored only if the sign-up succeeds). Signing up a signed-up charge point changes nothing.
    """
    charge_point, _team = await api.charge_point_of_token(cp_id)
    session = await db_session()
    api.require_write()
    api.require_accountable_user()
    row = await enrollment.sign_up_one(
        session,
        api.current_principal(),
        charge_point,
        accept_terms_version=data.accept_terms_version,
        facility_id=data.facility_id,
        source=ParticipationSource.API,
    )
    await session.commit()
    return schemas.status_out(row)


@blueprint.delete(f"/charge-points/<{api.ID}:cp_id>/powerbank")
@validate_response(schemas.PowerBankStatus)
@api.problems(*api.COMMON, 403, 409)
async def opt_out(cp_id: int) -> schemas.PowerBankStatus:
    """Opt a charge point out of PowerBank at once; automation never signs it up again."""
    charge_point, _team = await api.charge_point_of_token(cp_id)
    session = await db_session()
    api.require_write()
    row = await enrollment.opt_out(session, api.current_principal(), charge_point, source=ParticipationSource.API)
    await session.commit()
    return schemas.status_out(row)


@blueprint.post(f"/teams/<{api.ID}:team_id>/powerbank/signup")
@validate_request(schemas.BulkSignUp)
@validate_response(schemas.BulkSignUpResult)
@api.problems(*api.COMMON, *api.BODY)
async def bulk_sign_up(team_id: int, data: schemas.BulkSignUp) -> schemas.BulkSignUpResult:
    """Sign charge points of one team up for PowerBank, all or nothing.

    Give "charge_point_ids", or "all": true for every eligible charge point of the team.
    Swedish charge points need a valid Facility ID, stored or given in "facility_ids"; if any
    charge point cannot be signed up, nothing is saved and the answer (422) lists each one
    with its reason.
    """
    team = await team_for(api.current_principal(), team_id)
    session = await db_session()
    api.require_write()
    api.require_accountable_user()
    # A key is a charge point id: at most nine ASCII digits, so that int() never sees a 4,300-digit number.
    typed = {key: (id_or_none(key), value) for key, value in data.facility_ids.items()}
    bad_keys = [key for key, (cp_id, _value) in typed.items() if cp_id is None]
    if bad_keys:
        raise FormErrors({f"facility_ids.{key}": "Use charge point ids as keys." for key in bad_keys})
    facility_ids = {cp_id: value for cp_id, value in typed.values() if cp_id is not None}
    rows = await enrollment.eligibility_for_team(session, team)
    g.api_charge_points = [row.charge_point for row in rows]
    result = await enrollment.bulk_sign_up(
        session,
        api.current_principal(),
        team,
        accept_terms_version=data.accept_terms_version,
        charge_point_ids=data.charge_point_ids,
        sign_up_all=data.all,
        facility_ids=facility_ids,
        source=ParticipationSource.API,
    )
    await session.commit()
    names = {row.charge_point.id: row.charge_point.name for row in rows}
    results = [
        schemas.BulkRow(
            charge_point_id=cp_id, name=names[cp_id], outcome="signed up", state=ParticipationState.SIGNED_UP
        )
        for cp_id in result.signed_up
    ]
    results += [
        schemas.BulkRow(
            charge_point_id=cp_id, name=names[cp_id], outcome="already signed up", state=ParticipationState.SIGNED_UP
        )
        for cp_id in result.already_signed_up
    ]
    return schemas.BulkSignUpResult(
        message=result.message, terms_version=result.terms_version, signed_up=len(result.signed_up), results=results
    )


@blueprint.get(f"/teams/<{api.ID}:team_id>/powerbank/events")
@validate_querystring(schemas.EventQuery)
@validate_response(schemas.EventPage)
@api.problems(*api.COMMON, 422)
async def list_events(team_id: int, query_args: schemas.EventQuery) -> schemas.EventPage:
    """List a team's PowerBank history, newest first, optionally of one charge point."""
    team = await team_for(api.current_principal(), team_id)
    session = await db_session()
    page = await enrollment.list_events(
        session,
        team.id or 0,
        charge_point_id=query_args.charge_point_id,
        page=query_args.page,
        page_size=query_args.page_size,
    )
    return schemas.EventPage(
        items=[schemas.event_out(event) for event in page.items],
        page=page.page,
        page_size=page.page_size,
        total=page.total,
        pages=page.pages,
    )


@blueprint.get("/terms/current")
@validate_response(schemas.Terms)
@api.problems(*api.COMMON)
async def current_terms() -> schemas.Terms:
    """Show the current terms and conditions; sign-ups accept their version."""
    try:
        terms = await enrollment.current_terms(await db_session())
    except ConflictError as exc:
        raise NotFoundError(str(exc)) from exc
    return schemas.Terms(version=terms.version, published_at=terms.published_at, text=terms.text)
