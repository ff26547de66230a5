"""An activation's judged delivery is stored with its verdicts once its evidence is kept, and read back as judged."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import pytest
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import Activation, DeliveryRecord, DeliveryRecordCharger, DeliverySample, Dispatch, Operator
from powerbank.routes import activations as activation_routes
from powerbank.services import activations as activation_service
from powerbank.services import delivery
from tests.conftest import Factory, LoginAs
from tests.services.reliability_support import DELIVERS, IDLE, IGNORES, OFFLINE, WINDOW_S, judged_activation


def _figures(judged: delivery.Delivery) -> tuple[object, ...]:
    """Everything a page, an export or the API shows of a delivery."""
    chargers = [
        (c.dispatch.id, *(getattr(c, name) for name in delivery.RECORD_CHARGER_COLUMNS)) for c in judged.chargers
    ]
    area = judged.area
    points = [dataclasses.astuple(p) for p in area.points]
    return (
        chargers,
        points,
        area.expected_w,
        area.half_s,
        area.full_s,
        area.half_met,
        area.full_met,
        judged.clock_replaced,
        judged.discarded,
        judged.clocks_behind,
    )


async def _dispatches(session: AsyncSession, activation_id: int | None) -> list[Dispatch]:
    rows = await session.exec(
        select(Dispatch).where(Dispatch.activation_id == activation_id).order_by(col(Dispatch.id))
    )
    return list(rows)


async def test_the_stored_record_reads_back_exactly_as_the_activation_is_judged_from_its_evidence(
    session: AsyncSession, factory: Factory
) -> None:
    team = await factory.team()
    behaviours = [DELIVERS, IGNORES, OFFLINE, IDLE, DELIVERS]
    chargers = [(await factory.charge_point(team), behaviour) for behaviour in behaviours]
    activation = await judged_activation(session, team.operator_id, chargers, hours_ago=1)
    dispatches = await _dispatches(session, activation.id)

    stored = await delivery.stored_delivery(session, activation, dispatches)
    judged = await delivery.delivery_of(session, activation, dispatches)
    assert stored is not None and judged is not None
    assert _figures(stored) == _figures(judged)
    assert stored.count(delivery.Verdict.DELIVERED) == 2
    assert stored.area.points[0].offset_s == -delivery.CONTEXT_S
    assert stored.area.points[-1].offset_s == WINDOW_S + delivery.CONTEXT_S
    # Readers get the record, not a new judgement: a dispatch row changed since does not change it.
    assert await delivery.record_or_judge(session, activation, dispatches) is not None
    rows = list(await session.exec(select(DeliveryRecordCharger)))
    assert len(rows) == len(behaviours)


async def test_a_record_is_stored_once_whoever_keeps_it_again(session: AsyncSession, factory: Factory) -> None:
    team = await factory.team()
    activation = await judged_activation(
        session, team.operator_id, [(await factory.charge_point(team), DELIVERS)], hours_ago=1
    )
    first = (await session.exec(select(DeliveryRecord))).one()
    judged_at = first.judged_at
    await delivery.keep_verdicts(session, activation, judged_at + timedelta(hours=1))
    await session.commit()
    again = list(await session.exec(select(DeliveryRecord)))
    assert len(again) == 1 and again[0].judged_at == judged_at
    assert len(list(await session.exec(select(DeliveryRecordCharger)))) == 1


@pytest.mark.parametrize("chunk", [1, 2, 3])
async def test_an_activation_judged_in_chunks_is_judged_as_in_one(
    session: AsyncSession, factory: Factory, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    team = await factory.team()
    behaviours = [DELIVERS, IGNORES, DELIVERS, IDLE, DELIVERS, OFFLINE, IGNORES]
    chargers = [(await factory.charge_point(team), behaviour) for behaviour in behaviours]
    activation = await judged_activation(session, team.operator_id, chargers, hours_ago=1)
    dispatches = await _dispatches(session, activation.id)
    whole = await delivery.delivery_of(session, activation, dispatches)
    monkeypatch.setattr(delivery, "VERDICT_CHUNK", chunk)
    chunked = await delivery.delivery_of(session, activation, dispatches)
    assert whole is not None and chunked is not None
    assert _figures(chunked) == _figures(whole)
    # 4 of 7 deliver or have nothing to reduce: the area reached half at once, never 90 %.
    assert whole.area.half_s == 0.0 and whole.area.full_s is None


async def test_an_activation_kept_before_records_were_stored_is_judged_when_read(
    session: AsyncSession, factory: Factory
) -> None:
    team = await factory.team()
    activation = await judged_activation(
        session, team.operator_id, [(await factory.charge_point(team), DELIVERS)], hours_ago=1
    )
    for table in (DeliveryRecordCharger, DeliveryRecord):
        for row in await session.exec(select(table)):
            await session.delete(row)
    await session.commit()
    dispatches = await _dispatches(session, activation.id)
    assert await delivery.stored_delivery(session, activation, dispatches) is None
    judged = await delivery.record_or_judge(session, activation, dispatches)
    assert judged is not None and judged.count(delivery.Verdict.DELIVERED) == 1


async def test_the_activation_page_reads_the_record_and_shows_its_chargers_a_page_at_a_time(
    session: AsyncSession, factory: Factory, login_as: LoginAs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(activation_routes, "CHARGER_ROWS", 2)
    team = await factory.team()
    chargers = [(await factory.charge_point(team), behaviour) for behaviour in (DELIVERS, IGNORES, DELIVERS)]
    activation = await judged_activation(session, team.operator_id, chargers, hours_ago=1)
    # What the page shows is the stored record: change a stored verdict and the page says so.
    row = (
        await session.exec(select(DeliveryRecordCharger).where(col(DeliveryRecordCharger.verdict) == "delivered"))
    ).first()
    assert row is not None
    row.verdict = delivery.Verdict.PARTIAL
    await session.commit()
    operator = await session.get(Operator, team.operator_id)
    admin = await factory.user(operator=operator, operator_role="admin")
    client = await login_as(admin)
    url = f"/activations/{activation.id}"

    first = await (await client.get(url)).get_data(as_text=True)
    assert "Chargers 1–2 of 3" in first and 'rel="next"' in first and 'rel="prev"' not in first
    assert _verdict_counts(first) == {"Delivered": 1, "Partial": 1, "Accepted but not delivered": 1}
    assert "<polyline" in first
    second = await (await client.get(f"{url}?page=2")).get_data(as_text=True)
    assert "Chargers 3–3 of 3" in second and 'rel="prev"' in second and 'rel="next"' not in second
    shown = {cp.identity: (cp.identity in first, cp.identity in second) for cp, _ in chargers}
    assert sorted(shown.values()) == [(False, True), (True, False), (True, False)]
    # A page past the end, or not a number, shows the nearest page.
    assert "Chargers 3–3 of 3" in await (await client.get(f"{url}?page=9")).get_data(as_text=True)
    assert "Chargers 1–2 of 3" in await (await client.get(f"{url}?page=x")).get_data(as_text=True)


def _verdict_counts(page: str) -> dict[str, int]:
    """The page's "What the meters show" counts, by verdict."""
    section = page.split('id="response-heading"', 1)[1].split("</dl>", 1)[0]
    return {name: int(n) for name, n in re.findall(r"<dt>([^<]+)</dt><dd>(\d+)</dd>", section) if int(n)}


async def test_evidence_copied_in_chunks_is_the_same_and_a_copy_cut_off_is_finished_without_duplicates(
    session: AsyncSession, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = await factory.team()
    behaviours = [DELIVERS, IGNORES, DELIVERS, IDLE, OFFLINE]
    chargers = [(await factory.charge_point(team), behaviour) for behaviour in behaviours]
    whole = await judged_activation(session, team.operator_id, chargers, hours_ago=1)
    expected = await _evidence(session, whole.id)
    assert len(expected) == len(behaviours) * 24

    # The same chargers' samples again, for a second activation kept in steps: two chunks, one cut off.
    second = Activation(**whole.model_dump(exclude={"id", "evidence_kept_at"}))
    session.add(second)
    await session.flush()
    for d in await _dispatches(session, whole.id):
        session.add(Dispatch(**d.model_dump(exclude={"id", "activation_id"}), activation_id=second.id or 0))
    await session.commit()
    ids = await delivery.evidence_chargers(session, second)
    assert ids == sorted(cp.id for cp, _ in chargers)
    await delivery.copy_evidence(session, second, ids[:2])
    await session.commit()
    # The whole copy runs again (the first was cut off before it was noted): nothing is there twice.
    assert await delivery.keep_evidence(session, second, utcnow())
    await session.commit()
    assert await _evidence(session, second.id) == expected
    assert not await delivery.keep_evidence(session, second, utcnow())


async def _evidence(session: AsyncSession, activation_id: int | None) -> list[tuple[object, ...]]:
    rows = await session.exec(
        select(
            DeliverySample.charge_point_id,
            DeliverySample.measured_at,
            DeliverySample.received_at,
            DeliverySample.power_w,
        ).where(DeliverySample.activation_id == activation_id)
    )
    return sorted(tuple(row) for row in rows)


async def test_the_summary_counted_by_the_database_is_the_summary_of_all_the_rows(
    session: AsyncSession, factory: Factory
) -> None:
    team = await factory.team()
    activation = await judged_activation(
        session, team.operator_id, [(await factory.charge_point(team), DELIVERS) for _ in range(7)], hours_ago=1
    )
    rows = await _dispatches(session, activation.id)
    trigger = activation.triggered_at
    assert trigger is not None
    statuses = ["Accepted", "Accepted", "Rejected", "timeout", "offline", "pending", "Accepted"]
    for index, (row, status) in enumerate(zip(rows, statuses, strict=True)):
        row.status = status
        row.sent_at = None if status in ("offline", "pending") else trigger
        row.answered_at = trigger + timedelta(milliseconds=100 * (7 - index)) if status[0].isupper() else None
        row.released_at = trigger + timedelta(seconds=9) if index % 2 else None
    await session.commit()
    counted = await activation_service.summary_of(session, activation)
    assert counted == activation_service.summarise(activation, rows)
    assert counted.answered == 4 and counted.answered_s == {50: 0.6, 95: None, 100: None}
    page = await activation_service.dispatch_page(session, activation.id or 0, 2, 3)
    assert page == (await activation_service.dispatches_of(session, activation.id or 0))[2:5]
