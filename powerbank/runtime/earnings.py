"""Keep earnings current on the node that leads: accrue hours, settle deliveries, refresh and close months.

Every EVERY_S (``EARNINGS_REFRESH_S``) the leading node (the activation scheduler's) accrues the
hours charge points were signed up and reporting (their quarter-hour means are kept 15 days, so
this must not stop for that long), stores the delivered energy of activations whose evidence was
kept, recomputes every operator's open months, and closes last month once it ended more than
``services.earnings.AUTO_CLOSE_DAYS`` ago. The first round waits FIRST_AFTER_S after the start, so
a restart does not add a month's recomputation to the reconnect storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from datetime import datetime

from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.dispatch.gateway import find_gateway
from powerbank.ocpp.registry import registry_of
from powerbank.services import earnings as service

logger = logging.getLogger("powerbank.earnings")

EVERY_S = 900.0
FIRST_AFTER_S = 60.0
# Activations settled per round, each judged from its kept evidence.
SETTLE_PER_ROUND = 20

Writer = Callable[[], contextlib.AbstractAsyncContextManager[AsyncSession]]


class EarningsKeeper:
    """Run ``keep`` every ``every_s`` while this node leads."""

    def __init__(
        self,
        writing: Writer,
        leads: Callable[[], bool],
        every_s: float = EVERY_S,
        first_after_s: float = FIRST_AFTER_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.writing = writing
        self.leads = leads
        self.every_s = every_s
        self.first_after_s = first_after_s
        self.clock = clock
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="earnings keeper")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def keep(self, now: datetime | None = None) -> None:
        """Accrue, settle, refresh the open months and close the due ones: each step in its own transaction."""
        now = now or self.clock()
        async with self.writing() as session:
            await service.accrue_hours(session, now)
            await session.commit()
        async with self.writing() as session:
            await service.settle_deliveries(session, now, SETTLE_PER_ROUND)
            await session.commit()
        async with self.writing() as session:
            await service.refresh_open_months(session, now)
            await session.commit()
        async with self.writing() as session:
            for operator_id, month in await service.close_due_months(session, now):
                logger.info("closed earnings month %s of operator %s", month, operator_id)
            await session.commit()

    async def _run(self) -> None:
        wait = self.first_after_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
            if self._stopping.is_set():
                return
            wait = self.every_s
            if not self.leads():
                continue
            try:
                await self.keep()
            except Exception:
                logger.exception("keeping the earnings current failed; trying again next round")


def init_app(app: Quart) -> None:
    """Run the keeper while the app serves; ``EARNINGS_REFRESH_S`` 0 turns it off."""

    @app.while_serving
    async def keep_earnings() -> AsyncGenerator[None, None]:
        every_s = float(app.config.get("EARNINGS_REFRESH_S", EVERY_S))
        if every_s <= 0:
            yield
            return

        def leads() -> bool:
            gateway = find_gateway(app)
            return gateway is not None and gateway.leads

        keeper = EarningsKeeper(registry_of(app).writing, leads, every_s)
        keeper.start()
        yield
        await keeper.stop()
