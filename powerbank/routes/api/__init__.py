"""The JSON API v1 under /api/v1: its blueprint, token authentication, rate limit and errors.

Every request carries ``Authorization: Bearer <token>``. The token acts as a principal of
the permission table (see powerbank.services.api_tokens), and every endpoint loads with the
pages' loaders and calls the same services as the pages, so the rules are the same. Errors are
RFC 9457 problem documents. The endpoints live in one module per resource (teams, areas,
charge_points, enrollment, activations), the OpenAPI document and its page in ``docs``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, TypeVar

from pydantic import ValidationError as PydanticValidationError
from quart import Blueprint, Response, current_app, g, has_request_context, request
from quart_schema import RequestSchemaValidationError, document_response
from werkzeug.exceptions import BadRequest, HTTPException

from powerbank.errors import ConflictError, ForbiddenError, FormErrors, NotFoundError
from powerbank.models import ApiToken, ChargePoint, Team, TokenAccess
from powerbank.routes.api import schemas
from powerbank.routes.loaders import charge_point_for
from powerbank.services import api_tokens
from powerbank.services.enrollment import SignUpError
from powerbank.web.state import api_rate_limiter, db_session

PROBLEM_MEDIA_TYPE = "application/problem+json"
# A larger id in a path than the database can hold can only be "not found".
MAX_ID = schemas.MAX_ID
ID = f"int(max={MAX_ID})"

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")

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


# Every endpoint can answer these (400: a NUL character in the path or query, see web/inputs.py).
COMMON = (400, 401, 404, 429)
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


@blueprint.before_request
async def authenticate() -> Response | None:
    """Find the request's token, apply its rate limit and act as its principal."""
    session = await db_session()
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    token = await api_tokens.authenticate(session, secret.strip() if scheme.lower() == "bearer" else None)
    wait = await api_rate_limiter().spend(token.id or 0)
    if wait:
        return problem(
            429, f"This token made too many requests; try again in {wait} seconds.", headers={"Retry-After": str(wait)}
        )
    # A token whose creator lost their role is refused here, before it counts as used.
    g.api_principal = await api_tokens.principal_for_token(session, token)
    await api_tokens.note_use(session, token, float(current_app.config["API_TOKEN_LAST_USED_INTERVAL_S"]))
    g.api_token = token
    if request.method in ("POST", "PUT", "PATCH"):
        return await _check_json_body()
    return None


async def _check_json_body() -> Response | None:
    """Refuse a body that is not JSON before any endpoint reads it (the parsed body is cached)."""
    if not request.is_json:
        return problem(415, "Send the body as JSON with Content-Type: application/json.")
    try:
        (await request.get_data(cache=True, as_text=False, parse_form_data=False)).decode()
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


# ---- loading ----


async def charge_point_of_token(cp_id: int) -> tuple[ChargePoint, Team]:
    """Return a charge point of the token's tenant with its team; another tenant's answers 404."""
    charge_point, team = await charge_point_for(current_principal(), cp_id)
    # The sign-up problem document names the charge points it reports.
    g.api_charge_points = [charge_point]
    return charge_point, team
