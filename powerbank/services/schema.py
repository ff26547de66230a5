"""Whether a database's schema is the one this code's migrations make."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db.schema import code_heads, database_revisions, unknown_revisions


@dataclass(frozen=True)
class SchemaState:
    """The database's revision(s) beside the code's newest."""

    database: frozenset[str]
    code: frozenset[str]

    @property
    def current(self) -> bool:
        return self.database == self.code

    @property
    def newer_than_code(self) -> bool:
        return bool(unknown_revisions(self.database))

    def problem(self) -> str | None:
        """Say what is wrong, in a few words (None when the schema is current)."""
        if self.current:
            return None
        if not self.database:
            return "schema: never migrated (run powerbank db upgrade)"
        if self.newer_than_code:
            return "schema: newer than this PowerBank (" + ", ".join(sorted(self.database)) + ")"
        return "schema: not migrated to " + ", ".join(sorted(self.code)) + " (run powerbank db upgrade)"


async def schema_state(session: AsyncSession) -> SchemaState:
    """Read the database's schema revision and compare it with the code's."""
    return SchemaState(await database_revisions(await session.connection()), code_heads())
