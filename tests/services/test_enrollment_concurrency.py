"""Bulk sign-up at scale (bounded queries) and two people saving the same team at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import event
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.errors import ConflictError
from powerbank.models import ChargePoint, Participation, ParticipationEvent, ParticipationState, Team, User
from powerbank.rules.gsrn import make_facility_id
from powerbank.rules.permissions import load_principal
from powerbank.services import enrollment
from powerbank.web import state
from tests.conftest import Factory


async def make_team(session: AsyncSession, factory: Factory, size: int) -> tuple[Team, User, dict[int, str]]:
    """Return a team of ``size`` charge points: Danish, Swedish without a Facility ID, and opted-out ones."""
    team = await factory.team()
    user = await factory.user(team=team, team_role="admin")
    charge_points = [
        ChargePoint(
            team_id=team.id or 0,
            name=f"Charger {n:04d}",
            identity=f"SCALE-{team.id}-{n}",
            brand="Easee",
            model="Home",
            country="SE" if n % 4 == 0 else "DK",
            price_area="SE3" if n % 4 == 0 else "DK1",
            ocpp_password_hash="x",
        )
        for n in range(size)
    ]
    session.add_all(charge_points)
    await session.flush()
    session.add_all(
        Participation(charge_point_id=cp.id or 0, state=ParticipationState.OPTED_OUT, source="single")
        for n, cp in enumerate(charge_points)
        if n % 4 == 1
    )
    await session.commit()
    typed = {cp.id or 0: make_facility_id(f"{n:011d}") for n, cp in enumerate(charge_points) if n % 4 == 0}
    return team, user, typed


async def count_queries(app: Quart, action: Callable[[], Awaitable[Any]]) -> int:
    """Run ``action`` and return how many SQL statements it sent to the database.

    Only the statements of this task: the app's background workers (the notification worker woken
    by a commit, say) share the engine and would be counted too.
    """
    statements: list[str] = []
    ours = asyncio.current_task()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if asyncio.current_task() is ours:
            statements.append(statement)

    engine = state.engine(app).sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        await action()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(statements)


@pytest.mark.parametrize("sign_up_all", [True, False], ids=["sign up all", "ticked rows"])
async def test_bulk_sign_up_runs_the_same_number_of_queries_for_10_and_500_charge_points(
    app: Quart, session: AsyncSession, factory: Factory, sign_up_all: bool
) -> None:
    counts = {}
    for size in (10, 500):
        team, user, typed = await make_team(session, factory, size)
        principal = await load_principal(session, user)
        ticked = (
            None
            if sign_up_all
            else [row.charge_point.id or 0 for row in await enrollment.eligibility_for_team(session, team)]
        )

        async def save(team: Team = team, typed: dict[int, str] = typed, ticked: list[int] | None = ticked) -> None:
            result = await enrollment.bulk_sign_up(
                session,
                principal,
                team,
                accept_terms_version="demo-v1",
                charge_point_ids=ticked,
                sign_up_all=sign_up_all,
                facility_ids=typed,
            )
            assert len(result.signed_up) == size
            await session.commit()

        counts[size] = await count_queries(app, save)
    assert counts[10] == counts[500]
    # 12 on SQLite, 13 on PostgreSQL, with the notification telling of the sign-ups.
    assert counts[500] <= 13, counts


async def test_two_people_signing_up_the_same_team_at_once_make_no_duplicate_and_lose_nothing(
    app: Quart, session: AsyncSession, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = await factory.team()
    first_user = await factory.user(team=team, team_role="admin")
    second_user = await factory.user(team=team, team_role="owner")
    for _ in range(3):
        await factory.charge_point(team)
    both_have_read = asyncio.Barrier(2)
    read_rows = enrollment.eligibility_for_team

    async def read_then_wait(session_: AsyncSession, team_: Team) -> list[enrollment.RowStatus]:
        rows = await read_rows(session_, team_)
        # Both saves have read the same state before either writes: the worst interleaving.
        await asyncio.wait_for(both_have_read.wait(), timeout=10)
        return rows

    monkeypatch.setattr(enrollment, "eligibility_for_team", read_then_wait)

    async def save(user: User) -> str:
        async with state.sessionmaker(app)() as db:
            principal = await load_principal(db, user)
            own_team = await db.get(Team, team.id)
            assert own_team is not None
            try:
                result = await enrollment.bulk_sign_up(
                    db,
                    principal,
                    own_team,
                    accept_terms_version="demo-v1",
                    charge_point_ids=None,
                    sign_up_all=True,
                    facility_ids={},
                )
            except ConflictError:
                await db.rollback()
                return "conflict"
            await db.commit()
            return result.message

    outcomes = sorted(await asyncio.gather(save(first_user), save(second_user)))
    assert outcomes == ["3 charge points signed up.", "conflict"]
    events = (await session.exec(select(func.count()).select_from(ParticipationEvent))).one()
    assert events == 3
    monkeypatch.setattr(enrollment, "eligibility_for_team", read_rows)
    # The one who lost sees the current state and can save again: nothing left to do, nothing duplicated.
    assert await save(second_user) == "0 charge points signed up; 3 were already signed up."
    assert (await session.exec(select(func.count()).select_from(ParticipationEvent))).one() == 3


async def test_an_opt_out_racing_a_sign_up_is_not_lost(
    app: Quart, session: AsyncSession, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = await factory.team()
    user = await factory.user(team=team, team_role="admin")
    cp = await factory.charge_point(team)
    session.add(
        Participation(
            charge_point_id=cp.id or 0,
            state=ParticipationState.SUSPENDED,
            source="automatic",
            reason="Not compatible",
            since=utcnow(),
        )
    )
    await session.commit()
    both_have_read = asyncio.Barrier(2)
    read_one = enrollment.get_participation

    sessions_that_read: set[int] = set()

    async def read_then_wait(session_: AsyncSession, charge_point: ChargePoint) -> enrollment.RowStatus:
        row = await read_one(session_, charge_point)
        if id(session_) not in sessions_that_read:
            # The first read of each: both have read the same state before either writes.
            sessions_that_read.add(id(session_))
            await asyncio.wait_for(both_have_read.wait(), timeout=10)
        return row

    monkeypatch.setattr(enrollment, "get_participation", read_then_wait)

    async def change(action: str) -> str:
        async with state.sessionmaker(app)() as db:
            principal = await load_principal(db, user)
            own = await db.get(ChargePoint, cp.id)
            assert own is not None
            try:
                if action == "opt out":
                    await enrollment.opt_out(db, principal, own)
                else:
                    await enrollment.sign_up_one(db, principal, own, accept_terms_version="demo-v1", facility_id=None)
            except ConflictError:
                await db.rollback()
                return f"{action}: conflict"
            await db.commit()
            return f"{action}: saved"

    outcomes = set(await asyncio.gather(change("opt out"), change("sign up")))
    assert len(outcomes) == 2 and sum(outcome.endswith("saved") for outcome in outcomes) == 1
    saved = next(outcome for outcome in outcomes if outcome.endswith("saved"))
    participation = (await session.exec(select(Participation).execution_options(populate_existing=True))).one()
    assert ParticipationState(participation.state).label == (
        "Opted out" if saved.startswith("opt out") else "Signed up"
    )
    assert participation.version == 2
    assert (await session.exec(select(func.count()).select_from(ParticipationEvent))).one() == 1
