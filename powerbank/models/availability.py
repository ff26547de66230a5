"""What each operator could pause in each price area, minute by minute."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime


class AreaAvailability(SQLModel, table=True):
    """One minute of one operator's fleet in one price area: the power its signed-up, online chargers drew.

    Written once a minute by the node that leads (``powerbank.dispatch.availability``); a minute the
    hub did not run has no row. The key is the minute itself, so a minute is never written twice.
    """

    __tablename__ = "area_availability"

    operator_id: int = Field(foreign_key="operator.id", primary_key=True, ondelete="CASCADE")
    price_area: str = Field(primary_key=True, max_length=3)
    # The start of the minute (UTC, no seconds).
    minute: datetime = Field(sa_type=UTCDateTime, primary_key=True, index=True)
    # Sum of the newest measured power of the signed-up, online chargers (those that reported lately).
    power_w: float = Field(default=0.0)
    # Signed-up chargers of the area, online or not.
    signed_up: int = Field(default=0)
    # Signed-up chargers connected to the hub.
    online: int = Field(default=0)
    # Of those, the ones whose newest measured power is recent enough to count.
    reporting: int = Field(default=0)
