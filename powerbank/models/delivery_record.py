"""An activation's judged delivery, stored once its evidence is kept: what its page, exports and API show.

Judging a large activation reads every sample of every charger (seconds for thousands of chargers);
the evidence does not change once kept, so the result is judged once, in chunks that let the hub's
event loop go on, and stored: a page of a 10,000-charger activation then reads it instead of
judging it again (after a restart, on every node).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime, utcnow


class DeliveryRecord(SQLModel, table=True):
    """The area's response of one activation (services/delivery.py ``AreaResponse``) and its totals."""

    __tablename__ = "delivery_record"

    activation_id: int = Field(primary_key=True, foreign_key="activation.id", ondelete="CASCADE")
    judged_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expected_w: float
    # The sum of the chargers' baselines (None when none has one).
    baseline_w: float | None = None
    half_s: float | None = None
    full_s: float | None = None
    clock_replaced: int = 0
    discarded: int = 0
    clocks_behind: int = 0
    # The curve at 1 s: [[offset_s, baseline_w, measured_w, limit_w, reporting], ...] (None where nothing reported).
    curve: list[list[Any]] = Field(sa_column=Column(JSON, nullable=False))


class DeliveryRecordCharger(SQLModel, table=True):
    """One dispatch row's part in a stored record (services/delivery.py ``ChargerDelivery``)."""

    __tablename__ = "delivery_record_charger"

    activation_id: int = Field(primary_key=True, foreign_key="activation.id", ondelete="CASCADE")
    dispatch_id: int = Field(primary_key=True, foreign_key="dispatch.id", ondelete="CASCADE")
    verdict: str = Field(max_length=40)
    baseline_w: float | None = None
    baseline_method: str = Field(max_length=40)
    baseline_detail: str = ""
    expected_w: float | None = None
    delivered_w: float | None = None
    best_w: float | None = None
    reached_s: float | None = None
    samples: int = 0
    clock_replaced: int = 0
    discarded: int = 0
    note: str = ""
