"""Each charger's verdict in each activation, stored once the activation's evidence is kept."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime, utcnow


class DeliveryVerdict(SQLModel, table=True):
    """What one charger delivered in one activation, as services/delivery.py judged it from the kept evidence.

    Stored with the evidence (``keep_evidence``), so a charger's record over its recent activations
    (services/reliability.py) is one indexed read, not every past activation judged again.
    ``triggered_at`` is the activation's, copied so that read needs no join to order them.
    """

    __tablename__ = "delivery_verdict"
    __table_args__ = (Index("ix_delivery_verdict_charge_point_id_triggered_at", "charge_point_id", "triggered_at"),)

    activation_id: int = Field(primary_key=True, foreign_key="activation.id", ondelete="CASCADE")
    charge_point_id: int = Field(primary_key=True, foreign_key="charge_point.id", ondelete="CASCADE")
    # A services.delivery.Verdict value: "delivered", "accepted but not delivered"...
    verdict: str = Field(max_length=40)
    triggered_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    judged_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
