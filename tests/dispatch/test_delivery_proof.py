"""Proof of delivery end to end: a real activation of a simulated charger, judged from its meter values.

While an activation runs its chargers' samples are not pruned; once it is over (and the minute after),
the leader copies them as evidence, and the verdicts and the curve read that copy from then on.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from quart import Quart
from sqlmodel import col, delete, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.dispatch.gateway import gateway
from powerbank.models import Activation, DeliverySample, DeliveryVerdict, MeterSample
from powerbank.ocpp.registry import registry_of
from tests.conftest import Factory, LoginAs
from tests.dispatch.support import activate, connect_all, dk2_fleet, running, simulated, write_token
from tests.helpers import eventually

pytestmark = [pytest.mark.usefixtures("fast_hashing"), pytest.mark.served]


async def samples_of(session: AsyncSession, charge_point_id: int) -> int:
    found = await session.exec(select(func.count()).where(MeterSample.charge_point_id == charge_point_id))
    return found.one()


async def test_a_paused_charger_is_judged_delivered_from_its_meters_and_the_evidence_outlives_pruning(
    app: Quart, factory: Factory, session: AsyncSession, login_as: LoginAs
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    cp = (await dk2_fleet(factory, session, team, 1))[0]
    admin = await factory.user(operator=operator, operator_role="admin")
    charger = simulated(cp.identity)
    headers = await write_token(session, operator)
    client = app.test_client()
    async with running(app.config["TEST_OCPP_URL"], [charger]):
        await connect_all(app, session, [(cp, charger)])
        # A baseline needs measurements from before the trigger.
        await eventually(lambda: _at_least(session, cp.id or 0, 3), message="no meter values before the trigger")
        created = await activate(app, headers, price_area="DK2", action="pause", duration_s=30)
        await eventually(lambda: charger.power_w == 0, message="not paused")
        # Its samples are kept (not pruned) while the activation needs them.
        assert registry_of(app).keeps_samples(cp.id or 0)

        async def delivered() -> bool:
            response = await client.get(f"/api/v1/activations/{created['id']}/response", headers=headers)
            body = await response.get_json()
            paused_rows = [r for r in body["rows"] if r["offset_s"] >= 0 and r["measured_kw"] == 0]
            return bool(body["chargers"] and body["chargers"][0]["verdict"] == "delivered" and paused_rows)

        await eventually(delivered, 10.0, "the paused charger is not judged delivered, or its curve not down")
        cancelled = await client.delete(f"/api/v1/activations/{created['id']}", headers=headers)
        assert cancelled.status_code == 200

    body = await (await client.get(f"/api/v1/activations/{created['id']}/response", headers=headers)).get_json()
    charger_row = body["chargers"][0]
    assert charger_row["identity"] == cp.identity and charger_row["status"] == "Accepted"
    assert charger_row["baseline_kw"] == pytest.approx(11.0, rel=0.01)
    assert charger_row["expected_reduction_kw"] == pytest.approx(11.0, rel=0.01)
    assert body["reached_50_percent_s"] is not None and body["expected_reduction_kw"] > 10
    rows = body["rows"]
    assert rows[0]["offset_s"] == -60 and [r["offset_s"] for r in rows] == list(range(-60, -60 + len(rows)))
    assert any(r["measured_kw"] == pytest.approx(11.0, rel=0.01) for r in rows if r["offset_s"] < 0)
    assert any(r["measured_kw"] == 0 and r["limit_kw"] == 0 for r in rows if r["offset_s"] >= 0)

    # A minute after it ended, the leader keeps the evidence; the chargers' own samples may then go.
    runner = gateway(app).runner
    await runner.keep_evidence(utcnow())
    activation = await session.get(Activation, created["id"], populate_existing=True)
    assert activation is not None and activation.evidence_kept_at is None  # not a minute yet
    judging = await runner.keep_evidence(utcnow() + timedelta(seconds=61))
    await session.refresh(activation)
    assert activation.evidence_kept_at is not None
    # Its chargers are judged apart from the copy, and their verdicts stored (reliability reads them).
    assert judging is not None
    await judging
    cp_id = cp.id
    verdicts = (await session.exec(select(DeliveryVerdict).where(DeliveryVerdict.activation_id == created["id"]))).all()
    assert [(v.charge_point_id, v.verdict) for v in verdicts] == [(cp_id, "delivered")]
    kept = (await session.exec(select(func.count()).where(DeliverySample.activation_id == created["id"]))).one()
    assert kept >= 3
    await session.exec(delete(MeterSample).where(col(MeterSample.charge_point_id) == cp_id))  # type: ignore[call-overload]
    await session.commit()
    again = await (await client.get(f"/api/v1/activations/{created['id']}/response", headers=headers)).get_json()
    assert again["chargers"][0]["verdict"] == "delivered"
    assert again["chargers"][0]["baseline_kw"] == charger_row["baseline_kw"]

    # The page shows the verdict and links the exports, which open as CSV with 1 s rows.
    page = await (await login_as(admin)).get(f"/activations/{created['id']}")
    text = await page.get_data(as_text=True)
    assert "What the meters show" in text and "Delivered" in text and "response at 1 s (CSV)" in text
    exported = await (await login_as(admin)).get(f"/activations/{created['id']}/response.csv")
    assert exported.mimetype == "text/csv"
    table = list(csv.DictReader(io.StringIO(await exported.get_data(as_text=True))))
    assert table[0]["offset_s"] == "-60" and int(table[1]["offset_s"]) == -59
    chargers_csv = await client.get(f"/api/v1/activations/{created['id']}/chargers.csv", headers=headers)
    assert list(csv.DictReader(io.StringIO(await chargers_csv.get_data(as_text=True))))[0]["verdict"] == "delivered"


async def test_another_operators_activation_response_is_not_found(
    app: Quart, factory: Factory, session: AsyncSession, login_as: LoginAs
) -> None:
    mine, theirs = await factory.operator(), await factory.operator()
    activation = Activation(
        operator_id=theirs.id or 0,
        price_area="DK2",
        market="Test",
        action="pause",
        start_at=utcnow(),
        duration_s=60,
        end_at=utcnow() + timedelta(seconds=60),
        state="ended",
        created_by="someone",
    )
    session.add(activation)
    await session.commit()
    headers = await write_token(session, mine)
    client = app.test_client()
    for path in ("response", "response.csv", "chargers.csv"):
        response = await client.get(f"/api/v1/activations/{activation.id}/{path}", headers=headers)
        assert response.status_code == 404, path
    admin = await factory.user(operator=mine, operator_role="admin")
    for path in ("response.csv", "chargers.csv"):
        response = await (await login_as(admin)).get(f"/activations/{activation.id}/{path}")
        assert response.status_code == 404, path


async def _at_least(session: AsyncSession, charge_point_id: int, count: int) -> bool:
    return await samples_of(session, charge_point_id) >= count
