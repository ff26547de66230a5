"""An activation's judged delivery, stored once its evidence is kept

Revision ID: 0021_delivery_records
Revises: 0020_languages
Create Date: 2026-12-07 10:30:00.000000

The page, exports and API of an activation whose evidence is kept read its stored record instead
of judging every sample again. Activations kept before this revision are judged when read, as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import powerbank.db

revision: str = "0021_delivery_records"
down_revision: str | Sequence[str] | None = "0020_languages"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_record",
        sa.Column("activation_id", sa.Integer(), nullable=False),
        sa.Column("judged_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expected_w", sa.Float(), nullable=False),
        sa.Column("baseline_w", sa.Float(), nullable=True),
        sa.Column("half_s", sa.Float(), nullable=True),
        sa.Column("full_s", sa.Float(), nullable=True),
        sa.Column("clock_replaced", sa.Integer(), nullable=False),
        sa.Column("discarded", sa.Integer(), nullable=False),
        sa.Column("clocks_behind", sa.Integer(), nullable=False),
        sa.Column("curve", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["activation_id"],
            ["activation.id"],
            name=op.f("fk_delivery_record_activation_id_activation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("activation_id", name=op.f("pk_delivery_record")),
    )
    op.create_table(
        "delivery_record_charger",
        sa.Column("activation_id", sa.Integer(), nullable=False),
        sa.Column("dispatch_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("baseline_w", sa.Float(), nullable=True),
        sa.Column("baseline_method", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("baseline_detail", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("expected_w", sa.Float(), nullable=True),
        sa.Column("delivered_w", sa.Float(), nullable=True),
        sa.Column("best_w", sa.Float(), nullable=True),
        sa.Column("reached_s", sa.Float(), nullable=True),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("clock_replaced", sa.Integer(), nullable=False),
        sa.Column("discarded", sa.Integer(), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(
            ["activation_id"],
            ["activation.id"],
            name=op.f("fk_delivery_record_charger_activation_id_activation"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dispatch_id"],
            ["dispatch.id"],
            name=op.f("fk_delivery_record_charger_dispatch_id_dispatch"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("activation_id", "dispatch_id", name=op.f("pk_delivery_record_charger")),
    )


def downgrade() -> None:
    op.drop_table("delivery_record_charger")
    op.drop_table("delivery_record")
