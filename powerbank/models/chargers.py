"""What chargers report over OCPP: connector status, recent meter values, transactions,
the capability probe's answer, refused connection attempts, and frames shared between nodes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime, utcnow
from powerbank.models.ids import NEVER_REUSE_IDS


class ConnectorStatus(SQLModel, table=True):
    """The last status a charger reported for one connector (OCPP 2.0.1: one EVSE)."""

    __tablename__ = "ocpp_connector_status"
    __table_args__ = (UniqueConstraint("charge_point_id", "connector_id"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    charge_point_id: int = Field(foreign_key="charge_point.id", ondelete="CASCADE")
    # OCPP 1.6 connectorId (0 = the whole charge point); OCPP 2.0.1 evseId.
    connector_id: int
    status: str = Field(max_length=30)
    error_code: str | None = Field(default=None, max_length=50)
    reported_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class MeterSample(SQLModel, table=True):
    """One sampled moment of a charger's meter: power, energy register and current per phase."""

    __tablename__ = "ocpp_meter_sample"
    __table_args__ = (Index("ix_ocpp_meter_sample_charge_point_id_id", "charge_point_id", "id"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    charge_point_id: int = Field(foreign_key="charge_point.id", ondelete="CASCADE")
    connector_id: int = Field(default=0)
    measured_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    power_w: float | None = Field(default=None)
    energy_wh: float | None = Field(default=None)
    current_l1_a: float | None = Field(default=None)
    current_l2_a: float | None = Field(default=None)
    current_l3_a: float | None = Field(default=None)
    transaction_id: str | None = Field(default=None, max_length=40)


class ChargingTransaction(SQLModel, table=True):
    """A charging session a charger reported (1.6 Start/StopTransaction, 2.0.1 TransactionEvent).

    The id is the OCPP 1.6 transactionId the hub hands out; 2.0.1 chargers name their own.
    """

    __tablename__ = "ocpp_transaction"
    __table_args__ = (
        Index("ix_ocpp_transaction_charge_point_id_remote_id", "charge_point_id", "remote_id"),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True)
    charge_point_id: int = Field(foreign_key="charge_point.id", ondelete="CASCADE")
    connector_id: int = Field(default=0)
    remote_id: str | None = Field(default=None, max_length=40)
    id_tag: str | None = Field(default=None, max_length=40)
    started_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    meter_start_wh: float | None = Field(default=None)
    stopped_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    meter_stop_wh: float | None = Field(default=None)
    stop_reason: str | None = Field(default=None, max_length=40)


class ChargerCapability(SQLModel, table=True):
    """What the capability probe learnt about a charger's smart charging."""

    __tablename__ = "ocpp_capability"

    charge_point_id: int = Field(foreign_key="charge_point.id", primary_key=True, ondelete="CASCADE")
    probed_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    smart_charging: bool | None = Field(default=None)
    feature_profiles: str | None = Field(default=None, max_length=255)
    max_stack_level: int | None = Field(default=None)
    # "Current", "Power" or both (1.6 spelling; 2.0.1's A/W are translated).
    rate_units: str | None = Field(default=None, max_length=40)
    meter_interval_s: int | None = Field(default=None)


class ConnectionAttempt(SQLModel, table=True):
    """A refused charger connection, kept so an admin can register the charger.

    A known identity belongs to its charge point's operator; an unknown identity to no one.
    Repeats of the same (identity, address, reason) within an hour bump ``count``.
    """

    __tablename__ = "connection_attempt"
    __table_args__ = (Index("ix_connection_attempt_identity_at", "identity", "at"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    identity: str = Field(max_length=100)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
    remote_address: str = Field(default="", max_length=64)
    reason: str = Field(max_length=120)
    count: int = Field(default=1)
    operator_id: int | None = Field(default=None, foreign_key="operator.id", index=True, ondelete="CASCADE")


class SharedFrames(SQLModel, table=True):
    """A charger's recent OCPP frames, published by the node that holds it for pages other nodes serve.

    Written only while someone looks at the charger from another node (``powerbank.ocpp.frame_sharing``);
    an UNLOGGED table on PostgreSQL, and unused on SQLite, where one node holds every charger.
    """

    __tablename__ = "ocpp_shared_frames"

    charge_point_id: int = Field(foreign_key="charge_point.id", primary_key=True, ondelete="CASCADE")
    # The identity the frames were exchanged under: a renamed charge point's are not shown.
    identity: str = Field(max_length=48)
    node_id: int | None = Field(default=None, foreign_key="cluster_node.id", ondelete="SET NULL")
    # As the frame log keeps them ("<" or ">", the time, the text), oldest first.
    frames: list[str] = Field(sa_column=Column(JSON, nullable=False))
    published_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
