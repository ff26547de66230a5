"""Participation sources stored as lower-case codes: "API" becomes "api" (the pages and the API still show "API")

Revision ID: 0007_participation_source_codes
Revises: 0006_participation_state_codes
Create Date: 2026-12-05 07:55:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_participation_source_codes"
down_revision: str | Sequence[str] | None = "0006_participation_state_codes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCE_TABLES = ("powerbank_participation", "powerbank_participation_event")


def _rename(old: str, new: str) -> None:
    for table_name in SOURCE_TABLES:
        table = sa.table(table_name, sa.column("source", sa.String()))
        op.execute(table.update().where(table.c.source == old).values(source=new))


def upgrade() -> None:
    _rename("API", "api")


def downgrade() -> None:
    _rename("api", "API")
