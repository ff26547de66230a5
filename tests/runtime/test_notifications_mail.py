"""Notifications end to end in the served app: a Test activation on DK2 emails the Copenhagen Fleet's admins
through a real SMTP server on loopback (aiosmtpd), and its webhook gets a signed delivery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any
from urllib.parse import urlencode

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from quart import Quart
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import Operator, Team, Webhook
from powerbank.services import notifications, webhooks
from tests.conftest import Factory, LoginAs, post_form
from tests.helpers import eventually, free_port
from tests.runtime.webhook_receiver import receiving

pytestmark = pytest.mark.usefixtures("fast_hashing")

SMTP_PORT = free_port()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(message_from_bytes(envelope.original_content or b""))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["To"] == address]


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


def body_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


async def test_a_test_activation_on_dk2_emails_the_copenhagen_admins_and_calls_their_webhook(
    app: Quart, session: AsyncSession, demo: list[Any], login_as: LoginAs, inbox: Inbox
) -> None:
    nordic = (await session.exec(select(Operator).where(Operator.name == "Nordic Charge"))).one()
    copenhagen = (await session.exec(select(Team).where(Team.name == "Copenhagen Fleet"))).one()
    (webhook,) = (await session.exec(select(Webhook).where(Webhook.team_id == copenhagen.id))).all()
    async with receiving() as receiver:
        # The demo's webhook goes to `make run`'s address; here, to this test's receiver.
        webhook.url = receiver.url
        session.add(webhook)
        await session.commit()
        # The DK2 charge points signed up automatically when the demo was loaded: that was told too.
        await eventually(lambda: len(inbox.to("owner@demo.test")) == 1, message="the sign-up was never emailed")
        admin = await login_as("operator.admin@demo.test")
        response = await post_form(admin, f"/operators/{nordic.id}/activations/test", {"price_area": "DK2"})
        assert response.status_code == 303

        def started_to(address: str) -> list[Message]:
            return [m for m in inbox.to(address) if m["Subject"].startswith("Activation started")]

        await eventually(lambda: len(started_to("admin@demo.test")) == 1, timeout=15, message="no activation email")
        await eventually(lambda: len(started_to("owner@demo.test")) == 1)
        await eventually(lambda: len(started_to("readonly.admin@demo.test")) == 1)
        (email,) = started_to("owner@demo.test")
        assert email["Subject"] == "Activation started: Test in DK2, 4 charge points of Copenhagen Fleet"
        text = body_of(email)
        assert "price area DK2" in text and "pause charging for 30 s" in text and "4 charge points" in text
        assert "Choose which emails you get: https://powerbank.example/account/notifications" in text

        def started_deliveries() -> list[Any]:
            return [r for r in receiver.received if r.headers.get("powerbank-event") == "activation.started"]

        await eventually(lambda: len(started_deliveries()) == 1, timeout=15, message="no webhook delivery")
        (delivery,) = started_deliveries()
        assert webhooks.verify_signature(webhook.secret, delivery.headers["powerbank-signature"], delivery.body)
        body = json.loads(delivery.body)
        assert body["team"]["name"] == "Copenhagen Fleet" and body["data"]["charge_points"] == 4
        assert body["data"]["activation"]["market"] == "Test" and body["data"]["activation"]["price_area"] == "DK2"
        assert delivery.headers["idempotency-key"] == body["id"]

        # Cancelled early: the end is told too, once.
        activation_id = body["data"]["activation"]["id"]
        assert (await post_form(admin, f"/activations/{activation_id}/cancel")).status_code == 303

        def ended_deliveries() -> list[Any]:
            return [r for r in receiver.received if r.headers.get("powerbank-event") == "activation.ended"]

        await eventually(lambda: len(ended_deliveries()) == 1, timeout=15, message="the end was never delivered")
        assert json.loads(ended_deliveries()[0].body)["data"]["activation"]["state"] == "cancelled"
        await eventually(lambda: any(m["Subject"].startswith("Activation ended") for m in inbox.to("owner@demo.test")))
        (ended,) = [m for m in inbox.to("owner@demo.test") if m["Subject"].startswith("Activation ended")]
        assert "(cancelled)" in body_of(ended)
    # Team Members and operator-wide roles get no email unless they ask for it.
    assert not started_to("member@demo.test") and not started_to("operator.admin@demo.test")
    # Stockholm Offices has no DK2 charge point: its admins are not told.
    assert all("Stockholm" not in m["Subject"] for m in inbox.messages)


async def test_a_person_who_turned_an_event_off_gets_no_email_of_it(
    app: Quart, session: AsyncSession, login_as: LoginAs, inbox: Inbox
) -> None:
    factory = Factory(session)
    operator = await factory.operator("Nordic")
    team = await factory.team(operator, "Harbour")
    owner = await factory.user(team=team, team_role="owner", email="owner@harbour.example")
    admin = await factory.user(team=team, team_role="admin", email="admin@harbour.example")
    client = await login_as(owner)
    page = await (await client.get("/account/notifications")).get_data(as_text=True)
    assert "Harbour" in page and 'value="statement.ready" checked' in page
    kinds = [k for k in notifications.KINDS if k != notifications.STATEMENT_READY]
    saved = await client.post(
        "/account/notifications",
        data=urlencode(
            [("csrf_token", client.csrf_token), ("team_id", str(team.id)), *[("kind", k) for k in kinds]]  # type: ignore[attr-defined]
        ),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert saved.status_code == 303
    page = await (await client.get("/account/notifications")).get_data(as_text=True)
    assert 'value="statement.ready" checked' not in page and 'value="activation.started" checked' in page

    await notifications.notify_statement_ready(
        session, operator_id=operator.id or 0, team_id=team.id or 0, month="2026-11", amount="10.00", currency="DKK"
    )
    await session.commit()
    await eventually(lambda: len(inbox.to(admin.email)) == 1, message="the statement was never emailed")
    (email,) = inbox.to(admin.email)
    assert email["Subject"] == "The PowerBank statement of Harbour for 2026-11 is ready"
    assert "Amount: 10.00 DKK" in body_of(email)
    assert inbox.to(owner.email) == []
