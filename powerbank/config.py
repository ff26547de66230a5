"""Configuration defaults; everything can be set with POWERBANK_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Templates, static files and migrations: beside the package in a checkout; inside it (powerbank/_bundled,
# see setup.py) when installed from a wheel.
_BUNDLED = Path(__file__).resolve().parent / "_bundled"
RESOURCE_ROOT = _BUNDLED if _BUNDLED.is_dir() else PROJECT_ROOT
# The default SQLite database's folder: var/ of the checkout, or of the working directory when installed.
VAR_DIR = PROJECT_ROOT / "var" if RESOURCE_ROOT == PROJECT_ROOT else Path.cwd() / "var"


def database_url() -> str:
    """Return the configured database URL, defaulting to a SQLite file under var/."""
    url = os.environ.get("POWERBANK_DATABASE_URL")
    if url:
        return url
    VAR_DIR.mkdir(exist_ok=True)
    return f"sqlite+aiosqlite:///{VAR_DIR / 'powerbank.db'}"


DEFAULTS: dict[str, object] = {
    "SECRET_KEY": None,
    "DEMO": False,
    "DEV": False,
    "PAGE_SIZE": 50,
    # Failed log-ins allowed per email and per client address within the window, before HTTP 429.
    "LOGIN_MAX_FAILURES": 5,
    "LOGIN_FAILURE_WINDOW_S": 15 * 60,
    # Behind a TLS proxy: the header in which the proxy puts the client's address (e.g. X-Forwarded-For),
    # and how many proxies in a row add to it. None: the address of the connection (never the header).
    "TRUSTED_PROXY_HEADER": None,
    "TRUSTED_PROXY_COUNT": 1,
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    # JSON API: requests each token may make per window, before HTTP 429.
    "API_RATE_LIMIT": 300,
    "API_RATE_WINDOW_S": 60,
    # A token's "last used" time is written at most this often, not on every request.
    "API_TOKEN_LAST_USED_INTERVAL_S": 60,
    # Token-authenticated and never cookie-authenticated, so CSRF tokens do not apply.
    "CSRF_EXEMPT_BLUEPRINTS": ("api",),
    "QUART_AUTH_COOKIE_SAMESITE": "Lax",
    "QUART_AUTH_COOKIE_HTTP_ONLY": True,
    "QUART_AUTH_DURATION": 30 * 24 * 60 * 60,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    # None: Secure unless in demo or development mode (decided by create_app).
    "QUART_AUTH_COOKIE_SECURE": None,
    "SESSION_COOKIE_SECURE": None,
    # The address people and chargers reach PowerBank at, e.g. https://powerbank.example.com behind
    # a TLS proxy; the OCPP URLs shown are made from it. None: the address of each request.
    "PUBLIC_URL": None,
    # The serving process's full garbage collections (see powerbank/runtime/gc_policy.py): at most every
    # GC_FULL_EVERY_S seconds, once its memory grew by GC_FULL_AFTER_GROWTH (0: on the clock alone).
    "GC_FULL_EVERY_S": 600,
    "GC_FULL_AFTER_GROWTH": 0.25,
    # Email (invitations, role notices), sent through this SMTP server. SMTP_SECURITY: "starttls",
    # "tls" (implicit, usually port 465) or "none". Without SMTP_HOST, demo and development mode keep
    # mail in a development mailbox (/dev/mail and the log); otherwise no email can be sent.
    "SMTP_HOST": None,
    "SMTP_PORT": 587,
    "SMTP_USERNAME": None,
    "SMTP_PASSWORD": None,
    "SMTP_SECURITY": "starttls",
    "MAIL_FROM": "PowerBank <powerbank@localhost>",
    # Notifications (docs/notifications.md): a signed-up charger offline this long is told of (0: never);
    # each webhook attempt times out after WEBHOOK_TIMEOUT_S; a webhook whose attempts failed
    # WEBHOOK_DISABLE_AFTER times in a row is disabled. WEBHOOK_ALLOW_LOOPBACK lets webhooks go to
    # http:// and loopback addresses (None: only in demo and development mode).
    "NOTIFY_OFFLINE_AFTER_S": 15 * 60,
    "WEBHOOK_TIMEOUT_S": 10,
    "WEBHOOK_DISABLE_AFTER": 30,
    "WEBHOOK_ALLOW_LOOPBACK": None,
    # This process's name as a node of the installation (the same name after a restart is the same
    # node). None: the host name and process id (`powerbank serve` makes it host:port).
    "NODE_ID": None,
    # Each node heart-beats this often; one not heard from for CLUSTER_LEASE_S is declared dead and its
    # chargers are shown offline.
    "CLUSTER_HEARTBEAT_S": 5,
    "CLUSTER_LEASE_S": 15,
    # /metrics (Prometheus) answers only with this bearer token; None: no /metrics at all (404).
    "METRICS_TOKEN": None,
    # Log lines as "text" (for people) or "json" (one object a line, for a log collector).
    "LOG_FORMAT": "text",
    # OCPP security profiles 2 and 3 (powerbank/ocpp/security.py, docs/security.md). TLS_CERT/TLS_KEY:
    # the hub terminates TLS itself; TLS_CLIENT_CA: client certificates are asked for and verified
    # against it (the operator CA's ca.pem). Behind a TLS proxy instead: the proxy addresses (comma
    # separated addresses or networks) whose X-Forwarded-Proto and TLS_CLIENT_CERT_HEADER (the verified
    # client certificate in PEM, URL-encoded as nginx's $ssl_client_escaped_cert) are believed.
    "TLS_CERT": None,
    "TLS_KEY": None,
    "TLS_CLIENT_CA": None,
    "TLS_CLIENT_CERT_HEADER": None,
    "TLS_PROXY_ADDRESSES": "",
    # The operator CA's directory (`powerbank ca init`); None: var/ca. Its key file is mode 0600.
    "CA_DIR": None,
}

SMTP_SECURITY_CHOICES = ("starttls", "tls", "none")


def ca_directory(config: Mapping[str, object]) -> Path:
    """Return the directory of the operator CA (``CA_DIR``, by default var/ca)."""
    configured = config.get("CA_DIR")
    return Path(str(configured)) if configured else VAR_DIR / "ca"


def mail_sink(config: dict[str, object]) -> bool:
    """Return True when mail stays in the development mailbox (demo or development mode, no SMTP server)."""
    return not config.get("SMTP_HOST") and bool(config.get("DEMO") or config.get("DEV"))


def can_send_mail(config: dict[str, object]) -> bool:
    """Return True when PowerBank can deliver email (an SMTP server, or the development mailbox)."""
    return bool(config.get("SMTP_HOST")) or mail_sink(config)


def webhooks_may_use_loopback(config: dict[str, object]) -> bool:
    """Return True when webhooks may go to loopback addresses over http:// (demo, development, tests)."""
    allowed = config.get("WEBHOOK_ALLOW_LOOPBACK")
    return bool(config.get("DEMO") or config.get("DEV")) if allowed is None else bool(allowed)
