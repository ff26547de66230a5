"""Who is signed in: the principal of a request, log-in required, safe redirects, the client's address."""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

from quart import (
    Response,
    abort,
    current_app,
    g,
    request,
    session,
    url_for,
)
from quart_auth import AuthUser, current_user, login_user

from powerbank.models import User
from powerbank.rules.permissions import Principal, load_principal
from powerbank.web.csrf import CSRF_FIELD
from powerbank.web.htmx import hx_redirect, is_htmx
from powerbank.web.render import redirect_to
from powerbank.web.state import db_session
from powerbank.web.throttle import forwarded_client_address

P = ParamSpec("P")


T = TypeVar("T")


# Whether the session was started with "Remember me", so a renewed session keeps its lifetime.
_REMEMBER = "remember"


def _session_id(user: User) -> str:
    """Return what a session cookie names: the user and their session version."""
    return f"{user.id}:{user.session_version}"


def sign_in(user: User, *, remember: bool = False) -> None:
    """Start a session for ``user`` (after checking their password, or their invitation)."""
    login_user(AuthUser(_session_id(user)), remember=remember)
    session[_REMEMBER] = remember
    # A CSRF token known before the log-in (a planted session cookie) must not work after it.
    session.pop(CSRF_FIELD, None)


def keep_signed_in(user: User) -> None:
    """Carry this session over to the user's new session version (the others end with the old one)."""
    login_user(AuthUser(_session_id(user)), remember=bool(session.get(_REMEMBER)))


async def current_principal() -> Principal | None:
    """Return the signed-in user with their roles, or None.

    A session names the user's session version as it was at log-in; once it was raised (password
    changed, "log out everywhere"), the session is signed out.
    """
    if "principal" in g:
        return g.principal
    principal = None
    user_id, _, version = (current_user.auth_id or "").partition(":")
    if user_id.isdigit() and version.isdigit() and len(user_id) <= 18 and len(version) <= 18:
        session_ = await db_session()
        user = await session_.get(User, int(user_id))
        if user is not None and user.session_version == int(version):
            principal = await load_principal(session_, user)
    g.principal = principal
    return principal


def login_required(view: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T | Response]]:
    """Send visitors who are not signed in to the log-in page, coming back afterwards."""

    @wraps(view)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T | Response:
        if await current_principal() is None:
            if is_htmx():
                # htmx would swap the log-in page into a fragment: it navigates the whole page instead,
                # coming back to the page the fragment is on.
                current = urlsplit(request.headers.get("HX-Current-URL", "/"))
                back = current.path + (f"?{current.query}" if current.query else "")
                return hx_redirect(Response("", 204), url_for("auth.login", next=back))
            return redirect_to(url_for("auth.login", next=request.full_path.rstrip("?")))
        return await view(*args, **kwargs)

    return wrapper


async def principal() -> Principal:
    """Return the signed-in principal inside a view protected by ``login_required``."""
    found = await current_principal()
    if found is None:
        abort(401)
    return found


def safe_next(target: str | None) -> str:
    """Return a local path to go to after log-in; anything off-site becomes the home page."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    # Browsers drop tabs and newlines inside URLs ("/\t/evil" becomes "//evil"); no local path has them.
    if any(char.isspace() or unicodedata.category(char) == "Cc" for char in target):
        return "/"
    return target


def client_address() -> str:
    """Return the address of the person making the request.

    Behind a TLS proxy every request comes from the proxy; the client's own address is then read
    from the header the proxy sets (TRUSTED_PROXY_HEADER, with TRUSTED_PROXY_COUNT proxies in a
    row), and only when that is configured: otherwise anyone could send the header and be anyone.
    """
    remote = request.remote_addr or ""
    header = current_app.config.get("TRUSTED_PROXY_HEADER")
    if not header:
        return remote
    return forwarded_client_address(
        remote, request.headers.getlist(str(header)), int(current_app.config.get("TRUSTED_PROXY_COUNT") or 1)
    )
