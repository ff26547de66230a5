"""Notification pages: who manages which webhooks (another tenant's are 404), adding, testing and the log."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from quart import Quart
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import DeliveryStatus, Operator, Team, Webhook, WebhookDelivery
from powerbank.services import webhooks
from powerbank.services.audit import SYSTEM
from tests.conftest import Factory, LoginAs, post_form
from tests.helpers import eventually
from tests.runtime.webhook_receiver import receiving

pytestmark = pytest.mark.usefixtures("fast_hashing")


@dataclass
class World:
    nordic: Operator
    harbour: Team
    airport: Team
    fjord: Operator
    team_hook: Webhook
    operator_hook: Webhook
    fjord_hook: Webhook


@pytest.fixture
async def world(session: AsyncSession, factory: Factory) -> World:
    nordic = await factory.operator("Nordic")
    harbour = await factory.team(nordic, "Harbour")
    airport = await factory.team(nordic, "Airport")
    fjord = await factory.operator("Fjord")
    fjord_team = await factory.team(fjord, "Oslo")
    for email, kw in {
        "op.admin@nordic.example": {"operator": nordic, "operator_role": "admin"},
        "op.manager@nordic.example": {"operator": nordic, "operator_role": "manager"},
        "owner@harbour.example": {"team": harbour, "team_role": "owner"},
        "admin@harbour.example": {"team": harbour, "team_role": "admin"},
        "member@harbour.example": {"team": harbour, "team_role": "member"},
        "owner@airport.example": {"team": airport, "team_role": "owner"},
        "admin@fjord.example": {"operator": fjord, "operator_role": "admin"},
    }.items():
        await factory.user(email=email, **kw)  # type: ignore[arg-type]

    async def hook(operator: Operator, team: Team | None, path: str) -> Webhook:
        form = webhooks.WebhookForm(f"https://hooks.example.com/{path}", "", "", True)
        made = await webhooks.create_webhook(session, SYSTEM, operator.id or 0, team, form)
        await session.commit()
        return made

    return World(
        nordic,
        harbour,
        airport,
        fjord,
        await hook(nordic, harbour, "harbour"),
        await hook(nordic, None, "nordic"),
        await hook(fjord, fjord_team, "fjord"),
    )


# Who may open which page: 200, refused (403) or as if it did not exist (404).
MATRIX = [
    ("op.admin@nordic.example", 200, 200, 200, 200),
    ("op.manager@nordic.example", 403, 403, 404, 404),
    ("owner@harbour.example", 200, 403, 200, 404),
    ("admin@harbour.example", 403, 403, 404, 404),
    ("member@harbour.example", 403, 403, 404, 404),
    ("owner@airport.example", 404, 403, 404, 404),
    ("admin@fjord.example", 404, 404, 404, 404),
]


@pytest.mark.parametrize(("email", "team_page", "operator_page", "team_hook", "operator_hook"), MATRIX)
async def test_who_manages_which_webhooks(
    world: World, login_as: LoginAs, email: str, team_page: int, operator_page: int, team_hook: int, operator_hook: int
) -> None:
    client = await login_as(email)
    assert (await client.get(f"/teams/{world.harbour.id}/webhooks")).status_code == team_page
    assert (await client.get(f"/operators/{world.nordic.id}/webhooks")).status_code == operator_page
    assert (await client.get(f"/webhooks/{world.team_hook.id}")).status_code == team_hook
    assert (await client.get(f"/webhooks/{world.operator_hook.id}")).status_code == operator_hook
    if email == "admin@fjord.example":
        return
    # Another operator's webhook is never there, whatever is asked of it.
    assert (await client.get(f"/webhooks/{world.fjord_hook.id}")).status_code == 404
    for action in ("", "/test", "/delete", "/secret"):
        assert (await post_form(client, f"/webhooks/{world.fjord_hook.id}{action}")).status_code == 404


async def test_a_refused_action_changes_nothing(world: World, login_as: LoginAs, session: AsyncSession) -> None:
    client = await login_as("admin@fjord.example")
    await post_form(client, f"/webhooks/{world.team_hook.id}/delete")
    await post_form(client, f"/webhooks/{world.team_hook.id}", {"url": "https://evil.example/x", "enabled": "on"})
    webhook = await session.get(Webhook, world.team_hook.id, populate_existing=True)
    assert webhook is not None and webhook.url == "https://hooks.example.com/harbour"
    assert (await session.exec(select(WebhookDelivery))).all() == []


async def test_an_internal_address_is_refused_with_a_reason(world: World, login_as: LoginAs) -> None:
    client = await login_as("owner@harbour.example")
    for url in ("https://10.0.0.7/hook", "https://169.254.169.254/latest", "http://hooks.example.com/x"):
        response = await post_form(
            client, f"/teams/{world.harbour.id}/webhooks", {"url": url, "events": "statement.ready"}
        )
        assert response.status_code == 422
        page = await response.get_data(as_text=True)
        assert "public address" in page or "https://" in page


async def test_add_a_webhook_send_a_test_event_and_read_the_delivery_log(
    app: Quart, world: World, login_as: LoginAs, session: AsyncSession
) -> None:
    client = await login_as("owner@harbour.example")
    async with receiving() as receiver:
        response = await post_form(
            client, f"/teams/{world.harbour.id}/webhooks", {"url": receiver.url, "description": "Fleet system"}
        )
        assert response.status_code == 303
        webhook_id = int(re.search(r"/webhooks/(\d+)", response.headers["Location"]).group(1))  # type: ignore[union-attr]
        page = await (await client.get(response.headers["Location"])).get_data(as_text=True)
        secret = re.search(r'value="(whsec_[^"]+)"', page).group(1)  # type: ignore[union-attr]
        assert "Give its secret to the receiver" in page

        tested = await post_form(client, f"/webhooks/{webhook_id}/test")
        assert tested.status_code == 303
        await eventually(lambda: len(receiver.received) == 1, message="the test event never arrived")
        (request,) = receiver.received
        assert webhooks.verify_signature(secret, request.headers["powerbank-signature"], request.body)
        assert json.loads(request.body)["type"] == "webhook.test"

        async def logged() -> bool:
            rows = await session.exec(
                select(WebhookDelivery)
                .where(WebhookDelivery.webhook_id == webhook_id)
                .execution_options(populate_existing=True)
            )
            return [d.status for d in rows] == [DeliveryStatus.DELIVERED]

        await eventually(logged)
        log = await (await client.get(f"/webhooks/{webhook_id}")).get_data(as_text=True)
        assert "webhook.test" in log and "delivered" in log and "200" in log

        # A new secret signs from now on; turning it off keeps it, deleting it takes it away.
        assert (await post_form(client, f"/webhooks/{webhook_id}/secret")).status_code == 303
        webhook = await session.get(Webhook, webhook_id, populate_existing=True)
        assert webhook is not None and webhook.secret != secret
        off = await post_form(client, f"/webhooks/{webhook_id}", {"url": receiver.url, "events": "statement.ready"})
        assert off.status_code == 303
        webhook = await session.get(Webhook, webhook_id, populate_existing=True)
        assert webhook is not None and not webhook.enabled and webhook.events == "statement.ready"
        assert (await post_form(client, f"/webhooks/{webhook_id}/delete")).status_code == 303
        assert (await client.get(f"/webhooks/{webhook_id}")).status_code == 404


async def test_preferences_of_another_operators_team_cannot_be_saved(
    world: World, login_as: LoginAs, session: AsyncSession
) -> None:
    client = await login_as("admin@fjord.example")
    page = await (await client.get("/account/notifications")).get_data(as_text=True)
    assert "Oslo" in page and "Harbour" not in page
    response = await post_form(client, "/account/notifications", {"team_id": str(world.harbour.id), "kind": "x"})
    assert response.status_code == 404


async def test_the_demo_receiver_checks_signatures(app: Quart, session: AsyncSession, world: World) -> None:
    form = webhooks.WebhookForm("http://127.0.0.1:8000/dev/webhooks/receive", "", "", True)
    webhook = await webhooks.create_webhook(session, SYSTEM, world.nordic.id or 0, world.harbour, form)
    await session.commit()
    client = app.test_client()
    body = b'{"id": "k1", "type": "webhook.test"}'
    signed = {"PowerBank-Signature": webhooks.signature_header(webhook.secret, body), "PowerBank-Event": "webhook.test"}
    assert (await client.post("/dev/webhooks/receive", data=body, headers=signed)).status_code == 204
    forged = {"PowerBank-Signature": webhooks.signature_header("whsec_guess", body)}
    assert (await client.post("/dev/webhooks/receive", data=body, headers=forged)).status_code == 400
    page = await (await client.get("/dev/webhooks")).get_data(as_text=True)
    assert f"valid signature (webhook {webhook.id})" in page and "signature NOT valid" in page
    # Nothing but these two was stored anywhere.
    assert list(await session.exec(select(WebhookDelivery).order_by(col(WebhookDelivery.id)))) == []
