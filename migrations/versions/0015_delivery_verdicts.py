"""Each charger's verdict in each activation, stored when the activation's evidence is kept

Revision ID: 0015_delivery_verdicts
Revises: 0014_availability
Create Date: 2026-12-07 06:40:00.000000

A charger that repeatedly accepts a limit but does not deliver it is flagged from its recent
verdicts (services/reliability.py); storing them with the evidence makes that one indexed read for a
whole team's list. Activations whose evidence was kept before this revision have no stored verdicts.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import powerbank.db

revision: str = "0015_delivery_verdicts"
down_revision: str | Sequence[str] | None = "0014_availability"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_verdict",
        sa.Column("activation_id", sa.Integer(), nullable=False),
        sa.Column("charge_point_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("triggered_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("judged_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["activation_id"],
            ["activation.id"],
            name=op.f("fk_delivery_verdict_activation_id_activation"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_point.id"],
            name=op.f("fk_delivery_verdict_charge_point_id_charge_point"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("activation_id", "charge_point_id", name=op.f("pk_delivery_verdict")),
    )
    with op.batch_alter_table("delivery_verdict") as batch_op:
        batch_op.create_index(
            "ix_delivery_verdict_charge_point_id_triggered_at", ["charge_point_id", "triggered_at"], unique=False
        )


def downgrade() -> None:
    op.drop_table("delivery_verdict")
