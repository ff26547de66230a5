"""Group commit for what thousands of chargers report: boots, capabilities, meter values, status.

Ten thousand chargers booting after a restart, or sending MeterValues every few seconds, would
queue on the database's write lock with one transaction each (SQLite has one writer). Here each
message adds its item to the batch being gathered and waits until that batch is stored; only then
does the charger get its answer, so nothing is acknowledged before it is written. One
transaction stores what every charger sent while the previous one was being written. Under light
load a batch holds one item and is written at once: nothing waits for a timer.

    await registry.reports.submit(Report(meter_rows=rows))      # meter values, status
    await registry.boots.submit((charge_point_id, boot_info))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.ocpp.stats import STATS
from powerbank.services import chargers, delivery
from powerbank.services.chargers import StatusReport

logger = logging.getLogger("powerbank.ocpp")

# Items stored in one transaction at most, unless a writer says otherwise; more wait for the next.
# The batch is prepared on the event loop, so its size bounds how long the loop is held.
MAX_BATCH = 2000

Item = TypeVar("Item")


def _consume(future: asyncio.Future[Any]) -> None:
    # A caller that went away (its charger disconnected) no longer reads the outcome.
    if not future.cancelled():
        future.exception()


def in_session(
    sessionmaker: async_sessionmaker[AsyncSession], store: Callable[[AsyncSession, list[Item]], Awaitable[Any]]
) -> Callable[[list[Item]], Awaitable[None]]:
    """Return a batch writer for ``GroupCommit``: ``store(session, items)`` in a session of its own, committed."""

    async def write(items: list[Item]) -> None:
        async with sessionmaker() as session:
            await store(session, items)
            await session.commit()

    return write


class GroupCommit(Generic[Item]):
    """Store items in batches, one transaction at a time; each caller waits for its own item.

    ``store(items)`` writes and commits a batch, all or nothing (``in_session`` makes one). Should
    a batch fail (a charge point deleted meanwhile), its items are stored one by one so only the
    bad one fails.
    """

    def __init__(
        self, write_lock: Any, store: Callable[[list[Item]], Awaitable[Any]], what: str, max_batch: int = MAX_BATCH
    ) -> None:
        # Shared with the hub's other OCPP writes, so they queue here rather than in the database.
        self.write_lock = write_lock
        self.store = store
        self.what = what
        self.max_batch = max_batch
        self._waiting: list[tuple[Item, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0
        self.largest_batch = 0
        # Batches that failed together and were stored one by one: each one a transaction per item.
        self.fallbacks = 0

    async def submit(self, item: Item) -> None:
        """Hand over one item and return once it is stored (raise if it could not be)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_consume)
        self._waiting.append((item, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting(), name=f"{self.what} writer")
        # Shielded: a charger that disconnects meanwhile does not take its item out of the batch.
        await asyncio.shield(done)

    @property
    def waiting(self) -> int:
        """How many items wait for a batch that has not started to be written."""
        return len(self._waiting)

    async def _write_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(batch))
            STATS.batch_sizes[self.what].observe(len(batch))
            started = time.perf_counter()
            try:
                await self._store([item for item, _ in batch])
            except Exception:
                self.fallbacks += 1
                STATS.batch_failures[self.what] += 1
                logger.info(
                    "storing %d %s together failed; storing them one by one", len(batch), self.what, exc_info=True
                )
                await self._store_one_by_one(batch)
            else:
                # Waiting for the write lock included: the time the batch's chargers waited.
                STATS.batch_seconds[self.what].observe(time.perf_counter() - started)
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def _store(self, items: list[Item]) -> None:
        async with self.write_lock:
            await self.store(items)

    async def _store_one_by_one(self, batch: Sequence[tuple[Item, asyncio.Future[None]]]) -> None:
        for item, done in batch:
            try:
                await self._store([item])
            except Exception as error:
                if not done.done():
                    done.set_exception(error)
            else:
                if not done.done():
                    done.set_result(None)

    async def wait(self) -> None:
        """Wait until everything handed over so far is stored (at shutdown)."""
        while self._writer is not None and not self._writer.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)


@dataclass
class Report:
    """What one MeterValues or StatusNotification brings: meter rows, a status, a charger to prune."""

    meter_rows: list[dict[str, Any]] = field(default_factory=list)
    prune: int | None = None
    status: StatusReport | None = None


async def store_reports(session: AsyncSession, reports: list[Report]) -> None:
    """Store a batch of reports: one INSERT of every meter row, one upsert of every status, one prune;
    and the meter rows added to their chargers' quarter-hours (services/delivery.py ``add_quarters``)."""
    meter = [row for report in reports for row in report.meter_rows]
    pruned = [r.prune for r in reports if r.prune is not None]
    await chargers.insert_meter_rows(session, meter)
    await chargers.upsert_statuses(session, [report.status for report in reports if report.status is not None])
    await chargers.prune_meter_samples(session, pruned)
    await delivery.add_quarters(session, meter, pruned)
