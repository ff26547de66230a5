"""Rendering: full page or htmx fragment, forms with errors, security headers, public address."""

from __future__ import annotations

from typing import Any, cast

from quart import (
    Response,
    current_app,
    g,
    render_template,
    request,
)
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.web.htmx import add_vary, is_htmx

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'"
)


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
    return add_vary(Response(await render_template(template, **context), status=status))


def form_errors_status(errors: dict[str, str]) -> int:
    """Return the status of a form re-rendered with errors (422 when there are any)."""
    return 422 if errors else 200


def public_url() -> str:
    """Return the address PowerBank is reached at, ending in "/" (POWERBANK_PUBLIC_URL, or this request's)."""
    configured = current_app.config.get("PUBLIC_URL")
    return str(configured).rstrip("/") + "/" if configured else request.host_url


def redirect_to(location: str, code: int = 302) -> Response:
    """Redirect to ``location`` (303 See Other after a change, so the browser follows with a GET)."""
    # Quart makes the app's response class; werkzeug's signature only promises its own base class.
    return cast(Response, current_app.redirect(location, code))


def csv_download(text: str, filename: str) -> Response:
    """Return CSV text as a file the browser saves under ``filename``."""
    response = Response(text, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
