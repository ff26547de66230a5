"""Sample what each operator could pause in each price area, once a minute, on the node that leads.

The leader is the activation scheduler's (``db/leadership.py``): one node of a cluster writes the
series, and a standby takes over within a second of the leader's end. A minute is written at most
once (its row's key is the minute), so a restart, or two nodes that both believe they lead for a
moment, never double it; a minute no node sampled (the hub was down) stays a gap.
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
from powerbank.services import availability as service

logger = logging.getLogger("powerbank.availability")

# How often the sampler looks whether a new minute began and whether this node leads: a minute is
# sampled within this of its start, and a standby that takes over samples within it too.
LOOK_EVERY_S = 1.0
# After a failed sampling (the database away), the next try.
RETRY_AFTER_S = 10.0

Writer = Callable[[], contextlib.AbstractAsyncContextManager[AsyncSession]]


class AvailabilitySampler:
    """Write every operator's availability per area once a minute while this node leads."""

    def __init__(
        self,
        writing: Writer,
        leads: Callable[[], bool],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.writing = writing
        self.leads = leads
        self.clock = clock
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Sample in a task of its own until ``stop``."""
        self._task = asyncio.create_task(self._run(), name="availability sampler")

    async def stop(self) -> None:
        """Stop sampling; a sampling in progress finishes its write first."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def sample(self, now: datetime | None = None) -> service.Sampled:
        """Write the minute of ``now`` (if it is not written yet) and prune old rows."""
        async with self.writing() as session:
            sampled = await service.sample(session, now or self.clock())
            await session.commit()
        return sampled

    async def _run(self) -> None:
        done: datetime | None = None
        while not self._stopping.is_set():
            now = self.clock()
            minute = service.minute_of(now)
            wait = LOOK_EVERY_S
            if minute != done and self.leads():
                try:
                    await self.sample(now)
                    done = minute
                except Exception:
                    # The database may be away: the minute is tried again a little later.
                    logger.exception("sampling the availability per area failed; trying again")
                    wait = RETRY_AFTER_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)


def init_app(app: Quart) -> None:
    """Run the sampler while the app serves, after the activation runner (whose leadership it follows).

    ``AVAILABILITY_SAMPLING`` false in the config turns it off (tests that write minutes themselves).
    """

    @app.while_serving
    async def sample_availability() -> AsyncGenerator[None, None]:
        if not app.config.get("AVAILABILITY_SAMPLING", True):
            yield
            return

        def leads() -> bool:
            gateway = find_gateway(app)
            return gateway is not None and gateway.leads

        sampler = AvailabilitySampler(registry_of(app).writing, leads)
        sampler.start()
        yield
        await sampler.stop()
