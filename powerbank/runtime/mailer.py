"""The mailer: delivers the mail outbox through SMTP, in the background of the serving process.

It wakes when a commit queued mail (``services.mail.on_mail_queued``) and at least every
``POLL_S`` seconds for retries; it never runs inside a request, so a slow or unreachable mail
server delays no page and no charger. Each message is claimed before it is sent, so nodes sharing
one database send it once. Without an SMTP server, in demo and development mode, messages are
written to the log and kept readable in the development mailbox (/dev/mail).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.config import mail_sink
from powerbank.models import MailMessage
from powerbank.services import mail

logger = logging.getLogger("powerbank.mail")

POLL_S = 15.0
SEND_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SmtpSettings:
    """Where mail goes: an SMTP server, or (host None) the development mailbox."""

    host: str | None
    port: int
    username: str | None
    password: str | None
    security: str
    sender: str

    @classmethod
    def from_config(cls, config: Any) -> SmtpSettings:
        return cls(
            host=None if mail_sink(config) else config.get("SMTP_HOST"),
            port=int(config.get("SMTP_PORT") or 587),
            username=config.get("SMTP_USERNAME") or None,
            password=config.get("SMTP_PASSWORD") or None,
            security=str(config.get("SMTP_SECURITY") or "starttls"),
            sender=str(config.get("MAIL_FROM")),
        )


def email_of(message: MailMessage, sender: str) -> EmailMessage:
    """Return the email to send for an outbox message."""
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.to_address
    email["Subject"] = message.subject
    email["Message-ID"] = f"<powerbank-mail-{message.id}@{sender.rpartition('@')[2].strip('>') or 'localhost'}>"
    email.set_content(message.body)
    return email


class Mailer:
    """Sends due outbox messages until stopped."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: SmtpSettings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()

    def wake(self) -> None:
        """Look for due mail now (called after a commit that queued some)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        """Send due mail, then wait to be woken (or for the next retry), until stopped."""
        while not self._stop.is_set():
            self._wake.clear()
            try:
                await self.send_due()
            except Exception:
                logger.exception("the mailer could not read the outbox; trying again shortly")
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            except TimeoutError:
                pass

    async def send_due(self) -> int:
        """Send every message due now; return how many were delivered."""
        delivered = 0
        while True:
            async with self._sessions() as session:
                claimed = await mail.claim_due(session)
            if not claimed:
                return delivered
            for message in claimed:
                delivered += await self._send_one(message)
            if self._stop.is_set():
                return delivered

    async def _send_one(self, message: MailMessage) -> int:
        settings = self._settings
        try:
            if settings.host is None:
                logger.info(
                    "development mailbox: mail to %s: %s\n%s", message.to_address, message.subject, message.body
                )
            else:
                await aiosmtplib.send(
                    email_of(message, settings.sender),
                    hostname=settings.host,
                    port=settings.port,
                    username=settings.username,
                    password=settings.password,
                    use_tls=settings.security == "tls",
                    start_tls=True if settings.security == "starttls" else False,
                    timeout=SEND_TIMEOUT_S,
                )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            logger.warning("mail %s to %s not sent: %s", message.id, message.to_address, exc)
            async with self._sessions() as session:
                await mail.mark_failed(session, message.id or 0, f"{type(exc).__name__}: {exc}")
            return 0
        async with self._sessions() as session:
            await mail.mark_sent(session, message.id or 0, keep_body=settings.host is None)
        return 1


_MAILER = "powerbank.mailer"


def mailer_of(app: Any) -> Mailer | None:
    """Return the app's mailer while it serves (None when it cannot send email)."""
    found: Mailer | None = app.extensions.get(_MAILER)
    return found


def init_app(app: Any) -> None:
    """Run a mailer while the app serves, if it can send email."""
    from powerbank.config import can_send_mail
    from powerbank.web import state

    running: list[tuple[asyncio.Task[None], Any]] = []

    @app.before_serving
    async def start_mailer() -> None:
        if not can_send_mail(app.config):
            return
        mailer = Mailer(state.sessionmaker(app), SmtpSettings.from_config(app.config))
        app.extensions[_MAILER] = mailer
        running.append((asyncio.create_task(mailer.run(), name="powerbank-mailer"), mail.on_mail_queued(mailer.wake)))

    @app.after_serving
    async def stop_mailer() -> None:
        mailer = app.extensions.pop(_MAILER, None)
        if mailer is None:
            return
        mailer.stop()
        for task, unsubscribe in running:
            unsubscribe()
            await task
        running.clear()
