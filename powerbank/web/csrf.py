"""CSRF tokens: every unsafe request carries this session's token."""

from __future__ import annotations

import secrets

from quart import (
    abort,
    current_app,
    request,
    session,
)

from powerbank.i18n import gettext as _

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


CSRF_HEADER = "X-CSRF-Token"


CSRF_FIELD = "csrf_token"


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
        abort(400, description=_("The form expired or did not come from PowerBank. Reload the page and try again."))
