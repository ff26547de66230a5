"""OCPP: connector status, meter samples, transactions, capability, connection attempts

Revision ID: 0003_ocpp
Revises: 0001_core
Create Date: 2026-11-23 20:00:33.061488
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import powerbank.db

revision: str = "0003_ocpp"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connection_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("remote_address", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operator.id"],
            name=op.f("fk_connection_attempt_operator_id_operator"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connection_attempt")),
    )
    with op.batch_alter_table("connection_attempt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_connection_attempt_at"), ["at"], unique=False)
        batch_op.create_index("ix_connection_attempt_identity_at", ["identity", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_connection_attempt_operator_id"), ["operator_id"], unique=False)

    op.create_table(
        "ocpp_capability",
        sa.Column("charge_point_id", sa.Integer(), nullable=False),
        sa.Column("probed_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("smart_charging", sa.Boolean(), nullable=True),
        sa.Column("feature_profiles", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("max_stack_level", sa.Integer(), nullable=True),
        sa.Column("rate_units", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("meter_interval_s", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_point.id"],
            name=op.f("fk_ocpp_capability_charge_point_id_charge_point"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("charge_point_id", name=op.f("pk_ocpp_capability")),
    )
    op.create_table(
        "ocpp_connector_status",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("charge_point_id", sa.Integer(), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("error_code", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
        sa.Column("reported_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_point.id"],
            name=op.f("fk_ocpp_connector_status_charge_point_id_charge_point"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ocpp_connector_status")),
        sa.UniqueConstraint(
            "charge_point_id", "connector_id", name=op.f("uq_ocpp_connector_status_charge_point_id_connector_id")
        ),
    )
    op.create_table(
        "ocpp_meter_sample",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("charge_point_id", sa.Integer(), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("measured_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("power_w", sa.Float(), nullable=True),
        sa.Column("energy_wh", sa.Float(), nullable=True),
        sa.Column("current_l1_a", sa.Float(), nullable=True),
        sa.Column("current_l2_a", sa.Float(), nullable=True),
        sa.Column("current_l3_a", sa.Float(), nullable=True),
        sa.Column("transaction_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_point.id"],
            name=op.f("fk_ocpp_meter_sample_charge_point_id_charge_point"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ocpp_meter_sample")),
    )
    with op.batch_alter_table("ocpp_meter_sample", schema=None) as batch_op:
        batch_op.create_index("ix_ocpp_meter_sample_charge_point_id_id", ["charge_point_id", "id"], unique=False)

    op.create_table(
        "ocpp_transaction",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("charge_point_id", sa.Integer(), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("remote_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("id_tag", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("started_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("meter_start_wh", sa.Float(), nullable=True),
        sa.Column("stopped_at", powerbank.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("meter_stop_wh", sa.Float(), nullable=True),
        sa.Column("stop_reason", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_point.id"],
            name=op.f("fk_ocpp_transaction_charge_point_id_charge_point"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ocpp_transaction")),
    )
    with op.batch_alter_table("ocpp_transaction", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ocpp_transaction_charge_point_id_remote_id", ["charge_point_id", "remote_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ocpp_transaction", schema=None) as batch_op:
        batch_op.drop_index("ix_ocpp_transaction_charge_point_id_remote_id")

    op.drop_table("ocpp_transaction")
    with op.batch_alter_table("ocpp_meter_sample", schema=None) as batch_op:
        batch_op.drop_index("ix_ocpp_meter_sample_charge_point_id_id")

    op.drop_table("ocpp_meter_sample")
    op.drop_table("ocpp_connector_status")
    op.drop_table("ocpp_capability")
    with op.batch_alter_table("connection_attempt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connection_attempt_operator_id"))
        batch_op.drop_index("ix_connection_attempt_identity_at")
        batch_op.drop_index(batch_op.f("ix_connection_attempt_at"))

    op.drop_table("connection_attempt")
