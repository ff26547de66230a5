"""Client certificates the operator CA issued to chargers (OCPP security profile 3)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime, created_field
from powerbank.models.ids import NEVER_REUSE_IDS


class ChargerCertificate(SQLModel, table=True):
    """A certificate signed for a charge point; only a listed, unrevoked one lets a charger connect."""

    __tablename__ = "charger_certificate"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    charge_point_id: int = Field(foreign_key="charge_point.id", index=True, ondelete="CASCADE")
    # The X.509 serial number in lower-case hex (at most 159 bits).
    serial: str = Field(max_length=40, unique=True)
    common_name: str = Field(max_length=48)
    fingerprint_sha256: str = Field(max_length=64)
    not_before: datetime = Field(sa_type=UTCDateTime, nullable=False)
    not_after: datetime = Field(sa_type=UTCDateTime, nullable=False)
    issued_at: datetime = created_field()
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
