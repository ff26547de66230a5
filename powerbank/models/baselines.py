"""Each charger's measured power per quarter-hour, kept for the baseline of scheduled activations."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime


class MeterQuarter(SQLModel, table=True):
    """The sum and count of a charger's power samples in one quarter-hour (UTC), added to as they arrive.

    The samples themselves are pruned to the newest; a scheduled activation's baseline is the median
    of these means on previous working days (services/delivery.py).
    """

    __tablename__ = "meter_quarter"

    charge_point_id: int = Field(foreign_key="charge_point.id", primary_key=True, ondelete="CASCADE")
    # The quarter-hour's start, UTC (every European zone's quarter-hours start on a UTC quarter-hour).
    starts_at: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    power_sum_w: float
    samples: int
