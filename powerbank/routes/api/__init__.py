"""The JSON API v1 under /api/v1, its OpenAPI document and its documentation page.

Every request carries ``Authorization: Bearer <token>``. The token acts as a principal of
the permission table (see powerbank.services.api_tokens), and every endpoint calls the same
services as the pages, so the rules are the same. Errors are RFC 9457 problem documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, TypeVar

from pydantic import ValidationError as PydanticValidationError
from quart import Blueprint, Quart, Response, current_app, g, has_request_context, request
from quart_schema import (
    HttpSecurityScheme,
    OpenAPIProvider,
    QuartSchema,
    RequestSchemaValidationError,
    document_response,
    validate_querystring,
    validate_request,
    validate_response,
)
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.routing import BaseConverter, Rule

from powerbank.errors import ConflictError, ForbiddenError, FormErrors, NotFoundError
from powerbank.models import (
    ApiToken,
    ChargePoint,
    ParticipationEvent,
    ParticipationSource,
    ParticipationState,
    TokenAccess,
)
from powerbank.routes.api import schemas
from powerbank.rules.permissions import Permission
from powerbank.services import api_tokens, enrollment
from powerbank.services import charge_points as cp_service
from powerbank.services.enrollment import RowStatus, SignUpError
from powerbank.services.teams import get_team_or_404, require_team, visible_teams
from powerbank.web.render import render_page
from powerbank.web.state import api_rate_limiter, db_session, hold_api_rate_limiter

PROBLEM_MEDIA_TYPE = "application/problem+json"
# A larger id in a path than the database can hold can only be "not found".
MAX_ID = schemas.MAX_ID
ID = f"int(max={MAX_ID})"

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")
docs_blueprint = Blueprint("api_docs", __name__, url_prefix="/api")

F = TypeVar("F", bound=Callable[..., Any])

# Problem types: the slug is the anchor of its explanation on the docs page.
PROBLEM_TYPES: dict[str, tuple[str, str]] = {
    "bad-request": ("Bad request", "The body is not valid JSON."),
    "unauthorized": ("Unauthorized", "No token, or a token that is unknown, revoked or expired."),
    "forbidden": ("Forbidden", "The token may see this but not change it (a read token, for example)."),
    "not-found": ("Not found", "Nothing here, or it is outside the token's operator or team."),
    "method-not-allowed": ("Method not allowed", "This path does not take this HTTP method."),
    "conflict": ("Conflict", "The change clashes with the current state, e.g. someone changed it at the same time."),
    "body-too-large": ("Content too large", "The body is larger than the server accepts."),
    "unsupported-media-type": ("Unsupported media type", "Send the body as application/json."),
    "validation": ("Invalid input", "Fields are missing, of the wrong type, unknown or not acceptable; see errors."),
    "sign-up-blocked": ("Sign-up blocked", "Nothing was saved: the charge points in errors cannot be signed up yet."),
    "rate-limited": ("Too many requests", "The token made too many requests; wait for Retry-After seconds."),
    "server-error": ("Internal server error", "Something went wrong in PowerBank; nothing was saved."),
}
SLUG_BY_STATUS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "validation",
    429: "rate-limited",
    500: "server-error",
}
# Form field names of the services that the API calls differently.
API_FIELD_NAMES = {"terms": "accept_terms_version"}


def problem(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    errors: Iterable[schemas.FieldProblem] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    """Return an application/problem+json response."""
    slug = slug or SLUG_BY_STATUS.get(status, "server-error" if status >= 500 else "bad-request")
    title = PROBLEM_TYPES[slug][0] if slug in PROBLEM_TYPES else HTTPStatus(status).phrase
    body = schemas.Problem(
        type=f"/api/docs#problem-{slug}", title=title, status=status, detail=detail, errors=list(errors)
    )
    response = Response(body.model_dump_json(), status=status, mimetype=PROBLEM_MEDIA_TYPE)
    response.headers.update(headers or {})
    return response


def is_api_request() -> bool:
    """Return True for requests to the JSON API (they get problem documents, never HTML)."""
    return has_request_context() and request.path.startswith(blueprint.url_prefix or "/api/v1")


def http_problem(exc: HTTPException) -> Response:
    """Answer an HTTP error of an API request; a routing failure wins over later checks (CSRF)."""
    if isinstance(request.routing_exception, HTTPException):
        exc = request.routing_exception
    status = exc.code or 500
    if status == 404:
        return problem(404, "There is nothing here, or it is outside what this token can see.")
    headers = dict(exc.get_headers()) if status == 405 else None
    if headers:
        headers.pop("Content-Type", None)
    return problem(status, exc.description or HTTPStatus(status).phrase, headers=headers)


def problems(*statuses: int) -> Callable[[F], F]:
    """Document the problem responses an endpoint can give."""

    def decorator(func: F) -> F:
        for status in statuses:
            func = document_response(schemas.Problem, status)(func)
        return func

    return decorator


# Every endpoint can answer these.
COMMON = (401, 404, 429)
# And every endpoint that takes a JSON body these.
BODY = (400, 403, 409, 413, 415, 422)


def current_token() -> ApiToken:
    return g.api_token


def current_principal() -> api_tokens.TokenPrincipal:
    return g.api_principal


def require_write() -> None:
    """Refuse a change made with a read-only token."""
    if current_token().access != TokenAccess.WRITE:
        raise ForbiddenError("This API token is read-only; changes need a token with write access.")


def require_accountable_user() -> None:
    """Refuse accepting terms with a token that no person created: an acceptance names a user."""
    if current_token().created_by_user_id is None:
        raise ForbiddenError(
            "This API token was not created by a user, so it cannot accept the terms and conditions. "
            "Create the token in PowerBank's API tokens page, or with `powerbank api-token create --created-by EMAIL`."
        )


# ---- authentication, rate limit, errors ----


@blueprint.record_once
def _set_up(state: Any) -> None:
    config = state.app.config
    hold_api_rate_limiter(
        state.app, api_tokens.TokenRateLimiter(int(config["API_RATE_LIMIT"]), float(config["API_RATE_WINDOW_S"]))
    )


@blueprint.before_request
async def authenticate() -> Response | None:
    """Find the request's token, apply its rate limit and act as its principal."""
    session = await db_session()
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    token = await api_tokens.authenticate(session, secret.strip() if scheme.lower() == "bearer" else None)
    wait = api_rate_limiter().take(token.id or 0)
    if wait:
        return problem(
            429, f"This token made too many requests; try again in {wait} seconds.", headers={"Retry-After": str(wait)}
        )
    await api_tokens.note_use(session, token, float(current_app.config["API_TOKEN_LAST_USED_INTERVAL_S"]))
    g.api_token = token
    g.api_principal = await api_tokens.principal_for_token(session, token)
    if request.method in ("POST", "PUT", "PATCH"):
        return await _check_json_body()
    return None


async def _check_json_body() -> Response | None:
    """Refuse a body that is not JSON before any endpoint reads it (the parsed body is cached)."""
    if not request.is_json:
        return problem(415, "Send the body as JSON with Content-Type: application/json.")
    try:
        (await request.get_data()).decode()
    except UnicodeDecodeError:
        return problem(400, "The body is not valid UTF-8.")
    try:
        await request.get_json()
    except BadRequest:
        return problem(400, "The body is not valid JSON.")
    return None


@blueprint.after_request
def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.errorhandler(api_tokens.InvalidTokenError)
def invalid_token(exc: api_tokens.InvalidTokenError) -> Response:
    challenge = 'Bearer realm="PowerBank API"'
    if request.headers.get("Authorization"):
        challenge += ', error="invalid_token"'
    return problem(401, str(exc), headers={"WWW-Authenticate": challenge})


@blueprint.errorhandler(NotFoundError)
def not_found(exc: NotFoundError) -> Response:
    return problem(404, str(exc) or "Not found.")


@blueprint.errorhandler(ForbiddenError)
def forbidden(exc: ForbiddenError) -> Response:
    return problem(403, str(exc))


@blueprint.errorhandler(ConflictError)
def conflict(exc: ConflictError) -> Response:
    return problem(409, str(exc))


@blueprint.errorhandler(SignUpError)
def sign_up_blocked(exc: SignUpError) -> Response:
    names = {cp.id: cp.name for cp in g.get("api_charge_points", [])}
    errors = [
        schemas.FieldProblem(field=API_FIELD_NAMES.get(field, field), message=message)
        for field, message in exc.errors.items()
        if field != "form"
    ]
    # A single sign-up reports its problem both for the field and for the row; say it once.
    said = {error.message for error in errors}
    errors += [
        schemas.FieldProblem(
            field=f"charge_points.{cp_id}",
            charge_point_id=cp_id,
            message=f"{names[cp_id]}: {message}" if cp_id in names else message,
        )
        for cp_id, message in exc.row_errors.items()
        if message not in said
    ]
    detail = exc.errors.get("form") or "Nothing was saved."
    return problem(422, detail, slug="sign-up-blocked" if exc.row_errors else "validation", errors=errors)


@blueprint.errorhandler(FormErrors)
def invalid_fields(exc: FormErrors) -> Response:
    errors = [schemas.FieldProblem(field=field, message=message) for field, message in exc.errors.items()]
    return problem(422, "Nothing was saved: some fields are not valid.", errors=errors)


@blueprint.errorhandler(RequestSchemaValidationError)
def invalid_request(exc: RequestSchemaValidationError) -> Response:
    error = exc.validation_error
    if isinstance(error, PydanticValidationError):
        errors = [
            schemas.FieldProblem(field=".".join(str(part) for part in item["loc"]) or "body", message=item["msg"])
            for item in error.errors(include_url=False, include_input=False)
        ]
    else:
        errors = [schemas.FieldProblem(field="body", message=str(error))]
    return problem(422, "The request is not valid; see errors.", errors=errors)


@blueprint.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response:
    return http_problem(exc)


# ---- serialising ----


def status_out(row: RowStatus) -> schemas.PowerBankStatus:
    eligibility = row.eligibility
    reasons = [reason for reason in (eligibility.why_unselectable or eligibility.facility_id_problem,) if reason]
    return schemas.PowerBankStatus(
        charge_point_id=row.charge_point.id or 0,
        state=row.state,
        since=row.since,
        source=row.source,
        reason=(row.participation.reason or None) if row.participation else None,
        eligible=eligibility.eligible,
        compatibility=eligibility.compatibility,
        reasons=reasons,
    )


def charge_point_out(row: RowStatus) -> schemas.ChargePoint:
    cp = row.charge_point
    return schemas.ChargePoint(
        id=cp.id or 0,
        team_id=cp.team_id,
        name=cp.name,
        identity=cp.identity,
        brand=cp.brand,
        model=cp.model,
        firmware=cp.firmware,
        serial=cp.serial,
        country=cp.country,
        price_area=cp.price_area,
        facility_id=cp.facility_id,
        connection_status=cp_service.connection_status(cp),  # type: ignore[arg-type]
        last_seen_at=cp.last_seen_at,
        created_at=cp.created_at,
        updated_at=cp.updated_at,
        powerbank=schemas.PowerBankSummary(state=row.state, why=row.state_explanation),
    )


def event_out(event: ParticipationEvent) -> schemas.Event:
    return schemas.Event(
        id=event.id or 0,
        charge_point_id=event.charge_point_id,
        charge_point_name=event.charge_point_name,
        at=event.at,
        actor=event.actor_label,
        from_state=ParticipationState(event.from_state),
        to_state=ParticipationState(event.to_state),
        source=event.source,
        terms_version=event.terms_version,
        reason=event.reason,
    )


def pages(total: int, page_size: int) -> int:
    return max(1, -(-total // page_size))


async def load_charge_point(cp_id: int) -> tuple[ChargePoint, Any]:
    """Return a charge point of the token's tenant with its team; another tenant's answers 404."""
    charge_point, team = await cp_service.get_charge_point_or_404(await db_session(), current_principal(), cp_id)
    g.api_charge_points = [charge_point]
    return charge_point, team


# ---- endpoints ----


@blueprint.get("/teams")
@validate_response(schemas.TeamList)
@problems(*COMMON)
async def list_teams() -> schemas.TeamList:
    """List the teams the token can see."""
    groups = await visible_teams(await db_session(), current_principal())
    return schemas.TeamList(
        items=[
            schemas.Team(id=team.id or 0, name=team.name, operator_id=operator.id or 0, operator_name=operator.name)
            for operator, teams in groups
            for team in teams
        ]
    )


@blueprint.get(f"/teams/<{ID}:team_id>/charge-points")
@validate_querystring(schemas.ChargePointFilter)
@validate_response(schemas.ChargePointPage)
@problems(*COMMON, 422)
async def list_charge_points(team_id: int, query_args: schemas.ChargePointFilter) -> schemas.ChargePointPage:
    """List a team's charge points with their PowerBank state, by name.

    Filter by country (ISO code), price area and PowerBank state; page_size is at most 500.
    """
    session = await db_session()
    team = await get_team_or_404(session, current_principal(), team_id)
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
        items=[charge_point_out(row) for row in rows[start : start + query_args.page_size]],
        page=query_args.page,
        page_size=query_args.page_size,
        total=len(rows),
        pages=pages(len(rows), query_args.page_size),
    )


@blueprint.get(f"/charge-points/<{ID}:cp_id>")
@validate_response(schemas.ChargePoint)
@problems(*COMMON)
async def get_charge_point(cp_id: int) -> schemas.ChargePoint:
    """Show a charge point."""
    charge_point, _team = await load_charge_point(cp_id)
    return charge_point_out(await enrollment.get_participation(await db_session(), charge_point))


@blueprint.patch(f"/charge-points/<{ID}:cp_id>")
@validate_request(schemas.ChargePointChanges)
@validate_response(schemas.ChargePoint)
@problems(*COMMON, *BODY)
async def update_charge_point(cp_id: int, data: schemas.ChargePointChanges) -> schemas.ChargePoint:
    """Change a charge point's name, country, price area or Facility ID.

    The same validation as the edit form: country and price area must match, and a Swedish
    Facility ID must be 18 digits starting 735999 with a valid check digit. Fields left out
    keep their value; null clears the price area or the Facility ID.
    """
    session = await db_session()
    charge_point, team = await load_charge_point(cp_id)
    require_write()
    require_team(current_principal(), Permission.CONFIGURE_CHARGE_POINTS, team)
    form = {field: getattr(charge_point, field) or "" for field in cp_service.EDITABLE_FIELDS}
    form.update({field: getattr(data, field) or "" for field in data.model_fields_set})
    await cp_service.update_charge_point(session, api_tokens.actor_for_token(current_token()), team, charge_point, form)
    await session.commit()
    return charge_point_out(await enrollment.get_participation(session, charge_point))


@blueprint.get(f"/charge-points/<{ID}:cp_id>/powerbank")
@validate_response(schemas.PowerBankStatus)
@problems(*COMMON)
async def get_powerbank(cp_id: int) -> schemas.PowerBankStatus:
    """Show a charge point's PowerBank state, since when, how, and whether it may take part."""
    charge_point, _team = await load_charge_point(cp_id)
    return status_out(await enrollment.get_participation(await db_session(), charge_point))


@blueprint.put(f"/charge-points/<{ID}:cp_id>/powerbank")
@validate_request(schemas.PowerBankSignUp)
@validate_response(schemas.PowerBankStatus)
@problems(*COMMON, *BODY)
async def sign_up(cp_id: int, data: schemas.PowerBankSignUp) -> schemas.PowerBankStatus:
    """Sign a charge point up for PowerBank, accepting the current terms.

    A Swedish charge point needs a valid Facility ID: stored already, or given here (it is
    stored only if the sign-up succeeds). Signing up a signed-up charge point changes nothing.
    """
    session = await db_session()
    charge_point, _team = await load_charge_point(cp_id)
    require_write()
    require_accountable_user()
    row = await enrollment.sign_up_one(
        session,
        current_principal(),
        charge_point,
        accept_terms_version=data.accept_terms_version,
        facility_id=data.facility_id,
        source=ParticipationSource.API,
    )
    await session.commit()
    return status_out(row)


@blueprint.delete(f"/charge-points/<{ID}:cp_id>/powerbank")
@validate_response(schemas.PowerBankStatus)
@problems(*COMMON, 403, 409)
async def opt_out(cp_id: int) -> schemas.PowerBankStatus:
    """Opt a charge point out of PowerBank at once; automation never signs it up again."""
    session = await db_session()
    charge_point, _team = await load_charge_point(cp_id)
    require_write()
    row = await enrollment.opt_out(session, current_principal(), charge_point, source=ParticipationSource.API)
    await session.commit()
    return status_out(row)


@blueprint.post(f"/teams/<{ID}:team_id>/powerbank/signup")
@validate_request(schemas.BulkSignUp)
@validate_response(schemas.BulkSignUpResult)
@problems(*COMMON, *BODY)
async def bulk_sign_up(team_id: int, data: schemas.BulkSignUp) -> schemas.BulkSignUpResult:
    """Sign charge points of one team up for PowerBank, all or nothing.

    Give "charge_point_ids", or "all": true for every eligible charge point of the team.
    Swedish charge points need a valid Facility ID, stored or given in "facility_ids"; if any
    charge point cannot be signed up, nothing is saved and the answer (422) lists each one
    with its reason.
    """
    session = await db_session()
    team = await get_team_or_404(session, current_principal(), team_id)
    require_write()
    require_accountable_user()
    bad_keys = [key for key in data.facility_ids if not key.isdecimal() or not key.isascii()]
    if bad_keys:
        raise FormErrors({f"facility_ids.{key}": "Use charge point ids as keys." for key in bad_keys})
    facility_ids = {int(key): value for key, value in data.facility_ids.items()}
    rows = await enrollment.eligibility_for_team(session, team)
    g.api_charge_points = [row.charge_point for row in rows]
    result = await enrollment.bulk_sign_up(
        session,
        current_principal(),
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


@blueprint.get(f"/teams/<{ID}:team_id>/powerbank/events")
@validate_querystring(schemas.EventQuery)
@validate_response(schemas.EventPage)
@problems(*COMMON, 422)
async def list_events(team_id: int, query_args: schemas.EventQuery) -> schemas.EventPage:
    """List a team's PowerBank history, newest first, optionally of one charge point."""
    session = await db_session()
    team = await get_team_or_404(session, current_principal(), team_id)
    page = await enrollment.list_events(
        session,
        team.id or 0,
        charge_point_id=query_args.charge_point_id,
        page=query_args.page,
        page_size=query_args.page_size,
    )
    return schemas.EventPage(
        items=[event_out(event) for event in page.items],
        page=page.page,
        page_size=page.page_size,
        total=page.total,
        pages=page.pages,
    )


@blueprint.get("/terms/current")
@validate_response(schemas.Terms)
@problems(*COMMON)
async def current_terms() -> schemas.Terms:
    """Show the current terms and conditions; sign-ups accept their version."""
    try:
        terms = await enrollment.current_terms(await db_session())
    except ConflictError as exc:
        raise NotFoundError(str(exc)) from exc
    return schemas.Terms(version=terms.version, published_at=terms.published_at, text=terms.text)


# ---- OpenAPI document and documentation page ----


class ApiOpenAPIProvider(OpenAPIProvider):
    """Describe only the JSON API, with problem documents under their own media type."""

    def generate_rules(self) -> Iterable[Rule]:
        return (rule for rule in super().generate_rules() if rule.endpoint.startswith(f"{blueprint.name}."))

    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        parameter = super().build_path_parameter(name, converter)
        if parameter["schema"].get("type") == "integer":
            parameter["schema"].update(minimum=0, maximum=MAX_ID)
        return parameter

    def build_request_body(self, model: type, source: Any) -> tuple[dict, dict]:
        body, components = super().build_request_body(model, source)
        return body, _hoist(body["content"], components)

    def build_response_object(self, model: type, headers_model: type | None) -> tuple[dict, dict]:
        response, components = super().build_response_object(model, headers_model)
        if model is schemas.Problem:
            response["content"] = {PROBLEM_MEDIA_TYPE: response["content"]["application/json"]}
        return response, _hoist(response["content"], components)


def _hoist(content: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Move a body's schema into the components and refer to it, so each model is named once."""
    for media in content.values():
        schema = media["schema"]
        if schema.get("type") == "object" and "title" in schema:
            components = {**components, schema["title"]: schema}
            media["schema"] = {"$ref": f"#/components/schemas/{schema['title']}"}
    return components


def init_openapi(app: Quart) -> None:
    """Serve the OpenAPI document at /api/openapi.json (quart-schema adds no other route)."""
    QuartSchema(
        app,
        openapi_path="/api/openapi.json",
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,
        info={
            "title": "PowerBank API",
            "version": "1",
            "description": "Read teams and charge points, set Facility IDs, sign charge points up for PowerBank "
            "and read the history. Every request sends Authorization: Bearer <token>.",
        },
        security_schemes={"bearerAuth": HttpSecurityScheme(scheme="bearer")},
        security=[{"bearerAuth": []}],
        pydantic_dump_options={"mode": "json"},
        openapi_provider_class=ApiOpenAPIProvider,
    )


def _type_label(schema: dict[str, Any]) -> str:
    """Return a short human description of a JSON schema's type."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type_label(option) for option in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(f'"{value}"' for value in schema["enum"])
    if "const" in schema:
        return f'"{schema["const"]}"'
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type_label(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema:
        return f"object of {_type_label(schema['additionalProperties'])}"
    if schema.get("format"):
        return f"{kind} ({schema['format']})"
    return str(kind)


def _fields(schema: dict[str, Any]) -> list[dict[str, str | bool]]:
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "type": _type_label(prop),
            "required": name in required,
            "description": prop.get("description", ""),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


@docs_blueprint.get("/docs")
async def docs() -> Response:
    """Render the OpenAPI document as a page (no scripts, no CDN)."""
    document = current_app.extensions["QUART_SCHEMA"].openapi_provider.schema()
    operations = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            operations.append(
                {
                    "id": operation.get("operationId", f"{method}-{path}"),
                    "method": method.upper(),
                    "path": path,
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "type": _type_label(p["schema"]),
                            "required": p.get("required", False),
                            "description": p.get("description", ""),
                        }
                        for p in operation.get("parameters", [])
                    ],
                    "body": _type_label(body) if body else None,
                    "responses": [
                        {
                            "status": status,
                            "type": _type_label(next(iter(response["content"].values()))["schema"]),
                            "media_type": next(iter(response["content"])),
                            "description": response.get("description", ""),
                        }
                        for status, response in sorted(operation["responses"].items())
                    ],
                }
            )
    models = {name: _fields(schema) for name, schema in sorted(document["components"]["schemas"].items())}
    return await render_page(
        "api/docs.html", document=document, operations=operations, models=models, problem_types=PROBLEM_TYPES
    )
