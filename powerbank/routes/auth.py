"""Log in and log out."""

from __future__ import annotations

from quart import Blueprint, Response, current_app, request, url_for
from quart_auth import logout_user

from powerbank.i18n import gettext as _
from powerbank.i18n import ngettext
from powerbank.services.users import authenticate
from powerbank.web.auth import client_address, safe_next, sign_in
from powerbank.web.render import redirect_to, render_page
from powerbank.web.state import db_session, login_throttle

blueprint = Blueprint("auth", __name__)


def _throttle_keys(email: str) -> list[str]:
    """Return what failed log-ins are counted against: the account (its email) and the client's address."""
    return [f"email:{email.strip().lower()}", f"addr:{client_address()}"]


@blueprint.get("/login")
async def login() -> Response:
    return await render_page(
        "auth/login.html",
        values={},
        errors={},
        next=safe_next(request.args.get("next")),
        ended=request.args.get("ended") == "1",
    )


@blueprint.post("/login")
async def login_post() -> Response:
    form = await request.form
    email = form.get("email", "")[:254]
    password = form.get("password", "")[:1024]
    target = safe_next(form.get("next") or request.args.get("next"))
    throttle = login_throttle()
    keys = _throttle_keys(email)
    # Counted as failed before the password check awaits, so a parallel burst gets no more guesses.
    attempt = await throttle.start_attempt(keys)
    values = {"email": email, "remember": form.get("remember")}
    if attempt.retry_after:
        wait = attempt.retry_after
        minutes = -(-wait // 60)
        response = await render_page(
            "auth/login.html",
            status=429,
            values=values,
            errors={
                "form": ngettext(
                    "Too many failed log-in attempts. Try again in %(num)s minute.",
                    "Too many failed log-in attempts. Try again in %(num)s minutes.",
                    minutes,
                )
            },
            next=target,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    user = await authenticate(await db_session(), email, password, demo_mode=bool(current_app.config["DEMO"]))
    if user is None:
        return await render_page(
            "auth/login.html", status=401, values=values, errors={"form": _("Wrong email or password.")}, next=target
        )
    # Only the email's own count: a success of one account must not clear the address's failures.
    await throttle.attempt_succeeded(attempt, forget=keys[:1])
    sign_in(user, remember=bool(form.get("remember")))
    return redirect_to(target, 303)


@blueprint.post("/logout")
async def logout() -> Response:
    logout_user()
    return redirect_to(url_for("auth.login"), 303)
