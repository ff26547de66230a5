"""Notifications: the events people are told of, their preferences, webhooks and webhook deliveries.

An event is stored (``notification``) in the same transaction as the change it tells of; a worker
turns it into emails (the mail outbox) and webhook deliveries (``webhook_delivery``), once.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime, created_field, utcnow
from powerbank.models.ids import NEVER_REUSE_IDS


class Notification(SQLModel, table=True):
    """One event of one team (or of a whole operator, ``team_id`` None), waiting to be told or told."""

    __table_args__ = (Index("ix_notification_fanned_out_at_id", "fanned_out_at", "id"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40)
    operator_id: int = Field(foreign_key="operator.id", index=True, ondelete="CASCADE")
    team_id: int | None = Field(default=None, foreign_key="team.id", index=True, ondelete="CASCADE")
    # Events that more than one node (or look) may see happen carry a key: the second is not stored.
    dedupe_key: str | None = Field(default=None, max_length=120, unique=True)
    # JSON: what the event says (names, counts, times), as the webhook's ``data`` and the email's text.
    payload: str = Field(default="{}")
    created_at: datetime = created_field()
    # Set in the transaction that queued its emails and webhook deliveries: it is told once.
    fanned_out_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class NotificationPreference(SQLModel, table=True):
    """A person's choice for one kind of event of one team (without a row, their role's default)."""

    __tablename__ = "notification_preference"
    __table_args__ = (UniqueConstraint("user_id", "team_id", "kind"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    team_id: int = Field(foreign_key="team.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=40)
    email: bool = Field(default=True)


class Webhook(SQLModel, table=True):
    """An HTTPS endpoint of an operator (``team_id`` None: every team's events) or of one team."""

    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    operator_id: int = Field(foreign_key="operator.id", index=True, ondelete="CASCADE")
    team_id: int | None = Field(default=None, foreign_key="team.id", index=True, ondelete="CASCADE")
    url: str = Field(max_length=500)
    description: str = Field(default="", max_length=120)
    # Signs every delivery (HMAC-SHA256); the receiver holds the same value.
    secret: str = Field(max_length=100)
    # Space-separated kinds of event it receives; empty: every kind.
    events: str = Field(default="", max_length=500)
    enabled: bool = Field(default=True)
    # Why it is disabled (by a person, or by PowerBank after repeated failures).
    disabled_reason: str = Field(default="", max_length=200)
    # Failed attempts in a row, of any of its deliveries; a delivered one resets it.
    consecutive_failures: int = Field(default=0)
    created_by_user_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    created_at: datetime = created_field()


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    # Not delivered within the retry period, or its webhook was disabled meanwhile.
    FAILED = "failed"


class WebhookDelivery(SQLModel, table=True):
    """One event to one webhook: the body is fixed when queued, so every retry sends the same bytes."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_webhook_id_id", "webhook_id", "id"),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(foreign_key="webhook.id", ondelete="CASCADE")
    notification_id: int | None = Field(default=None, foreign_key="notification.id", ondelete="SET NULL")
    kind: str = Field(max_length=40)
    # Sent in every attempt (``Idempotency-Key`` and the body's ``id``): the receiver drops repeats.
    idempotency_key: str = Field(max_length=64, unique=True)
    body: str
    status: str = Field(default=DeliveryStatus.PENDING, max_length=10)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    last_status_code: int | None = Field(default=None)
    last_error: str = Field(default="", max_length=500)
    created_at: datetime = created_field()
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookAttempt(SQLModel, table=True):
    """One try of a delivery: the delivery log."""

    __tablename__ = "webhook_attempt"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="webhook_delivery.id", index=True, ondelete="CASCADE")
    at: datetime = created_field()
    status_code: int | None = Field(default=None)
    error: str = Field(default="", max_length=500)
    duration_ms: int = Field(default=0)
