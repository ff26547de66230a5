"""The audit log: one append-only entry for every change, by a person or by the system."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import AuditEntry, User


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a user, or the system itself (user None)."""

    user_id: int | None
    label: str

    @classmethod
    def of(cls, user: User) -> Actor:
        return cls(user.id, user.email)


@dataclass(frozen=True)
class SystemActor(Actor):
    """The hub itself, or its operator at the command line: not bound by the role table."""


SYSTEM = SystemActor(None, "system")


def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    obj: Any,
    *,
    operator_id: int | None,
    label: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit entry to the session (committed with the change it describes)."""
    entry = AuditEntry(
        operator_id=operator_id,
        actor_user_id=actor.user_id,
        actor=actor.label,
        action=action,
        object_type=type(obj).__name__,
        object_id=getattr(obj, "id", None),
        object_label=label or str(getattr(obj, "name", "") or getattr(obj, "email", "")),
        before=before,
        after=after,
    )
    session.add(entry)
    return entry


async def list_entries(session: AsyncSession, operator_id: int, limit: int = 200) -> list[AuditEntry]:
    """Return the newest audit entries of one operator."""
    rows = await session.exec(
        select(AuditEntry)
        .where(AuditEntry.operator_id == operator_id)
        .order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc())
        .limit(limit)
    )
    return list(rows)
