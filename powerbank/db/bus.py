"""Messages between the nodes that share a database: PostgreSQL's LISTEN/NOTIFY, or in-process on SQLite.

A node sends a small JSON message of a kind ("charger connected", ...); every node (itself too)
hands it to the handlers subscribed to that kind, on its event loop. On PostgreSQL each node keeps
one connection that LISTENs on the channel and sends on it as well; a lost connection is opened
again, and messages sent meanwhile are lost (PostgreSQL does not keep them): what a message says
must also be in the database for whoever needs it later. On SQLite there is one node, and a message
goes straight to its own handlers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

logger = logging.getLogger("powerbank.bus")

CHANNEL = "powerbank"
# PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more.
MAX_PAYLOAD = 7_900
RECONNECT_AFTER_S = 1.0
# Messages sent in one statement at most.
MAX_BATCH = 500

Handler = Callable[[dict[str, Any]], None]


class Bus:
    """The node's end of the messages between nodes."""

    def __init__(self, database_url: str, node_name: str) -> None:
        url = make_url(database_url)
        self.node_name = node_name
        self._postgres = url.get_backend_name() == "postgresql"
        self._connect_args = {
            "host": url.host,
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "database": url.database,
        }
        self._handlers: dict[str, list[Handler]] = {}
        self._connection: asyncpg.Connection | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._stopping = False
        self._outbox: list[str] = []
        self._ready = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None

    def subscribe(self, kind: str, handler: Handler) -> None:
        """Call ``handler(message)`` for every message of ``kind``, from any node (this one too)."""
        self._handlers.setdefault(kind, []).append(handler)

    async def start(self) -> None:
        """Listen (on PostgreSQL; nothing to do on SQLite), and keep listening while the node runs."""
        if not self._postgres:
            return
        await self._listen()
        self._keeper = asyncio.create_task(self._keep_listening(), name="bus listener")
        self._sender = asyncio.create_task(self._send_forever(), name="bus sender")

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._keeper, self._sender):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()

    def send(self, kind: str, **fields: Any) -> None:
        """Send a message to every node, as soon as the node's connection is free (not bound to a transaction).

        Messages queue here and go out together, one round trip for all that waited: a thousand
        chargers connecting at once make a few statements, not a thousand.
        """
        body = json.dumps({"kind": kind, "from": self.node_name, **fields}, separators=(",", ":"))
        if len(body.encode()) > MAX_PAYLOAD:
            raise ValueError(f"a {kind} message of {len(body)} characters is too long for the bus")
        if not self._postgres:
            self._deliver(body)
            return
        self._outbox.append(body)
        self._ready.set()

    async def _send_forever(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch, self._outbox = self._outbox[:MAX_BATCH], self._outbox[MAX_BATCH:]
            if self._outbox:
                self._ready.set()
            connection = self._connection
            if connection is None or connection.is_closed():
                logger.warning("bus: not connected; %d messages not sent", len(batch))
                continue
            try:
                await connection.execute("SELECT pg_notify($1, body) FROM unnest($2::text[]) AS body", CHANNEL, batch)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("bus: %d messages not sent (%s)", len(batch), exc)

    async def _listen(self) -> None:
        connection = await asyncpg.connect(**self._connect_args)
        connection.add_termination_listener(lambda _connection: self._lost.set())
        await connection.add_listener(CHANNEL, self._on_notify)
        self._connection = connection
        self._lost.clear()

    async def _keep_listening(self) -> None:
        while not self._stopping:
            await self._lost.wait()
            logger.warning("bus: lost the database connection; listening again")
            while not self._stopping:
                try:
                    await self._listen()
                    break
                except (OSError, asyncpg.PostgresError) as exc:
                    logger.warning("bus: cannot listen yet (%s)", exc)
                    await asyncio.sleep(RECONNECT_AFTER_S)

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self._deliver(payload)

    def _deliver(self, body: str) -> None:
        try:
            message = json.loads(body)
        except ValueError:
            logger.warning("bus: a message that is not JSON was ignored")
            return
        if not isinstance(message, dict):
            return
        for handler in self._handlers.get(str(message.get("kind")), []):
            try:
                handler(message)
            except Exception:
                logger.exception("bus: handling a %s message failed", message.get("kind"))
