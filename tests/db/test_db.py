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


async def test_work_after_commit_waits_for_the_outermost_transaction(session: AsyncSession) -> None:
    ran: list[str] = []
    # A savepoint that commits inside a transaction that rolls back: nothing was stored.
    savepoint = await session.begin_nested()
    after_commit(session, lambda: ran.append("inner"))
    session.add(Operator(name="Inner"))
    await savepoint.commit()
    assert ran == []
    await session.rollback()
    assert ran == []

    # A savepoint that rolls back inside a transaction that commits: the outer work still runs.
    after_commit(session, lambda: ran.append("outer"))
    session.add(Operator(name="Outer"))
    savepoint = await session.begin_nested()
    await savepoint.rollback()
    await session.commit()
    assert ran == ["outer"]


async def test_work_of_a_session_closed_without_commit_is_dropped(session: AsyncSession) -> None:
    ran: list[str] = []
    session.add(Operator(name="Never"))
    after_commit(session, lambda: ran.append("never"))
    await session.close()
    session.add(Operator(name="Later"))
    await session.commit()
    assert ran == []
