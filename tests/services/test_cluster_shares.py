"""In a cluster each node reads and records its share of an activation's area, and the claimer
records as offline, once every node had its turn, the signed-up chargers no node recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from quart import Quart
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import (
    Activation,
    ActivationState,
    ChargePoint,
    Dispatch,
    DispatchStatus,
    Participation,
    ParticipationState,
)
from powerbank.services import activations, chargers, cluster
from tests.conftest import Factory


async def sign_up(session: AsyncSession, *charge_points: ChargePoint) -> None:
    for cp in charge_points:
        session.add(
            Participation(
                charge_point_id=cp.id or 0,
                version=1,
                state=ParticipationState.SIGNED_UP,
                since=utcnow(),
                source="bulk",
                reason="",
            )
        )
    await session.commit()


@pytest.mark.parametrize("chunk", [activations.HELD_CHUNK, 1])
async def test_a_node_reads_what_it_holds_or_is_said_to_hold_and_the_claimer_also_what_no_live_node_holds(
    app: Quart, session: AsyncSession, factory: Factory, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(activations, "HELD_CHUNK", chunk)
    team = await factory.team()
    operator_id = team.operator_id
    now = utcnow()
    a = await cluster.register_node(session, "share-a", now=now)
    b = await cluster.register_node(session, "share-b", now=now)
    silent = await cluster.register_node(session, "share-silent", now=now - cluster.LEASE * 2)
    names = ("held", "arrived", "gone", "on_b", "offline", "on_silent", "not_signed_up", "other_area")
    cps = {
        name: await factory.charge_point(
            team, identity=f"SHARE-{name}", price_area="DK2" if name == "other_area" else "DK1"
        )
        for name in names
    }
    await sign_up(session, *(cp for name, cp in cps.items() if name != "not_signed_up"))
    presence = {"held": a, "gone": a, "arrived": b, "on_b": b, "on_silent": silent, "not_signed_up": a}
    for name, node in presence.items():
        await chargers.store_presence(session, {cps[name].id or 0: ("ocpp1.6", True)}, node.id)
    await session.commit()
    # A holds "held", and "arrived", whose move from B the database does not know yet; the
    # database still says A holds "gone", which has left it.
    held = [cps["held"].id or 0, cps["arrived"].id or 0, cps["not_signed_up"].id or 0, cps["other_area"].id or 0]

    share = await activations.targets_held(session, operator_id, "DK1", held, a.id)
    assert sorted(t.identity for t in share) == ["SHARE-arrived", "SHARE-gone", "SHARE-held"]

    claimed = await activations.targets_held(session, operator_id, "DK1", held, a.id, now - cluster.LEASE)
    assert sorted(t.identity for t in claimed) == [
        "SHARE-arrived",
        "SHARE-gone",
        "SHARE-held",
        "SHARE-offline",
        "SHARE-on_silent",
    ]
    # Another operator's chargers are never anyone's share of this one's area.
    assert await activations.targets_held(session, operator_id + 1000, "DK1", held, a.id, now) == []


@pytest.mark.parametrize("chunk", [activations.HELD_CHUNK, 1])
async def test_the_claimers_look_records_the_chargers_no_node_recorded_as_offline_and_keeps_every_other_row(
    app: Quart, session: AsyncSession, factory: Factory, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(activations, "HELD_CHUNK", chunk)
    team = await factory.team()
    sent, unsent, never_signed_up = [await factory.charge_point(team, identity=f"LOOK-{n}") for n in range(3)]
    await sign_up(session, sent, unsent)
    now = utcnow()
    activation = Activation(
        operator_id=team.operator_id,
        price_area="DK1",
        market="FCR-D up",
        action="pause",
        start_at=now,
        duration_s=60,
        end_at=now + timedelta(seconds=60),
        state=ActivationState.ACTIVE,
        created_by="test",
        triggered_at=now,
    )
    session.add(activation)
    await session.commit()
    target = activations.Target(sent.id or 0, sent.identity, None, None)
    await activations.record_sent(session, activation, {sent.id or 0: now}, [], [target], 0.0)
    await session.commit()

    assert await activations.record_unsent(session, activation, 0.0) == 1
    await session.commit()
    assert await activations.record_unsent(session, activation, 0.0) == 0
    rows = {
        d.identity: (d.status, d.detail, d.sent_at is not None)
        for d in await session.exec(
            select(Dispatch)
            .where(col(Dispatch.activation_id) == activation.id)
            .execution_options(populate_existing=True)
        )
    }
    assert rows == {
        "LOOK-0": (DispatchStatus.PENDING, "", True),
        "LOOK-1": (DispatchStatus.OFFLINE, activations.UNSENT_DETAIL, False),
    }
    # A node that sends after the look replaces the offline row with what it sent.
    late = activations.Target(unsent.id or 0, unsent.identity, None, None)
    await activations.record_sent(session, activation, {unsent.id or 0: now}, [], [late], 0.0)
    await session.commit()
    (row,) = await session.exec(
        select(Dispatch)
        .where(col(Dispatch.activation_id) == activation.id, col(Dispatch.identity) == "LOOK-1")
        .execution_options(populate_existing=True)
    )
    assert (row.status, row.sent_at is not None) == (DispatchStatus.PENDING, True)
    # A node releasing reads the rows of the chargers it holds (in lists of HELD_CHUNK ids).
    held = [sent.id or 0, unsent.id or 0, never_signed_up.id or 0]
    unreleased = await activations.unreleased(session, activation_id=activation.id, charge_point_ids=held)
    assert sorted(d.identity for d in unreleased) == ["LOOK-0", "LOOK-1"]
    assert await activations.unreleased(session, activation_id=activation.id, charge_point_ids=held[2:]) == []
    assert never_signed_up.identity not in rows
