"""Market prices, revenue shares and monthly statements

Revision ID: 0017_earnings
Revises: 0016_meter_quarters
Create Date: 2026-12-07 10:00:00.000000

Prices operator admins enter (capacity per MW and hour, energy per MWh), the share of revenue that
goes to each team, each charge point's available hours (accrued from its quarter-hour means, which
are kept only 15 days) and delivered energy per activation, and the statements: an open month's
lines are refreshed, a closed month's never change. Amounts are decimals stored as text, exact on
SQLite and PostgreSQL alike.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import powerbank.db

revision: str = "0017_earnings"
down_revision: str | Sequence[str] | None = "0016_meter_quarters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TEXT = sqlmodel.sql.sqltypes.AutoString
WHEN = powerbank.db.UTCDateTime


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "market_price",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("price_area", TEXT(length=3), nullable=False),
        sa.Column("market", TEXT(length=40), nullable=False),
        sa.Column("kind", TEXT(length=10), nullable=False),
        sa.Column("currency", TEXT(length=3), nullable=False),
        sa.Column("starts_at", WHEN(timezone=True), nullable=False),
        sa.Column("ends_at", WHEN(timezone=True), nullable=False),
        sa.Column("price", sa.String(length=40), nullable=False),
        sa.Column("entered_by", TEXT(length=254), nullable=False),
        sa.Column("entered_at", WHEN(timezone=True), nullable=False),
        _fk("market_price", "operator_id", "operator"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_price")),
        sa.UniqueConstraint(
            "operator_id",
            "price_area",
            "market",
            "kind",
            "starts_at",
            name=op.f("uq_market_price_operator_id_price_area_market_kind_starts_at"),
        ),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "operator_revenue_share",
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("share", sa.String(length=40), nullable=False),
        sa.Column("updated_at", WHEN(timezone=True), nullable=False),
        _fk("operator_revenue_share", "operator_id", "operator"),
        sa.PrimaryKeyConstraint("operator_id", name=op.f("pk_operator_revenue_share")),
    )
    op.create_table(
        "team_revenue_share",
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("share", sa.String(length=40), nullable=False),
        sa.Column("updated_at", WHEN(timezone=True), nullable=False),
        _fk("team_revenue_share", "team_id", "team"),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_team_revenue_share")),
    )
    op.create_table(
        "available_hour",
        sa.Column("charge_point_id", sa.Integer(), nullable=False),
        sa.Column("hour", WHEN(timezone=True), nullable=False),
        sa.Column("power_w", sa.Float(), nullable=False),
        _fk("available_hour", "charge_point_id", "charge_point"),
        sa.PrimaryKeyConstraint("charge_point_id", "hour", name=op.f("pk_available_hour")),
    )
    with op.batch_alter_table("available_hour") as batch_op:
        batch_op.create_index("ix_available_hour_hour", ["hour"], unique=False)
    op.create_table(
        "delivered_energy",
        sa.Column("activation_id", sa.Integer(), nullable=False),
        sa.Column("charge_point_id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("price_area", TEXT(length=3), nullable=False),
        sa.Column("market", TEXT(length=40), nullable=False),
        sa.Column("triggered_at", WHEN(timezone=True), nullable=False),
        sa.Column("verdict", TEXT(length=40), nullable=False),
        sa.Column("delivered_wh", sa.Float(), nullable=False),
        _fk("delivered_energy", "activation_id", "activation"),
        _fk("delivered_energy", "charge_point_id", "charge_point"),
        _fk("delivered_energy", "operator_id", "operator"),
        sa.PrimaryKeyConstraint("activation_id", "charge_point_id", name=op.f("pk_delivered_energy")),
    )
    with op.batch_alter_table("delivered_energy") as batch_op:
        batch_op.create_index(
            "ix_delivered_energy_charge_point_id_triggered_at", ["charge_point_id", "triggered_at"], unique=False
        )
    op.create_table(
        "earnings_settled",
        sa.Column("activation_id", sa.Integer(), nullable=False),
        sa.Column("settled_at", WHEN(timezone=True), nullable=False),
        _fk("earnings_settled", "activation_id", "activation"),
        sa.PrimaryKeyConstraint("activation_id", name=op.f("pk_earnings_settled")),
    )
    op.create_table(
        "earnings_month",
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("month", TEXT(length=7), nullable=False),
        sa.Column("refreshed_at", WHEN(timezone=True), nullable=True),
        sa.Column("closed_at", WHEN(timezone=True), nullable=True),
        sa.Column("closed_by", TEXT(length=254), nullable=True),
        _fk("earnings_month", "operator_id", "operator"),
        sa.PrimaryKeyConstraint("operator_id", "month", name=op.f("pk_earnings_month")),
    )
    op.create_table(
        "statement_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("month", TEXT(length=7), nullable=False),
        sa.Column("kind", TEXT(length=12), nullable=False),
        sa.Column("charge_point_id", sa.Integer(), nullable=True),
        sa.Column("charge_point_name", TEXT(length=120), nullable=False),
        sa.Column("price_area", TEXT(length=3), nullable=False),
        sa.Column("currency", TEXT(length=3), nullable=False),
        sa.Column("hours_signed_up", sa.Integer(), nullable=False),
        sa.Column("available_kwh", sa.Float(), nullable=False),
        sa.Column("activations", sa.Integer(), nullable=False),
        sa.Column("delivered_kwh", sa.Float(), nullable=False),
        sa.Column("market_value", sa.String(length=40), nullable=False),
        sa.Column("share", sa.String(length=40), nullable=False),
        sa.Column("amount", sa.String(length=40), nullable=False),
        sa.Column("dated", WHEN(timezone=True), nullable=True),
        sa.Column("corrects", TEXT(length=7), nullable=True),
        sa.Column("note", TEXT(length=200), nullable=False),
        _fk("statement_line", "operator_id", "operator"),
        _fk("statement_line", "team_id", "team"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_statement_line")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("statement_line") as batch_op:
        batch_op.create_index("ix_statement_line_team_id_month", ["team_id", "month"], unique=False)
        batch_op.create_index("ix_statement_line_charge_point_id_month", ["charge_point_id", "month"], unique=False)


def downgrade() -> None:
    for table in (
        "statement_line",
        "earnings_month",
        "earnings_settled",
        "delivered_energy",
        "available_hour",
        "team_revenue_share",
        "operator_revenue_share",
        "market_price",
    ):
        op.drop_table(table)
