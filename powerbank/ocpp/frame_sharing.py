"""A charger's live OCPP frames on a page served by another node than the one holding the charger.

Each node keeps the frames of the chargers it holds in memory (``services/frame_log.py``): writing
every frame of every charger to the database would double the cost of each OCPP message. Instead
frames are shared on demand. A node serving the charge point page of a charger another node holds
asks for them on the bus (``FRAMES_WANTED``, at most once per ``ASK_EVERY_S`` per charger); the node
holding it publishes that charger's frames to ``ocpp_shared_frames`` at once, then every
``PUBLISH_EVERY_S`` while they change, and stops ``WATCH_S`` after the last ask (the page polls, so it
keeps asking while it is open). The page reads the published row: its frames are at most a second or
so old, and say when they were published and by which node.

The ask names the charge point and the identity; a node publishes only for a connection it holds of
that very charge point, so an identity reused by another charge point (another tenant's) shares
nothing, and a charge point's frames go only to its own row, which pages read by charge point.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.db.bus import Bus
from powerbank.models import ClusterNode, SharedFrames
from powerbank.services.frame_log import Frame, FrameLog, unpack


class _Held(Protocol):
    """A live connection, as far as sharing its frames goes."""

    charge_point_id: int
    logs_frames: bool


class _Holder(Protocol):
    """The node's connection registry, as far as sharing frames goes (``ocpp/registry.py``)."""

    bus: Bus
    frame_log: FrameLog
    node_id: int | None

    def get(self, identity: str) -> _Held | None: ...

    def writing(self) -> AbstractAsyncContextManager[AsyncSession]: ...


logger = logging.getLogger("powerbank.ocpp")

FRAMES_WANTED = "frames-wanted"
# A node publishes a watched charger's frames this often while they change...
PUBLISH_EVERY_S = 1.0
# ...until this long after the last ask; a page asks again at most this often (it polls every 5 s).
WATCH_S = 30.0
ASK_EVERY_S = 10.0
# Asks remembered per node (the oldest are forgotten past it: they are asked again).
ASKS_KEPT = 10_000


@dataclass(frozen=True)
class SharedLog:
    """The frames a page shows for a charger another node holds."""

    frames: list[Frame]
    # The node that published them, and when (None: nothing published yet).
    node: str | None
    published_at: datetime | None


@dataclass
class _Watch:
    identity: str
    until: float
    # What was published last (how many frames, the newest): unchanged frames are not written again.
    published: tuple[int, str] | None = None


class FrameSharing:
    """One node's side of frame sharing: it asks for frames, and publishes those it is asked for."""

    def __init__(self, registry: _Holder) -> None:
        self.registry = registry
        self._asked: dict[int, float] = {}
        self._watched: dict[int, _Watch] = {}
        self._wake = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        registry.bus.subscribe(FRAMES_WANTED, self._wanted)

    # The node serving the page ------------------------------------------------------------

    def ask(self, charge_point_id: int, identity: str) -> None:
        """Ask the node holding this charger to publish its frames (again, if the last ask is old)."""
        now = time.monotonic()
        if now - self._asked.get(charge_point_id, -ASK_EVERY_S) < ASK_EVERY_S:
            return
        self._asked.pop(charge_point_id, None)
        self._asked[charge_point_id] = now
        while len(self._asked) > ASKS_KEPT:
            del self._asked[next(iter(self._asked))]
        self.registry.bus.send(FRAMES_WANTED, charge_point=charge_point_id, identity=identity)

    # The node holding the charger ---------------------------------------------------------

    def _wanted(self, message: dict[str, Any]) -> None:
        charge_point_id, identity = message.get("charge_point"), message.get("identity")
        if type(charge_point_id) is not int or not isinstance(identity, str):
            return
        connection = self.registry.get(identity)
        if connection is None or connection.charge_point_id != charge_point_id or not connection.logs_frames:
            return  # not held here, or held under this identity by another charge point
        watch = self._watched.get(charge_point_id)
        until = time.monotonic() + WATCH_S
        if watch is not None and watch.identity == identity:
            watch.until = until
        else:
            self._watched[charge_point_id] = _Watch(identity, until)
        self._wake.set()
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.create_task(self._publish_forever(), name="OCPP frame sharing")

    def forget(self, charge_point_ids: Iterable[int]) -> None:
        """Stop publishing these chargers' frames (deleted or renamed: every node hears of it)."""
        for charge_point_id in charge_point_ids:
            self._watched.pop(charge_point_id, None)

    async def delete(self, charge_point_ids: list[int]) -> None:
        """Delete what was published of these chargers' frames (renamed: their next identity shows none)."""
        async with self.registry.writing() as session:
            await session.exec(delete(SharedFrames).where(col(SharedFrames.charge_point_id).in_(charge_point_ids)))
            await session.commit()

    async def _publish_forever(self) -> None:
        while self._watched:
            self._wake.clear()
            try:
                await self.publish()
            except Exception:
                logger.exception("could not publish OCPP frames for other nodes")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), PUBLISH_EVERY_S)

    async def publish(self) -> int:
        """Publish the watched chargers' frames that changed; forget watches that expired. Returns how many."""
        now = time.monotonic()
        rows: list[dict[str, Any]] = []
        published_at = utcnow()
        for charge_point_id, watch in list(self._watched.items()):
            connection = self.registry.get(watch.identity)
            if (
                now > watch.until
                or connection is None
                or connection.charge_point_id != charge_point_id
                or not connection.logs_frames
            ):
                del self._watched[charge_point_id]
                continue
            frames = self.registry.frame_log.packed(watch.identity)
            newest = (len(frames), frames[-1] if frames else "")
            if newest == watch.published:
                continue
            watch.published = newest
            rows.append(
                {
                    "charge_point_id": charge_point_id,
                    "identity": watch.identity,
                    "node_id": self.registry.node_id,
                    "frames": frames,
                    "published_at": published_at,
                }
            )
        if rows:
            statement = insert(SharedFrames).values(rows)
            statement = statement.on_conflict_do_update(
                index_elements=["charge_point_id"],
                set_={name: statement.excluded[name] for name in ("identity", "node_id", "frames", "published_at")},
            )
            async with self.registry.writing() as session:
                await session.exec(statement)
                await session.commit()
        return len(rows)

    async def stop(self) -> None:
        self._watched.clear()
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher


async def shared_log(session: AsyncSession, charge_point_id: int, identity: str) -> SharedLog:
    """Return the frames another node published for this charge point under this identity (maybe none)."""
    row = await session.get(SharedFrames, charge_point_id, populate_existing=True)
    if row is None or row.identity != identity:
        return SharedLog([], None, None)
    node = await session.get(ClusterNode, row.node_id) if row.node_id is not None else None
    frames = unpack(row.frames) if isinstance(row.frames, list) else []
    return SharedLog(frames, node.name if node is not None else None, row.published_at)
