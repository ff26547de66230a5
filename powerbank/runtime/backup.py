"""`powerbank backup PATH` and `powerbank restore PATH` for a SQLite database.

A backup is taken with SQLite's online backup API in one step: it reads one consistent snapshot of
the database (every transaction committed before it began, none after), while the hub goes on
serving; in WAL mode its chargers' writes are not even held up. It is written next to PATH and
renamed into place once complete and checked, so PATH is never half a backup.

A restore copies a backup over the configured database through the same API (so the database's
write-ahead log is handled, not left stale beside a copied file). It refuses a backup that is not a
PowerBank database, or whose schema revision this code does not know (a newer PowerBank made it),
and refuses to overwrite a database a PowerBank node is serving from (one heart-beat within the
lease) unless forced. A backup at an older revision is restored as it is: `powerbank db upgrade`
then brings it to this code's schema, as after any upgrade.

PostgreSQL is backed up with its own tools (``pg_dump``/``pg_restore``; docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import make_url

from powerbank.db import standalone_session
from powerbank.db.schema import code_heads, unknown_revisions
from powerbank.services.cluster import node_statuses

POSTGRESQL_ADVICE = (
    "PowerBank backs up SQLite databases itself. This database is PostgreSQL: back it up with pg_dump, e.g.\n"
    "  pg_dump --format=custom --file=powerbank.dump 'postgresql://USER@HOST/DBNAME'\n"
    "and restore it with pg_restore (see docs/operations.md)."
)


class BackupError(RuntimeError):
    """The backup or restore cannot be done; the message says why (nothing was changed)."""


@dataclass(frozen=True)
class BackupInfo:
    """What a backup file holds."""

    path: Path
    revisions: frozenset[str]
    size_bytes: int

    @property
    def behind_code(self) -> bool:
        return self.revisions != code_heads()


def sqlite_path(url: str) -> Path:
    """Return the file of a SQLite database URL; BackupError for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise BackupError(POSTGRESQL_ADVICE)
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("An in-memory SQLite database has nothing to back up or restore.")
    return Path(parsed.database)


def _revisions(connection: sqlite3.Connection) -> frozenset[str]:
    try:
        return frozenset(str(row[0]) for row in connection.execute("SELECT version_num FROM alembic_version"))
    except sqlite3.DatabaseError:
        return frozenset()


def _check(connection: sqlite3.Connection, what: str) -> frozenset[str]:
    """Check a database file's integrity and return its schema revision(s)."""
    try:
        verdict = connection.execute("PRAGMA quick_check").fetchone()
    except sqlite3.DatabaseError as error:
        raise BackupError(f"{what} is not a SQLite database ({error}).") from None
    if verdict is None or verdict[0] != "ok":
        raise BackupError(f"{what} is damaged: {verdict[0] if verdict else 'no answer'}.")
    revisions = _revisions(connection)
    if not revisions:
        raise BackupError(f"{what} is not a PowerBank database (it has no schema revision).")
    return revisions


def backup(url: str, destination: Path) -> BackupInfo:
    """Write a consistent copy of the SQLite database at ``url`` to ``destination`` (which must not exist)."""
    source_path = sqlite_path(url)
    if not source_path.exists():
        raise BackupError(f"There is no database at {source_path}.")
    if destination.exists():
        raise BackupError(f"{destination} already exists; choose a new name (a backup never overwrites a file).")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial")
    partial.unlink(missing_ok=True)
    source = sqlite3.connect(source_path, timeout=30)
    try:
        target = sqlite3.connect(partial)
        try:
            # pages=-1: every page in one step, so the copy is one snapshot (several steps would restart
            # whenever the serving hub commits in between).
            source.backup(target, pages=-1)
            target.execute("PRAGMA journal_mode=DELETE")
            revisions = _check(target, "The copy")
        finally:
            target.close()
    finally:
        source.close()
    with open(partial, "rb+") as written:
        os.fsync(written.fileno())
    os.replace(partial, destination)
    return BackupInfo(destination, revisions, destination.stat().st_size)


def inspect_backup(path: Path) -> BackupInfo:
    """Check a backup file and return what it holds; BackupError when it cannot be restored here."""
    if not path.is_file():
        raise BackupError(f"There is no backup file at {path}.")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        revisions = _check(connection, str(path))
    finally:
        connection.close()
    unknown = unknown_revisions(revisions)
    if unknown:
        raise BackupError(
            f"{path} is at schema revision {', '.join(sorted(unknown))}, which this PowerBank does not know: "
            "a newer PowerBank made it. Restore it with that version."
        )
    return BackupInfo(path, revisions, path.stat().st_size)


async def serving_nodes(url: str, lease: timedelta) -> list[str]:
    """Return the nodes that heart-beat on this database within the lease (they serve from it)."""
    async with standalone_session(url) as session:
        with contextlib.suppress(Exception):
            return [node.name for node in await node_statuses(session, lease=lease) if node.state == "alive"]
    return []


def restore(
    backup_path: Path, url: str, *, force: bool = False, lease: timedelta = timedelta(seconds=15)
) -> BackupInfo:
    """Replace the SQLite database at ``url`` with the backup at ``backup_path``."""
    target_path = sqlite_path(url)
    info = inspect_backup(backup_path)
    if target_path.exists() and not force:
        serving = asyncio.run(serving_nodes(url, lease))
        if serving:
            raise BackupError(
                f"The database {target_path} is in use: PowerBank node {', '.join(serving)} serves from it "
                "(it heart-beat within the last "
                f"{int(lease.total_seconds())} s). Stop it first, or pass --force if you are sure nothing serves."
            )
    target_path.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{backup_path}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(target_path, timeout=30)
        try:
            source.backup(target, pages=-1)
            _check(target, "The restored database")
        finally:
            target.close()
    finally:
        source.close()
    return info
