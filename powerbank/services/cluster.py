"""The node registry: which `powerbank serve` processes are alive, and which charger each one holds.

Every serving process is a node, alone or beside others on one PostgreSQL. It registers at start,
heart-beats every few seconds, and marks as offline only the chargers it held itself. A node that
has not heart-beaten within the lease is declared dead by whichever live node looks first (a
conditional update, so two looking at once do it once), and its chargers are shown offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, delete, func, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import ChargePoint, ClusterNode, Team

HEARTBEAT_EVERY = timedelta(seconds=5)
# A node not heard from for this long is dead (three heartbeats missed).
LEASE = timedelta(seconds=15)
# Stopped nodes are listed for a day, then forgotten.
KEEP_STOPPED = timedelta(days=1)


async def register_node(session: AsyncSession, name: str, now: datetime | None = None) -> ClusterNode:
    """Start (or restart) the node called ``name``; it holds no charger yet. Commit."""
    now = now or utcnow()
    node = (await session.exec(select(ClusterNode).where(ClusterNode.name == name))).first()
    if node is None:
        node = ClusterNode(name=name, started_at=now, heartbeat_at=now)
    else:
        node.started_at, node.heartbeat_at, node.stopped_at, node.stop_reason = now, now, None, ""
    session.add(node)
    await session.flush()
    await release_chargers(session, node.id or 0)
    await session.commit()
    await session.refresh(node)
    return node


async def release_chargers(session: AsyncSession, node_id: int) -> None:
    """Mark offline the chargers the node holds (and any no node holds that still look online)."""
    await session.exec(
        update(ChargePoint)
        .where(or_(col(ChargePoint.node_id) == node_id, col(ChargePoint.node_id).is_(None)), col(ChargePoint.online))
        .values(online=False, node_id=None)
    )


async def heartbeat(session: AsyncSession, node_id: int, now: datetime | None = None) -> bool:
    """Note that the node lives; return False if it was declared dead meanwhile (it must re-register). Commit."""
    result = await session.exec(
        update(ClusterNode)
        .where(col(ClusterNode.id) == node_id, col(ClusterNode.stopped_at).is_(None))
        .values(heartbeat_at=now or utcnow())
    )
    await session.commit()
    return bool(result.rowcount == 1)


async def declare_dead(
    session: AsyncSession, now: datetime | None = None, lease: timedelta = LEASE, *, caller_id: int | None = None
) -> list[str]:
    """Declare dead every node not heard from within the lease, and show its chargers offline. Commit.

    Return the names of the nodes declared dead by this call. The calling node (``caller_id``),
    which has just beaten, is never among them, however late its own beat was written.
    """
    now = now or utcnow()
    query = select(ClusterNode).where(
        col(ClusterNode.stopped_at).is_(None), col(ClusterNode.heartbeat_at) < now - lease
    )
    if caller_id is not None:
        query = query.where(col(ClusterNode.id) != caller_id)
    overdue = list(await session.exec(query))
    dead: list[str] = []
    for node in overdue:
        # Conditional on the heartbeat it was read with: a node that beat meanwhile is alive.
        taken = await session.exec(
            update(ClusterNode)
            .where(col(ClusterNode.id) == node.id, col(ClusterNode.heartbeat_at) == node.heartbeat_at)
            .where(col(ClusterNode.stopped_at).is_(None))
            .values(stopped_at=now, stop_reason="no heartbeat")
        )
        if taken.rowcount == 1:
            await session.exec(
                update(ChargePoint).where(col(ChargePoint.node_id) == node.id).values(online=False, node_id=None)
            )
            dead.append(node.name)
    await session.exec(delete(ClusterNode).where(col(ClusterNode.stopped_at) < now - KEEP_STOPPED))
    await session.commit()
    return dead


async def stop_node(session: AsyncSession, node_id: int, now: datetime | None = None) -> None:
    """Record a clean stop: the node holds no charger any more. Commit."""
    await release_chargers(session, node_id)
    await session.exec(
        update(ClusterNode)
        .where(col(ClusterNode.id) == node_id, col(ClusterNode.stopped_at).is_(None))
        .values(stopped_at=now or utcnow(), stop_reason="stopped")
    )
    await session.commit()


@dataclass(frozen=True)
class NodeStatus:
    """One node as `powerbank cluster status` and the Nodes page show it."""

    name: str
    started_at: datetime
    heartbeat_at: datetime
    state: str  # "alive", "overdue" (past the lease, not yet declared dead), "dead" or "stopped"
    chargers: int


async def node_statuses(
    session: AsyncSession, now: datetime | None = None, lease: timedelta = LEASE, operator_id: int | None = None
) -> list[NodeStatus]:
    """Return every node of the last day with its state and how many chargers it holds (two queries).

    With ``operator_id``, only that operator's chargers are counted (what one tenant may know).
    """
    now = now or utcnow()
    counted = select(ChargePoint.node_id, func.count()).where(col(ChargePoint.node_id).is_not(None))
    if operator_id is not None:
        counted = counted.join(Team, col(Team.id) == col(ChargePoint.team_id)).where(Team.operator_id == operator_id)
    held = dict((await session.exec(counted.group_by(col(ChargePoint.node_id)))).all())
    nodes = await session.exec(
        select(ClusterNode)
        .where(or_(col(ClusterNode.stopped_at).is_(None), col(ClusterNode.stopped_at) >= now - KEEP_STOPPED))
        .order_by(col(ClusterNode.name))
    )
    statuses = []
    for node in nodes:
        if node.stopped_at is not None:
            state = "dead" if node.stop_reason == "no heartbeat" else "stopped"
        else:
            state = "alive" if node.heartbeat_at >= now - lease else "overdue"
        statuses.append(NodeStatus(node.name, node.started_at, node.heartbeat_at, state, int(held.get(node.id, 0))))
    return statuses
