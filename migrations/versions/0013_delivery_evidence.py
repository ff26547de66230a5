"""Proof of delivery: the chargers' measured power around each activation, kept as evidence

Revision ID: 0013_delivery_evidence
Revises: 0012_shared_frames
Create Date: 2026-12-07 04:00:00.000000

The chargers' meter samples are pruned to the newest; once an activation's window and the minute
after it are over, its chargers' samples from a minute before the trigger are copied here, and the
activation notes when. Each dispatch row notes how its charger was asked to report power during the
activation (``metering``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import powerbank.db

revision: str = "0013_delivery_evidence"
down_revision: str | Sequence[str] | None = "0012_shared_frames"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("activation", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.add_column(sa.Column("evidence_kept_at", powerbank.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("dispatch", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.add_column(sa.Column("metering", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
    op.create_table(
        "delivery_sample",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activation_id", sa.Integer(), nullable=False),
        sa.Column("charge_point_id", sa.Integer(), nullable=False),
        sa.Column("measured_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("power_w", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["activation_id"],
            ["activation.id"],
            name=op.f("fk_delivery_sample_activation_id_activation"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_point.id"],
            name=op.f("fk_delivery_sample_charge_point_id_charge_point"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_sample")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("delivery_sample") as batch_op:
        batch_op.create_index(
            "ix_delivery_sample_activation_id_charge_point_id", ["activation_id", "charge_point_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("delivery_sample")
    with op.batch_alter_table("dispatch", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("metering")
    with op.batch_alter_table("activation", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("evidence_kept_at")
