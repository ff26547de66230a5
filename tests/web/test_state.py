"""What the app holds for pages and the API, reached by type: the database, the log-in throttle, the rate limit."""

from __future__ import annotations

import pytest
from quart import Quart
from sqlmodel import select

from powerbank import create_app
from powerbank.services.api_tokens import TokenRateLimiter
from powerbank.web import state
from powerbank.web.throttle import LoginThrottle, SharedLoginThrottle
from tests.helpers import TEST_CONFIG


async def test_the_database_is_open_only_while_the_app_serves(database_url: str) -> None:
    app = create_app({**TEST_CONFIG, "DATABASE_URL": database_url})
    with pytest.raises(RuntimeError, match="no database session factory"):
        state.sessionmaker(app)
    async with app.test_app():
        async with state.sessionmaker(app)() as session:
            assert (await session.exec(select(1))).one() == 1
        assert state.sessionmaker(app).kw["bind"] is state.engine(app)


async def test_the_app_is_built_with_its_throttle_and_rate_limiter(database_url: str) -> None:
    app = create_app({**TEST_CONFIG, "DATABASE_URL": database_url, "API_RATE_LIMIT": 2})
    throttle = state.login_throttle(app)
    # In memory on a lone SQLite node; counted with the other nodes on PostgreSQL.
    assert isinstance(throttle, LoginThrottle if database_url.startswith("sqlite") else SharedLoginThrottle)
    assert isinstance(throttle, LoginThrottle | SharedLoginThrottle)
    assert throttle.max_failures == app.config["LOGIN_MAX_FAILURES"]
    async with app.test_app():
        limiter = state.api_rate_limiter(app)
        assert [await limiter.spend(7), await limiter.spend(7), await limiter.spend(7) > 0] == [0, 0, True]


async def test_a_request_reads_what_its_app_holds(app: Quart) -> None:
    limiter = TokenRateLimiter(1, 60)
    state.hold_api_rate_limiter(app, limiter)
    async with app.test_request_context("/"):
        assert state.api_rate_limiter() is limiter
        assert state.login_throttle() is state.login_throttle(app)
