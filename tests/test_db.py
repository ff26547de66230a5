"""Work that must follow only a committed change (``db.after_commit``)."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import after_commit
from powerbank.models import Operator


async def test_work_after_commit_runs_once_when_stored_and_never_after_a_rollback(session: AsyncSession) -> None:
    ran: list[str] = []
    session.add(Operator(name="Kept"))
    after_commit(session, lambda: ran.append("kept"))
    assert ran == []
    await session.commit()
    assert ran == ["kept"]

    session.add(Operator(name="Dropped"))
    after_commit(session, lambda: ran.append("dropped"))
    await session.rollback()
    await session.commit()
    assert ran == ["kept"]


async def test_failing_work_after_commit_does_not_undo_the_commit_or_stop_the_rest(session: AsyncSession) -> None:
    ran: list[str] = []

    def fail() -> None:
        raise RuntimeError("boom")

    session.add(Operator(name="Stored"))
    after_commit(session, fail)
    after_commit(session, lambda: ran.append("second"))
    await session.commit()
    assert ran == ["second"]
    session.expunge_all()
    assert (await session.exec(select(Operator.name).where(Operator.name == "Stored"))).all() == ["Stored"]
