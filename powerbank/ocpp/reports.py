"""Group commit for what chargers report often: meter values and connector status.

Ten thousand chargers send a MeterValues every few seconds; one database transaction each
queues them all on the database's write lock (SQLite has one writer). Here each message adds its
rows to the batch being gathered and waits until that batch is stored, then the charger gets its
answer: nothing is acknowledged before it is written, yet one transaction stores what every
charger sent while the previous one was being written. Under light load a batch holds one
message and is written at once, so nothing waits for a timer.

    await registry.reports.meter(charge_point_id, rows, prune=False)
    await registry.reports.status(StatusReport(...))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.services import chargers
from powerbank.services.chargers import StatusReport

logger = logging.getLogger("powerbank.ocpp")

# Messages stored in one transaction at most; more wait for the next one.
MAX_BATCH = 5000


def _new_future() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    # A caller that went away (its charger disconnected) no longer reads the outcome.
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


@dataclass
class _Report:
    meter_rows: list[dict[str, Any]] = field(default_factory=list)
    prune: int | None = None
    status: StatusReport | None = None
    done: asyncio.Future[None] = field(default_factory=_new_future)


class ReportWriter:
    """Store chargers' reports in batches, one writer at a time; each caller waits for its own."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], write_lock: Any) -> None:
        self.sessionmaker = sessionmaker
        # Shared with the hub's other OCPP writes, so they queue here rather than in the database.
        self.write_lock = write_lock
        self._waiting: list[_Report] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0
        self.largest_batch = 0

    async def meter(self, charge_point_id: int, rows: list[dict[str, Any]], *, prune: bool = False) -> None:
        """Store meter sample rows (``chargers.meter_rows``); with ``prune``, drop the charger's oldest."""
        if rows or prune:
            await self._submit(_Report(meter_rows=rows, prune=charge_point_id if prune else None))

    async def status(self, report: StatusReport) -> None:
        """Store a connector's latest status."""
        await self._submit(_Report(status=report))

    async def _submit(self, report: _Report) -> None:
        self._waiting.append(report)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting(), name="ocpp report writer")
        # Shielded: a charger that disconnects meanwhile does not take its rows out of the batch.
        await asyncio.shield(report.done)

    async def _write_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(batch))
            try:
                await self._store(batch)
            except Exception:
                # One bad report (a charge point deleted meanwhile) must not lose the others.
                logger.info("storing %d OCPP reports together failed; storing them one by one", len(batch),
                            exc_info=True)
                await self._store_one_by_one(batch)
            else:
                for report in batch:
                    if not report.done.done():
                        report.done.set_result(None)

    async def _store(self, batch: Sequence[_Report]) -> None:
        async with self.write_lock, self.sessionmaker() as session:
            await chargers.insert_meter_rows(session, [row for report in batch for row in report.meter_rows])
            await chargers.upsert_statuses(session, [report.status for report in batch if report.status is not None])
            await chargers.prune_meter_samples(session, [r.prune for r in batch if r.prune is not None])
            await session.commit()

    async def _store_one_by_one(self, batch: Sequence[_Report]) -> None:
        for report in batch:
            try:
                await self._store([report])
            except Exception as error:
                if not report.done.done():
                    report.done.set_exception(error)
            else:
                if not report.done.done():
                    report.done.set_result(None)

    async def wait(self) -> None:
        """Wait until everything handed over so far is stored (at shutdown)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)
