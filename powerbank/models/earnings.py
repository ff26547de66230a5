"""Earnings: market prices, revenue shares, the hours and deliveries they pay for, monthly statements."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime, utcnow
from powerbank.models.ids import NEVER_REUSE_IDS


class DecimalText(TypeDecorator[Decimal]):
    """A Decimal stored as its text, exact on every database (SQLite has no decimal type)."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else str(Decimal(value))

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        return None if value is None else Decimal(str(value))


class MarketPrice(SQLModel, table=True):
    """One price an operator admin entered: a capacity price per MW per hour, or an energy price per MWh.

    ``kind`` is "capacity" (paid for available power, per MW and hour) or "energy" (paid for activated
    energy, per MWh); the price holds for [starts_at, ends_at). Periods of one (area, market, kind)
    never overlap (services/earnings.py refuses it).
    """

    __tablename__ = "market_price"
    __table_args__ = (UniqueConstraint("operator_id", "price_area", "market", "kind", "starts_at"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    operator_id: int = Field(foreign_key="operator.id", ondelete="CASCADE")
    price_area: str = Field(max_length=3)
    market: str = Field(max_length=40)
    kind: str = Field(max_length=10)
    currency: str = Field(max_length=3)
    starts_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    ends_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    price: Decimal = Field(sa_type=DecimalText)
    entered_by: str = Field(max_length=254)
    entered_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class OperatorRevenueShare(SQLModel, table=True):
    """The share of market revenue that goes to an operator's teams (unless a team has its own)."""

    __tablename__ = "operator_revenue_share"

    operator_id: int = Field(primary_key=True, foreign_key="operator.id", ondelete="CASCADE")
    share: Decimal = Field(sa_type=DecimalText)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class TeamRevenueShare(SQLModel, table=True):
    """A team's own share of market revenue, overriding its operator's."""

    __tablename__ = "team_revenue_share"

    team_id: int = Field(primary_key=True, foreign_key="team.id", ondelete="CASCADE")
    share: Decimal = Field(sa_type=DecimalText)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class AvailableHour(SQLModel, table=True):
    """One hour (UTC) a charge point was signed up for PowerBank and reported its power: its mean power.

    Accrued from its quarter-hour means (``meter_quarter``, kept only 15 days) by services/earnings.py,
    so a month's capacity earnings outlive them.
    """

    __tablename__ = "available_hour"
    __table_args__ = (Index("ix_available_hour_hour", "hour"),)

    charge_point_id: int = Field(primary_key=True, foreign_key="charge_point.id", ondelete="CASCADE")
    hour: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    power_w: float


class DeliveredEnergy(SQLModel, table=True):
    """What one charger delivered in one activation, judged once from the kept evidence (services/delivery.py).

    ``delivered_wh`` is its delivered reduction held over the activation's window; 0 unless the
    verdict was "delivered" or "partial".
    """

    __tablename__ = "delivered_energy"
    __table_args__ = (Index("ix_delivered_energy_charge_point_id_triggered_at", "charge_point_id", "triggered_at"),)

    activation_id: int = Field(primary_key=True, foreign_key="activation.id", ondelete="CASCADE")
    charge_point_id: int = Field(primary_key=True, foreign_key="charge_point.id", ondelete="CASCADE")
    operator_id: int = Field(foreign_key="operator.id", ondelete="CASCADE")
    price_area: str = Field(max_length=3)
    market: str = Field(max_length=40)
    triggered_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    verdict: str = Field(max_length=40)
    delivered_wh: float


class EarningsSettled(SQLModel, table=True):
    """An activation whose chargers' delivered energy is stored in ``delivered_energy`` (once)."""

    __tablename__ = "earnings_settled"

    activation_id: int = Field(primary_key=True, foreign_key="activation.id", ondelete="CASCADE")
    settled_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class EarningsMonth(SQLModel, table=True):
    """A month of an operator: refreshed (open) or closed, after which its statements never change."""

    __tablename__ = "earnings_month"

    operator_id: int = Field(primary_key=True, foreign_key="operator.id", ondelete="CASCADE")
    # "YYYY-MM"
    month: str = Field(primary_key=True, max_length=7)
    refreshed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_by: str | None = Field(default=None, max_length=254)


class StatementLine(SQLModel, table=True):
    """One line of a team's monthly statement: a charge point's month, or a correction to a closed month.

    An open month's lines are replaced whenever it is refreshed; a closed month's never change.
    ``amount`` is the team's earnings, rounded once (services/earnings.py, ``round_amount``).
    """

    __tablename__ = "statement_line"
    __table_args__ = (
        Index("ix_statement_line_team_id_month", "team_id", "month"),
        # A charge point's page reads its own lines of the last 12 months.
        Index("ix_statement_line_charge_point_id_month", "charge_point_id", "month"),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True)
    operator_id: int = Field(foreign_key="operator.id", ondelete="CASCADE")
    team_id: int = Field(foreign_key="team.id", ondelete="CASCADE")
    month: str = Field(max_length=7)
    # "charge point" or "correction"
    kind: str = Field(max_length=12)
    charge_point_id: int | None = Field(default=None)
    charge_point_name: str = Field(max_length=120)
    price_area: str = Field(max_length=3)
    currency: str = Field(max_length=3)
    hours_signed_up: int = Field(default=0)
    available_kwh: float = Field(default=0.0)
    activations: int = Field(default=0)
    delivered_kwh: float = Field(default=0.0)
    market_value: Decimal = Field(sa_type=DecimalText)
    share: Decimal = Field(sa_type=DecimalText)
    amount: Decimal = Field(sa_type=DecimalText)
    # For a correction: the day it was found and the month it corrects.
    dated: datetime | None = Field(default=None, sa_type=UTCDateTime)
    corrects: str | None = Field(default=None, max_length=7)
    note: str = Field(default="", max_length=200)
