"""What chargers report, written to a SQLite file on a connection of its own, past the ORM's async layer.

Through an AsyncSession, a batch of reports costs about 0.5 ms of CPU in SQLAlchemy's async
machinery (the session, a pool check-out and its reset, a thread hand-off for each cursor step)
against about 0.1 ms for the same statements on a bare aiosqlite connection (measured). At light
load, where a MeterValues has its transaction to itself, that difference was most of the hub's CPU
per message (bench/ANALYSIS.md). The statements are still SQLAlchemy's: compiled once for SQLite,
with the values converted by the same column types, so the rows are the ones the ORM would write.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import aiosqlite
from sqlalchemy import insert
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from powerbank.db import utcnow
from powerbank.ocpp.reports import Report
from powerbank.services import chargers, delivery

_DIALECT = sqlite.dialect()


class CompiledWrite:
    """A statement compiled once for SQLite; ``rows`` turns parameter dicts into its value tuples."""

    def __init__(self, statement: Any, column_keys: Sequence[str] | None = None) -> None:
        compiled = statement.compile(dialect=_DIALECT, column_keys=column_keys)
        self.sql = str(compiled)
        self.names = list(compiled.positiontup or ())
        binds = compiled.binds
        self.processors = [binds[name].type.dialect_impl(_DIALECT).bind_processor(_DIALECT) for name in self.names]
        # Values fixed in the statement itself (a LIMIT).
        self.fixed = {name: binds[name].effective_value for name in self.names}

    def rows(self, params: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        converted = []
        for row in params:
            values = (row[name] if name in row else self.fixed[name] for name in self.names)
            converted.append(
                tuple(
                    value if process is None else process(value)
                    for value, process in zip(values, self.processors, strict=True)
                )
            )
        return converted


METER_COLUMNS = (
    "charge_point_id",
    "connector_id",
    "measured_at",
    "received_at",
    "power_w",
    "energy_wh",
    "current_l1_a",
    "current_l2_a",
    "current_l3_a",
    "transaction_id",
)
STATUS_COLUMNS = ("charge_point_id", "connector_id", "status", "error_code", "reported_at")


class SqliteReportWriter:
    """Store batches of reports (meter rows, connector statuses, prunes) in one transaction each."""

    def __init__(self, database: str) -> None:
        self.database = database
        self._connection: aiosqlite.Connection | None = None
        self._insert_meter = CompiledWrite(insert(chargers.METER_TABLE), METER_COLUMNS)
        self._upsert_status = CompiledWrite(chargers.status_upsert_statement("sqlite"), STATUS_COLUMNS)
        self._prune = CompiledWrite(chargers.meter_prune_statement())
        self._add_quarters = CompiledWrite(delivery.quarter_upsert_statement("sqlite"), delivery.QUARTER_COLUMNS)
        self._prune_quarters = CompiledWrite(delivery.quarter_prune_statement())

    @classmethod
    def for_url(cls, url: URL) -> SqliteReportWriter | None:
        """Return a writer for a SQLite file database, None for anything else (in memory, PostgreSQL)."""
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:" or url.query:
            return None  # Options such as ?uri=true change which file is meant: left to SQLAlchemy.
        return cls(url.database)

    async def _connect(self) -> aiosqlite.Connection:
        if self._connection is None:
            connection = await aiosqlite.connect(self.database, timeout=30)
            # As the app's own connections (powerbank.db.make_engine): keys checked, WAL kept.
            await connection.execute("PRAGMA foreign_keys=ON")
            await connection.execute("PRAGMA synchronous=NORMAL")
            self._connection = connection
        return self._connection

    async def store(self, reports: list[Report]) -> None:
        """Write a batch and commit; on any error nothing of it is written, and the error is raised."""
        connection = await self._connect()
        meter = [row for report in reports for row in report.meter_rows]
        statuses = chargers.status_rows([report.status for report in reports if report.status is not None])
        prune = sorted({report.prune for report in reports if report.prune is not None})
        quarters = delivery.quarter_rows(meter)
        try:
            if meter:
                await connection.executemany(self._insert_meter.sql, self._insert_meter.rows(meter))
            if statuses:
                await connection.executemany(self._upsert_status.sql, self._upsert_status.rows(statuses))
            if prune:
                await connection.executemany(self._prune.sql, self._prune.rows([{"charge_point_id": i} for i in prune]))
                quarters_pruned = delivery.quarter_prune_rows(prune, utcnow())
                await connection.executemany(self._prune_quarters.sql, self._prune_quarters.rows(quarters_pruned))
            if quarters:
                await connection.executemany(self._add_quarters.sql, self._add_quarters.rows(quarters))
            await connection.commit()
        except BaseException as error:
            try:
                await connection.rollback()
            except Exception:
                # A connection that cannot roll back may hold half a batch: never use it again.
                self._connection = None
                with contextlib.suppress(Exception):
                    await connection.close()
            if isinstance(error, sqlite3.IntegrityError):
                # As SQLAlchemy raises it on the app's other connections: callers catch one kind.
                raise IntegrityError("store reports", None, error) from error
            raise

    async def close(self) -> None:
        """Close the connection (at shutdown, after the last batch)."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()
