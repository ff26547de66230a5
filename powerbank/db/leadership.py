"""One leader among the nodes that share a database: PostgreSQL's session advisory lock.

The node holding the lock leads (it runs the activation scheduler); the others try again every
second. The lock belongs to a database connection of its own: when the leader's process dies, its
connection closes and PostgreSQL frees the lock at once, so a standby leads within about a second.
A leader that loses its connection stops leading before it could lose the lock unnoticed. On
SQLite there is one node, and it always leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from sqlalchemy.engine import make_url

from powerbank.db.bus import connect_args

logger = logging.getLogger("powerbank.leadership")

# The advisory lock's key: any number no other lock of this database uses ("PWRBANK1").
LOCK_KEY = 0x5057_5242_414E_4B31 - 2**63
TRY_EVERY_S = 1.0


class Leadership:
    """Whether this node leads; ``wait`` until it does."""

    def __init__(self, database_url: str, node_name: str, try_every_s: float = TRY_EVERY_S) -> None:
        url = make_url(database_url)
        self.node_name = node_name
        self.try_every_s = try_every_s
        self._postgres = url.get_backend_name() == "postgresql"
        self._connect_args = connect_args(database_url)
        self._leading = asyncio.Event()
        self._lost = asyncio.Event()
        self._connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        if not self._postgres:
            self._leading.set()

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    async def wait(self) -> None:
        """Return once this node leads."""
        await self._leading.wait()

    async def start(self) -> None:
        """Try to lead once now (a lone node leads from its start), then keep trying in the background."""
        if not self._postgres:
            return
        await self._try()
        self._task = asyncio.create_task(self._keep_trying(), name="leadership")

    async def stop(self) -> None:
        """Stop leading (closing the connection frees the lock for a standby at once)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._leading.clear()
        if self._connection is not None and not self._connection.is_closed():
            with contextlib.suppress(Exception):
                await self._connection.close()

    async def _try(self) -> None:
        try:
            if self._connection is None or self._connection.is_closed():
                self._connection = await asyncpg.connect(**self._connect_args)
                self._lost.clear()
                self._connection.add_termination_listener(lambda _connection: self._lost_connection())
            taken = await self._connection.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            logger.warning("leadership: cannot reach the database (%s)", exc)
            return
        if taken:
            logger.info("node %s leads the cluster (it runs the activation scheduler)", self.node_name)
            self._leading.set()

    def _lost_connection(self) -> None:
        if self._leading.is_set():
            logger.warning("node %s lost its database connection and no longer leads", self.node_name)
        self._leading.clear()
        self._lost.set()

    async def _keep_trying(self) -> None:
        while True:
            if self._leading.is_set():
                await self._lost.wait()
                continue
            await asyncio.sleep(self.try_every_s)
            await self._try()
