"""Events are stored with the change they tell of, once, and told to the people and webhooks that want them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from quart import Quart
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import (
    Activation,
    ActivationState,
    AvailableHour,
    ChargePoint,
    DeliveryVerdict,
    MailMessage,
    Notification,
    Operator,
    Participation,
    ParticipationState,
    Team,
    WebhookDelivery,
)
from powerbank.rules.permissions import load_principal
from powerbank.runtime.webhooks import worker_of
from powerbank.services import earnings, enrollment, notifications, webhooks
from powerbank.services.audit import SYSTEM
from powerbank.services.delivery import Verdict
from powerbank.web import state
from tests.conftest import Factory

pytestmark = pytest.mark.usefixtures("fast_hashing")


@pytest.fixture(autouse=True)
def quiet_worker(app: Quart) -> None:
    """These tests tell events themselves: the app's worker is stopped."""
    worker = worker_of(app)
    assert worker is not None
    worker.stop()


async def stored(session: AsyncSession, kind: str | None = None) -> list[Notification]:
    query = select(Notification).order_by(col(Notification.id)).execution_options(populate_existing=True)
    if kind is not None:
        query = query.where(Notification.kind == kind)
    return list(await session.exec(query))


async def tell(session: AsyncSession) -> None:
    for notification_id in await webhooks.untold(session):
        await webhooks.fan_out(session, notification_id, "https://powerbank.example/")
        await session.commit()


async def mail(session: AsyncSession) -> list[MailMessage]:
    return list(await session.exec(select(MailMessage).order_by(col(MailMessage.id))))


@pytest.fixture
async def harbour(factory: Factory) -> tuple[Operator, Team]:
    operator = await factory.operator("Nordic")
    return operator, await factory.team(operator, "Harbour")


async def test_an_event_of_a_rolled_back_change_is_never_stored(app: Quart, harbour: tuple[Operator, Team]) -> None:
    operator, team = harbour
    async with state.sessionmaker(app)() as session:
        await notifications.notify_statement_ready(
            session, operator_id=operator.id or 0, team_id=team.id or 0, month="2026-11"
        )
        await session.rollback()
        assert await stored(session) == []


async def test_a_statement_is_told_once_per_team_and_month(
    session: AsyncSession, harbour: tuple[Operator, Team]
) -> None:
    operator, team = harbour
    for _ in range(2):
        await notifications.notify_statement_ready(
            session, operator_id=operator.id or 0, team_id=team.id or 0, month="2026-11"
        )
        await session.commit()
    await notifications.notify_statement_ready(
        session, operator_id=operator.id or 0, team_id=team.id or 0, month="2026-12"
    )
    await session.commit()
    assert [json.loads(n.payload)["month"] for n in await stored(session)] == ["2026-11", "2026-12"]


async def test_sign_ups_and_opt_outs_are_told_per_team_with_who_and_how(
    session: AsyncSession, factory: Factory, harbour: tuple[Operator, Team]
) -> None:
    operator, team = harbour
    owner = await factory.user(team=team, team_role="owner", email="owner@harbour.example")
    member = await factory.user(team=team, team_role="member", email="member@harbour.example")
    await factory.user(operator=operator, operator_role="admin", email="op@nordic.example")
    # DK2 charge points are signed up automatically (R6) when they are added.
    charge_points = [await factory.charge_point(team, price_area="DK2", name=f"Quay {n}") for n in (1, 2)]
    await enrollment.reevaluate(session, charge_points)
    await session.commit()
    (signed_up,) = await stored(session, notifications.SIGNED_UP)
    payload = json.loads(signed_up.payload)
    assert signed_up.team_id == team.id and payload["count"] == 2 and payload["source"] == "automatic"
    assert sorted(cp["name"] for cp in payload["charge_points"]) == ["Quay 1", "Quay 2"]

    me = await load_principal(session, owner)
    await enrollment.opt_out(session, me, charge_points[0])
    await session.commit()
    (opted_out,) = await stored(session, notifications.OPTED_OUT)
    assert json.loads(opted_out.payload)["by"] == "owner@harbour.example"

    await tell(session)
    subjects = {(m.to_address, m.subject) for m in await mail(session)}
    # Team Owners and Admins get them by default; Team Members and operator roles choose to.
    assert subjects == {
        ("owner@harbour.example", "2 charge points of Harbour signed up for PowerBank"),
        ("owner@harbour.example", "1 charge point of Harbour opted out of PowerBank"),
    }
    assert all(member.email != m.to_address for m in await mail(session))
    (opt_out_mail,) = [m for m in await mail(session) if "opted out" in m.subject]
    assert (
        "Opted out: Quay 1." in opt_out_mail.body and "By: owner@harbour.example (source: single)" in opt_out_mail.body
    )
    assert "https://powerbank.example/account/notifications" in opt_out_mail.body


async def test_choices_are_per_team_and_kind(
    session: AsyncSession, factory: Factory, harbour: tuple[Operator, Team]
) -> None:
    operator, team = harbour
    airport = await factory.team(operator, "Airport")
    manager = await factory.user(operator=operator, operator_role="manager", email="manager@nordic.example")
    me = await load_principal(session, manager)
    await notifications.save_preferences(session, me, team.id or 0, {notifications.STATEMENT_READY})
    await session.commit()
    for t in (team, airport):
        await notifications.notify_statement_ready(
            session, operator_id=operator.id or 0, team_id=t.id or 0, month="2026-11"
        )
    await session.commit()
    await tell(session)
    assert [m.subject for m in await mail(session)] == ["The PowerBank statement of Harbour for 2026-11 is ready"]
    prefs = {p.team.name: p.chosen for p in await notifications.preferences_of(session, me)}
    assert prefs["Harbour"][notifications.STATEMENT_READY] and not prefs["Harbour"][notifications.ACTIVATION_STARTED]
    assert not prefs["Airport"][notifications.STATEMENT_READY]


async def test_a_charger_offline_too_long_is_told_once_per_time_it_went_offline(
    session: AsyncSession, factory: Factory, harbour: tuple[Operator, Team]
) -> None:
    _operator, team = harbour
    await factory.user(team=team, team_role="admin", email="admin@harbour.example")
    now = utcnow()
    gone = await factory.charge_point(team, name="Quay 1", online=False, last_seen_at=now - timedelta(minutes=20))
    # Offline, but not long; and one that never took part in PowerBank.
    await factory.charge_point(team, name="Quay 2", online=False, last_seen_at=now - timedelta(minutes=5))
    await factory.charge_point(team, name="Quay 3", online=False, last_seen_at=now - timedelta(hours=2))
    charge_points = list(await session.exec(select(ChargePoint).where(ChargePoint.team_id == team.id)))
    for cp in charge_points:
        if cp.name != "Quay 3":
            session.add(
                Participation(
                    charge_point_id=cp.id or 0,
                    version=1,
                    state=ParticipationState.SIGNED_UP,
                    since=now,
                    source="bulk",
                    reason="",
                )
            )
    await session.commit()
    after = timedelta(minutes=15)
    assert await notifications.note_offline_chargers(session, after, now) == 1
    await session.commit()
    assert await notifications.note_offline_chargers(session, after, now + timedelta(minutes=1)) == 0
    await session.commit()
    # Back, and gone again: told again (and Quay 2 is offline long enough now).
    gone.last_seen_at = now + timedelta(minutes=2)
    session.add(gone)
    await session.commit()
    assert await notifications.note_offline_chargers(session, after, now + timedelta(minutes=30)) == 2
    await session.commit()
    await tell(session)
    subjects = sorted(m.subject for m in await mail(session))
    assert subjects == ["Quay 1 (Harbour) is offline", "Quay 1 (Harbour) is offline", "Quay 2 (Harbour) is offline"]


async def test_chargers_left_flagged_by_an_activation_are_told_of(
    session: AsyncSession, factory: Factory, harbour: tuple[Operator, Team]
) -> None:
    operator, team = harbour
    await factory.user(team=team, team_role="owner", email="owner@harbour.example")
    keeps_charging = await factory.charge_point(team, name="Liar", price_area="DK2")
    honest = await factory.charge_point(team, name="Honest", price_area="DK2")
    now = utcnow()
    activations: list[Activation] = []
    for n in range(2):
        at = now - timedelta(hours=2 - n)
        activation = Activation(
            operator_id=operator.id or 0,
            price_area="DK2",
            market="FCR-D up",
            action="pause",
            start_at=at,
            duration_s=60,
            end_at=at + timedelta(seconds=60),
            state=ActivationState.ENDED,
            created_by="test",
            triggered_at=at,
            evidence_kept_at=at + timedelta(minutes=5),
        )
        session.add(activation)
        await session.flush()
        activations.append(activation)
        for cp, verdict in ((keeps_charging, Verdict.NOT_DELIVERED), (honest, Verdict.DELIVERED)):
            session.add(
                DeliveryVerdict(
                    activation_id=activation.id or 0, charge_point_id=cp.id or 0, verdict=verdict, triggered_at=at
                )
            )
        await session.commit()
        assert await notifications.note_judged_activations(session, now) == 1
        await session.commit()
        await tell(session)
    assert await notifications.note_judged_activations(session, now) == 0
    # After the first it was not delivered once (not flagged yet); after the second, twice of two: flagged.
    (email,) = await mail(session)
    assert email.subject == "1 charger of Harbour accepts activations but does not deliver"
    assert "Liar" in email.body and "Honest" not in email.body and f"activation #{activations[1].id}" in email.body


async def test_an_operator_webhook_and_a_team_webhook_get_a_delivery_each_event(
    session: AsyncSession, harbour: tuple[Operator, Team]
) -> None:
    operator, team = harbour
    for owner in (team, None):
        form = webhooks.WebhookForm("https://hooks.example.com/x", "", "", True)
        await webhooks.create_webhook(session, SYSTEM, operator.id or 0, owner, form)
    await session.commit()
    await notifications.notify_statement_ready(
        session, operator_id=operator.id or 0, team_id=team.id or 0, month="2026-11"
    )
    await session.commit()
    await tell(session)
    rows: list[Any] = list(await session.exec(select(WebhookDelivery)))
    assert len(rows) == 2 and len({r.idempotency_key for r in rows}) == 2
    assert all(json.loads(r.body)["id"] == r.idempotency_key for r in rows)


async def test_what_was_told_long_ago_is_forgotten_and_what_waits_is_kept(
    session: AsyncSession, harbour: tuple[Operator, Team]
) -> None:
    operator, team = harbour
    form = webhooks.WebhookForm("https://hooks.example.com/x", "", "", True)
    await webhooks.create_webhook(session, SYSTEM, operator.id or 0, team, form)
    await session.commit()
    for month in ("2026-10", "2026-11"):
        await notifications.notify_statement_ready(
            session, operator_id=operator.id or 0, team_id=team.id or 0, month=month
        )
    await session.commit()
    await tell(session)
    old, new = list(await session.exec(select(WebhookDelivery).order_by(col(WebhookDelivery.id))))
    old.status = "delivered"
    session.add(old)
    await session.commit()
    later = utcnow() + webhooks.KEEP_DELIVERIES_FOR + timedelta(days=1)
    await webhooks.prune(session, later)
    await session.commit()
    assert await stored(session) == []
    # The finished delivery is gone; the one still being retried stays.
    assert [d.id for d in await session.exec(select(WebhookDelivery))] == [new.id]


async def test_a_suspension_is_told_with_its_reason(
    session: AsyncSession, factory: Factory, harbour: tuple[Operator, Team]
) -> None:
    operator, team = harbour
    await factory.user(team=team, team_role="owner", email="owner@harbour.example")
    admin = await factory.user(operator=operator, operator_role="admin", email="op@nordic.example")
    charge_point = await factory.charge_point(team, price_area="DK2", name="Quay 1")
    await enrollment.reevaluate(session, [charge_point])
    await session.commit()
    await enrollment.suspend(session, await load_principal(session, admin), charge_point, "Keeps charging when paused")
    await session.commit()
    (suspended,) = await stored(session, notifications.CHARGER_SUSPENDED)
    (listed,) = json.loads(suspended.payload)["charge_points"]
    assert listed["name"] == "Quay 1" and "Keeps charging when paused" in listed["reason"]
    await tell(session)
    (email,) = [m for m in await mail(session) if "suspended" in m.subject]
    assert (
        email.subject == "1 charger of Harbour suspended from PowerBank" and "Keeps charging when paused" in email.body
    )


async def test_closing_a_month_tells_each_team_its_statement_is_ready_with_what_it_pays(
    session: AsyncSession, factory: Factory, harbour: tuple[Operator, Team]
) -> None:
    operator, team = harbour
    owner = await factory.user(team=team, team_role="owner", email="owner@harbour.example")
    charge_point = await factory.charge_point(team, name="H-1", price_area="DK2")
    hour = datetime(2026, 10, 6, 9, tzinfo=UTC)
    prices = (
        "price_area,market,kind,currency,starts_at,ends_at,price\n"
        f"DK2,FCR-D up,capacity,DKK,{hour.isoformat()},{(hour + timedelta(hours=1)).isoformat()},1000\n"
    )
    now = datetime(2026, 11, 20, tzinfo=UTC)
    await earnings.save_prices(session, SYSTEM, operator.id or 0, earnings.read_price_csv(prices), now)
    session.add(AvailableHour(charge_point_id=charge_point.id or 0, hour=hour, power_w=10_000.0))
    await session.commit()
    await earnings.close_month(session, SYSTEM, operator.id or 0, "2026-10", now)
    await session.commit()

    [ready] = await stored(session, notifications.STATEMENT_READY)
    assert ready.team_id == team.id
    payload = json.loads(ready.payload)
    assert (payload["month"], payload["currency"]) == ("2026-10", "DKK")
    statement = await earnings.statement(session, SYSTEM, team, "2026-10")
    assert payload["amount"] == str(sum(line.amount for line in statement.lines)) != "0.00"
    await tell(session)
    [email] = [m for m in await mail(session) if m.to_address == owner.email]
    assert "statement of Harbour for 2026-10 is ready" in email.subject
    assert f"Read it: https://powerbank.example/teams/{team.id}/earnings?month=2026-10" in email.body
