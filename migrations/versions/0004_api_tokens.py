"""API tokens for the JSON API

Revision ID: 0004_api_tokens
Revises: 0001_core
Create Date: 2026-11-23 19:55:54.639396
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import powerbank.db

revision: str = "0004_api_tokens"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("access", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("prefix", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by_user_id", sa.Integer(), nullable=True),
        sa.Column("last_used_at", powerbank.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", powerbank.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", powerbank.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"], ["user.id"], name=op.f("fk_api_token_created_by_user_id_user"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operator.id"], name=op.f("fk_api_token_operator_id_operator"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"], name=op.f("fk_api_token_team_id_team"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_token_operator_id"), ["operator_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_api_token_team_id"), ["team_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_token_team_id"))
        batch_op.drop_index(batch_op.f("ix_api_token_operator_id"))

    op.drop_table("api_token")
