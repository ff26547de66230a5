"""Database engine, sessions and column types shared by every model."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import SessionTransaction, sessionmaker
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Session, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

logger = logging.getLogger("powerbank.db")

# Stable constraint names, so Alembic migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION


def utcnow() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Store datetimes in UTC and always hand back timezone-aware values.

    SQLite keeps no timezone, so values are normalised to UTC on the way in and
    marked as UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def created_field() -> Any:
    """Return a column that stores when its row was made (UTC)."""
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def make_engine(url: str) -> AsyncEngine:
    """Create the async engine; SQLite gets foreign keys, WAL and a busy timeout."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            # SQLite's own lower() (and so ILIKE) folds ASCII letters only: "SÖDERMALM" would not
            # find "Södermalm". Python's folds every letter, as PostgreSQL's does.
            dbapi_connection.create_function("lower", 1, _lower, deterministic=True)

    return engine


AFTER_COMMIT_KEY = "powerbank.after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run ``callback`` once this session's transaction has committed; a rollback drops it.

    For work outside the database that must follow only a change that was really stored.
    """
    session.info.setdefault(AFTER_COMMIT_KEY, []).append(callback)


def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # A savepoint: the transaction around it may still roll back.
    for callback in session.info.pop(AFTER_COMMIT_KEY, []):
        try:
            callback()
        except Exception:
            logger.exception("work after a commit failed")


def _drop_when_transaction_ends(session: Session, transaction: SessionTransaction) -> None:
    # After a commit the callbacks have run; after a rollback or a close without commit they are
    # dropped, so none waits for a later transaction of the same session.
    if transaction.parent is None:
        session.info.pop(AFTER_COMMIT_KEY, None)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Create the session factory used by requests, OCPP messages and the CLI."""
    sync_maker = sessionmaker(class_=Session)
    event.listen(sync_maker, "after_commit", _run_after_commit)
    event.listen(sync_maker, "after_transaction_end", _drop_when_transaction_ends)
    return async_sessionmaker(engine, class_=AsyncSession, sync_session_class=sync_maker, expire_on_commit=False)


@asynccontextmanager
async def standalone_session(url: str) -> AsyncIterator[AsyncSession]:
    """Open an engine and one session outside the app (CLI commands, scripts)."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()
