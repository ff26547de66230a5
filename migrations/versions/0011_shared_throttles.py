"""Failed log-ins and API rate buckets counted in the database, shared by every node

Revision ID: 0011_shared_throttles
Revises: 0010_cluster_nodes
Create Date: 2026-12-05 15:30:00.000000

Nodes on one PostgreSQL count failed log-ins and API requests together, so three nodes behind a
balancer give an attacker no more guesses, and a token no more requests, than one node. The
tables are UNLOGGED on PostgreSQL: counts written without the write-ahead log make each check
cheaper, and a database crash only forgets recent failures (a restart of a lone node does too).
SQLite gets the same tables, empty: its one node counts in memory.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011_shared_throttles"
down_revision: str | Sequence[str] | None = "0010_cluster_nodes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    prefixes = ["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else []
    op.create_table(
        "login_failures",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("failed_at", sa.JSON().with_variant(postgresql.ARRAY(sa.Float()), "postgresql"), nullable=False),
        sa.Column("last_failed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_failures")),
        prefixes=prefixes,
    )
    with op.batch_alter_table("login_failures") as batch_op:
        batch_op.create_index(batch_op.f("ix_login_failures_last_failed_at"), ["last_failed_at"], unique=False)

    op.create_table(
        "api_rate_bucket",
        sa.Column("token_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("level", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_api_rate_bucket")),
        prefixes=prefixes,
    )
    with op.batch_alter_table("api_rate_bucket") as batch_op:
        batch_op.create_index(batch_op.f("ix_api_rate_bucket_updated_at"), ["updated_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_rate_bucket") as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_rate_bucket_updated_at"))
    op.drop_table("api_rate_bucket")

    with op.batch_alter_table("login_failures") as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_failures_last_failed_at"))
    op.drop_table("login_failures")
