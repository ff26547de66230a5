"""Each charger's measured power per quarter-hour, for the baseline of scheduled activations

Revision ID: 0016_meter_quarters
Revises: 0015_delivery_verdicts
Create Date: 2026-12-07 07:00:00.000000

The meter samples are pruned to each charger's newest; a scheduled activation's baseline is the
median of the charger's mean power in the same quarter-hour on previous working days, so the sum and
count of its samples per quarter-hour are added to as they arrive, and kept for two weeks.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import powerbank.db

revision: str = "0016_meter_quarters"
down_revision: str | Sequence[str] | None = "0015_delivery_verdicts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "meter_quarter",
        sa.Column("charge_point_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("power_sum_w", sa.Float(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_point.id"],
            name=op.f("fk_meter_quarter_charge_point_id_charge_point"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("charge_point_id", "starts_at", name=op.f("pk_meter_quarter")),
    )


def downgrade() -> None:
    op.drop_table("meter_quarter")
