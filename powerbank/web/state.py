"""Typed access to what the app holds for a request: the database session."""

from __future__ import annotations

from quart import (
    current_app,
    g,
)
from sqlmodel.ext.asyncio.session import AsyncSession


async def db_session() -> AsyncSession:
    """Return the request's database session (opened on first use, closed at teardown)."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["powerbank.sessionmaker"]()
    return g.db_session
