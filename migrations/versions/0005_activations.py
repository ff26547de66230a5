"""Grid activations and per-charger dispatch records

Revision ID: 0005_activations
Revises: 0001_core
Create Date: 2026-11-23 20:04:09.621449
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import powerbank.db

revision: str = "0005_activations"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "activation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("price_area", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("market", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("limit_kw", sa.Float(), nullable=True),
        sa.Column("start_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("duration_s", sa.Integer(), nullable=False),
        sa.Column("end_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("created_by_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("triggered_at", powerbank.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_sent_at", powerbank.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", powerbank.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancelled_by", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"], ["user.id"], name=op.f("fk_activation_created_by_user_id_user"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operator.id"], name=op.f("fk_activation_operator_id_operator"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activation")),
    )
    with op.batch_alter_table("activation", schema=None) as batch_op:
        batch_op.create_index("ix_activation_operator_id_state", ["operator_id", "state"], unique=False)
        batch_op.create_index("ix_activation_state_start_at", ["state", "start_at"], unique=False)

    op.create_table(
        "dispatch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activation_id", sa.Integer(), nullable=False),
        sa.Column("charge_point_id", sa.Integer(), nullable=True),
        sa.Column("identity", sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=14), nullable=False),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("limit_w", sa.Float(), nullable=True),
        sa.Column("sent_at", powerbank.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("answered_at", powerbank.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("released_at", powerbank.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("release_reason", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True),
        sa.Column("release_status", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("power_before_w", sa.Float(), nullable=True),
        sa.Column("power_during_w", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["activation_id"], ["activation.id"], name=op.f("fk_dispatch_activation_id_activation"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_point.id"],
            name=op.f("fk_dispatch_charge_point_id_charge_point"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch")),
        sa.UniqueConstraint("activation_id", "charge_point_id", name=op.f("uq_dispatch_activation_id_charge_point_id")),
    )
    with op.batch_alter_table("dispatch", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dispatch_activation_id"), ["activation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_dispatch_charge_point_id"), ["charge_point_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dispatch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dispatch_charge_point_id"))
        batch_op.drop_index(batch_op.f("ix_dispatch_activation_id"))

    op.drop_table("dispatch")
    with op.batch_alter_table("activation", schema=None) as batch_op:
        batch_op.drop_index("ix_activation_state_start_at")
        batch_op.drop_index("ix_activation_operator_id_state")

    op.drop_table("activation")
