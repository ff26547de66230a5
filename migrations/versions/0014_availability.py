"""Availability per price area: what each operator's signed-up, online chargers drew, minute by minute

Revision ID: 0014_availability
Revises: 0013_delivery_evidence
Create Date: 2026-12-07 07:00:00.000000

One row per (operator, price area, minute), written once a minute by the node that leads: the
summed newest measured power of the signed-up, online chargers, and how many were signed up,
online and reporting. The key is the minute, so a restart or a second node never writes a minute
twice; rows older than the kept period are deleted by the same writer (the index on ``minute``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import powerbank.db

revision: str = "0014_availability"
down_revision: str | Sequence[str] | None = "0013_delivery_evidence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "area_availability",
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("price_area", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("minute", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("power_w", sa.Float(), nullable=False),
        sa.Column("signed_up", sa.Integer(), nullable=False),
        sa.Column("online", sa.Integer(), nullable=False),
        sa.Column("reporting", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operator.id"],
            name=op.f("fk_area_availability_operator_id_operator"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("operator_id", "price_area", "minute", name=op.f("pk_area_availability")),
    )
    with op.batch_alter_table("area_availability") as batch_op:
        batch_op.create_index(batch_op.f("ix_area_availability_minute"), ["minute"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("area_availability") as batch_op:
        batch_op.drop_index(batch_op.f("ix_area_availability_minute"))
    op.drop_table("area_availability")
