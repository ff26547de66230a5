"""The mailer delivers the outbox through a real SMTP server on loopback (aiosmtpd), retrying when it is away."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from quart import Quart
from sqlmodel import select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import MailMessage, MailStatus
from powerbank.runtime.mailer import mailer_of
from tests.conftest import Factory, LoginAs, post_form
from tests.helpers import eventually, free_port

pytestmark = pytest.mark.usefixtures("fast_hashing")

SMTP_PORT = free_port()


class Inbox:
    """What the SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(message_from_bytes(envelope.original_content or b""))
        return "250 Message accepted for delivery"


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": SMTP_PORT,
        "SMTP_SECURITY": "none",
        "PUBLIC_URL": "https://powerbank.example",
        "MAIL_FROM": "PowerBank <noreply@powerbank.example>",
    }


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=SMTP_PORT)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


async def invite_newcomer(factory: Factory, login_as: LoginAs, session: AsyncSession) -> None:
    operator = await factory.operator("Alpha")
    team = await factory.team(operator, "Harbour")
    admin = await factory.user(operator=operator, operator_role="admin", email="admin@alpha.example")
    client = await login_as(admin)
    response = await post_form(
        client,
        f"/operators/{operator.id}/members",
        {"email": "newcomer@example.test", "role": "team:member", "team_id": str(team.id)},
        # A forged Host must not become the link's address.
        headers={"Host": "evil.example"},
    )
    assert response.status_code == 201


async def outbox(session: AsyncSession) -> list[MailMessage]:
    return list(await session.exec(select(MailMessage).execution_options(populate_existing=True)))


async def test_an_invitation_is_delivered_by_smtp_with_a_link_to_the_public_address(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs, inbox: Inbox
) -> None:
    await invite_newcomer(factory, login_as, session)
    await eventually(lambda: len(inbox.messages) == 1, message="the invitation never reached the SMTP server")
    (email,) = inbox.messages
    assert email["To"] == "newcomer@example.test" and email["Subject"] == "You are invited to PowerBank"
    assert email["From"] == "PowerBank <noreply@powerbank.example>"
    body = email.get_payload(decode=True).decode()  # type: ignore[union-attr]
    link = re.search(r"(\S+)/invitations/(\S+)", body)
    assert link and link.group(1) == "https://powerbank.example" and "Team Member in Harbour" in body
    assert (await app.test_client().get(f"/invitations/{link.group(2)}")).status_code == 200

    async def sent() -> bool:
        (message,) = await outbox(session)
        return message.status == MailStatus.SENT

    await eventually(sent)
    # The database keeps no usable link once it is sent.
    (message,) = await outbox(session)
    assert message.body == "" and message.attempts == 1 and message.sent_at is not None


async def test_mail_waits_for_an_smtp_server_that_is_away_and_is_sent_once_it_is_back(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    await invite_newcomer(factory, login_as, session)

    async def failed_once() -> bool:
        (message,) = await outbox(session)
        return message.attempts == 1

    await eventually(failed_once, message="the mailer never tried")
    (message,) = await outbox(session)
    assert message.status == MailStatus.PENDING and message.last_error and message.next_attempt_at > utcnow()
    assert "/invitations/" in message.body

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=SMTP_PORT)
    controller.start()
    try:
        # The retry is due (as it would be after its pause); the mailer is woken as a new commit would.
        await session.exec(update(MailMessage).values(next_attempt_at=utcnow()))
        await session.commit()
        mailer = mailer_of(app)
        assert mailer is not None
        mailer.wake()
        await eventually(lambda: len(inbox.messages) == 1, message="the retry never reached the SMTP server")
    finally:
        controller.stop()

    async def sent() -> bool:
        (message,) = await outbox(session)
        return message.status == MailStatus.SENT

    await eventually(sent)
    (message,) = await outbox(session)
    assert message.attempts == 2 and message.last_error == ""
