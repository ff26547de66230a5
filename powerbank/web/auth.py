"""Who is signed in: the principal of a request, log-in required, log-in throttling, safe redirects."""

from __future__ import annotations

import time
import unicodedata
from collections import deque
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

from quart import (
    Response,
    abort,
    g,
    make_response,
    redirect,
    request,
    url_for,
)
from quart_auth import current_user

from powerbank.models import User
from powerbank.rules.permissions import Principal, load_principal
from powerbank.web.htmx import is_htmx
from powerbank.web.state import db_session

P = ParamSpec("P")


T = TypeVar("T")


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


def safe_next(target: str | None) -> str:
    """Return a local path to go to after log-in; anything off-site becomes the home page."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    # Browsers drop tabs and newlines inside URLs ("/\t/evil" becomes "//evil"); no local path has them.
    if any(char.isspace() or unicodedata.category(char) == "Cc" for char in target):
        return "/"
    return target
