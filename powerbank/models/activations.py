"""Grid activations and what each charger was sent, answered and released."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime, utcnow
from powerbank.models.ids import NEVER_REUSE_IDS


class ActivationState(StrEnum):
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    ENDED = "ended"
    CANCELLED = "cancelled"


class ActivationAction(StrEnum):
    PAUSE = "pause"
    LIMIT = "limit"


class DispatchStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    NOT_SUPPORTED = "NotSupported"
    TIMEOUT = "timeout"
    OFFLINE = "offline"
    ERROR = "error"


class Activation(SQLModel, table=True):
    """A request from the grid: pause or limit charging in one price area for a bounded time."""

    __table_args__ = (
        Index("ix_activation_operator_id_state", "operator_id", "state"),
        Index("ix_activation_state_start_at", "state", "start_at"),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True)
    operator_id: int = Field(foreign_key="operator.id", ondelete="CASCADE")
    price_area: str = Field(max_length=3)
    market: str = Field(max_length=40)
    action: str = Field(max_length=10)
    # Per charger; None for a pause.
    limit_kw: float | None = Field(default=None)
    start_at: datetime = Field(sa_type=UTCDateTime)
    duration_s: int
    end_at: datetime = Field(sa_type=UTCDateTime)
    state: str = Field(max_length=12, default=ActivationState.SCHEDULED)
    created_by: str = Field(max_length=254)
    created_by_user_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # When the hub began sending, and when the last frame of the fan-out went to the socket writers.
    triggered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancelled_by: str | None = Field(default=None, max_length=254)
    # When its chargers' meter samples around the window were copied to ``delivery_sample`` (the
    # proof of delivery; services/delivery.py): until then they are read where the chargers report.
    evidence_kept_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def limit_w(self) -> float:
        """Return the per-charger limit in W (a pause is a limit of 0)."""
        return 0.0 if self.action == ActivationAction.PAUSE else float(self.limit_kw or 0) * 1000


class Dispatch(SQLModel, table=True):
    """One charger's part in an activation: sent, answered, released, and the power it drew."""

    __table_args__ = (UniqueConstraint("activation_id", "charge_point_id"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    activation_id: int = Field(foreign_key="activation.id", index=True, ondelete="CASCADE")
    # Kept (with the identity) when the charge point is deleted, so the record stays readable.
    charge_point_id: int | None = Field(default=None, foreign_key="charge_point.id", index=True, ondelete="SET NULL")
    identity: str = Field(max_length=48)
    status: str = Field(max_length=14, default=DispatchStatus.PENDING)
    detail: str = Field(default="", max_length=200)
    # The limit in force for this charger when it was sent (the stricter of overlapping activations).
    limit_w: float | None = Field(default=None)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    answered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    release_reason: str | None = Field(default=None, max_length=60)
    release_status: str | None = Field(default=None, max_length=40)
    power_before_w: float | None = Field(default=None)
    power_during_w: float | None = Field(default=None)
    # How it was asked to report power during the activation, and what it took (dispatch/metering.py).
    metering: str | None = Field(default=None, max_length=200)


class DeliverySample(SQLModel, table=True):
    """A charger's measured power around an activation, kept as evidence of what it delivered.

    Copied from the chargers' meter samples (which are pruned to the newest) once the activation's
    window and the minute after it are over: from a minute before the trigger to a minute after the end.
    """

    __tablename__ = "delivery_sample"
    __table_args__ = (
        Index("ix_delivery_sample_activation_id_charge_point_id", "activation_id", "charge_point_id"),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True)
    activation_id: int = Field(foreign_key="activation.id", ondelete="CASCADE")
    charge_point_id: int = Field(foreign_key="charge_point.id", ondelete="CASCADE")
    measured_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    received_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    power_w: float
