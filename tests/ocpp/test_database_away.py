"""While the database is away, a charger that connects is told to come back later (503), not handed a 500."""

from __future__ import annotations

import pytest
from quart import Quart
from sqlalchemy.engine import make_url
from sqlmodel.ext.asyncio.session import AsyncSession
from websockets.exceptions import InvalidStatus

from tests import postgres
from tests.conftest import Factory
from tests.helpers import eventually
from tests.ocpp.support import raw_socket

pytestmark = [pytest.mark.served, pytest.mark.postgres_only]


async def test_a_charger_connecting_while_the_database_is_away_is_answered_503_then_served(
    app: Quart, factory: Factory, session: AsyncSession, database_url: str
) -> None:
    cp = await factory.charge_point(await factory.team())
    await session.commit()
    name = make_url(database_url).database
    postgres.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        postgres.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        with pytest.raises(InvalidStatus) as refused:
            async with raw_socket(app, cp.identity):
                pass
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == "10"
    finally:
        postgres.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    async def served() -> bool:
        try:
            async with raw_socket(app, cp.identity):
                return True
        except InvalidStatus:
            return False

    await eventually(served, message="the charger is not served once the database is back")
