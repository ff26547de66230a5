"""The nodes of a PowerBank installation: each `powerbank serve` process, and whether it is alive."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime, created_field, utcnow
from powerbank.models.ids import NEVER_REUSE_IDS


class ClusterNode(SQLModel, table=True):
    """One serving process: it heart-beats while it lives; the chargers it holds name it."""

    __tablename__ = "cluster_node"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    # POWERBANK_NODE_ID, or host and port: the same name after a restart is the same node.
    name: str = Field(max_length=120, unique=True)
    started_at: datetime = created_field()
    heartbeat_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # Set when the node stopped cleanly, or was declared dead (no heartbeat within the lease).
    stopped_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    stop_reason: str = Field(default="", max_length=40)
