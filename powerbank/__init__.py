"""PowerBank: sign EV charge points up for grid balancing, and deliver it over OCPP."""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

from quart import Quart, Response, render_template
from quart_auth import QuartAuth
from sqlalchemy.engine import make_url
from werkzeug.exceptions import HTTPException

from powerbank.config import DEFAULTS, RESOURCE_ROOT, SMTP_SECURITY_CHOICES, database_url, mail_sink
from powerbank.db import make_engine
from powerbank.errors import ForbiddenError, NotFoundError
from powerbank.services.api_tokens import TokenRateLimiter
from powerbank.web import init_web, state
from powerbank.web.htmx import add_vary
from powerbank.web.throttle import ClusterCounters, LoginThrottle, SharedLoginThrottle, SharedTokenRateLimiter


class ConfigurationError(RuntimeError):
    """The app cannot start with this configuration."""


def create_app(config_overrides: dict[str, Any] | None = None) -> Quart:
    """Build the PowerBank app: defaults, then POWERBANK_* environment variables, then overrides."""
    app = Quart(
        __name__,
        template_folder=str(RESOURCE_ROOT / "templates"),
        static_folder=str(RESOURCE_ROOT / "static"),
    )
    app.config.update(DEFAULTS)
    app.config["DATABASE_URL"] = None
    app.config.from_prefixed_env("POWERBANK")
    app.config.update(config_overrides or {})
    _check_config(app)

    QuartAuth(app)
    _hold_throttles(app)
    init_web(app)
    _register_blueprints(app)
    _register_error_handlers(app)
    _register_lifecycle(app)
    _register_ocpp(app)
    _register_activations(app)
    _register_metrics(app)
    return app


def _check_config(app: Quart) -> None:
    relaxed = bool(app.config["DEMO"] or app.config["DEV"])
    if not app.config["SECRET_KEY"]:
        if not relaxed:
            raise ConfigurationError(
                "POWERBANK_SECRET_KEY is not set. Set it to a long random value "
                "(or POWERBANK_DEMO=1 / POWERBANK_DEV=1 to try PowerBank locally)."
            )
        app.config["SECRET_KEY"] = secrets.token_urlsafe(32)
    app.config["DATABASE_URL"] = app.config["DATABASE_URL"] or database_url()
    node = str(app.config["NODE_ID"] or f"{socket.gethostname()}-{os.getpid()}")
    if not 0 < len(node) <= 120:
        raise ConfigurationError("POWERBANK_NODE_ID must be 1 to 120 characters.")
    app.config["NODE_ID"] = node
    public_url = app.config["PUBLIC_URL"]
    if public_url:
        parts = urlsplit(str(public_url))
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ConfigurationError(
                f"POWERBANK_PUBLIC_URL must be an http:// or https:// address such as "
                f"https://powerbank.example.com, not {public_url!r}."
            )
    if app.config["SMTP_HOST"] and not public_url:
        raise ConfigurationError(
            "POWERBANK_PUBLIC_URL must be set when POWERBANK_SMTP_HOST is: links in emails are made from it."
        )
    if bool(app.config["TLS_CERT"]) != bool(app.config["TLS_KEY"]):
        raise ConfigurationError(
            "POWERBANK_TLS_CERT and POWERBANK_TLS_KEY go together: set both for the hub to serve TLS, or neither."
        )
    if app.config["TLS_CLIENT_CA"] and not app.config["TLS_CERT"]:
        raise ConfigurationError(
            "POWERBANK_TLS_CLIENT_CA is for the hub's own TLS: set POWERBANK_TLS_CERT and POWERBANK_TLS_KEY too "
            "(behind a TLS proxy, the proxy verifies client certificates: POWERBANK_TLS_CLIENT_CERT_HEADER)."
        )
    if app.config["SMTP_SECURITY"] not in SMTP_SECURITY_CHOICES:
        raise ConfigurationError(
            f"POWERBANK_SMTP_SECURITY must be one of {', '.join(SMTP_SECURITY_CHOICES)}, "
            f"not {app.config['SMTP_SECURITY']!r}."
        )
    # Cookies only travel over HTTPS in production; demo and development run on plain HTTP.
    for setting in ("QUART_AUTH_COOKIE_SECURE", "SESSION_COOKIE_SECURE"):
        if app.config[setting] is None:
            app.config[setting] = not relaxed


def _hold_throttles(app: Quart) -> None:
    """Count failed log-ins and API requests: in memory on a lone SQLite node, with every node on PostgreSQL."""
    max_failures, failure_window_s = int(app.config["LOGIN_MAX_FAILURES"]), float(app.config["LOGIN_FAILURE_WINDOW_S"])
    rate_limit, rate_window_s = int(app.config["API_RATE_LIMIT"]), float(app.config["API_RATE_WINDOW_S"])
    if make_url(app.config["DATABASE_URL"]).get_backend_name() != "postgresql":
        state.hold_login_throttle(app, LoginThrottle(max_failures, failure_window_s))
        state.hold_api_rate_limiter(app, TokenRateLimiter(rate_limit, rate_window_s))
        return
    counters = ClusterCounters(app.config["DATABASE_URL"])
    state.hold_login_throttle(app, SharedLoginThrottle(counters, max_failures, failure_window_s))
    state.hold_api_rate_limiter(app, SharedTokenRateLimiter(counters, rate_limit, rate_window_s))
    app.before_serving(counters.open)
    app.after_serving(counters.close)


def _register_blueprints(app: Quart) -> None:
    import importlib

    from powerbank.routes import (
        account,
        activations,
        admin,
        api,
        api_tokens,
        auth,
        availability,
        charge_points,
        compatibility,
        health,
        home,
        mailbox,
        notifications,
        teams,
    )
    from powerbank.routes import enrollment as powerbank
    from powerbank.routes.api import docs as api_docs

    for module in (auth, account, home, teams, charge_points, admin, powerbank, compatibility, api_tokens, activations):
        app.register_blueprint(module.blueprint)
    app.register_blueprint(availability.blueprint)
    from powerbank.routes import earnings

    app.register_blueprint(earnings.blueprint)
    if mail_sink(app.config):
        app.register_blueprint(mailbox.blueprint)
    app.register_blueprint(notifications.blueprint)
    if app.config["DEMO"] or app.config["DEV"]:
        # The demo's own webhook receiver, called by machines: no CSRF token to check.
        app.config["CSRF_EXEMPT_BLUEPRINTS"] = (*app.config["CSRF_EXEMPT_BLUEPRINTS"], "dev_webhooks")
        app.register_blueprint(notifications.dev_receiver)
    app.register_blueprint(health.blueprint)
    # Each API module adds its routes to the API blueprint when first imported, so before the
    # blueprint is registered; this order is the order of the OpenAPI document and the docs page.
    for resource in ("teams", "charge_points", "enrollment", "activations", "areas", "earnings"):
        importlib.import_module(f"powerbank.routes.api.{resource}")
    app.register_blueprint(api.blueprint)
    app.register_blueprint(api_docs.blueprint)
    api_docs.init_openapi(app)


def _register_error_handlers(app: Quart) -> None:
    async def error_page(status: int, title: str, message: str) -> Response:
        body = await render_template("error.html", status=status, title=title, message=message)
        return add_vary(Response(body, status=status))

    @app.errorhandler(NotFoundError)
    async def not_found(exc: NotFoundError) -> Response:
        return await error_page(404, "Not found", "There is nothing here, or you do not have access to it.")

    @app.errorhandler(ForbiddenError)
    async def forbidden(exc: ForbiddenError) -> Response:
        return await error_page(403, "Not allowed", str(exc))

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        from powerbank.routes import api

        if api.is_api_request():
            return api.http_problem(exc)
        status = exc.code or 500
        if status == 404:
            return await not_found(NotFoundError())
        return await error_page(status, exc.name, exc.description or exc.name)


def _register_lifecycle(app: Quart) -> None:
    @app.before_serving
    async def open_database() -> None:
        state.hold_database(app, make_engine(app.config["DATABASE_URL"]))

    from powerbank.runtime import mailer, webhooks

    # Between the two: the mailer starts once the database is open, and stops before it closes.
    mailer.init_app(app)
    webhooks.init_app(app)

    @app.after_serving
    async def close_database() -> None:
        await state.engine(app).dispose()


def _register_ocpp(app: Quart) -> None:
    from powerbank.ocpp import endpoint
    from powerbank.routes import charger_security, connections

    app.register_blueprint(connections.blueprint)
    app.register_blueprint(charger_security.blueprint)
    endpoint.init_app(app, lambda: state.sessionmaker(app))


def _register_metrics(app: Quart) -> None:
    from powerbank.runtime.logging_setup import install_request_ids
    from powerbank.runtime.metrics import install_metrics

    install_metrics(app)
    install_request_ids(app)


def _register_activations(app: Quart) -> None:
    from powerbank.dispatch import availability, gateway

    gateway.init_app(app, lambda: state.sessionmaker(app))
    availability.init_app(app)
    from powerbank.runtime import earnings

    earnings.init_app(app)
