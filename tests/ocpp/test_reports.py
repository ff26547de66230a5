"""Chargers' frequent reports (meter values, connector status) stored together: group commit."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from quart import Quart
from sqlalchemy import delete
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import ChargePoint, ConnectorStatus, MeterSample, ParticipationState
from powerbank.ocpp.reports import GroupCommit, Report, in_session, store_reports
from powerbank.ocpp.sqlite_reports import SqliteReportWriter
from powerbank.services import chargers
from powerbank.services.chargers import METER_SAMPLES_KEPT, MeterReading, StatusReport
from powerbank.services.enrollment import get_participation
from powerbank.services.frame_log import FrameLog
from powerbank.web import state
from tests.conftest import Factory

WriterFor = Callable[[Quart], GroupCommit[Report]]


@pytest.fixture(params=[pytest.param("sqlite file", marks=pytest.mark.sqlite_only), "session"])
async def writer_for(request: pytest.FixtureRequest) -> AsyncIterator[WriterFor]:
    """Make report writers as the hub does: on a SQLite file past the ORM, or in sessions."""
    own: list[SqliteReportWriter] = []

    def make(app: Quart) -> GroupCommit[Report]:
        sessionmaker = state.sessionmaker(app)
        if request.param == "session":
            return GroupCommit(asyncio.Lock(), in_session(sessionmaker, store_reports), "reports")
        writer = SqliteReportWriter.for_url(sessionmaker.kw["bind"].url)
        assert writer is not None
        own.append(writer)
        return GroupCommit(asyncio.Lock(), writer.store, "reports")

    yield make
    for writer in own:
        await writer.close()


def rows(charge_point_id: int, power_w: float, count: int = 1) -> list[dict[str, object]]:
    now = utcnow()
    return chargers.meter_rows(
        charge_point_id, 1, [MeterReading(now + timedelta(seconds=i), power_w=power_w) for i in range(count)]
    )


async def samples_of(session: AsyncSession, charge_point_id: int) -> list[MeterSample]:
    session.expire_all()
    return list(
        await session.exec(
            select(MeterSample).where(MeterSample.charge_point_id == charge_point_id).order_by(col(MeterSample.id))
        )
    )


async def test_reports_arriving_together_are_stored_in_one_transaction_and_each_waits_for_it(
    app: Quart, factory: Factory, session: AsyncSession, writer_for: WriterFor
) -> None:
    team = await factory.team()
    ids = [(await factory.charge_point(team)).id or 0 for _ in range(20)]
    writer = writer_for(app)

    await asyncio.gather(*(writer.submit(Report(rows(cp_id, 1000.0 + i))) for i, cp_id in enumerate(ids)))

    # Every caller returned only once its rows were stored...
    for i, cp_id in enumerate(ids):
        assert [s.power_w for s in await samples_of(session, cp_id)] == [1000.0 + i]
    # ...and all twenty, handed over before the writer ran, were written in one transaction.
    assert (writer.batches, writer.largest_batch) == (1, 20)


async def test_a_report_for_a_deleted_charge_point_fails_alone(
    app: Quart, factory: Factory, session: AsyncSession, writer_for: WriterFor
) -> None:
    team = await factory.team()
    kept_id, deleted_id = (await factory.charge_point(team)).id or 0, (await factory.charge_point(team)).id or 0
    await session.exec(delete(ChargePoint).where(col(ChargePoint.id) == deleted_id))
    await session.commit()
    writer = writer_for(app)

    outcomes = await asyncio.gather(
        writer.submit(Report(rows(kept_id, 1.0))),
        writer.submit(Report(rows(deleted_id, 2.0))),
        writer.submit(Report(rows(kept_id, 3.0))),
        return_exceptions=True,
    )

    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], Exception)
    assert [s.power_w for s in await samples_of(session, kept_id)] == [1.0, 3.0]
    assert await samples_of(session, deleted_id) == []


async def test_pruning_keeps_the_newest_samples_of_each_charger(
    app: Quart, factory: Factory, session: AsyncSession, writer_for: WriterFor
) -> None:
    team = await factory.team()
    busy_id, quiet_id = (await factory.charge_point(team)).id or 0, (await factory.charge_point(team)).id or 0
    await chargers.insert_meter_rows(session, rows(busy_id, 5.0, METER_SAMPLES_KEPT + 30))
    await chargers.insert_meter_rows(session, rows(quiet_id, 7.0, 10))
    await session.commit()
    newest = [s.id for s in await samples_of(session, busy_id)][-METER_SAMPLES_KEPT:]

    await writer_for(app).submit(Report(prune=busy_id))
    await chargers.prune_meter_samples(session, [quiet_id])
    await session.commit()

    assert [s.id for s in await samples_of(session, busy_id)] == newest
    assert len(await samples_of(session, quiet_id)) == 10


async def test_statuses_keep_the_latest_per_connector(
    app: Quart, factory: Factory, session: AsyncSession, writer_for: WriterFor
) -> None:
    team = await factory.team()
    cp_id = (await factory.charge_point(team)).id or 0
    writer = writer_for(app)
    await writer.submit(Report(status=StatusReport(cp_id, 1, "Available", None, None)))

    await asyncio.gather(
        writer.submit(Report(status=StatusReport(cp_id, 1, "Preparing", None, None))),
        writer.submit(Report(status=StatusReport(cp_id, 1, "Charging", None, None))),
        writer.submit(Report(status=StatusReport(cp_id, 2, "Faulted", "GroundFailure", None))),
    )

    session.expire_all()
    statuses = list(
        await session.exec(
            select(ConnectorStatus)
            .where(ConnectorStatus.charge_point_id == cp_id)
            .order_by(col(ConnectorStatus.connector_id))
        )
    )
    assert [(s.connector_id, s.status, s.error_code) for s in statuses] == [
        (1, "Charging", None),
        (2, "Faulted", "GroundFailure"),
    ]
    count = (await session.exec(select(func.count()).select_from(ConnectorStatus))).one()
    assert count == 2


def test_frame_log_keeps_direction_time_and_text_of_the_newest_frames() -> None:
    log = FrameLog(size=3)
    before = utcnow()
    for i in range(5):
        log.add("CP-1", outgoing=i % 2 == 1, text=f'[2,"{i}","DataTransfer",{{"data":"a b  c"}}]')

    frames = log.recent("CP-1")

    assert [(f.outgoing, f.text) for f in frames] == [
        (False, '[2,"4","DataTransfer",{"data":"a b  c"}]'),
        (True, '[2,"3","DataTransfer",{"data":"a b  c"}]'),
        (False, '[2,"2","DataTransfer",{"data":"a b  c"}]'),
    ]
    assert all(before - timedelta(seconds=1) <= f.at <= utcnow() + timedelta(seconds=1) for f in frames), frames
    assert log.recent("CP-2") == []


async def test_boots_and_probe_answers_are_stored_in_batches_and_reevaluated_only_when_they_change(
    app: Quart, factory: Factory, session: AsyncSession
) -> None:
    team = await factory.team()
    ids = [(await factory.charge_point(team, price_area="DK2")).id or 0 for _ in range(3)]
    gone_id = ids[-1] + 1000  # Never existed (deleted since it connected): skipped, not an error.
    boot = chargers.BootInfo("ocpp1.6", "Easee", "Home", "1.0", None)
    no_smart_charging = chargers.Capability(smart_charging=False, feature_profiles="Core")

    await chargers.store_boots(session, [(cp_id, boot) for cp_id in [*ids, gone_id]])
    await session.commit()
    signed_up = [
        (await get_participation(session, cp)).state
        for cp in await session.exec(select(ChargePoint).where(col(ChargePoint.id).in_(ids)))
    ]
    changes = await chargers.store_capabilities(session, [(cp_id, no_smart_charging) for cp_id in [*ids, gone_id]])
    await session.commit()
    # A reboot that reports the same: nothing to re-evaluate.
    await chargers.store_boots(session, [(cp_id, boot) for cp_id in ids])
    again = await chargers.store_capabilities(session, [(cp_id, no_smart_charging) for cp_id in ids])
    await session.commit()

    # DK2 chargers are signed up at their first boot (R6), all three in one batch...
    assert signed_up == [ParticipationState.SIGNED_UP] * 3
    # ...and suspended together once their answers say they cannot take a limit (R2).
    assert sorted(cp_id for cp_id, _ in changes) == ids
    assert again == []
    session.expire_all()
    stored = list(await session.exec(select(ChargePoint).where(col(ChargePoint.id).in_(ids))))
    assert {(cp.reported_vendor, cp.reported_firmware, cp.smart_charging) for cp in stored} == {("Easee", "1.0", False)}


@pytest.mark.sqlite_only
async def test_the_sqlite_writer_stores_rows_exactly_as_the_orm_does(
    app: Quart, factory: Factory, session: AsyncSession
) -> None:
    team = await factory.team()
    by_orm, by_writer = (await factory.charge_point(team)).id or 0, (await factory.charge_point(team)).id or 0
    at = utcnow().replace(microsecond=123456)
    reading = [MeterReading(at, power_w=7360.5, energy_wh=12.25, currents_a={"L1": 16.0})]
    sessionmaker = state.sessionmaker(app)
    writer = SqliteReportWriter.for_url(sessionmaker.kw["bind"].url)
    assert writer is not None
    try:
        for cp_id, store in ((by_orm, in_session(sessionmaker, store_reports)), (by_writer, writer.store)):
            await store(
                [
                    Report(
                        chargers.meter_rows(cp_id, 1, reading, "tx-1"),
                        status=StatusReport(cp_id, 1, "Charging", None, at),
                    )
                ]
            )
    finally:
        await writer.close()

    def stored(table: str, cp_id: int) -> list[tuple[object, ...]]:
        with sqlite3.connect(sessionmaker.kw["bind"].url.database) as raw:
            rows = raw.execute(f"SELECT * FROM {table} WHERE charge_point_id = ?", (cp_id,)).fetchall()
        return [
            tuple(
                value
                for name, value in zip(columns(raw, table), row, strict=True)
                if name not in ("id", "received_at", "charge_point_id")
            )
            for row in rows
        ]

    def columns(raw: sqlite3.Connection, table: str) -> list[str]:
        return [row[1] for row in raw.execute(f"PRAGMA table_info({table})")]

    for table in ("ocpp_meter_sample", "ocpp_connector_status"):
        assert stored(table, by_writer) == stored(table, by_orm) != []
    sample = (await samples_of(session, by_writer))[0]
    assert (sample.measured_at, sample.power_w, sample.energy_wh, sample.current_l1_a, sample.transaction_id) == (
        at,
        7360.5,
        12.25,
        16.0,
        "tx-1",
    )
