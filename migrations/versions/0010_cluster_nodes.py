"""Cluster nodes and the node that holds each charger

Revision ID: 0010_cluster_nodes
Revises: 0009_invitations
Create Date: 2026-12-05 12:46:42.129308

Each serving process registers itself as a node and heart-beats; a charger's row names the node
that holds its connection, so a node marks only its own chargers offline when it starts or stops,
and the chargers of a node that stopped heart-beating are shown offline by the others.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import powerbank.db

revision: str = "0010_cluster_nodes"
down_revision: str | Sequence[str] | None = "0009_invitations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cluster_node",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("started_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", powerbank.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("stop_reason", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_node")),
        sa.UniqueConstraint("name", name=op.f("uq_cluster_node_name")),
        sqlite_autoincrement=True,
    )
    # SQLite rebuilds the table to add the foreign key: it keeps handing out ids once (AUTOINCREMENT).
    with op.batch_alter_table("charge_point", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.add_column(sa.Column("node_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_charge_point_node_id"), ["node_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_charge_point_node_id_cluster_node"), "cluster_node", ["node_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("charge_point", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_charge_point_node_id_cluster_node"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_charge_point_node_id"))
        batch_op.drop_column("node_id")

    op.drop_table("cluster_node")
