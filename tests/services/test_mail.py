"""The mail outbox: queued with the change, claimed once, retried with growing pauses, given up after a day."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from quart import Quart
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import MailMessage, MailStatus
from powerbank.services import mail
from powerbank.web import state


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    # No mail server and no development mailbox: no mailer runs, so the test alone takes the outbox.
    return {"DEMO": False}


async def test_mail_is_queued_with_the_change_and_dropped_with_a_rollback(app: Quart, session: AsyncSession) -> None:
    woken: list[bool] = []
    stop = mail.on_mail_queued(lambda: woken.append(True))
    try:
        mail.queue_mail(session, "a@example.test", "Dropped", "body")
        await session.rollback()
        assert woken == [] and (await session.exec(select(MailMessage))).all() == []
        mail.queue_mail(session, "a@example.test", "Kept", "body")
        await session.commit()
        assert woken == [True]
    finally:
        stop()
    assert [m.subject for m in (await session.exec(select(MailMessage))).all()] == ["Kept"]


async def test_a_due_message_is_claimed_by_one_mailer_only(app: Quart, session: AsyncSession) -> None:
    mail.queue_mail(session, "a@example.test", "Once", "body")
    await session.commit()
    async with state.sessionmaker(app)() as first, state.sessionmaker(app)() as second:
        now = utcnow() + timedelta(seconds=1)
        assert [m.subject for m in await mail.claim_due(first, now=now)] == ["Once"]
        assert await mail.claim_due(second, now=now) == []
        # Not sent within the claim (its mailer died): another mailer takes it.
        assert len(await mail.claim_due(second, now=now + mail.CLAIM_FOR + timedelta(seconds=1))) == 1


def test_pauses_double_from_thirty_seconds_up_to_an_hour() -> None:
    pauses = [mail.pause_after(attempt).total_seconds() for attempt in range(1, 11)]
    assert pauses[:5] == [30, 60, 120, 240, 480]
    assert pauses[-1] == 3600 and all(a <= b for a, b in zip(pauses, pauses[1:], strict=False))
    assert mail.pause_after(10_000) == mail.LONGEST_PAUSE


async def test_a_message_not_sent_within_a_day_is_given_up_and_its_secret_erased(
    app: Quart, session: AsyncSession
) -> None:
    message = mail.queue_mail(session, "a@example.test", "Invitation", "the link", secret=True)
    await session.commit()
    created = message.created_at
    await mail.mark_failed(session, message.id or 0, "ConnectionRefusedError", now=created + timedelta(hours=1))
    await session.refresh(message)
    assert (message.status, message.attempts, message.body) == (MailStatus.PENDING, 1, "the link")
    await mail.mark_failed(session, message.id or 0, "ConnectionRefusedError", now=created + mail.RETRY_FOR)
    await session.refresh(message)
    assert (message.status, message.attempts, message.body) == (MailStatus.FAILED, 2, "")
    assert message.last_error == "ConnectionRefusedError"
