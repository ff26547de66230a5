"""Webhooks: endpoints of an operator or a team, their signed deliveries, and telling each event once.

Telling (``fan_out``): each stored event (``services.notifications``) is turned, in one transaction
that also marks it told, into emails for the people who want it (the mail outbox) and one delivery
per webhook that receives it. Of two workers (two nodes) telling the same event, the one whose
conditional update marks it wins, and the other's transaction changes nothing.

Delivering (``runtime.webhooks`` sends; this records): a delivery is claimed before it is sent, so
nodes sharing one database send it once at a time; it is retried with doubling pauses (30 s up to an
hour) for a day; each attempt is logged with its response code. A receiver may see a delivery more
than once (a node that stopped mid-send is retried after its claim ran out): every delivery carries
an idempotency key, the same in each attempt.

Signing: ``PowerBank-Signature: t=<unix time>,v1=<hex>`` where hex is HMAC-SHA256 with the webhook's
secret over ``<t>.<body>`` (the timestamp, a full stop, the raw body bytes). Receivers recompute it,
compare in constant time and refuse timestamps older than five minutes (``verify_signature``).

Address rules (server-side request forgery): an https:// URL whose host name resolves only to
public (globally routable) addresses; the sender connects to the address it checked, so a name that
changes its answer between the check and the connection cannot reach an internal one. Plain http://
and loopback addresses only when loopback is allowed (demo, development and tests). No redirects are
followed, a response's body is read to at most a few KiB, and every attempt has a timeout.

A webhook that failed ``disable_after`` attempts in a row (any of its deliveries) is disabled, its
waiting deliveries given up, and the people responsible for it (its creator, and the team's owners
or the operator's admins) are emailed a notice.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from sqlalchemy import delete, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank import i18n
from powerbank.db import after_commit, utcnow
from powerbank.errors import ForbiddenError, FormErrors, NotFoundError
from powerbank.i18n import gettext as _
from powerbank.i18n import ngettext
from powerbank.models import (
    Activation,
    ActivationAction,
    ChargePoint,
    DeliveryStatus,
    DeliveryVerdict,
    Dispatch,
    Notification,
    Operator,
    OperatorMembership,
    OperatorRole,
    Participation,
    ParticipationState,
    Team,
    TeamMembership,
    TeamRole,
    User,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)
from powerbank.rules.permissions import Permission
from powerbank.services import notifications as events
from powerbank.services.access import Acting, actor_of, require_on_operator, require_on_team
from powerbank.services.audit import SYSTEM, record
from powerbank.services.delivery import Verdict
from powerbank.services.mail import queue_mail
from powerbank.services.reliability import reliability_of

SIGNATURE_HEADER = "PowerBank-Signature"
# A receiver should refuse a signature older than this (a replayed delivery).
SIGNATURE_TOLERANCE_S = 300
RETRY_FOR = timedelta(days=1)
FIRST_RETRY_AFTER = timedelta(seconds=30)
LONGEST_PAUSE = timedelta(hours=1)
# While one worker sends a delivery no other takes it: longer than an attempt's timeout.
CLAIM_FOR = timedelta(minutes=2)
DISABLE_AFTER_FAILURES = 30
MAX_URL_LENGTH = 500
MAX_WEBHOOKS_PER_OWNER = 20

_listeners: list[Callable[[], None]] = []


def on_delivery_queued(listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener`` after every commit that queued a delivery; return a function that stops it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def _tell_listeners() -> None:
    for listener in list(_listeners):
        listener()


# Addresses and signatures -------------------------------------------------------------------------


# IPv6 addresses a gateway turns into the IPv4 address they carry: NAT64's well-known prefix
# (RFC 6052, the last 32 bits) and 6to4 (2002::/16); that IPv4 address is what must be public.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# IPv6 ranges Python counts as global that are not: local-use NAT64 (RFC 8215, a network's own
# translator), IPv4-compatible and IPv4-translated (SIIT) addresses, and site-local fec0::/10.
_NOT_PUBLIC_V6 = tuple(
    ipaddress.IPv6Network(network) for network in ("64:ff9b:1::/48", "::/96", "::ffff:0:0:0/96", "fec0::/10")
)


def address_allowed(address: str, *, allow_loopback: bool) -> bool:
    """Whether a webhook may be sent to this IP address: a public one, or loopback when allowed."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
    if ip.is_loopback:
        return allow_loopback
    if isinstance(ip, ipaddress.IPv6Address) and any(ip in network for network in _NOT_PUBLIC_V6):
        return False
    return ip.is_global and not ip.is_multicast


def clean_url(value: str | None, *, allow_loopback: bool) -> str:
    """Return a webhook URL that may be stored, or raise ValueError saying what is wrong with it.

    The host's addresses are checked again at each delivery, when it is resolved.
    """
    url = (value or "").strip()
    if not url:
        raise ValueError(_("Enter the URL PowerBank sends the events to."))
    if len(url) > MAX_URL_LENGTH or any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise ValueError(_("Enter a URL of at most 500 characters, without spaces."))
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError(_("Enter a valid URL, such as https://example.com/powerbank.")) from None
    if not url.isascii() and host:
        # Sent as HTTP writes it: the host in IDNA (punycode), the rest percent-encoded.
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(_("Enter a valid URL, such as https://example.com/powerbank.")) from None
        netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
        url = urlunsplit((parts.scheme, netloc, _ascii(parts.path), _ascii(parts.query), _ascii(parts.fragment)))
        if len(url) > MAX_URL_LENGTH:
            raise ValueError(_("Enter a URL of at most 500 characters, without spaces."))
        parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError(_("Enter a valid URL, such as https://example.com/powerbank."))
    if parts.username is not None or parts.password is not None:
        raise ValueError(_("Put no user name or password in the URL: deliveries are signed instead."))
    if parts.fragment:
        raise ValueError(_("A webhook URL has no #fragment."))
    try:
        literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    is_loopback = (
        host.rstrip(".") == "localhost" or host.endswith(".localhost") or bool(literal and literal.is_loopback)
    )
    if parts.scheme == "http" and not (allow_loopback and is_loopback):
        raise ValueError(_("Use https://: events are only sent over TLS."))
    if is_loopback and not allow_loopback:
        raise ValueError(_("This address is not reachable from PowerBank: use a public address."))
    if literal is not None and not address_allowed(str(literal), allow_loopback=allow_loopback):
        raise ValueError(_("This address is not reachable from PowerBank: use a public address."))
    if port == 0:
        raise ValueError(_("Enter a valid URL, such as https://example.com/powerbank."))
    return url


def _ascii(text: str) -> str:
    """Percent-encode what is not ASCII (UTF-8), leaving the rest as written."""
    return quote(text, safe="".join(chr(c) for c in range(33, 127)))


def new_secret() -> str:
    """Return a new signing secret."""
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Return the hex HMAC-SHA256 of ``<timestamp>.<body>`` with ``secret``."""
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """Return the ``PowerBank-Signature`` header's value for a body sent now."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify_signature(
    secret: str, header: str | None, body: bytes, *, now: float | None = None, tolerance_s: int = SIGNATURE_TOLERANCE_S
) -> bool:
    """Whether ``header`` is a valid, recent ``PowerBank-Signature`` of ``body`` (what a receiver checks)."""
    if not header:
        return False
    fields: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _sep, value = item.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields.get("t", [""])[0])
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))


# Webhooks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookForm:
    """A valid webhook form."""

    url: str
    description: str
    events: str
    enabled: bool


def clean_form(form: dict[str, Any], *, allow_loopback: bool, chosen_events: Sequence[str]) -> WebhookForm:
    """Return the valid form, or raise FormErrors by field."""
    errors: dict[str, str] = {}
    url = ""
    try:
        url = clean_url(form.get("url"), allow_loopback=allow_loopback)
    except ValueError as exc:
        errors["url"] = str(exc)
    description = " ".join(str(form.get("description") or "").split())
    if len(description) > 120:
        errors["description"] = _("At most 120 characters.")
    unknown = [kind for kind in chosen_events if kind not in events.KINDS]
    if unknown:
        errors["events"] = _("Choose among the events listed.")
    if errors:
        raise FormErrors(errors)
    every = set(chosen_events) >= set(events.KINDS) or not chosen_events
    return WebhookForm(
        url,
        description,
        "" if every else " ".join(kind for kind in events.KINDS if kind in chosen_events),
        bool(form.get("enabled", "on")),
    )


def _require_manage(by: Acting, operator_id: int, team: Team | None) -> None:
    if team is None:
        require_on_operator(by, Permission.MANAGE_WEBHOOKS, operator_id, not_found="No such webhook.")
    else:
        require_on_team(by, Permission.MANAGE_WEBHOOKS, team, not_found="No such webhook.")


async def get_webhook_or_404(session: AsyncSession, by: Acting, webhook_id: int) -> tuple[Webhook, Team | None]:
    """Return a webhook the caller may manage, with its team; another tenant's is NotFoundError."""
    webhook = await session.get(Webhook, webhook_id)
    if webhook is None:
        raise NotFoundError("No such webhook.")
    team = await session.get(Team, webhook.team_id) if webhook.team_id is not None else None
    try:
        _require_manage(by, webhook.operator_id, team)
    except ForbiddenError:
        # Seen but not managed: as if it did not exist (its URL and secret are not for this caller).
        raise NotFoundError("No such webhook.") from None
    return webhook, team


async def list_webhooks(session: AsyncSession, operator_id: int, team_id: int | None) -> list[Webhook]:
    """Return an operator's own webhooks (``team_id`` None), or one team's, oldest first."""
    query = select(Webhook).where(Webhook.operator_id == operator_id)
    query = query.where(col(Webhook.team_id).is_(None) if team_id is None else Webhook.team_id == team_id)
    return list(await session.exec(query.order_by(col(Webhook.id))))


async def webhooks_to(session: AsyncSession, path: str) -> list[Webhook]:
    """Return the webhooks whose URL ends in ``path`` (the demo's receiver finds its senders' secrets)."""
    return list(await session.exec(select(Webhook).where(col(Webhook.url).endswith(path))))


async def create_webhook(
    session: AsyncSession, by: Acting, operator_id: int, team: Team | None, form: WebhookForm
) -> Webhook:
    """Add a webhook with a new secret; the caller commits."""
    _require_manage(by, operator_id, team)
    if len(await list_webhooks(session, operator_id, team.id if team else None)) >= MAX_WEBHOOKS_PER_OWNER:
        raise FormErrors({"url": _("At most 20 webhooks: delete one first.")})
    actor = actor_of(by)
    webhook = Webhook(
        operator_id=operator_id,
        team_id=team.id if team else None,
        url=form.url,
        description=form.description,
        events=form.events,
        enabled=form.enabled,
        secret=new_secret(),
        created_by_user_id=actor.user_id,
    )
    session.add(webhook)
    await session.flush()
    record(session, actor, "webhook.create", webhook, operator_id=operator_id, label=form.url, after={"url": form.url})
    return webhook


async def update_webhook(
    session: AsyncSession, by: Acting, webhook: Webhook, team: Team | None, form: WebhookForm
) -> None:
    """Change a webhook; turning it on again starts its failure count afresh; the caller commits."""
    _require_manage(by, webhook.operator_id, team)
    before = {"url": webhook.url, "events": webhook.events, "enabled": webhook.enabled}
    if form.enabled and not webhook.enabled:
        webhook.consecutive_failures = 0
        webhook.disabled_reason = ""
    if not form.enabled and webhook.enabled:
        webhook.disabled_reason = _("Turned off by %(who)s", who=actor_of(by).label)[:200]
        await _give_up_waiting(session, webhook.id or 0, _("The webhook was turned off."))
    webhook.url, webhook.description, webhook.events, webhook.enabled = (
        form.url,
        form.description,
        form.events,
        form.enabled,
    )
    session.add(webhook)
    record(
        session,
        actor_of(by),
        "webhook.update",
        webhook,
        operator_id=webhook.operator_id,
        label=webhook.url,
        before=before,
        after={"url": webhook.url, "events": webhook.events, "enabled": webhook.enabled},
    )


async def rotate_secret(session: AsyncSession, by: Acting, webhook: Webhook, team: Team | None) -> None:
    """Give a webhook a new secret (the old one signs nothing from now on); the caller commits."""
    _require_manage(by, webhook.operator_id, team)
    webhook.secret = new_secret()
    session.add(webhook)
    record(session, actor_of(by), "webhook.rotate_secret", webhook, operator_id=webhook.operator_id, label=webhook.url)


async def delete_webhook(session: AsyncSession, by: Acting, webhook: Webhook, team: Team | None) -> None:
    """Delete a webhook and its delivery log; the caller commits."""
    _require_manage(by, webhook.operator_id, team)
    record(session, actor_of(by), "webhook.delete", webhook, operator_id=webhook.operator_id, label=webhook.url)
    await session.delete(webhook)


def _receives(webhook: Webhook, kind: str) -> bool:
    return webhook.enabled and (not webhook.events or kind in webhook.events.split())


# Deliveries -------------------------------------------------------------------------------------


def _body(key: str, kind: str, operator: Operator, team: Team | None, data: dict[str, Any], at: datetime) -> str:
    return json.dumps(
        {
            "id": key,
            "type": kind,
            "created_at": at.isoformat(),
            "operator": {"id": operator.id, "name": operator.name},
            "team": {"id": team.id, "name": team.name} if team else None,
            "data": data,
        },
        default=str,
        ensure_ascii=False,
    )


def queue_delivery(
    session: AsyncSession,
    webhook: Webhook,
    kind: str,
    operator: Operator,
    team: Team | None,
    data: dict[str, Any],
    *,
    notification_id: int | None = None,
    now: datetime | None = None,
) -> WebhookDelivery:
    """Add a delivery of one event to one webhook in the session's transaction."""
    now = now or utcnow()
    key = uuid.uuid4().hex
    delivery = WebhookDelivery(
        webhook_id=webhook.id or 0,
        notification_id=notification_id,
        kind=kind,
        idempotency_key=key,
        body=_body(key, kind, operator, team, data, now),
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    after_commit(session, _tell_listeners)
    return delivery


async def send_test_event(session: AsyncSession, by: Acting, webhook: Webhook, team: Team | None) -> WebhookDelivery:
    """Queue a ``webhook.test`` delivery to this webhook (even one turned off); the caller commits."""
    _require_manage(by, webhook.operator_id, team)
    operator = await session.get(Operator, webhook.operator_id)
    assert operator is not None
    return queue_delivery(
        session,
        webhook,
        events.WEBHOOK_TEST,
        operator,
        team,
        {"message": "A test event sent from PowerBank.", "by": actor_of(by).label},
    )


async def claim_due(
    session: AsyncSession, limit: int = 20, now: datetime | None = None, claim_for: timedelta = CLAIM_FOR
) -> list[WebhookDelivery]:
    """Take the deliveries due for sending, so that no other worker sends them for ``claim_for``; commit.

    The claim must outlast the attempt: the worker claims no more than it sends at once, for longer
    than its timeout.
    """
    now = now or utcnow()
    due = list(
        await session.exec(
            select(WebhookDelivery)
            .where(WebhookDelivery.status == DeliveryStatus.PENDING, col(WebhookDelivery.next_attempt_at) <= now)
            .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
            .limit(limit)
        )
    )
    claimed: list[WebhookDelivery] = []
    for delivery in due:
        # Conditional on the time it was due at: of two workers reading the same row, one takes it.
        result = await session.exec(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == delivery.id,
                col(WebhookDelivery.status) == DeliveryStatus.PENDING,
                col(WebhookDelivery.next_attempt_at) == delivery.next_attempt_at,
            )
            .values(next_attempt_at=now + claim_for)
        )
        if result.rowcount == 1:
            claimed.append(delivery)
    await session.commit()
    for delivery in claimed:
        await session.refresh(delivery)
    return claimed


def pause_after(attempts: int) -> timedelta:
    """Return how long to wait after the ``attempts``-th failed try: doubling from 30 s, at most an hour."""
    return min(FIRST_RETRY_AFTER * 2 ** min(attempts - 1, 16), LONGEST_PAUSE)


async def record_attempt(
    session: AsyncSession,
    delivery_id: int,
    status_code: int | None,
    error: str,
    duration_ms: int,
    *,
    now: datetime | None = None,
    disable_after: int = DISABLE_AFTER_FAILURES,
) -> bool:
    """Log an attempt and its outcome (2xx: delivered; else retry later, or give up after a day); commit.

    Return True when this failure disabled the webhook.
    """
    now = now or utcnow()
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        return False
    ok = status_code is not None and 200 <= status_code < 300
    disable = False
    if delivery.kind != events.WEBHOOK_TEST:
        # The webhook's row first, in every writer (no deadlock with one disabling it), in one statement,
        # so failures recorded at the same time (several sends, several nodes) all count.
        counted = (
            await session.exec(
                update(Webhook)
                .where(col(Webhook.id) == delivery.webhook_id)
                .values(consecutive_failures=0 if ok else col(Webhook.consecutive_failures) + 1)
                .returning(col(Webhook.consecutive_failures), col(Webhook.enabled))
            )
        ).first()
        disable = counted is not None and not ok and counted[1] and counted[0] >= disable_after
        # As it is now: a writer that disabled the webhook meanwhile may have given it up.
        await session.refresh(delivery)
    session.add(
        WebhookAttempt(
            delivery_id=delivery_id, at=now, status_code=status_code, error=error[:500], duration_ms=duration_ms
        )
    )
    if delivery.status == DeliveryStatus.PENDING:
        delivery.attempts += 1
        delivery.last_status_code = status_code
        delivery.last_error = "" if ok else error[:500]
        if ok:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = now
        else:
            retry_at = now + pause_after(delivery.attempts)
            delivery.next_attempt_at = retry_at
            if retry_at - delivery.created_at > RETRY_FOR:
                delivery.status = DeliveryStatus.FAILED
        session.add(delivery)
    if disable:
        webhook = await session.get(Webhook, delivery.webhook_id, populate_existing=True)
        if webhook is not None:
            await _disable(session, webhook, error, status_code)
            session.add(webhook)
    await session.commit()
    return disable


async def _give_up_waiting(session: AsyncSession, webhook_id: int, why: str) -> None:
    await session.exec(
        update(WebhookDelivery)
        .where(col(WebhookDelivery.webhook_id) == webhook_id, col(WebhookDelivery.status) == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.FAILED, last_error=why[:500])
    )


async def responsible_for(session: AsyncSession, webhook: Webhook) -> list[str]:
    """Return the email addresses of the people responsible for a webhook: its creator, and the team's
    owners (a team's webhook) or the operator's admins."""
    people: set[str] = set()
    if webhook.created_by_user_id is not None:
        creator = await session.get(User, webhook.created_by_user_id)
        if creator is not None:
            people.add(creator.email)
    if webhook.team_id is not None:
        people |= set(
            (
                await session.exec(
                    select(User.email)
                    .join(TeamMembership, col(TeamMembership.user_id) == col(User.id))
                    .where(TeamMembership.team_id == webhook.team_id, TeamMembership.role == TeamRole.OWNER)
                )
            ).all()
        )
    people |= set(
        (
            await session.exec(
                select(User.email)
                .join(OperatorMembership, col(OperatorMembership.user_id) == col(User.id))
                .where(
                    OperatorMembership.operator_id == webhook.operator_id,
                    OperatorMembership.role == OperatorRole.ADMIN,
                )
            )
        ).all()
    )
    return sorted(people)


async def _disable(session: AsyncSession, webhook: Webhook, error: str, status_code: int | None) -> None:
    webhook.enabled = False
    last = f"HTTP {status_code}" if status_code is not None else error
    webhook.disabled_reason = _(
        "Disabled by PowerBank after %(n)s failed attempts in a row (last: %(last)s)",
        n=webhook.consecutive_failures,
        last=last,
    )[:200]
    await _give_up_waiting(session, webhook.id or 0, _("The webhook was disabled."))
    for address in await responsible_for(session, webhook):
        queue_mail(
            session,
            address,
            _("PowerBank disabled a webhook: %(url)s", url=webhook.url),
            _(
                "PowerBank could not deliver events to the webhook %(url)s: %(n)s attempts in a row failed "
                "(the last: %(last)s), so it was disabled and its waiting deliveries were given up.\n\n"
                "Fix the receiver, then turn the webhook on again on its page and send a test event.",
                url=webhook.url,
                n=webhook.consecutive_failures,
                last=last,
            ),
        )
    record(
        session,
        SYSTEM,
        "webhook.disable",
        webhook,
        operator_id=webhook.operator_id,
        label=webhook.url,
        after={"reason": webhook.disabled_reason},
    )


async def deliveries_of(session: AsyncSession, webhook_id: int, limit: int = 50) -> list[WebhookDelivery]:
    """Return a webhook's newest deliveries (its delivery log)."""
    return list(
        await session.exec(
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == webhook_id)
            .order_by(col(WebhookDelivery.id).desc())
            .limit(limit)
        )
    )


async def attempts_of(session: AsyncSession, delivery_ids: Sequence[int]) -> dict[int, list[WebhookAttempt]]:
    """Return each delivery's attempts, oldest first (one query)."""
    found: dict[int, list[WebhookAttempt]] = {delivery_id: [] for delivery_id in delivery_ids}
    if delivery_ids:
        for attempt in await session.exec(
            select(WebhookAttempt)
            .where(col(WebhookAttempt.delivery_id).in_(delivery_ids))
            .order_by(col(WebhookAttempt.id))
        ):
            found[attempt.delivery_id].append(attempt)
    return found


# Told events are kept this long (their keys keep a second look from telling them again), and
# finished deliveries with their attempts (the delivery log) this long.
KEEP_TOLD_FOR = timedelta(days=7)
KEEP_DELIVERIES_FOR = timedelta(days=30)


async def prune(session: AsyncSession, now: datetime | None = None) -> None:
    """Delete events told long ago and deliveries finished long ago; the caller commits."""
    now = now or utcnow()
    await session.exec(
        delete(Notification).where(
            col(Notification.fanned_out_at).is_not(None), col(Notification.fanned_out_at) < now - KEEP_TOLD_FOR
        )
    )
    await session.exec(
        delete(WebhookDelivery).where(
            col(WebhookDelivery.status) != DeliveryStatus.PENDING,
            col(WebhookDelivery.created_at) < now - KEEP_DELIVERIES_FOR,
        )
    )


# Telling each event once ---------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """What one team is told of one event: the webhook's data, and the email's subject and text."""

    team: Team
    data: dict[str, Any]
    subject: str
    text: str


async def untold(session: AsyncSession, limit: int = 50, skip: Sequence[int] = ()) -> list[int]:
    """Return the ids of events not told yet, oldest first, but those in ``skip`` (failed in this look)."""
    query = select(Notification.id).where(col(Notification.fanned_out_at).is_(None))
    if skip:
        query = query.where(col(Notification.id).not_in(skip))
    ids = await session.exec(query.order_by(col(Notification.id)).limit(limit))
    return [notification_id for notification_id in ids if notification_id is not None]


async def fan_out(
    session: AsyncSession, notification_id: int, base_url: str, now: datetime | None = None, *, email: bool = True
) -> bool:
    """Tell one event: queue its emails (unless ``email`` is False: no email can be sent) and webhook
    deliveries, and mark it told; the caller commits.

    Return False (and add nothing) when it was told already, by this worker or another.
    """
    now = now or utcnow()
    marked = await session.exec(
        update(Notification)
        .where(col(Notification.id) == notification_id, col(Notification.fanned_out_at).is_(None))
        .values(fanned_out_at=now)
    )
    if marked.rowcount != 1:
        return False
    notification = await session.get(Notification, notification_id)
    operator = await session.get(Operator, notification.operator_id) if notification else None
    if notification is None or operator is None:
        return False
    payload = json.loads(notification.payload)
    messages = await _messages(session, notification, payload, base_url)
    if not messages:
        return True
    webhooks = list(
        await session.exec(
            select(Webhook).where(
                Webhook.operator_id == notification.operator_id,
                col(Webhook.enabled).is_(True),
            )
        )
    )
    link = base_url.rstrip("/") + "/account/notifications"
    # Emails in each reader's language (their setting, else PowerBank's default): the event told again
    # in that language, once per language among its readers.
    in_language: dict[str, dict[int, Message]] = {}
    for message in messages:
        readers = await events.recipients(session, message.team.id or 0, operator.id or 0, notification.kind)
        for address, locale in readers if email else []:
            language = locale or i18n.DEFAULT_LOCALE
            with i18n.use_locale(language):
                if language not in in_language:
                    in_language[language] = {
                        m.team.id or 0: m for m in await _messages(session, notification, payload, base_url)
                    }
                told = in_language[language].get(message.team.id or 0, message)
                queue_mail(
                    session,
                    address,
                    told.subject,
                    told.text
                    + "\n\n-- \n"
                    + _(
                        "You get this email as a member of %(team)s (%(operator)s).",
                        team=message.team.name,
                        operator=operator.name,
                    )
                    + "\n"
                    + _("Choose which emails you get: %(link)s", link=link)
                    + "\n",
                )
        for webhook in webhooks:
            if webhook.team_id in (None, message.team.id) and _receives(webhook, notification.kind):
                queue_delivery(
                    session,
                    webhook,
                    notification.kind,
                    operator,
                    message.team,
                    message.data,
                    notification_id=notification.id,
                    now=now,
                )
    return True


def _names(charge_points: list[dict[str, Any]], count: int) -> str:
    names = ", ".join(str(cp["name"]) for cp in charge_points)
    more = count - len(charge_points)
    return names + (" " + ngettext("and %(num)d more", "and %(num)d more", more) if more > 0 else "")


async def _messages(
    session: AsyncSession, notification: Notification, payload: dict[str, Any], base_url: str
) -> list[Message]:
    kind = notification.kind
    if kind in (events.ACTIVATION_STARTED, events.ACTIVATION_ENDED):
        return await _activation_messages(session, notification, payload)
    if kind == events.CHARGER_FLAGGED:
        return await _flag_messages(session, payload)
    team = await session.get(Team, notification.team_id) if notification.team_id is not None else None
    if team is None:
        return []
    if kind in (events.SIGNED_UP, events.OPTED_OUT, events.CHARGER_SUSPENDED):
        count = int(payload["count"])
        names = _names(payload["charge_points"], count)
        by, source = payload.get("by", ""), payload.get("source", "")
        if kind == events.SIGNED_UP:
            subject = ngettext(
                "%(num)d charge point of %(team)s signed up for PowerBank",
                "%(num)d charge points of %(team)s signed up for PowerBank",
                count,
                team=team.name,
            )
            text = _("Signed up: %(names)s.\nBy: %(by)s (source: %(source)s).", names=names, by=by, source=source)
        elif kind == events.OPTED_OUT:
            subject = ngettext(
                "%(num)d charge point of %(team)s opted out of PowerBank",
                "%(num)d charge points of %(team)s opted out of PowerBank",
                count,
                team=team.name,
            )
            text = _("Opted out: %(names)s.\nBy: %(by)s (source: %(source)s).", names=names, by=by, source=source)
        else:
            subject = ngettext(
                "%(num)d charger of %(team)s suspended from PowerBank",
                "%(num)d chargers of %(team)s suspended from PowerBank",
                count,
                team=team.name,
            )
            reasons = "\n".join(f"- {cp['name']}: {cp.get('reason', '')}" for cp in payload["charge_points"])
            text = _("Suspended:\n%(reasons)s", reasons=reasons)
        return [Message(team, payload, subject, text)]
    if kind == events.CHARGER_OFFLINE:
        name = payload["charge_point"]["name"]
        minutes = int(payload["offline_for_s"]) // 60
        subject = _("%(name)s (%(team)s) is offline", name=name, team=team.name)
        text = _(
            "The charger %(name)s has not been connected to PowerBank for %(minutes)s minutes "
            "(last seen %(seen)s UTC). While it is offline it cannot take part in activations.",
            name=name,
            minutes=minutes,
            seen=payload["last_seen_at"][:19].replace("T", " "),
        )
        return [Message(team, payload, subject, text)]
    if kind == events.STATEMENT_READY:
        subject = _(
            "The PowerBank statement of %(team)s for %(month)s is ready", team=team.name, month=payload["month"]
        )
        text = _("The statement for %(month)s is ready.", month=payload["month"])
        if payload.get("amount") is not None:
            text += "\n" + _(
                "Amount: %(amount)s %(currency)s", amount=payload["amount"], currency=payload.get("currency") or ""
            )
        if payload.get("url"):
            # A path on this hub (the statement's page) is linked in full.
            url = str(payload["url"])
            url = base_url.rstrip("/") + url if url.startswith("/") else url
            text += "\n" + _("Read it: %(url)s", url=url)
        return [Message(team, payload, subject, text)]
    return []


async def _activation_messages(
    session: AsyncSession, notification: Notification, payload: dict[str, Any]
) -> list[Message]:
    activation = await session.get(Activation, payload["activation_id"])
    if activation is None:
        return []
    counts = dict(
        (
            await session.exec(
                select(ChargePoint.team_id, func.count(col(Dispatch.id)))
                .join(ChargePoint, col(ChargePoint.id) == col(Dispatch.charge_point_id))
                .where(Dispatch.activation_id == activation.id)
                .group_by(col(ChargePoint.team_id))
            )
        ).all()
    )
    if not counts:
        # Not recorded yet (another node's chargers): the charge points of the area that take part.
        counts = dict(
            (
                await session.exec(
                    select(ChargePoint.team_id, func.count(col(ChargePoint.id)))
                    .join(Team, col(Team.id) == col(ChargePoint.team_id))
                    .join(Participation, col(Participation.charge_point_id) == col(ChargePoint.id))
                    .where(
                        Team.operator_id == activation.operator_id,
                        ChargePoint.price_area == activation.price_area,
                        Participation.state == ParticipationState.SIGNED_UP,
                    )
                    .group_by(col(ChargePoint.team_id))
                )
            ).all()
        )
    if not counts:
        return []
    teams = list(await session.exec(select(Team).where(col(Team.id).in_(list(counts)))))
    started = notification.kind == events.ACTIVATION_STARTED
    what = (
        _("pause charging")
        if activation.action == ActivationAction.PAUSE
        else _("limit charging to %(kw)s kW per charger", kw=f"{activation.limit_kw:g}")
    )
    minutes, seconds = divmod(activation.duration_s, 60)
    duration = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    data_common = {
        "activation": {
            "id": activation.id,
            "price_area": activation.price_area,
            "market": activation.market,
            "action": activation.action,
            "limit_kw": activation.limit_kw,
            "start_at": activation.start_at,
            "end_at": activation.end_at,
            "duration_s": activation.duration_s,
            "state": activation.state,
            "ended_at": activation.ended_at,
        }
    }
    messages = []
    for team in sorted(teams, key=lambda t: t.name):
        count = int(counts[team.id or 0])
        if started:
            subject = ngettext(
                "Activation started: %(market)s in %(area)s, %(num)s charge point of %(team)s",
                "Activation started: %(market)s in %(area)s, %(num)s charge points of %(team)s",
                count,
                market=activation.market,
                area=activation.price_area,
                team=team.name,
            )
            text = ngettext(
                "PowerBank started activation #%(id)s: %(market)s in price area %(area)s, to %(what)s "
                "for %(duration)s (until %(end)s UTC).\n%(num)s charge point of %(team)s takes part.",
                "PowerBank started activation #%(id)s: %(market)s in price area %(area)s, to %(what)s "
                "for %(duration)s (until %(end)s UTC).\n%(num)s charge points of %(team)s take part.",
                count,
                id=activation.id,
                market=activation.market,
                area=activation.price_area,
                what=what,
                duration=duration,
                end=activation.end_at.strftime("%Y-%m-%d %H:%M:%S"),
                team=team.name,
            )
        else:
            subject = ngettext(
                "Activation ended: %(market)s in %(area)s, %(num)s charge point of %(team)s",
                "Activation ended: %(market)s in %(area)s, %(num)s charge points of %(team)s",
                count,
                market=activation.market,
                area=activation.price_area,
                team=team.name,
            )
            text = ngettext(
                "Activation #%(id)s (%(market)s in price area %(area)s, %(what)s for %(duration)s) is over "
                "(%(state)s); the limit on %(num)s charge point of %(team)s was released.",
                "Activation #%(id)s (%(market)s in price area %(area)s, %(what)s for %(duration)s) is over "
                "(%(state)s); the limit on %(num)s charge points of %(team)s was released.",
                count,
                id=activation.id,
                market=activation.market,
                area=activation.price_area,
                what=what,
                duration=duration,
                state=_("cancelled") if activation.state == "cancelled" else _("ended"),
                team=team.name,
            )
        messages.append(Message(team, {**data_common, "charge_points": count}, subject, text))
    return messages


async def _flag_messages(session: AsyncSession, payload: dict[str, Any]) -> list[Message]:
    """The chargers this activation judged "accepted but not delivered" that are flagged now."""
    not_delivered = list(
        await session.exec(
            select(DeliveryVerdict.charge_point_id).where(
                DeliveryVerdict.activation_id == payload["activation_id"],
                DeliveryVerdict.verdict == Verdict.NOT_DELIVERED,
            )
        )
    )
    reliabilities = await reliability_of(session, not_delivered)
    flagged = [cp_id for cp_id, reliability in reliabilities.items() if reliability.flagged]
    if not flagged:
        return []
    rows = list(
        await session.exec(
            select(ChargePoint, Team)
            .join(Team, col(Team.id) == col(ChargePoint.team_id))
            .where(col(ChargePoint.id).in_(flagged))
        )
    )
    by_team: dict[int, tuple[Team, list[ChargePoint]]] = {}
    for charge_point, team in rows:
        by_team.setdefault(team.id or 0, (team, []))[1].append(charge_point)
    messages = []
    for team, charge_points in by_team.values():
        listed = [{"id": cp.id, "name": cp.name, "summary": reliabilities[cp.id or 0].summary} for cp in charge_points]
        subject = ngettext(
            "%(num)d charger of %(team)s accepts activations but does not deliver",
            "%(num)d chargers of %(team)s accept activations but do not deliver",
            len(listed),
            team=team.name,
        )
        text = _(
            "These chargers said yes to activation #%(id)s but their meters show they kept charging:\n%(lines)s\n\n"
            "An operator admin may suspend them from PowerBank until they are fixed.",
            id=payload["activation_id"],
            lines="\n".join(f"- {cp['name']}: {cp['summary']}" for cp in listed),
        )
        messages.append(
            Message(team, {"activation_id": payload["activation_id"], "charge_points": listed}, subject, text)
        )
    return messages
