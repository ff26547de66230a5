"""The mail outbox: every email PowerBank sends is stored in the same transaction as what it tells."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime, created_field, utcnow
from powerbank.models.ids import NEVER_REUSE_IDS


class MailStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    # Not delivered within the retry period; the last error says why.
    FAILED = "failed"


class MailMessage(SQLModel, table=True):
    """One email to one person, delivered by the mailer (``powerbank.runtime.mailer``)."""

    __tablename__ = "mail_outbox"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    to_address: str = Field(max_length=254)
    subject: str = Field(max_length=200)
    # Emptied once sent when it carries a secret (an invitation link), so the database keeps no usable link.
    body: str
    secret: bool = Field(default=False)
    status: str = Field(default=MailStatus.PENDING, max_length=10, index=True)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    last_error: str = Field(default="", max_length=500)
    created_at: datetime = created_field()
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
