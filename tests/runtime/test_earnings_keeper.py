"""The earnings keeper: one round accrues, settles, refreshes open months and closes a month due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import AvailableHour, EarningsMonth, MarketPrice, Participation
from powerbank.runtime.earnings import EarningsKeeper
from powerbank.services import earnings
from powerbank.services.audit import SYSTEM
from powerbank.web import state
from tests.conftest import Factory


async def test_a_round_refreshes_open_months_and_closes_last_month_once_it_is_due(
    app: Quart, session: AsyncSession, factory: Factory
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    cp = await factory.charge_point(team, price_area="DK2")
    hour = datetime(2026, 10, 20, 12, tzinfo=UTC)
    session.add(
        Participation(charge_point_id=cp.id or 0, state="signed_up", since=hour - timedelta(days=30), source="single")
    )
    session.add(AvailableHour(charge_point_id=cp.id or 0, hour=hour, power_w=4000.0))
    session.add(
        MarketPrice(
            operator_id=operator.id or 0,
            price_area="DK2",
            market="FCR-D up",
            kind="capacity",
            currency="DKK",
            starts_at=hour,
            ends_at=hour + timedelta(hours=1),
            price=Decimal("500"),
            entered_by="test",
        )
    )
    await session.commit()
    operator_id = operator.id
    keeper = EarningsKeeper(lambda: state.sessionmaker(app)(), lambda: True)

    # Five days after October: refreshed, still open.
    await keeper.keep(datetime(2026, 11, 5, tzinfo=UTC))
    row = await session.get(EarningsMonth, (operator_id, "2026-10"))
    assert row is not None and row.closed_at is None
    found = await earnings.statement(session, SYSTEM, team, "2026-10")
    assert [line.amount for line in found.lines] == [Decimal("1.40")]  # 0.004 MW × 500 × 70 %

    # Eleven days after: closed by the hub, once.
    due = datetime(2026, 11, 11, 1, tzinfo=UTC)
    await keeper.keep(due)
    await keeper.keep(due + timedelta(hours=1))
    session.expire_all()
    row = await session.get(EarningsMonth, (operator_id, "2026-10"))
    assert row is not None and row.closed_at == due and row.closed_by == "system"
