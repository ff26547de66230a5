"""The notification worker: tells stored events (emails, webhook deliveries) and sends webhook deliveries.

It runs in the background of the serving process, never inside a request or an OCPP message: it
wakes when a commit stored an event or queued a delivery, and at least every ``POLL_S`` seconds for
retries and for chargers offline too long. Telling an event and sending a delivery are claimed in the
database (``services.webhooks``), so nodes sharing PostgreSQL tell each event once and send each
delivery once at a time.

Receivers are not trusted: the host name is resolved here and every address it resolves to must be
allowed (public; loopback only in demo, development and tests), and the connection goes to the
address that was checked. Each attempt has one overall timeout, redirects are not followed (a 3xx
is a failure), and at most ``MAX_RESPONSE_BYTES`` of the response are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import h11
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import Webhook, WebhookDelivery
from powerbank.services import notifications, webhooks

logger = logging.getLogger("powerbank.notifications")

POLL_S = 15.0
# Chargers offline too long, and activations whose chargers were judged, are looked for this often.
OFFLINE_CHECK_S = 60.0
MAX_RESPONSE_BYTES = 16 * 1024
# Deliveries sent at once by one worker.
CONCURRENCY = 8
USER_AGENT = "PowerBank-Webhooks/1"


class RefusedAddress(Exception):
    """The webhook's host resolves to an address PowerBank does not send to."""


@dataclass(frozen=True)
class WorkerSettings:
    """How the worker tells and sends."""

    # Links in emails start with this (POWERBANK_PUBLIC_URL, or make run's address in demo mode).
    base_url: str
    send_email: bool
    allow_loopback: bool
    timeout_s: float
    disable_after: int
    # None: chargers offline are not looked for.
    offline_after: timedelta | None

    @classmethod
    def from_config(cls, config: Any) -> WorkerSettings:
        from powerbank.config import can_send_mail, webhooks_may_use_loopback

        offline_s = config.get("NOTIFY_OFFLINE_AFTER_S")
        return cls(
            base_url=str(config.get("PUBLIC_URL") or "http://127.0.0.1:8000/"),
            send_email=can_send_mail(config),
            allow_loopback=webhooks_may_use_loopback(config),
            timeout_s=float(config.get("WEBHOOK_TIMEOUT_S") or 10),
            disable_after=int(config.get("WEBHOOK_DISABLE_AFTER") or webhooks.DISABLE_AFTER_FAILURES),
            offline_after=timedelta(seconds=float(offline_s)) if offline_s else None,
        )


@functools.cache
def tls_context() -> ssl.SSLContext:
    """Return the TLS context of every delivery (the system's CAs, host names checked).

    Loading the system's CAs takes tens of milliseconds of CPU: it is done once per process (the
    worker does it in a thread before its first look), never on the event loop per delivery.
    """
    return ssl.create_default_context()


async def post(
    url: str, body: bytes, headers: list[tuple[str, str]], *, timeout_s: float, allow_loopback: bool
) -> tuple[int, str]:
    """POST ``body`` to ``url``; return the response's status and the start of its body.

    Raise RefusedAddress, OSError, TimeoutError or h11's errors when no response came.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    async with asyncio.timeout(timeout_s):
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        refused = [a for a in addresses if not webhooks.address_allowed(a, allow_loopback=allow_loopback)]
        if not addresses or refused:
            # The addresses go to the hub's log only: the error is shown to the webhook's owners, who
            # must not learn what internal names resolve to.
            logger.warning("webhook host %s resolves to refused addresses: %s", host, ", ".join(refused))
            raise RefusedAddress(f"{host} resolves to an address PowerBank does not send to")
        context = tls_context() if https else None
        reader, writer = await asyncio.open_connection(
            addresses[0], port, ssl=context, server_hostname=host if https else None
        )
        try:
            connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_BYTES)
            request = h11.Request(
                method="POST",
                target=target,
                headers=[
                    ("Host", parts.netloc.rpartition("@")[2]),
                    ("Content-Length", str(len(body))),
                    ("Connection", "close"),
                    *headers,
                ],
            )
            writer.write(connection.send(request) or b"")
            writer.write(connection.send(h11.Data(data=body)) or b"")
            writer.write(connection.send(h11.EndOfMessage()) or b"")
            await writer.drain()
            status: int | None = None
            start = b""
            read = 0
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    if status is not None and read >= MAX_RESPONSE_BYTES:
                        break
                    connection.receive_data(await reader.read(4096))
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    read += len(event.data)
                    if len(start) < 200:
                        start += bytes(event.data[: 200 - len(start)])
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            if status is None:
                raise h11.RemoteProtocolError("the connection closed before a response")
            return status, start.decode("utf-8", "replace")
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


def delivery_headers(webhook: Webhook, delivery: WebhookDelivery, body: bytes) -> list[tuple[str, str]]:
    """Return the headers of a delivery: its kind, id, idempotency key and signature."""
    return [
        ("Content-Type", "application/json"),
        ("User-Agent", USER_AGENT),
        ("PowerBank-Event", delivery.kind),
        ("PowerBank-Delivery", str(delivery.id)),
        ("Idempotency-Key", delivery.idempotency_key),
        (webhooks.SIGNATURE_HEADER, webhooks.signature_header(webhook.secret, body)),
    ]


class NotificationWorker:
    """Tells events and sends webhook deliveries until stopped."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: WorkerSettings) -> None:
        self._sessions = sessions
        self.settings = settings
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._looked_at = -OFFLINE_CHECK_S
        # Chargers are told of as offline only once this worker has watched for the threshold: after
        # the hub was down, every charger was last seen long ago and most are reconnecting.
        self.started_at = utcnow()

    def wake(self) -> None:
        """Look for work now (called after a commit that stored an event or queued a delivery)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        """Tell and send what is due, then wait to be woken (or for the next look), until stopped."""
        await asyncio.to_thread(tls_context)
        while not self._stop.is_set():
            self._wake.clear()
            try:
                await self.step()
            except Exception:
                logger.exception("the notification worker failed; trying again shortly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    async def step(self) -> None:
        """Look for chargers offline too long and activations judged (at most every OFFLINE_CHECK_S), tell
        events, send deliveries."""
        if time.monotonic() - self._looked_at >= OFFLINE_CHECK_S:
            self._looked_at = time.monotonic()
            await self.look_for_events()
        await self.tell_all()
        await self.deliver_due()

    async def look_for_events(self, now: datetime | None = None) -> None:
        """Store the events that are conditions found by looking (chargers offline too long, activations
        judged), and forget what was told long ago."""
        now = now or utcnow()
        offline_after = self.settings.offline_after
        async with self._sessions() as session:
            await notifications.note_judged_activations(session, now)
            if offline_after is not None and now - self.started_at >= offline_after:
                await notifications.note_offline_chargers(session, offline_after, now)
            await webhooks.prune(session, now)
            await session.commit()

    async def tell_all(self, now: datetime | None = None) -> int:
        """Tell every event not told yet (each in its own transaction); return how many this worker told."""
        told = 0
        # Events that failed in this look: tried again at the next, without holding up the others.
        failed: list[int] = []
        while not self._stop.is_set():
            async with self._sessions() as session:
                ids = await webhooks.untold(session, skip=failed)
            if not ids:
                return told
            for notification_id in ids:
                try:
                    async with self._sessions() as session:
                        if await webhooks.fan_out(
                            session, notification_id, self.settings.base_url, now, email=self.settings.send_email
                        ):
                            told += 1
                        await session.commit()
                except Exception:
                    logger.exception("notification %s could not be told; it stays waiting", notification_id)
                    failed.append(notification_id)
        return told

    async def deliver_due(self, now: datetime | None = None) -> int:
        """Send every delivery due now; return how many were delivered."""
        delivered = 0
        limit = asyncio.Semaphore(CONCURRENCY)

        async def send(delivery: WebhookDelivery) -> int:
            async with limit:
                return await self.send_one(delivery, now)

        while not self._stop.is_set():
            async with self._sessions() as session:
                # No more than are sent at once, each claimed for twice the attempt's timeout: a
                # delivery is never claimed by another worker while this one may still send it.
                claimed = await webhooks.claim_due(
                    session,
                    limit=CONCURRENCY,
                    now=now,
                    claim_for=max(webhooks.CLAIM_FOR, timedelta(seconds=2 * self.settings.timeout_s)),
                )
            if not claimed:
                break
            delivered += sum(await asyncio.gather(*(send(delivery) for delivery in claimed)))
        return delivered

    async def send_one(self, delivery: WebhookDelivery, now: datetime | None = None) -> int:
        """Send one claimed delivery and record the attempt; return 1 if the receiver took it."""
        async with self._sessions() as session:
            webhook = await session.get(Webhook, delivery.webhook_id)
        if webhook is None:
            return 0
        body = delivery.body.encode()
        started = time.monotonic()
        status: int | None = None
        error = ""
        try:
            status, start = await post(
                webhook.url,
                body,
                delivery_headers(webhook, delivery, body),
                timeout_s=self.settings.timeout_s,
                allow_loopback=self.settings.allow_loopback,
            )
            if not 200 <= status < 300:
                error = f"HTTP {status}" + (f": {start[:200]}" if start else "")
        except TimeoutError:
            error = f"no response within {self.settings.timeout_s:g} s"
        except (RefusedAddress, OSError, ssl.SSLError, h11.ProtocolError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        duration_ms = int((time.monotonic() - started) * 1000)
        if error:
            # The host only: a receiver's credential may be in the URL's path or query.
            host = urlsplit(webhook.url).netloc.rpartition("@")[2]
            logger.warning("webhook %s delivery %s to %s failed: %s", webhook.id, delivery.id, host, error)
        async with self._sessions() as session:
            await webhooks.record_attempt(
                session,
                delivery.id or 0,
                status,
                error,
                duration_ms,
                now=now or utcnow(),
                disable_after=self.settings.disable_after,
            )
        return 1 if not error else 0


_WORKER = "powerbank.notification_worker"


def worker_of(app: Any) -> NotificationWorker | None:
    """Return the app's notification worker while it serves."""
    found: NotificationWorker | None = app.extensions.get(_WORKER)
    return found


def init_app(app: Any) -> None:
    """Run a notification worker while the app serves."""
    from powerbank.web import state

    running: list[tuple[asyncio.Task[None], list[Any]]] = []

    @app.before_serving
    async def start_worker() -> None:
        worker = NotificationWorker(state.sessionmaker(app), WorkerSettings.from_config(app.config))
        app.extensions[_WORKER] = worker
        stops = [notifications.on_notification(worker.wake), webhooks.on_delivery_queued(worker.wake)]
        running.append((asyncio.create_task(worker.run(), name="powerbank-notifications"), stops))

    @app.after_serving
    async def stop_worker() -> None:
        worker = app.extensions.pop(_WORKER, None)
        if worker is None:
            return
        worker.stop()
        for task, stops in running:
            for stop in stops:
                stop()
            await task
        running.clear()
