"""A person's own account: invitations, setting and changing their password, ending their sessions.

Accounts are shared by every operator, so no operator's admin may ever hold another person's
credential: a person added by email gets a single-use link, sent to that address, and sets their
own password; a person who already has an account is told of their new role, never re-passworded.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.errors import FormErrors, NotFoundError
from powerbank.i18n import current_locale, use_locale
from powerbank.i18n import gettext as _
from powerbank.models import Invitation, Operator, User
from powerbank.rules.validators import ValidationError
from powerbank.services.audit import Actor, record
from powerbank.services.mail import queue_mail
from powerbank.services.passwords import generate_secret, hash_password, in_password_thread, verify_password

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
INVITATION_VALID_FOR = timedelta(days=7)

# Turns an invitation's secret into the link the person opens (made by the web layer, which knows
# the site's address); None when PowerBank cannot send email.
InvitationLink = Callable[[str], str]


def check_password(password: str) -> str:
    """Return the password if its length is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(_("Password must be at least %(count)s characters.", count=MIN_PASSWORD_LENGTH))
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(_("Password must be at most %(count)s characters.", count=MAX_PASSWORD_LENGTH))
    return password


def has_password(user: User) -> bool:
    """Return True once the person has set a password (an invited person has not yet)."""
    return bool(user.password_hash)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def invite(
    session: AsyncSession,
    actor: Actor,
    user: User,
    link: InvitationLink,
    *,
    operator: Operator | None,
    what: str,
    now: datetime | None = None,
) -> Invitation:
    """Send ``user`` a new single-use link to set their password; earlier links stop working.

    ``what`` says in the email what they were given (e.g. "Team Admin in Copenhagen Fleet").
    """
    now = now or utcnow()
    await _retire_invitations(session, user, now)
    token = generate_secret(24)
    invitation = Invitation(
        user_id=user.id or 0,
        operator_id=operator.id if operator else None,
        token_hash=_token_hash(token),
        created_at=now,
        expires_at=now + INVITATION_VALID_FOR,
    )
    session.add(invitation)
    by = f"{actor.label} ({operator.name})" if operator else actor.label
    # In the person's own language when they chose one, else in the language of who invites them.
    with use_locale(user.locale or current_locale()):
        subject = _("You are invited to PowerBank")
        body = _(
            "%(by)s added you to PowerBank as %(what)s.\n\n"
            "Open this link to choose your password and sign in (it works once, for %(days)s days):\n\n"
            "%(link)s\n\n"
            "If you did not expect this, ignore this email: nothing happens until the link is opened.\n",
            by=by,
            what=what,
            days=INVITATION_VALID_FOR.days,
            link=link(token),
        )
    queue_mail(session, user.email, subject, body, secret=True)
    await session.flush()
    record(session, actor, "user.invite", user, operator_id=operator.id if operator else None, after={"as": what})
    return invitation


def tell_of_new_role(
    session: AsyncSession, actor: Actor, user: User, operator: Operator, what: str, login_url: str
) -> None:
    """Tell a person who has an account that they were given a role (no credential changes hands)."""
    with use_locale(user.locale or current_locale()):
        subject = _("You have a new role in %(operator)s on PowerBank", operator=operator.name)
        body = _(
            "%(actor)s (%(operator)s) gave you the role %(what)s.\n\n"
            "Sign in with your own password to see it: %(url)s\n\n"
            "If you do not know this operator, tell your own administrator.\n",
            actor=actor.label,
            operator=operator.name,
            what=what,
            url=login_url,
        )
    queue_mail(session, user.email, subject, body)


async def _retire_invitations(session: AsyncSession, user: User, now: datetime) -> None:
    await session.exec(
        update(Invitation)
        .where(col(Invitation.user_id) == user.id, col(Invitation.used_at).is_(None))
        .values(used_at=now)
    )


async def open_invitation(session: AsyncSession, token: str, now: datetime | None = None) -> tuple[Invitation, User]:
    """Return the invitation a link names and its person; NotFoundError if used, replaced or expired."""
    now = now or utcnow()
    if not token or len(token) > 200:
        raise NotFoundError(_("This invitation link is not valid."))
    invitation = (await session.exec(select(Invitation).where(Invitation.token_hash == _token_hash(token)))).first()
    # Compared again in constant time: the lookup by hash already tells nothing of the token itself.
    if invitation is None or not hmac.compare_digest(invitation.token_hash, _token_hash(token)):
        raise NotFoundError(_("This invitation link is not valid."))
    if invitation.used_at is not None or invitation.expires_at <= now:
        raise NotFoundError(
            _("This invitation link has been used or has expired. Ask your administrator for a new one.")
        )
    user = await session.get(User, invitation.user_id)
    if user is None:
        raise NotFoundError(_("This invitation link is not valid."))
    return invitation, user


async def accept_invitation(
    session: AsyncSession, token: str, password: str, confirm: str, display_name: str = ""
) -> User:
    """Set the invited person's password from their link; the link (and any other) never works again."""
    now = utcnow()
    invitation, user = await open_invitation(session, token, now)
    errors: dict[str, str] = {}
    try:
        check_password(password)
    except ValidationError as exc:
        errors["password"] = str(exc)
    if password != confirm:
        errors["confirm"] = _("The two passwords are not the same.")
    if errors:
        raise FormErrors(errors)
    # Used first, conditionally: of two submissions of one link, only one sets a password.
    taken = await session.exec(
        update(Invitation)
        .where(col(Invitation.id) == invitation.id, col(Invitation.used_at).is_(None))
        .values(used_at=now)
    )
    if taken.rowcount != 1:
        raise NotFoundError(
            _("This invitation link has been used or has expired. Ask your administrator for a new one.")
        )
    await _retire_invitations(session, user, now)
    user.password_hash = await in_password_thread(hash_password, password)
    user.session_version += 1
    if display_name.strip():
        user.display_name = display_name.strip()[:120]
    session.add(user)
    record(session, Actor.of(user), "user.accept_invitation", user, operator_id=invitation.operator_id)
    return user


async def change_password(session: AsyncSession, user: User, current: str, new: str, confirm: str) -> User:
    """Change a person's password after checking their current one; every other session ends."""
    errors: dict[str, str] = {}
    if not await in_password_thread(verify_password, user.password_hash or None, current[:MAX_PASSWORD_LENGTH]):
        errors["current"] = _("That is not your current password.")
    try:
        check_password(new)
    except ValidationError as exc:
        errors["password"] = str(exc)
    if new != confirm:
        errors["confirm"] = _("The two passwords are not the same.")
    if errors:
        raise FormErrors(errors)
    user.password_hash = await in_password_thread(hash_password, new)
    user.session_version += 1
    session.add(user)
    record(session, Actor.of(user), "user.change_password", user, operator_id=None)
    return user


def end_all_sessions(session: AsyncSession, user: User) -> None:
    """End every session of the person, on every device (the next request of each is signed out)."""
    user.session_version += 1
    session.add(user)
    record(session, Actor.of(user), "user.log_out_everywhere", user, operator_id=None)
