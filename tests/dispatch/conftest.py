"""Fixtures of the activation tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import make_engine, make_sessionmaker


@pytest.fixture
async def own_session(database_url: str) -> AsyncIterator[AsyncSession]:
    """A session on the test database with no hub serving it (tests that start and stop hubs)."""
    engine = make_engine(database_url)
    async with make_sessionmaker(engine)() as session:
        yield session
    await engine.dispose()
