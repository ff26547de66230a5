"""A charger's recent OCPP frames, shared by the node that holds it with the other nodes

Revision ID: 0012_shared_frames
Revises: 0011_shared_throttles
Create Date: 2026-12-07 03:30:00.000000

Each node keeps the frames of the chargers it holds in memory. While a page served by another
node shows a charger, the node holding it publishes that charger's recent frames here. UNLOGGED
on PostgreSQL: a database crash only forgets what is published again within a second; SQLite
gets the same table, empty, as one node holds every charger.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import powerbank.db

revision: str = "0012_shared_frames"
down_revision: str | Sequence[str] | None = "0011_shared_throttles"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    prefixes = ["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else []
    op.create_table(
        "ocpp_shared_frames",
        sa.Column("charge_point_id", sa.Integer(), nullable=False),
        sa.Column("identity", sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=True),
        sa.Column("frames", sa.JSON(), nullable=False),
        sa.Column("published_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_point.id"],
            name=op.f("fk_ocpp_shared_frames_charge_point_id_charge_point"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["cluster_node.id"],
            name=op.f("fk_ocpp_shared_frames_node_id_cluster_node"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("charge_point_id", name=op.f("pk_ocpp_shared_frames")),
        prefixes=prefixes,
    )


def downgrade() -> None:
    op.drop_table("ocpp_shared_frames")
