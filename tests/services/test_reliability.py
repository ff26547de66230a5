"""Flagging chargers that repeatedly accept a limit but do not deliver it, from the verdicts kept with the evidence."""

from __future__ import annotations

import pytest
from quart import Quart
from sqlalchemy import event
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import DeliveryVerdict, Dispatch
from powerbank.services import delivery, reliability
from powerbank.services.delivery import Verdict
from powerbank.web import state
from tests.conftest import Factory
from tests.services.reliability_support import DELIVERS, IDLE, IGNORES, OFFLINE, judged_activation


async def test_keeping_the_evidence_stores_each_chargers_verdict_as_the_activation_page_judges_it(
    session: AsyncSession, factory: Factory
) -> None:
    team = await factory.team()
    good, bad, gone, idle = [await factory.charge_point(team) for _ in range(4)]
    activation = await judged_activation(
        session, team.operator_id, [(good, DELIVERS), (bad, IGNORES), (gone, OFFLINE), (idle, IDLE)], hours_ago=1
    )
    stored = {
        row.charge_point_id: row.verdict
        for row in await session.exec(select(DeliveryVerdict).where(DeliveryVerdict.activation_id == activation.id))
    }
    assert stored == {
        good.id: Verdict.DELIVERED,
        bad.id: Verdict.NOT_DELIVERED,
        gone.id: Verdict.OFFLINE,
        idle.id: Verdict.NOTHING_TO_REDUCE,
    }
    dispatches = list(await session.exec(select(Dispatch).where(Dispatch.activation_id == activation.id)))
    judged = await delivery.delivery_of(session, activation, dispatches)
    assert judged is not None
    assert {c.dispatch.charge_point_id: str(c.verdict) for c in judged.chargers} == stored
    # Kept once: a second look (another node) stores nothing twice.
    assert not await delivery.keep_evidence(session, activation, activation.end_at)


async def test_flagged_when_at_least_two_of_the_last_three_judged_activations_were_not_delivered(
    session: AsyncSession, factory: Factory
) -> None:
    team = await factory.team()
    recently_bad, once_bad_long_ago, unjudged_in_between, always_good, never_reached = [
        await factory.charge_point(team) for _ in range(5)
    ]
    history = [  # oldest first
        [
            (once_bad_long_ago, IGNORES),
            (unjudged_in_between, IGNORES),
            (always_good, DELIVERS),
            (recently_bad, DELIVERS),
        ],
        [
            (once_bad_long_ago, IGNORES),
            (unjudged_in_between, IGNORES),
            (always_good, DELIVERS),
            (recently_bad, IGNORES),
        ],
        [
            (once_bad_long_ago, DELIVERS),
            (unjudged_in_between, OFFLINE),
            (always_good, DELIVERS),
            (recently_bad, IGNORES),
        ],
        [(once_bad_long_ago, DELIVERS), (unjudged_in_between, IDLE), (always_good, DELIVERS), (recently_bad, DELIVERS)],
    ]
    activations = [
        await judged_activation(session, team.operator_id, behaviours, hours_ago=10 - index)
        for index, behaviours in enumerate(history)
    ]
    found = await reliability.reliability_of(
        session,
        [cp.id or 0 for cp in (recently_bad, once_bad_long_ago, unjudged_in_between, always_good, never_reached)],
    )

    bad = found[recently_bad.id or 0]
    assert bad.flagged
    assert bad.summary == "accepted but not delivered in 2 of its last 3 activations"
    assert [j.activation_id for j in bad.recent] == [activations[3].id, activations[2].id, activations[1].id]
    assert [j.activation_id for j in bad.not_delivered] == [activations[2].id, activations[1].id]

    # Two failures, but the last three judged activations hold only one: an old record ages out.
    assert not found[once_bad_long_ago.id or 0].flagged
    assert found[once_bad_long_ago.id or 0].summary == "accepted but not delivered in 1 of its last 3 activations"

    # Offline and nothing to reduce say nothing either way, and push no judged activation out.
    skipped = found[unjudged_in_between.id or 0]
    assert skipped.flagged and [j.activation_id for j in skipped.recent] == [activations[1].id, activations[0].id]
    assert skipped.summary == "accepted but not delivered in 2 of its last 2 activations"

    assert not found[always_good.id or 0].flagged
    assert not found[never_reached.id or 0].flagged and found[never_reached.id or 0].recent == []


async def test_an_activation_cancelled_before_the_markets_full_activation_time_counts_neither_way(
    session: AsyncSession, factory: Factory
) -> None:
    """Cancelled 10 s after its trigger (the market gives 30 s): nothing is kept against a slow charger,
    while one that delivered in time is kept as delivered."""
    team = await factory.team()
    slow, quick = await factory.charge_point(team), await factory.charge_point(team)
    cut_short = [
        await judged_activation(
            session, team.operator_id, [(slow, IGNORES), (quick, DELIVERS)], hours_ago=5 - index, cancelled_after_s=10
        )
        for index in range(2)
    ]
    stored = await session.exec(
        select(DeliveryVerdict).where(col(DeliveryVerdict.activation_id).in_([a.id for a in cut_short]))
    )
    assert sorted((row.charge_point_id, row.verdict) for row in stored) == [(quick.id, "delivered")] * 2
    await judged_activation(session, team.operator_id, [(slow, IGNORES)], hours_ago=1)
    found = (await reliability.reliability_of(session, [slow.id or 0]))[slow.id or 0]
    assert not found.flagged
    assert found.summary == "its last activation: accepted but not delivered"


async def test_a_large_activations_verdicts_are_stored_in_chunks_all_of_them(
    session: AsyncSession, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "VERDICT_CHUNK", 2)
    team = await factory.team()
    chargers = [await factory.charge_point(team) for _ in range(5)]
    behaviours = [(cp, IGNORES if index % 2 else DELIVERS) for index, cp in enumerate(chargers)]
    activation = await judged_activation(session, team.operator_id, behaviours, hours_ago=1)
    stored = await session.exec(select(DeliveryVerdict).where(DeliveryVerdict.activation_id == activation.id))
    assert sorted((row.charge_point_id, row.verdict) for row in stored) == [
        (cp.id, Verdict.NOT_DELIVERED if behaviour == IGNORES else Verdict.DELIVERED) for cp, behaviour in behaviours
    ]
    one = await reliability.reliability_of_one(session, chargers[1].id or 0)
    assert not one.flagged and one.summary == "its last activation: accepted but not delivered"


@pytest.mark.parametrize("size", [3, 60])
async def test_a_whole_list_is_judged_in_one_query(
    app: Quart, session: AsyncSession, factory: Factory, size: int
) -> None:
    team = await factory.team()
    chargers = [await factory.charge_point(team) for _ in range(size)]
    for hours_ago in (3, 2, 1):
        await judged_activation(session, team.operator_id, [(cp, IGNORES) for cp in chargers], hours_ago=hours_ago)
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    engine = state.engine(app).sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        found = await reliability.reliability_of(session, [cp.id or 0 for cp in chargers])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1
    assert all(found[cp.id or 0].flagged for cp in chargers)
