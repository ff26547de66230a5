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
    url_for,
)
from quart_auth import current_user

from powerbank.models import User
from powerbank.rules.permissions import Principal, load_principal
from powerbank.web.htmx import hx_redirect, is_htmx
from powerbank.web.render import redirect_to
from powerbank.web.state import db_session
from powerbank.web.throttle import forwarded_client_address

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
