"""core tables

Revision ID: 0001_core
Revises:
Create Date: 2026-11-23 19:44:00.240747
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import powerbank.db

revision: str = "0001_core"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("object_type", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=True),
        sa.Column("object_label", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_operator_id"), ["operator_id"], unique=False)

    op.create_table(
        "operator",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("created_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator")),
        sa.UniqueConstraint("name", name=op.f("uq_operator_name")),
    )
    op.create_table(
        "user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("display_name", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("created_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user")),
        sa.UniqueConstraint("email", name=op.f("uq_user_email")),
    )
    op.create_table(
        "compatible_model",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("brand", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("brand_key", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("model_key", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("created_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operator.id"], name=op.f("fk_compatible_model_operator_id_operator"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compatible_model")),
        sa.UniqueConstraint(
            "operator_id", "brand_key", "model_key", name=op.f("uq_compatible_model_operator_id_brand_key_model_key")
        ),
    )
    with op.batch_alter_table("compatible_model", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_compatible_model_operator_id"), ["operator_id"], unique=False)

    op.create_table(
        "operator_membership",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operator.id"],
            name=op.f("fk_operator_membership_operator_id_operator"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_operator_membership_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_membership")),
        sa.UniqueConstraint("operator_id", "user_id", name=op.f("uq_operator_membership_operator_id_user_id")),
    )
    with op.batch_alter_table("operator_membership", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_operator_membership_operator_id"), ["operator_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_operator_membership_user_id"), ["user_id"], unique=False)

    op.create_table(
        "team",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("created_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operator.id"], name=op.f("fk_team_operator_id_operator"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team")),
        sa.UniqueConstraint("operator_id", "name", name=op.f("uq_team_operator_id_name")),
    )
    with op.batch_alter_table("team", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_team_operator_id"), ["operator_id"], unique=False)

    op.create_table(
        "charge_point",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("identity", sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
        sa.Column("brand", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("firmware", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("serial", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("country", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
        sa.Column("price_area", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=True),
        sa.Column("facility_id", sqlmodel.sql.sqltypes.AutoString(length=18), nullable=True),
        sa.Column("ocpp_password_hash", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("created_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ocpp_protocol", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=True),
        sa.Column("reported_vendor", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("reported_model", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("reported_firmware", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("reported_serial", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("booted_at", powerbank.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("smart_charging", sa.Boolean(), nullable=True),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_seen_at", powerbank.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_charge_point_team_id_team"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charge_point")),
        sa.UniqueConstraint("identity", name=op.f("uq_charge_point_identity")),
    )
    with op.batch_alter_table("charge_point", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_charge_point_team_id"), ["team_id"], unique=False)
        batch_op.create_index("ix_charge_point_team_id_name", ["team_id", "name"], unique=False)

    op.create_table(
        "team_membership",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("can_configure_charge_points", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_team_membership_team_id_team"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_team_membership_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_membership")),
        sa.UniqueConstraint("team_id", "user_id", name=op.f("uq_team_membership_team_id_user_id")),
    )
    with op.batch_alter_table("team_membership", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_team_membership_team_id"), ["team_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_team_membership_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("team_membership", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_team_membership_user_id"))
        batch_op.drop_index(batch_op.f("ix_team_membership_team_id"))

    op.drop_table("team_membership")
    with op.batch_alter_table("charge_point", schema=None) as batch_op:
        batch_op.drop_index("ix_charge_point_team_id_name")
        batch_op.drop_index(batch_op.f("ix_charge_point_team_id"))

    op.drop_table("charge_point")
    with op.batch_alter_table("team", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_team_operator_id"))

    op.drop_table("team")
    with op.batch_alter_table("operator_membership", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operator_membership_user_id"))
        batch_op.drop_index(batch_op.f("ix_operator_membership_operator_id"))

    op.drop_table("operator_membership")
    with op.batch_alter_table("compatible_model", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_compatible_model_operator_id"))

    op.drop_table("compatible_model")
    op.drop_table("user")
    op.drop_table("operator")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_operator_id"))
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")
