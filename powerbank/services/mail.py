"""The mail outbox: emails are stored with the change they tell of, and delivered after it commits.

A service queues a message in the caller's transaction (``queue_mail``), so a rolled-back change
sends nothing and a committed one is never forgotten. The mailer (``powerbank.runtime.mailer``)
claims due messages, sends them and records the outcome here; a message that cannot be sent is
tried again with growing pauses for a day, then marked failed with its last error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import after_commit, utcnow
from powerbank.models import MailMessage, MailStatus

# Delivery is retried for this long after the message was queued, then given up.
RETRY_FOR = timedelta(days=1)
FIRST_RETRY_AFTER = timedelta(seconds=30)
LONGEST_PAUSE = timedelta(hours=1)
# While one mailer sends a message, no other (another node) takes it; longer than any send may take.
CLAIM_FOR = timedelta(minutes=5)

_listeners: list[Callable[[], None]] = []


def on_mail_queued(listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener`` after every commit that queued mail; return a function that stops it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def _tell_listeners() -> None:
    for listener in list(_listeners):
        listener()


def queue_mail(session: AsyncSession, to_address: str, subject: str, body: str, *, secret: bool = False) -> MailMessage:
    """Add an email to the outbox in the session's transaction; it is sent once the transaction commits.

    ``secret``: the body holds a credential (an invitation link), so it is erased once delivered.
    """
    message = MailMessage(to_address=to_address, subject=subject[:200], body=body, secret=secret)
    session.add(message)
    after_commit(session, _tell_listeners)
    return message


async def claim_due(session: AsyncSession, limit: int = 20, now: datetime | None = None) -> list[MailMessage]:
    """Take the messages due for sending, so that no other mailer sends them meanwhile; commit."""
    now = now or utcnow()
    due = list(
        await session.exec(
            select(MailMessage)
            .where(MailMessage.status == MailStatus.PENDING, col(MailMessage.next_attempt_at) <= now)
            .order_by(col(MailMessage.next_attempt_at), col(MailMessage.id))
            .limit(limit)
        )
    )
    claimed: list[MailMessage] = []
    for message in due:
        # Conditional on the time it was due at: of two mailers reading the same row, one takes it.
        result = await session.exec(
            update(MailMessage)
            .where(col(MailMessage.id) == message.id, col(MailMessage.next_attempt_at) == message.next_attempt_at)
            .values(next_attempt_at=now + CLAIM_FOR)
        )
        if result.rowcount == 1:
            claimed.append(message)
    await session.commit()
    for message in claimed:
        await session.refresh(message)
    return claimed


async def mark_sent(session: AsyncSession, message_id: int, *, keep_body: bool = False) -> None:
    """Record a delivered message (its body erased when it held a secret, unless ``keep_body``); commit."""
    message = await session.get(MailMessage, message_id)
    if message is None:
        return
    message.status = MailStatus.SENT
    message.sent_at = utcnow()
    message.attempts += 1
    message.last_error = ""
    if message.secret and not keep_body:
        message.body = ""
    session.add(message)
    await session.commit()


def pause_after(attempts: int) -> timedelta:
    """Return how long to wait after the ``attempts``-th failed try: doubling from 30 s, at most an hour."""
    return min(FIRST_RETRY_AFTER * 2 ** min(attempts - 1, 16), LONGEST_PAUSE)


async def mark_failed(session: AsyncSession, message_id: int, error: str, now: datetime | None = None) -> None:
    """Record a failed try: try again later, or give up once the retry period is over; commit."""
    now = now or utcnow()
    message = await session.get(MailMessage, message_id)
    if message is None:
        return
    message.attempts += 1
    message.last_error = error[:500]
    retry_at = now + pause_after(message.attempts)
    if retry_at - message.created_at > RETRY_FOR:
        message.status = MailStatus.FAILED
        if message.secret:
            message.body = ""
    message.next_attempt_at = retry_at
    session.add(message)
    await session.commit()


async def recent_mail(session: AsyncSession, limit: int = 50) -> list[MailMessage]:
    """Return the newest messages of the outbox (the development mailbox shows them)."""
    return list(await session.exec(select(MailMessage).order_by(col(MailMessage.id).desc()).limit(limit)))
