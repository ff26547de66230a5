"""Typed access to what the app holds for pages and the API: the database, the log-in throttle, the API rate limit.

Each is set once on the app (while it is built, or before it serves) and read back by its type;
the keys into ``app.extensions`` stay in this module. What the app holds to reach the chargers
(the OCPP registry, the activation runner, the frame log) is the dispatch gateway's
(``powerbank.dispatch.gateway``), which this layer may not import.
"""

from __future__ import annotations

from typing import Any, Protocol

from quart import (
    Quart,
    current_app,
    g,
)
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import make_sessionmaker
from powerbank.web.throttle import LoginThrottling

_ENGINE = "powerbank.engine"
_SESSIONMAKER = "powerbank.sessionmaker"
_LOGIN_THROTTLE = "powerbank.login_throttle"
_API_RATE_LIMITER = "powerbank.api_rate_limiter"


class RateLimiter(Protocol):
    """What the API needs of its rate limiter (``services.api_tokens.TokenRateLimiter``, or a cluster's shared one)."""

    async def spend(self, token_id: int) -> int:
        """Spend one request of the token; return 0 if allowed, else seconds to wait."""
        ...


def _held(app: Quart | None, key: str, what: str) -> Any:
    holder = app if app is not None else current_app
    try:
        return holder.extensions[key]
    except KeyError:
        # create_app sets each up, except the database: it is opened only while the app serves.
        raise RuntimeError(f"The app holds no {what} (in tests: is this inside app.test_app()?)") from None


def hold_database(app: Quart, engine: AsyncEngine) -> None:
    """Keep the app's database engine and the session factory over it (before the app serves)."""
    app.extensions[_ENGINE] = engine
    app.extensions[_SESSIONMAKER] = make_sessionmaker(engine)


def engine(app: Quart | None = None) -> AsyncEngine:
    """Return the app's database engine (the current app's by default)."""
    found: AsyncEngine = _held(app, _ENGINE, "database engine")
    return found


def sessionmaker(app: Quart | None = None) -> async_sessionmaker[AsyncSession]:
    """Return the app's database session factory (the current app's by default)."""
    found: async_sessionmaker[AsyncSession] = _held(app, _SESSIONMAKER, "database session factory")
    return found


async def db_session() -> AsyncSession:
    """Return the request's database session (opened on first use, closed at teardown)."""
    if "db_session" not in g:
        g.db_session = sessionmaker()()
    session: AsyncSession = g.db_session
    return session


def hold_login_throttle(app: Quart, throttle: LoginThrottling) -> None:
    """Keep the app's log-in throttle (one per process; it counts in memory, or with the other nodes)."""
    app.extensions[_LOGIN_THROTTLE] = throttle


def login_throttle(app: Quart | None = None) -> LoginThrottling:
    """Return the app's log-in throttle (the current app's by default)."""
    found: LoginThrottling = _held(app, _LOGIN_THROTTLE, "log-in throttle")
    return found


def hold_api_rate_limiter(app: Quart, limiter: RateLimiter) -> None:
    """Keep the API's rate limiter (one per process)."""
    app.extensions[_API_RATE_LIMITER] = limiter


def api_rate_limiter(app: Quart | None = None) -> RateLimiter:
    """Return the API's rate limiter (the current app's by default)."""
    found: RateLimiter = _held(app, _API_RATE_LIMITER, "API rate limiter")
    return found
