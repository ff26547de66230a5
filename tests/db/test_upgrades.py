"""Upgrades keep data: a database made at each earlier schema revision, with rows in every table, is migrated
to the newest and still holds them; the newest migration can be undone; and `powerbank db upgrade` refuses a
database newer than the code.

The revisions are read from the migrations themselves, so a new migration is tested as soon as it exists.
The rows are made from the schema as it is at that revision (reflected), one or two per table, each
pointing at rows of the tables it references, so nothing here knows what the tables hold.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Column, MetaData, Table, and_, inspect, select, types
from sqlalchemy.engine import Connection, make_url

from powerbank import cli
from powerbank.db import make_engine
from powerbank.db.migrate import alembic_config, upgrade
from powerbank.db.schema import code_heads, code_revisions
from tests import postgres

ROWS_PER_TABLE = 2
Rows = dict[str, list[dict[str, Any]]]


class Databases:
    """Databases of the test's own: SQLite files, or PostgreSQL databases under make test-pg."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.made: list[str] = []

    def fresh(self, copy_of: str | None = None) -> str:
        if postgres.ADMIN_URL:
            name = postgres.fresh_name("upgrade")
            template = make_url(copy_of).database if copy_of else None
            postgres.create_database(name, template=template)
            self.made.append(name)
            return postgres.url_of(name)
        path = self.directory / f"db{len(self.made)}.db"
        self.made.append(str(path))
        if copy_of:
            shutil.copy(copy_of.removeprefix("sqlite+aiosqlite:///"), path)
        return f"sqlite+aiosqlite:///{path}"

    def drop_all(self) -> None:
        if postgres.ADMIN_URL:
            for name in self.made:
                postgres.drop_database(name)


@pytest.fixture
def databases(tmp_path: Path) -> Iterator[Databases]:
    made = Databases(tmp_path)
    yield made
    made.drop_all()


def on(url: str, work: Callable[[Connection], Any]) -> Any:
    """Run ``work`` on a connection to the database, in a transaction that is committed."""

    async def run() -> Any:
        engine = make_engine(url)
        try:
            async with engine.begin() as connection:
                return await connection.run_sync(work)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _allowed_by_checks(column: Column[Any], checks: list[dict[str, Any]]) -> list[str] | None:
    """Return the values a CHECK constraint lists for the column (``col IN ('a', 'b')``), if any."""
    for check in checks:
        sql = str(check.get("sqltext", ""))
        found = re.search(rf"\b{re.escape(column.name)}\b\"?\s+IN\s*\(([^)]*)\)", sql, re.IGNORECASE)
        if found:
            return [value.strip().strip("'") for value in found.group(1).split(",")]
    return None


def _value(table: Table, column: Column[Any], n: int, made: Rows, checks: list[dict[str, Any]], sqlite: bool) -> Any:
    """Return a value the column accepts for the table's row ``n``, or ``...`` to leave it to the database."""
    for key in column.foreign_keys:
        parent = key.column.table.name
        if parent == table.name:
            return None if column.nullable else ...
        return made[parent][n % len(made[parent])][key.column.name]
    primary = list(table.primary_key.columns)
    if primary == [column] and isinstance(column.type, types.Integer):
        # SQLite numbers an INTEGER PRIMARY KEY itself; PostgreSQL when it has a sequence or is an identity.
        if sqlite or column.server_default is not None or column.identity is not None:
            return ...
    allowed = _allowed_by_checks(column, checks)
    kind = column.type
    if isinstance(kind, types.ARRAY):
        return [_value(table, Column(column.name, kind.item_type), n, made, [], sqlite)]
    if isinstance(kind, types.Enum) and kind.enums:
        return kind.enums[0]
    if isinstance(kind, types.Boolean):
        return n % 2 == 0
    if isinstance(kind, types.Integer):
        return int(allowed[n % len(allowed)]) if allowed else 7 + n
    if isinstance(kind, types.Float):
        # Exact in binary and in decimal.
        return 12.5 + n
    if isinstance(kind, types.Numeric):
        return Decimal("12.50") + n
    if isinstance(kind, types.DateTime):
        return datetime(2026, 3, 1, 12, n, tzinfo=UTC)
    if isinstance(kind, types.Date):
        return date(2026, 3, 1 + n)
    if isinstance(kind, types.JSON):
        return {"kept": n}
    if isinstance(kind, types.LargeBinary):
        return bytes([n, 1, 2])
    if isinstance(kind, types.Uuid):
        return uuid.UUID(int=n + 1)
    if isinstance(kind, types.String):
        if allowed:
            return allowed[n % len(allowed)]
        text = f"{table.name[:6]}{column.name[:6]}{n}"
        length = getattr(kind, "length", None)
        return text[-length:] if length else text
    raise AssertionError(f"no test value for {table.name}.{column.name} of type {kind!r}")


def fill(connection: Connection) -> Rows:
    """Insert ``ROWS_PER_TABLE`` rows into every table; return them, with what the database assigned."""
    metadata = MetaData()
    metadata.reflect(connection)
    inspector = inspect(connection)
    made: Rows = {}
    for table in metadata.sorted_tables:
        if table.name == "alembic_version":
            continue
        checks = inspector.get_check_constraints(table.name)
        rows: list[dict[str, Any]] = []
        for n in range(ROWS_PER_TABLE):
            row = {}
            for column in table.columns:
                value = _value(table, column, n, made, checks, connection.dialect.name == "sqlite")
                if value is not ...:
                    row[column.name] = value
            result = connection.execute(table.insert().values(row))
            for column, assigned in zip(table.primary_key.columns, result.inserted_primary_key or (), strict=False):
                row[column.name] = assigned
            rows.append(row)
        made[table.name] = rows
    return made


def read_back(made: Rows) -> Callable[[Connection], dict[str, list[dict[str, Any] | None]]]:
    """Return work that reads each row made, found by its primary key (None: gone)."""

    def work(connection: Connection) -> dict[str, list[dict[str, Any] | None]]:
        metadata = MetaData()
        metadata.reflect(connection)
        found: dict[str, list[dict[str, Any] | None]] = {}
        for name, rows in made.items():
            table = metadata.tables.get(name)
            if table is None:
                continue
            keys = [column.name for column in table.primary_key.columns]
            found[name] = []
            for row in rows:
                if not all(key in row for key in keys):
                    continue
                match = (
                    connection.execute(select(table).where(and_(*(table.c[key] == row[key] for key in keys))))
                    .mappings()
                    .first()
                )
                found[name].append(dict(match) if match is not None else None)
        return found

    return work


def _same(before: Any, after: Any) -> bool:
    if isinstance(before, datetime) and isinstance(after, datetime):
        return before.replace(tzinfo=after.tzinfo or before.tzinfo) == after.replace(tzinfo=after.tzinfo or UTC)
    if isinstance(before, datetime) and isinstance(after, str):
        return after.startswith(before.strftime("%Y-%m-%d %H:%M"))
    if isinstance(before, Decimal | float | int) and isinstance(after, Decimal | float | int):
        return float(before) == float(after)
    return bool(before == after)


def assert_kept(made: Rows, found: dict[str, list[dict[str, Any] | None]], since: str) -> None:
    """Every row made is still there with the values it was made with (columns since dropped aside)."""
    changed: list[str] = []
    for name, rows in found.items():
        for before, after in zip(made[name], rows, strict=False):
            if after is None:
                changed.append(f"{name}: row {before} is gone")
                continue
            for column, value in before.items():
                if column in after and not _same(value, after[column]):
                    changed.append(f"{name}.{column}: {value!r} became {after[column]!r}")
    assert not changed, f"upgrading from {since} changed data:\n" + "\n".join(changed)


def test_the_revisions_form_one_line_to_one_head() -> None:
    revisions = code_revisions()
    assert len(code_heads()) == 1 and revisions[-1] in code_heads()
    assert len(revisions) == len(set(revisions)) >= 2


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An empty database migrated to each revision, made once: one migration after the other."""
    made = Databases(tmp_path_factory.mktemp("revisions"))
    working = made.fresh()
    by_revision: dict[str, str] = {}
    for revision in code_revisions():
        upgrade(working, revision)
        by_revision[revision] = made.fresh(copy_of=working)
    yield by_revision
    made.drop_all()


@pytest.mark.parametrize("revision", code_revisions()[:-1])
def test_a_database_made_at_an_earlier_revision_keeps_its_data_when_upgraded(
    revision: str, snapshots: dict[str, str], databases: Databases
) -> None:
    url = databases.fresh(copy_of=snapshots[revision])
    made = on(url, fill)
    assert made, "no tables at this revision"

    upgrade(url)

    assert on(
        url, lambda c: {str(v) for v in c.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()}
    ) == set(code_heads())
    assert_kept(made, on(url, read_back(made)), revision)


def test_the_newest_migration_can_be_undone_keeping_the_older_data(
    snapshots: dict[str, str], databases: Databases
) -> None:
    newest, before = code_revisions()[-1], code_revisions()[-2]
    url = databases.fresh(copy_of=snapshots[before])
    made = on(url, fill)
    upgrade(url, newest)

    command.downgrade(alembic_config(url), "-1")

    version = on(url, lambda c: list(c.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()))
    assert version == [before]
    assert_kept(made, on(url, read_back(made)), f"{before} to {newest} and back")
    # And up again.
    upgrade(url)
    assert_kept(made, on(url, read_back(made)), f"{before} to {newest}, back and up again")


def test_db_upgrade_refuses_a_database_newer_than_the_code(
    snapshots: dict[str, str], databases: Databases, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = databases.fresh(copy_of=snapshots[code_revisions()[-1]])
    on(url, lambda c: c.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    monkeypatch.setenv("POWERBANK_DATABASE_URL", url)

    assert cli.main(["db", "upgrade"]) == 1

    message = capsys.readouterr().err
    assert "9999_from_the_future" in message and "newer PowerBank" in message
    assert on(url, lambda c: list(c.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())) == [
        "9999_from_the_future"
    ]
