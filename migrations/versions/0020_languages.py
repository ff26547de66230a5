"""Each user's language and time zone

Revision ID: 0020_languages
Revises: 0019_charger_security
Create Date: 2026-12-07 10:00:00.000000

A person's language (en, da, sv) and the time zone their pages show times in; both empty until they
choose (then the browser's language and UTC apply).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_languages"
down_revision: str | Sequence[str] | None = "0019_charger_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns are added in place on both backends (no table copy on SQLite).
    op.add_column("user", sa.Column("locale", sa.String(length=8), nullable=True))
    op.add_column("user", sa.Column("time_zone", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.drop_column("time_zone")
        batch.drop_column("locale")
