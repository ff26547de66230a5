"""Charge points and each operator's compatibility catalogue."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime, created_field
from powerbank.models.ids import NEVER_REUSE_IDS


class ChargePoint(SQLModel, table=True):
    __tablename__ = "charge_point"
    __table_args__ = (Index("ix_charge_point_team_id_name", "team_id", "name"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=120)
    identity: str = Field(max_length=48, unique=True)
    brand: str = Field(default="", max_length=80)
    model: str = Field(default="", max_length=80)
    firmware: str = Field(default="", max_length=80)
    serial: str = Field(default="", max_length=80)
    country: str = Field(max_length=2)
    # A PriceArea of the country (powerbank.rules.countries); None outside the participating countries.
    price_area: str | None = Field(default=None, max_length=3)
    facility_id: str | None = Field(default=None, max_length=18)
    ocpp_password_hash: str = Field(max_length=255)
    # OCPP security profile: 1 Basic auth, 2 TLS + Basic auth, 3 TLS with a client certificate.
    # A charger is never let in below it (powerbank/ocpp/security.py).
    security_profile: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    created_at: datetime = created_field()
    updated_at: datetime = created_field()

    # What the charger itself reported over OCPP; once it has booted, this is what counts (R2).
    ocpp_protocol: str | None = Field(default=None, max_length=12)
    reported_vendor: str | None = Field(default=None, max_length=80)
    reported_model: str | None = Field(default=None, max_length=80)
    reported_firmware: str | None = Field(default=None, max_length=80)
    reported_serial: str | None = Field(default=None, max_length=80)
    booted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # None until the capability probe has answered.
    smart_charging: bool | None = Field(default=None)
    online: bool = Field(default=False)
    # The node whose process holds the charger's connection (None when it is not connected).
    node_id: int | None = Field(default=None, foreign_key="cluster_node.id", index=True, ondelete="SET NULL")
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def effective_brand(self) -> str:
        """Return the brand that counts: the reported vendor once the charger has booted."""
        return self.reported_vendor if self.booted_at and self.reported_vendor else self.brand

    @property
    def effective_model(self) -> str:
        """Return the model that counts: the reported model once the charger has booted."""
        return self.reported_model if self.booted_at and self.reported_model else self.model


class CompatibleModel(SQLModel, table=True):
    """A brand/model of an operator's compatibility catalogue (matched case-insensitively)."""

    __tablename__ = "compatible_model"
    __table_args__ = (UniqueConstraint("operator_id", "brand_key", "model_key"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    operator_id: int = Field(foreign_key="operator.id", index=True, ondelete="CASCADE")
    brand: str = Field(max_length=80)
    model: str = Field(max_length=80)
    brand_key: str = Field(max_length=80)
    model_key: str = Field(max_length=80)
    created_at: datetime = created_field()
