"""What every page needs: the request's DB session, the signed-in user, CSRF, throttling, rendering."""

from __future__ import annotations

import secrets
import time
import unicodedata
from collections import deque
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from quart import Quart, Response, abort, current_app, g, make_response, redirect, render_template, request, session, url_for
from quart_auth import current_user
from sqlmodel.ext.asyncio.session import AsyncSession
from werkzeug.routing import IntegerConverter

from powerbank.htmx import add_vary, is_htmx
from powerbank.models import User
from powerbank.permissions import Principal, load_principal

P = ParamSpec("P")
T = TypeVar("T")

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'"
)


async def db_session() -> AsyncSession:
    """Return the request's database session (opened on first use, closed at teardown)."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["powerbank.sessionmaker"]()
    return g.db_session


async def current_principal() -> Principal | None:
    """Return the signed-in user with their roles, or None."""
    if "principal" in g:
        return g.principal
    principal = None
    auth_id = current_user.auth_id
    if auth_id is not None and auth_id.isdigit():
        session_ = await db_session()
        user = await session_.get(User, int(auth_id))
        if user is not None:
            principal = await load_principal(session_, user)
    g.principal = principal
    return principal


def login_required(view: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T | Response]]:
    """Send visitors who are not signed in to the log-in page, coming back afterwards."""

    @wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T | Response:
        if await current_principal() is None:
            target = request.full_path.rstrip("?")
            response = redirect(url_for("auth.login", next=target))
            if is_htmx():
                response = await make_response("", 204)
                current = urlsplit(request.headers.get("HX-Current-URL", "/"))
                back = current.path + (f"?{current.query}" if current.query else "")
                response.headers["HX-Redirect"] = url_for("auth.login", next=back)
            return response
        return await view(*args, **kwargs)

    return wrapper


async def principal() -> Principal:
    """Return the signed-in principal inside a view protected by ``login_required``."""
    found = await current_principal()
    if found is None:
        abort(401)
    return found


async def discard_changes(session: AsyncSession, *shown: Any) -> None:
    """Roll back a refused change, then reload the signed-in user and ``shown`` for the page.

    A rollback expires every loaded object, and a template must not load an expired one
    (lazy loading under AsyncSession raises).
    """
    await session.rollback()
    found = g.get("principal")
    for obj in (found.user if found else None, *shown):
        if obj is not None:
            await session.refresh(obj)


def csrf_token() -> str:
    """Return this session's CSRF token, creating it on first use."""
    token = session.get(CSRF_FIELD)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


async def check_csrf() -> None:
    """Refuse an unsafe request that does not carry this session's CSRF token."""
    if request.method not in UNSAFE_METHODS:
        return
    if request.blueprint in current_app.config.get("CSRF_EXEMPT_BLUEPRINTS", ()):
        return
    expected = session.get(CSRF_FIELD)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form
        sent = form.get(CSRF_FIELD)
    if not expected or not sent or not secrets.compare_digest(str(expected), str(sent)):
        abort(400, description="The form expired or did not come from PowerBank. Reload the page and try again.")


def add_security_headers(response: Response) -> Response:
    """Add the security headers every response carries."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


async def render_page(full: str, fragment: str | None = None, status: int = 200, **context: Any) -> Response:
    """Render the full page, or only its fragment for htmx; both vary on HX-Request."""
    template = fragment if fragment and is_htmx() else full
    response = await make_response(await render_template(template, **context), status)
    return add_vary(response)


def form_errors_status(errors: dict[str, str]) -> int:
    """Return the status of a form re-rendered with errors (422 when there are any)."""
    return 422 if errors else 200


class LoginThrottle:
    """Count failed log-ins per email and per address within a sliding window (one process)."""

    MAX_KEYS = 10_000

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        stamps = self._failures.setdefault(key, deque())
        while stamps and now - stamps[0] > self.window_s:
            stamps.popleft()
        return stamps

    def retry_after(self, keys: list[str]) -> int:
        """Return seconds to wait before another try, or 0 when allowed."""
        now = time.monotonic()
        wait = 0.0
        for key in keys:
            stamps = self._recent(key, now)
            if len(stamps) >= self.max_failures:
                wait = max(wait, self.window_s - (now - stamps[0]))
        return int(wait) + 1 if wait > 0 else 0

    def fail(self, keys: list[str]) -> None:
        now = time.monotonic()
        for key in keys:
            self._recent(key, now).append(now)
        # Guessing many different emails must not grow memory without bound.
        if len(self._failures) > self.MAX_KEYS:
            for key in [k for k, stamps in self._failures.items() if not stamps or now - stamps[-1] > self.window_s]:
                del self._failures[key]

    def succeed(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)


def public_url() -> str:
    """Return the address PowerBank is reached at, ending in "/" (POWERBANK_PUBLIC_URL, or this request's)."""
    configured = current_app.config.get("PUBLIC_URL")
    return str(configured).rstrip("/") + "/" if configured else request.host_url


def safe_next(target: str | None) -> str:
    """Return a local path to go to after log-in; anything off-site becomes the home page."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    # Browsers drop tabs and newlines inside URLs ("/\t/evil" becomes "//evil"); no local path has them.
    if any(char.isspace() or unicodedata.category(char) == "Cc" for char in target):
        return "/"
    return target


def id_or_none(value: str | None) -> int | None:
    """Return the id typed in a form or query field, or None for anything that is not one."""
    # isdigit() alone lets "²" through to int(); ids have at most nine ASCII digits (DatabaseIdConverter).
    return int(value) if value and value.isascii() and value.isdigit() and len(value) <= 9 else None


class DatabaseIdConverter(IntegerConverter):
    """Match ids of up to nine digits, so a huge guessed id is a 404 rather than a database overflow.

    The limit is in the pattern (not a ``max``) so that such a path matches no route at all:
    a ``max`` is checked after routing and turns a POST into 405 when a GET shares the path.
    """

    regex = r"\d{1,9}"


def init_web(app: Quart) -> None:
    """Register the request hooks shared by every page (before the blueprints: their routes use `int`)."""
    app.url_map.converters["int"] = DatabaseIdConverter
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["public_url"] = public_url
    app.before_request(check_csrf)
    app.after_request(add_security_headers)

    @app.teardown_appcontext
    async def close_db_session(_exc: BaseException | None) -> None:
        db = g.pop("db_session", None)
        if db is not None:
            await db.close()

    @app.context_processor
    async def inject_globals() -> dict[str, Any]:
        return {"principal": await current_principal(), "demo_mode": app.config["DEMO"]}
