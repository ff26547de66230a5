"""Schema revisions: those this code's migrations know, and the one a database is at."""

from __future__ import annotations

import asyncio
import functools

from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from powerbank.db import make_engine
from powerbank.db.migrate import alembic_config


class UnknownRevisionError(RuntimeError):
    """The database is at a schema revision this code does not know (a newer PowerBank made it)."""

    def __init__(self, revisions: frozenset[str]) -> None:
        self.revisions = revisions
        listed = ", ".join(sorted(revisions))
        super().__init__(
            f"The database is at schema revision {listed}, which this PowerBank does not know: a newer PowerBank "
            "made or upgraded it. Run that newer PowerBank (or restore a backup made at a revision this one "
            "knows). Nothing was changed."
        )


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(""))


def code_heads() -> frozenset[str]:
    """Return the newest revision(s) this code's migrations reach."""
    return frozenset(_scripts().get_heads())


def code_revisions() -> list[str]:
    """Return every revision this code knows, oldest first."""
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


async def database_revisions(connection: AsyncConnection) -> frozenset[str]:
    """Return the revision(s) the database is at (empty: never migrated)."""
    if connection.dialect.name == "sqlite":
        exists = text("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'")
    else:
        exists = text("SELECT count(*) FROM pg_catalog.pg_tables WHERE tablename = 'alembic_version'")
    # Asked first, so a database never migrated is not an error (which would end a PostgreSQL transaction).
    if not (await connection.execute(exists)).scalar():
        return frozenset()
    rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
    return frozenset(str(row[0]) for row in rows)


def unknown_revisions(revisions: frozenset[str]) -> frozenset[str]:
    """Return those of ``revisions`` this code does not know."""
    return revisions - frozenset(code_revisions())


async def revisions_at(url: str) -> frozenset[str]:
    """Return the revision(s) the database at ``url`` is at."""
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            return await database_revisions(connection)
    finally:
        await engine.dispose()


def refuse_unknown_revision(url: str) -> None:
    """Raise UnknownRevisionError when the database is at a revision this code does not know.

    Alembic runs its own event loop, and so does this: call it outside a running one.
    """
    unknown = unknown_revisions(asyncio.run(revisions_at(url)))
    if unknown:
        raise UnknownRevisionError(unknown)
