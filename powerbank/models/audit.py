"""The audit log: one row per change made by a person or by the system."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime, utcnow
from powerbank.models.ids import NEVER_REUSE_IDS


class AuditEntry(SQLModel, table=True):
    """One change made by a person or by the system; never updated, never deleted."""

    __tablename__ = "audit_log"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
    operator_id: int | None = Field(default=None, index=True)
    actor_user_id: int | None = Field(default=None)
    actor: str = Field(max_length=254)
    action: str = Field(max_length=60)
    object_type: str = Field(max_length=40)
    object_id: int | None = Field(default=None)
    object_label: str = Field(default="", max_length=200)
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
