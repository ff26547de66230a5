"""Notification pages: a person's email choices, and the webhooks of a team or an operator with their logs.

Webhooks are managed by operator admins (the operator's and every team's) and team owners (their
team's); another tenant's webhook, or one the caller may not manage, answers 404.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from quart import Blueprint, Response, current_app, request, url_for

from powerbank.config import webhooks_may_use_loopback
from powerbank.errors import FormErrors
from powerbank.i18n import gettext as _
from powerbank.models import Operator, Team, Webhook
from powerbank.routes.loaders import operator_for, team_with_operator_for
from powerbank.rules.permissions import Permission, Principal, can_on_operator, can_on_team
from powerbank.services import notifications, webhooks
from powerbank.services.teams import teams_of
from powerbank.web.auth import login_required, principal
from powerbank.web.render import form_errors_status, redirect_to, render_page
from powerbank.web.state import db_session

blueprint = Blueprint("notifications", __name__)


@blueprint.app_template_global()
def may_manage_webhooks(who: Principal | None, team: Team) -> bool:
    """Tell templates whether to offer a team's webhooks page."""
    return who is not None and can_on_team(who, Permission.MANAGE_WEBHOOKS, team)


# Email preferences ----------------------------------------------------------------------------


@blueprint.get("/account/notifications")
@login_required
async def preferences() -> Response:
    me = await principal()
    return await render_page(
        "notifications/preferences.html",
        teams=await notifications.preferences_of(await db_session(), me),
        labels=notifications.kind_labels(),
        saved=request.args.get("saved"),
    )


@blueprint.post("/account/notifications")
@login_required
async def save_preferences() -> Response:
    me = await principal()
    form = await request.form
    try:
        team_id = int(form.get("team_id", ""))
    except ValueError:
        team_id = 0
    session = await db_session()
    await notifications.save_preferences(session, me, team_id, set(form.getlist("kind")))
    await session.commit()
    return redirect_to(url_for("notifications.preferences", saved=team_id) + f"#team-{team_id}", 303)


# Webhooks ---------------------------------------------------------------------------------------


def _allow_loopback() -> bool:
    return webhooks_may_use_loopback(current_app.config)


async def _render_list(
    operator: Operator,
    team: Team | None,
    *,
    status: int = 200,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    session = await db_session()
    return await render_page(
        "notifications/webhooks.html",
        status=status,
        operator=operator,
        team=team,
        hooks=await webhooks.list_webhooks(session, operator.id or 0, team.id if team else None),
        teams=[] if team else await teams_of(session, operator.id or 0),
        labels=notifications.kind_labels(),
        values=values or {"events": list(notifications.KINDS)},
        errors=errors or {},
    )


async def _create(operator: Operator, team: Team | None, me: Principal) -> Response:
    session = await db_session()
    form = await request.form
    values = {**form.to_dict(), "events": form.getlist("events")}
    try:
        cleaned = webhooks.clean_form(
            {**values, "enabled": "on"}, allow_loopback=_allow_loopback(), chosen_events=values["events"]
        )
        webhook = await webhooks.create_webhook(session, me, operator.id or 0, team, cleaned)
    except FormErrors as exc:
        return await _render_list(
            operator, team, status=form_errors_status(exc.errors), values=values, errors=exc.errors
        )
    await session.commit()
    return redirect_to(url_for("notifications.webhook", webhook_id=webhook.id, created=1), 303)


@blueprint.get("/teams/<int:team_id>/webhooks")
@login_required
async def team_webhooks(team_id: int) -> Response:
    team, operator = await team_with_operator_for(await principal(), team_id, may=Permission.MANAGE_WEBHOOKS)
    return await _render_list(operator, team)


@blueprint.post("/teams/<int:team_id>/webhooks")
@login_required
async def create_team_webhook(team_id: int) -> Response:
    me = await principal()
    team, operator = await team_with_operator_for(me, team_id, may=Permission.MANAGE_WEBHOOKS)
    return await _create(operator, team, me)


@blueprint.get("/operators/<int:operator_id>/webhooks")
@login_required
async def operator_webhooks(operator_id: int) -> Response:
    return await _render_list(await operator_for(await principal(), operator_id, may=Permission.MANAGE_WEBHOOKS), None)


@blueprint.post("/operators/<int:operator_id>/webhooks")
@login_required
async def create_operator_webhook(operator_id: int) -> Response:
    me = await principal()
    operator = await operator_for(me, operator_id, may=Permission.MANAGE_WEBHOOKS)
    return await _create(operator, None, me)


async def _webhook_for(me: Principal, webhook_id: int) -> tuple[Webhook, Team | None, Operator]:
    """Load a webhook the caller may manage, its team and operator; otherwise 404."""
    session = await db_session()
    webhook, team = await webhooks.get_webhook_or_404(session, me, webhook_id)
    operator = await session.get(Operator, webhook.operator_id)
    assert operator is not None
    return webhook, team, operator


async def _render_webhook(
    webhook: Webhook,
    team: Team | None,
    operator: Operator,
    *,
    status: int = 200,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    session = await db_session()
    deliveries = await webhooks.deliveries_of(session, webhook.id or 0)
    chosen = webhook.events.split() or list(notifications.KINDS)
    return await render_page(
        "notifications/webhook.html",
        status=status,
        webhook=webhook,
        team=team,
        operator=operator,
        deliveries=deliveries,
        attempts=await webhooks.attempts_of(session, [d.id or 0 for d in deliveries]),
        labels=notifications.kind_labels(),
        values=values
        or {
            "url": webhook.url,
            "description": webhook.description,
            "events": chosen,
            "enabled": "on" if webhook.enabled else "",
        },
        errors=errors or {},
        created=request.args.get("created") == "1",
        tested=request.args.get("tested") == "1",
        back=_back(webhook, team),
    )


def _back(webhook: Webhook, team: Team | None) -> str:
    if team is None:
        return url_for("notifications.operator_webhooks", operator_id=webhook.operator_id)
    return url_for("notifications.team_webhooks", team_id=team.id)


@blueprint.get("/webhooks/<int:webhook_id>")
@login_required
async def webhook(webhook_id: int) -> Response:
    return await _render_webhook(*await _webhook_for(await principal(), webhook_id))


@blueprint.post("/webhooks/<int:webhook_id>")
@login_required
async def update_webhook(webhook_id: int) -> Response:
    me = await principal()
    webhook, team, operator = await _webhook_for(me, webhook_id)
    form = await request.form
    values = {**form.to_dict(), "events": form.getlist("events"), "enabled": form.get("enabled", "")}
    session = await db_session()
    try:
        cleaned = webhooks.clean_form(values, allow_loopback=_allow_loopback(), chosen_events=values["events"])
        await webhooks.update_webhook(session, me, webhook, team, cleaned)
    except FormErrors as exc:
        return await _render_webhook(
            webhook, team, operator, status=form_errors_status(exc.errors), values=values, errors=exc.errors
        )
    await session.commit()
    return redirect_to(url_for("notifications.webhook", webhook_id=webhook_id), 303)


@blueprint.post("/webhooks/<int:webhook_id>/test")
@login_required
async def test_webhook(webhook_id: int) -> Response:
    me = await principal()
    webhook, team, _operator = await _webhook_for(me, webhook_id)
    session = await db_session()
    await webhooks.send_test_event(session, me, webhook, team)
    await session.commit()
    return redirect_to(url_for("notifications.webhook", webhook_id=webhook_id, tested=1), 303)


@blueprint.post("/webhooks/<int:webhook_id>/secret")
@login_required
async def rotate_secret(webhook_id: int) -> Response:
    me = await principal()
    webhook, team, _operator = await _webhook_for(me, webhook_id)
    session = await db_session()
    await webhooks.rotate_secret(session, me, webhook, team)
    await session.commit()
    return redirect_to(url_for("notifications.webhook", webhook_id=webhook_id), 303)


@blueprint.post("/webhooks/<int:webhook_id>/delete")
@login_required
async def delete_webhook(webhook_id: int) -> Response:
    me = await principal()
    webhook, team, _operator = await _webhook_for(me, webhook_id)
    back = _back(webhook, team)
    session = await db_session()
    await webhooks.delete_webhook(session, me, webhook, team)
    await session.commit()
    return redirect_to(back, 303)


@blueprint.app_template_global()
def may_manage_operator_webhooks(who: Principal | None, operator_id: int) -> bool:
    """Tell templates whether to offer an operator's webhooks page."""
    return who is not None and can_on_operator(who, Permission.MANAGE_WEBHOOKS, operator_id)


# The demo's receiver ----------------------------------------------------------------------------

# Registered only in demo and development mode without an SMTP server (see create_app), beside the
# development mailbox: a webhook receiver inside PowerBank, so the demo shows signed deliveries.
# Token-less by nature (a receiver is called by a machine), so it is exempt from CSRF checks.
dev_receiver = Blueprint("dev_webhooks", __name__)
DEMO_RECEIVER_PATH = "/dev/webhooks/receive"
_RECEIVED = "powerbank.dev_webhooks"
MAX_KEPT = 50
MAX_BODY = 64 * 1024


def _received() -> deque[dict[str, Any]]:
    kept: deque[dict[str, Any]] = current_app.extensions.setdefault(_RECEIVED, deque(maxlen=MAX_KEPT))
    return kept


@dev_receiver.post(DEMO_RECEIVER_PATH)
async def receive() -> Response:
    raw = await request.get_data(cache=False, as_text=False)
    body = raw if isinstance(raw, bytes) else raw.encode()
    if len(body) > MAX_BODY:
        return Response("too large", status=413)
    header = request.headers.get(webhooks.SIGNATURE_HEADER)
    session = await db_session()
    # The receiver knows the secrets of the webhooks that point at it, as a real receiver would know its own.
    candidates = [w for w in await webhooks.webhooks_to(session, DEMO_RECEIVER_PATH) if w.secret]
    signed_by = next((w.id for w in candidates if webhooks.verify_signature(w.secret, header, body)), None)
    _received().appendleft(
        {
            "event": request.headers.get("PowerBank-Event", ""),
            "key": request.headers.get("Idempotency-Key", ""),
            "signature": header or "",
            "signed_by": signed_by,
            "body": body.decode("utf-8", "replace"),
        }
    )
    if signed_by is None:
        return Response("bad signature", status=400)
    return Response("", status=204)


@dev_receiver.get("/dev/webhooks")
async def received() -> Response:
    return await render_page(
        "notifications/dev_received.html",
        received=list(_received()),
        title=_("Development webhook receiver"),
    )
