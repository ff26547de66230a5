"""Charge point security profiles, the operator CA and charger certificates

Revision ID: 0019_charger_security
Revises: 0018_notifications
Create Date: 2026-12-07 10:00:00.000000

Each charge point's OCPP security profile (1 until raised: every existing charger keeps HTTP Basic
authentication), and the client certificates the operator CA signed for chargers, by serial, with
their validity and revocation.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import powerbank.db

revision: str = "0019_charger_security"
down_revision: str | Sequence[str] | None = "0018_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A NOT NULL column with a constant default is added in place on both backends.
    op.add_column("charge_point", sa.Column("security_profile", sa.Integer(), server_default="1", nullable=False))
    op.create_table(
        "charger_certificate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("charge_point_id", sa.Integer(), nullable=False),
        sa.Column("serial", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("common_name", sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
        sa.Column("fingerprint_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("not_before", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("not_after", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("issued_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", powerbank.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_point.id"],
            name=op.f("fk_charger_certificate_charge_point_id_charge_point"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charger_certificate")),
        sa.UniqueConstraint("serial", name=op.f("uq_charger_certificate_serial")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("charger_certificate") as batch_op:
        batch_op.create_index(batch_op.f("ix_charger_certificate_charge_point_id"), ["charge_point_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("charger_certificate") as batch_op:
        batch_op.drop_index(batch_op.f("ix_charger_certificate_charge_point_id"))
    op.drop_table("charger_certificate")
    with op.batch_alter_table("charge_point", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("security_profile")
