"""Links that go out by email: made from POWERBANK_PUBLIC_URL, never from a request's Host header."""

from __future__ import annotations

from collections.abc import Callable

from quart import current_app, url_for

from powerbank.config import can_send_mail, mail_sink
from powerbank.web.render import public_url


def _base() -> str:
    # With a real SMTP server PUBLIC_URL is required (create_app checks it): a link made from the
    # Host header of the admin's request could point at any site the request names. The development
    # mailbox only holds mail on this machine.
    configured = current_app.config.get("PUBLIC_URL")
    if configured or mail_sink(current_app.config):
        return public_url()
    raise RuntimeError("POWERBANK_PUBLIC_URL is required to send email")


def invitation_link() -> Callable[[str], str] | None:
    """Return what turns an invitation's secret into its link, or None when no email can be sent."""
    if not can_send_mail(current_app.config):
        return None
    base = _base()
    return lambda token: base + url_for("account.invitation", token=token).lstrip("/")


def login_link() -> str:
    """Return the log-in page's address, for emails."""
    return _base() + url_for("auth.login").lstrip("/") if can_send_mail(current_app.config) else ""
