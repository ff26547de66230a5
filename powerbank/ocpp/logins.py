"""Chargers' log-ins looked up together: those connecting in the same moment share one query.

After a restart thousands of chargers connect within seconds; a session and a query each would
cost the loop more than everything else they do to connect. A charger connecting alone is looked
up at once, as before; those arriving while a look-up runs go together in the next one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.services import chargers
from powerbank.services.chargers import Login

# Identities in one query at most.
MAX_BATCH = 500


def _consume(future: asyncio.Future[Any]) -> None:
    # A charger that went away while it was looked up no longer reads the outcome.
    if not future.cancelled():
        future.exception()


class LoginLookups:
    """Look up log-ins in batches, one query at a time; each caller waits for its own."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], max_batch: int = MAX_BATCH) -> None:
        self.sessionmaker = sessionmaker
        self.max_batch = max_batch
        self._waiting: dict[str, list[asyncio.Future[Login | None]]] = {}
        self._worker: asyncio.Task[None] | None = None
        self.queries = 0

    async def find(self, identity: str) -> Login | None:
        """Return what ``identity`` logs in with, or None; raise what the database raised."""
        future: asyncio.Future[Login | None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume)
        self._waiting.setdefault(identity, []).append(future)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._look_up_waiting(), name="charger log-in look-ups")
        return await future

    async def _look_up_waiting(self) -> None:
        while self._waiting:
            identities = list(self._waiting)[: self.max_batch]
            batch = {identity: self._waiting.pop(identity) for identity in identities}
            self.queries += 1
            try:
                async with self.sessionmaker() as session:
                    found = await chargers.find_logins(session, identities)
            except Exception as error:
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(error)
                continue
            for identity, futures in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(found.get(identity))
