"""A person's own account: accepting an invitation, changing the password, logging out everywhere."""

from __future__ import annotations

from quart import Blueprint, Response, request, url_for
from quart_auth import logout_user

from powerbank import i18n
from powerbank.errors import FormErrors, NotFoundError
from powerbank.services import accounts
from powerbank.web.auth import current_principal, keep_signed_in, login_required, principal, safe_next, sign_in
from powerbank.web.i18n import LOCALE_COOKIE, LOCALE_COOKIE_MAX_AGE_S
from powerbank.web.render import discard_changes, form_errors_status, redirect_to, render_page
from powerbank.web.state import db_session

blueprint = Blueprint("account", __name__)


@blueprint.get("/account")
@login_required
async def account() -> Response:
    changed = request.args.get("changed") == "1"
    saved = request.args.get("saved") == "1"
    return await render_page("account/account.html", errors={}, changed=changed, saved=saved)


@blueprint.post("/account/password")
@login_required
async def change_password() -> Response:
    me = await principal()
    session = await db_session()
    form = await request.form
    try:
        await accounts.change_password(
            session,
            me.user,
            form.get("current", ""),
            form.get("password", "")[: accounts.MAX_PASSWORD_LENGTH + 1],
            form.get("confirm", "")[: accounts.MAX_PASSWORD_LENGTH + 1],
        )
    except FormErrors as exc:
        await discard_changes(session)
        return await render_page(
            "account/account.html", status=form_errors_status(exc.errors), errors=exc.errors, changed=False
        )
    await session.commit()
    # This session goes on with the new session version; every other one ends.
    keep_signed_in(me.user)
    return redirect_to(url_for("account.account", changed=1), 303)


@blueprint.post("/language")
async def change_language() -> Response:
    """Switch the language (the header's picker): the person's setting when signed in, and a cookie."""
    form = await request.form
    locale = i18n.supported_locale(form.get("locale")) or i18n.DEFAULT_LOCALE
    me = await current_principal()
    if me is not None:
        me.user.locale = locale
        await (await db_session()).commit()
    response = redirect_to(safe_next(form.get("next")), 303)
    response.set_cookie(
        LOCALE_COOKIE,
        locale,
        max_age=LOCALE_COOKIE_MAX_AGE_S,
        samesite="Lax",
        httponly=True,
        secure=request.scheme == "https",
    )
    return response


@blueprint.post("/account/settings")
@login_required
async def change_settings() -> Response:
    """Save the person's language and time zone (either may be left to the browser / the default)."""
    me = await principal()
    form = await request.form
    me.user.locale = i18n.supported_locale(form.get("locale"))
    me.user.time_zone = i18n.supported_time_zone(form.get("time_zone"))
    await (await db_session()).commit()
    return redirect_to(url_for("account.account", saved=1), 303)


@blueprint.post("/account/logout-everywhere")
@login_required
async def logout_everywhere() -> Response:
    me = await principal()
    session = await db_session()
    accounts.end_all_sessions(session, me.user)
    await session.commit()
    logout_user()
    return redirect_to(url_for("auth.login", ended="1"), 303)


async def _invitation_page(token: str, status: int = 200, errors: dict[str, str] | None = None) -> Response:
    session = await db_session()
    try:
        _, user = await accounts.open_invitation(session, token)
    except NotFoundError as exc:
        return await render_page("account/invitation.html", status=404, user=None, problem=str(exc), errors={})
    return await render_page(
        "account/invitation.html", status=status, user=user, token=token, problem=None, errors=errors or {}
    )


@blueprint.get("/invitations/<token>")
async def invitation(token: str) -> Response:
    return await _invitation_page(token)


@blueprint.post("/invitations/<token>")
async def accept_invitation(token: str) -> Response:
    session = await db_session()
    form = await request.form
    try:
        user = await accounts.accept_invitation(
            session,
            token,
            form.get("password", "")[: accounts.MAX_PASSWORD_LENGTH + 1],
            form.get("confirm", "")[: accounts.MAX_PASSWORD_LENGTH + 1],
            form.get("display_name", "")[:120],
        )
    except FormErrors as exc:
        await session.rollback()
        return await _invitation_page(token, form_errors_status(exc.errors), exc.errors)
    except NotFoundError:
        await session.rollback()
        return await _invitation_page(token)
    await session.commit()
    sign_in(user)
    return redirect_to(url_for("home.index"), 303)
