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
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import after_commit

logger = logging.getLogger("powerbank.bus")

CHANNEL = "powerbank"
# PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more.
MAX_PAYLOAD = 7_900
RECONNECT_AFTER_S = 1.0
# Messages sent in one statement at most.
MAX_BATCH = 500

Handler = Callable[[dict[str, Any]], None]


def connect_args(database_url: str) -> dict[str, Any]:
    """Return what ``asyncpg.connect`` needs to open a connection of its own to the database of the URL."""
    url = make_url(database_url)
    return {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "database": url.database,
    }


class Bus:
    """The node's end of the messages between nodes."""

    def __init__(self, database_url: str, node_name: str) -> None:
        url = make_url(database_url)
        self.node_name = node_name
        self._postgres = url.get_backend_name() == "postgresql"
        self._connect_args = connect_args(database_url)
        self._handlers: dict[str, list[Handler]] = {}
        self._connection: asyncpg.Connection | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._stopping = False
        self._outbox: list[str] = []
        self._ready = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        # Called after the connection was lost and listens again: what was sent meanwhile is lost.
        self.reconnect_listeners: list[Callable[[], None]] = []

    @property
    def shared(self) -> bool:
        """Whether other nodes may share the database (PostgreSQL): messages then go through it."""
        return self._postgres

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
        self._send_body(body)

    def bodies(self, kind: str, key: str, items: list[Any], **fields: Any) -> list[str]:
        """Return messages of ``kind`` that together carry ``items`` under ``key``, each short enough.

        A long list (a team's thousand chargers) is split over as many messages as it takes.
        """
        bodies: list[str] = []
        start = 0
        while True:
            size = len(items) - start
            while True:
                body = json.dumps(
                    {"kind": kind, "from": self.node_name, **fields, key: items[start : start + size]},
                    separators=(",", ":"),
                )
                if len(body.encode()) <= MAX_PAYLOAD:
                    break
                if size <= 1:
                    raise ValueError(f"one item of a {kind} message is too long for the bus")
                size //= 2
            bodies.append(body)
            start += size
            if start >= len(items):
                return bodies

    def send_all(self, kind: str, key: str, items: list[Any], **fields: Any) -> None:
        """Send ``items`` to every node in as many messages of ``kind`` as it takes (see ``bodies``)."""
        for body in self.bodies(kind, key, items, **fields):
            self._send_body(body)

    async def send_on_commit(self, session: AsyncSession, kind: str, key: str, items: list[Any], **fields: Any) -> None:
        """Send messages that go out if and when the session's transaction commits (never on rollback).

        On PostgreSQL the NOTIFY is part of the transaction: every node hears it once the change it
        speaks of is visible to them, and never when it is not. On SQLite it is handed over after the commit.
        """
        bodies = self.bodies(kind, key, items, **fields)
        if not self._postgres:

            def deliver() -> None:
                for body in bodies:
                    self._deliver(body)

            after_commit(session, deliver)
            return
        for body in bodies:
            await session.exec(  # type: ignore[call-overload]
                text("SELECT pg_notify(:channel, :body)"), params={"channel": CHANNEL, "body": body}
            )

    def _send_body(self, body: str) -> None:
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
        try:
            connection.add_termination_listener(lambda _connection: self._lost.set())
            await connection.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            # The server went away between connecting and LISTEN: drop the half-open connection.
            connection.terminate()
            raise
        self._connection = connection
        self._lost.clear()

    async def _keep_listening(self) -> None:
        while not self._stopping:
            await self._lost.wait()
            logger.warning("bus: lost the database connection; listening again")
            while not self._stopping:
                try:
                    await self._listen()
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    logger.warning("bus: cannot listen yet (%s)", exc)
                    await asyncio.sleep(RECONNECT_AFTER_S)
                    continue
                for listener in list(self.reconnect_listeners):
                    try:
                        listener()
                    except Exception:
                        logger.exception("bus: a reconnect listener failed")
                break

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
