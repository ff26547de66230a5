"""Webhook deliveries to a real HTTP receiver on loopback: signed, retried, never lost, sent once per claim."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from quart import Quart
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import (
    DeliveryStatus,
    MailMessage,
    Notification,
    Operator,
    Participation,
    ParticipationState,
    Team,
    User,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)
from powerbank.runtime.webhooks import CONCURRENCY, NotificationWorker, RefusedAddress, post, worker_of
from powerbank.services import notifications, webhooks
from powerbank.services.audit import SYSTEM
from powerbank.web import state
from tests.conftest import Factory
from tests.helpers import eventually, free_port
from tests.runtime.webhook_receiver import Receiver, receiving

pytestmark = pytest.mark.usefixtures("fast_hashing")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


@pytest.fixture
async def worker(app: Quart) -> NotificationWorker:
    """A worker these tests drive step by step (the app's own is stopped), with a short timeout."""
    running = worker_of(app)
    assert running is not None
    running.stop()
    return NotificationWorker(state.sessionmaker(app), replace(running.settings, timeout_s=1.0, disable_after=30))


@pytest.fixture
async def world(factory: Factory) -> tuple[Operator, Team, User]:
    operator = await factory.operator("Nordic")
    team = await factory.team(operator, "Harbour")
    owner = await factory.user(team=team, team_role="owner", email="owner@harbour.example")
    return operator, team, owner


async def add_webhook(session: AsyncSession, operator: Operator, team: Team | None, url: str, **kw: object) -> Webhook:
    form = webhooks.WebhookForm(url, "test receiver", str(kw.get("events", "")), True)
    webhook = await webhooks.create_webhook(session, SYSTEM, operator.id or 0, team, form)
    await session.commit()
    return webhook


async def deliveries(session: AsyncSession) -> list[WebhookDelivery]:
    return list(
        await session.exec(
            select(WebhookDelivery).order_by(col(WebhookDelivery.id)).execution_options(populate_existing=True)
        )
    )


async def attempts(session: AsyncSession) -> list[WebhookAttempt]:
    return list(await session.exec(select(WebhookAttempt).order_by(col(WebhookAttempt.id))))


async def statement_ready(session: AsyncSession, operator: Operator, team: Team, month: str = "2026-11") -> None:
    await notifications.notify_statement_ready(
        session, operator_id=operator.id or 0, team_id=team.id or 0, month=month, amount="120.50", currency="DKK"
    )
    await session.commit()


async def test_an_event_reaches_the_receiver_signed_with_its_idempotency_key(
    session: AsyncSession, world: tuple[Operator, Team, User], receiver: Receiver, worker: NotificationWorker
) -> None:
    operator, team, _owner = world
    webhook = await add_webhook(session, operator, team, receiver.url)
    await statement_ready(session, operator, team)

    assert await worker.tell_all() == 1
    assert await worker.deliver_due() == 1

    (request,) = receiver.received
    assert request.path == "/hooks/powerbank"
    body = json.loads(request.body)
    assert body["type"] == "statement.ready" and body["team"] == {"id": team.id, "name": "Harbour"}
    assert body["operator"]["name"] == "Nordic"
    assert body["data"] == {"month": "2026-11", "amount": "120.50", "currency": "DKK", "url": None}
    assert request.headers["idempotency-key"] == body["id"]
    assert request.headers["powerbank-event"] == "statement.ready"
    assert request.headers["content-type"] == "application/json"
    signature = request.headers["powerbank-signature"]
    assert signature.startswith("t=") and ",v1=" in signature
    # A receiver holding the secret accepts it; a changed body, another secret or an old timestamp are refused.
    assert webhooks.verify_signature(webhook.secret, signature, request.body)
    assert not webhooks.verify_signature(webhook.secret, signature, request.body.replace(b"120.50", b"999.99"))
    assert not webhooks.verify_signature("whsec_other", signature, request.body)
    timestamp = int(signature.split(",")[0][2:])
    assert not webhooks.verify_signature(webhook.secret, signature, request.body, now=timestamp + 301)

    (delivery,) = await deliveries(session)
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.last_status_code == 200 and delivery.attempts == 1
    (attempt,) = await attempts(session)
    assert attempt.status_code == 200 and attempt.error == ""
    # Told once: another look tells nothing more.
    assert await worker.tell_all() == 0 and await worker.deliver_due() == 0


async def test_a_team_webhook_gets_its_own_team_only_and_an_operator_webhook_every_team(
    session: AsyncSession, factory: Factory, world: tuple[Operator, Team, User], worker: NotificationWorker
) -> None:
    operator, team, _owner = world
    other_team = await factory.team(operator, "Airport")
    async with receiving() as team_receiver, receiving() as operator_receiver:
        await add_webhook(session, operator, team, team_receiver.url)
        await add_webhook(session, operator, None, operator_receiver.url)
        await statement_ready(session, operator, team)
        await statement_ready(session, operator, other_team)
        await worker.tell_all()
        await worker.deliver_due()
        assert [json.loads(r.body)["team"]["name"] for r in team_receiver.received] == ["Harbour"]
        assert sorted(json.loads(r.body)["team"]["name"] for r in operator_receiver.received) == ["Airport", "Harbour"]


async def test_a_webhook_gets_only_the_events_it_chose(
    session: AsyncSession, world: tuple[Operator, Team, User], receiver: Receiver, worker: NotificationWorker
) -> None:
    operator, team, _owner = world
    await add_webhook(session, operator, team, receiver.url, events=notifications.ACTIVATION_STARTED)
    await statement_ready(session, operator, team)
    await worker.tell_all()
    assert await worker.deliver_due() == 0 and receiver.received == []


async def test_a_500_is_retried_with_doubling_pauses_with_the_same_key_until_delivered(
    session: AsyncSession, world: tuple[Operator, Team, User], receiver: Receiver, worker: NotificationWorker
) -> None:
    operator, team, _owner = world
    await add_webhook(session, operator, team, receiver.url)
    await statement_ready(session, operator, team)
    receiver.script = [500, 503]
    await worker.tell_all()
    start = utcnow()

    assert await worker.deliver_due(now=start) == 0
    (delivery,) = await deliveries(session)
    assert delivery.status == DeliveryStatus.PENDING and delivery.last_status_code == 500
    assert delivery.next_attempt_at == start + timedelta(seconds=30)
    # Not due yet: nothing is sent.
    assert await worker.deliver_due(now=start + timedelta(seconds=29)) == 0
    assert len(receiver.received) == 1

    second = start + timedelta(seconds=30)
    assert await worker.deliver_due(now=second) == 0
    (delivery,) = await deliveries(session)
    assert delivery.last_status_code == 503 and delivery.next_attempt_at == second + timedelta(seconds=60)

    assert await worker.deliver_due(now=second + timedelta(seconds=60)) == 1
    (delivery,) = await deliveries(session)
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 3
    assert [a.status_code for a in await attempts(session)] == [500, 503, 200]
    assert receiver.bodies_by_key() == {delivery.idempotency_key: 3}
    assert len({r.body for r in receiver.received}) == 1


async def test_a_receiver_that_does_not_answer_times_out_and_is_retried(
    session: AsyncSession, world: tuple[Operator, Team, User], receiver: Receiver, worker: NotificationWorker
) -> None:
    operator, team, _owner = world
    await add_webhook(session, operator, team, receiver.url)
    await statement_ready(session, operator, team)
    receiver.script = ["hang"]
    await worker.tell_all()
    start = utcnow()
    assert await worker.deliver_due(now=start) == 0
    (delivery,) = await deliveries(session)
    assert delivery.status == DeliveryStatus.PENDING and delivery.last_status_code is None
    assert "no response within 1 s" in delivery.last_error
    assert await worker.deliver_due(now=start + timedelta(seconds=30)) == 1
    assert [a.status_code for a in await attempts(session)] == [None, 200]


async def test_a_redirect_is_not_followed(
    session: AsyncSession, world: tuple[Operator, Team, User], receiver: Receiver, worker: NotificationWorker
) -> None:
    operator, team, _owner = world
    await add_webhook(session, operator, team, receiver.url)
    await statement_ready(session, operator, team)
    receiver.script = ["redirect"]
    await worker.tell_all()
    assert await worker.deliver_due() == 0
    (delivery,) = await deliveries(session)
    assert delivery.last_status_code == 302 and delivery.status == DeliveryStatus.PENDING
    assert len(receiver.received) == 1


async def test_a_delivery_cut_off_by_a_restart_is_sent_again_once_with_the_same_key(
    app: Quart,
    session: AsyncSession,
    world: tuple[Operator, Team, User],
    receiver: Receiver,
    worker: NotificationWorker,
) -> None:
    operator, team, _owner = world
    await add_webhook(session, operator, team, receiver.url)
    await statement_ready(session, operator, team)
    await worker.tell_all()
    receiver.script = ["hang"]
    patient = NotificationWorker(state.sessionmaker(app), replace(worker.settings, timeout_s=60))
    sending = asyncio.create_task(patient.deliver_due())
    await eventually(lambda: len(receiver.received) == 1, message="the delivery never reached the receiver")
    # The node stops mid-delivery: nothing was recorded.
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    (delivery,) = await deliveries(session)
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 0

    restarted = NotificationWorker(state.sessionmaker(app), worker.settings)
    # Its claim still holds: no other worker sends it meanwhile.
    assert await restarted.deliver_due() == 0 and len(receiver.received) == 1
    # Once the claim ran out it is sent again, with the same key, and only once.
    later = utcnow() + webhooks.CLAIM_FOR + timedelta(seconds=1)
    assert await restarted.deliver_due(now=later) == 1
    assert await restarted.deliver_due(now=later + timedelta(hours=2)) == 0
    assert receiver.bodies_by_key() == {delivery.idempotency_key: 2}
    (delivery,) = await deliveries(session)
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 1


async def test_two_workers_send_each_delivery_once_and_tell_each_event_once(
    app: Quart,
    session: AsyncSession,
    world: tuple[Operator, Team, User],
    receiver: Receiver,
    worker: NotificationWorker,
) -> None:
    operator, team, _owner = world
    await add_webhook(session, operator, team, receiver.url)
    for month in range(1, 11):
        await statement_ready(session, operator, team, f"2026-{month:02d}")
    other = NotificationWorker(state.sessionmaker(app), worker.settings)
    told = await asyncio.gather(worker.tell_all(), other.tell_all())
    assert sum(told) == 10
    assert len(await deliveries(session)) == 10
    await asyncio.gather(worker.deliver_due(), other.deliver_due())
    counts = receiver.bodies_by_key()
    assert len(counts) == 10 and set(counts.values()) == {1}


async def test_a_webhook_failing_again_and_again_is_disabled_and_its_owners_told(
    app: Quart,
    session: AsyncSession,
    world: tuple[Operator, Team, User],
    receiver: Receiver,
    worker: NotificationWorker,
) -> None:
    operator, team, owner = world
    webhook = await add_webhook(session, operator, team, receiver.url)
    receiver.then = 500
    strict = NotificationWorker(state.sessionmaker(app), replace(worker.settings, disable_after=3))
    for month in ("2026-09", "2026-10"):
        await statement_ready(session, operator, team, month)
    await strict.tell_all()
    start = utcnow()
    await strict.deliver_due(now=start)  # two failures
    # Both are due again and sent at once: the third failure disables it (the fourth was under way).
    await strict.deliver_due(now=start + timedelta(seconds=30))
    await session.refresh(webhook)
    assert not webhook.enabled and "3 failed attempts in a row" in webhook.disabled_reason
    assert {d.status for d in await deliveries(session)} == {DeliveryStatus.FAILED}
    assert len(receiver.received) == 4
    notices = list(await session.exec(select(MailMessage).where(col(MailMessage.subject).contains("disabled"))))
    assert [m.to_address for m in notices] == [owner.email]
    assert receiver.url in notices[0].body
    # Events after that are not sent to it.
    await statement_ready(session, operator, team, "2026-11")
    await strict.tell_all()
    assert await strict.deliver_due(now=start + timedelta(hours=3)) == 0 and len(receiver.received) == 4


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.example.com/powerbank", True),
        ("https://hooks.example.com:8443/p?x=1", True),
        ("http://hooks.example.com/powerbank", False),
        ("https://user:pw@hooks.example.com/", False),
        ("https://10.0.0.5/hook", False),
        ("https://192.168.1.1/hook", False),
        ("https://169.254.169.254/latest/meta-data", False),
        ("https://[::1]/hook", False),
        ("https://127.0.0.1/hook", False),
        ("https://localhost/hook", False),
        ("https://100.64.0.1/hook", False),
        ("https://[::ffff:10.0.0.1]/hook", False),
        ("ftp://hooks.example.com/", False),
        ("https://hooks.example.com/a b", False),
        ("", False),
    ],
)
def test_only_public_https_urls_are_accepted_outside_demo_and_tests(url: str, allowed: bool) -> None:
    try:
        webhooks.clean_url(url, allow_loopback=False)
    except ValueError:
        assert not allowed
    else:
        assert allowed


def test_loopback_over_http_is_accepted_only_when_allowed() -> None:
    assert webhooks.clean_url("http://127.0.0.1:8000/dev/webhooks/receive", allow_loopback=True)
    with pytest.raises(ValueError, match="https"):
        webhooks.clean_url("http://10.1.2.3/hook", allow_loopback=True)


async def test_a_name_that_resolves_to_an_internal_address_is_not_connected_to(receiver: Receiver) -> None:
    # "localhost" passes no URL check outside demo, but a public-looking name could resolve to it just
    # the same: the address is checked when it is resolved, before connecting.
    url = f"https://localhost:{receiver.port}/hooks/powerbank"
    with pytest.raises(RefusedAddress):
        await post(url, b"{}", [], timeout_s=2, allow_loopback=False)
    assert receiver.received == []


def self_signed(directory: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1 (trusted by nobody) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_a_receiver_whose_certificate_is_not_trusted_gets_nothing(tmp_path: Path) -> None:
    cert_path, key_path = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    receiver = Receiver(free_port())
    server = await asyncio.start_server(receiver._handle, "127.0.0.1", receiver.port, ssl=context)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await post(f"https://127.0.0.1:{receiver.port}/hook", b"{}", [], timeout_s=5, allow_loopback=True)
    finally:
        server.close()
        await server.wait_closed()
    assert receiver.received == []


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        # NAT64 (RFC 6052): a gateway forwards to the IPv4 address in the last 32 bits.
        ("64:ff9b::5db8:d822", True),
        ("64:ff9b::a9fe:a9fe", False),
        ("64:ff9b::a00:1", False),
        ("64:ff9b::7f00:1", False),
        # Local-use NAT64 (RFC 8215): a network's own translator, to anything.
        ("64:ff9b:1::a00:1", False),
        # 6to4: the IPv4 address in bits 16-48.
        ("2002:5db8:d822::1", True),
        ("2002:a9fe:a9fe::1", False),
        ("2002:7f00:1::1", False),
        # Deprecated IPv4-compatible, IPv4-translated (SIIT) and site-local addresses.
        ("::a9fe:a9fe", False),
        ("::ffff:0:a00:1", False),
        ("fec0::1", False),
    ],
)
def test_ipv6_addresses_that_carry_an_internal_ipv4_address_are_refused(address: str, allowed: bool) -> None:
    assert webhooks.address_allowed(address, allow_loopback=False) is allowed
    url = f"https://[{address}]/hook" if ":" in address else f"https://{address}/hook"
    try:
        webhooks.clean_url(url, allow_loopback=False)
    except ValueError:
        assert not allowed
    else:
        assert allowed


async def test_a_refused_address_is_not_told_to_the_webhooks_owner(receiver: Receiver) -> None:
    # The error is stored with the attempt and shown on the webhook's page: naming the addresses a
    # host name resolves to would let anyone who may add a webhook map the hub's internal names.
    with pytest.raises(RefusedAddress) as refused:
        await post(f"https://localhost:{receiver.port}/hook", b"{}", [], timeout_s=2, allow_loopback=False)
    assert "127.0.0.1" not in str(refused.value) and "::1" not in str(refused.value)
    assert receiver.received == []


async def test_the_system_trust_store_is_loaded_once_not_on_the_event_loop_per_delivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Loading the system's CAs takes tens of milliseconds, during which no charger is served.
    made: list[ssl.SSLContext] = []
    original = ssl.create_default_context

    def counted(*args: object, **kwargs: object) -> ssl.SSLContext:
        made.append(original(*args, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    cert_path, key_path = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    receiver = Receiver(free_port())
    server = await asyncio.start_server(receiver._handle, "127.0.0.1", receiver.port, ssl=context)
    try:
        for _attempt in range(3):
            with pytest.raises(ssl.SSLCertVerificationError):
                await post(f"https://127.0.0.1:{receiver.port}/hook", b"{}", [], timeout_s=5, allow_loopback=True)
    finally:
        server.close()
        await server.wait_closed()
    assert len(made) <= 1


async def test_chargers_offline_while_the_hub_was_down_are_not_told_of_as_it_starts(
    worker: NotificationWorker, session: AsyncSession, factory: Factory, world: tuple[Operator, Team, User]
) -> None:
    # After twenty minutes of maintenance every charger was last seen twenty minutes ago, and most are
    # reconnecting: only one still offline once the hub has watched for the threshold is told of.
    _operator, team, _owner = world
    now = utcnow()
    gone = await factory.charge_point(team, name="Quay 1", online=False, last_seen_at=now - timedelta(minutes=20))
    session.add(
        Participation(
            charge_point_id=gone.id or 0,
            version=1,
            state=ParticipationState.SIGNED_UP,
            since=now,
            source="bulk",
            reason="",
        )
    )
    await session.commit()
    started = NotificationWorker(worker._sessions, replace(worker.settings, offline_after=timedelta(minutes=15)))
    await started.look_for_events(now)
    offline = select(Notification).where(Notification.kind == notifications.CHARGER_OFFLINE)
    assert (await session.exec(offline)).all() == []
    await started.look_for_events(now + timedelta(minutes=16))
    assert len((await session.exec(offline)).all()) == 1


def test_an_international_url_is_stored_as_the_ascii_url_that_is_sent() -> None:
    # HTTP sends the host and the path in ASCII: kept as typed, such a webhook could never be delivered.
    cleaned = webhooks.clean_url("https://bücher.example/hooks/ü?q=é", allow_loopback=False)
    assert cleaned == "https://xn--bcher-kva.example/hooks/%C3%BC?q=%C3%A9"
    assert webhooks.clean_url("https://BÜCHER.example:8443/", allow_loopback=False) == (
        "https://xn--bcher-kva.example:8443/"
    )
    with pytest.raises(ValueError, match="500"):
        webhooks.clean_url("https://hooks.example.com/" + "ü" * 100, allow_loopback=False)


async def test_a_webhook_with_a_non_ascii_path_is_delivered(receiver: Receiver) -> None:
    url = webhooks.clean_url(f"http://127.0.0.1:{receiver.port}/hooks/ü", allow_loopback=True)
    status, _start = await post(url, b"{}", [], timeout_s=5, allow_loopback=True)
    assert 200 <= status < 300 and len(receiver.received) == 1


async def test_a_claim_outlasts_the_attempts_the_worker_makes_under_it(
    worker: NotificationWorker,
    session: AsyncSession,
    world: tuple[Operator, Team, User],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With a long timeout, a delivery waiting for a free slot behind slow ones must still be this
    # worker's when it is sent, or another node claims and sends it too.
    operator, team, _owner = world
    webhook = await add_webhook(session, operator, team, receiver.url)
    for _n in range(12):
        webhooks.queue_delivery(session, webhook, notifications.WEBHOOK_TEST, operator, team, {})
    await session.commit()
    slow = NotificationWorker(worker._sessions, replace(worker.settings, timeout_s=300.0))
    start = utcnow()
    batches: list[list[WebhookDelivery]] = []
    claim_due = webhooks.claim_due

    async def claimed(*args: Any, **kwargs: Any) -> list[WebhookDelivery]:
        batches.append(await claim_due(*args, **kwargs))
        return batches[-1]

    monkeypatch.setattr(webhooks, "claim_due", claimed)
    assert await slow.deliver_due(now=start) == 12
    for batch in [b for b in batches if b]:
        waves = -(-len(batch) // CONCURRENCY)
        assert all(d.next_attempt_at - start >= timedelta(seconds=300 * waves) for d in batch)


async def test_a_failed_delivery_is_logged_without_the_urls_path_or_query(
    session: AsyncSession,
    world: tuple[Operator, Team, User],
    receiver: Receiver,
    worker: NotificationWorker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Many receivers take their credential in the URL (a chat's incoming webhook): it stays out of logs.
    operator, team, _owner = world
    url = f"http://127.0.0.1:{receiver.port}/services/T000/B000/s3cr3tpath?token=s3cr3tquery"
    await add_webhook(session, operator, team, url)
    await statement_ready(session, operator, team)
    receiver.script = [500]
    await worker.tell_all()
    with caplog.at_level("INFO", logger="powerbank"):
        assert await worker.deliver_due() == 0
    assert "failed" in caplog.text and "127.0.0.1" in caplog.text
    assert "s3cr3t" not in caplog.text
