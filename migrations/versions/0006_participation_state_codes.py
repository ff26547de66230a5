"""Participation states stored as codes (signed_up, ...) instead of the text pages show (Signed up, ...)

Revision ID: 0006_participation_state_codes
Revises: 0002_enrollment
Create Date: 2026-12-05 07:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_participation_state_codes"
down_revision: str | Sequence[str] | None = "0002_enrollment"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here, not imported from the models: this migration must mean the same thing forever.
CODE_BY_LABEL = {
    "Signed up": "signed_up",
    "Not signed up": "not_signed_up",
    "Opted out": "opted_out",
    "Suspended": "suspended",
}
STATE_COLUMNS = {
    "powerbank_participation": ("state",),
    "powerbank_participation_event": ("from_state", "to_state"),
}


def _rename(mapping: dict[str, str]) -> None:
    """Rewrite every stored state through ``mapping``; one UPDATE per column, values not named stay."""
    for table_name, columns in STATE_COLUMNS.items():
        table = sa.table(table_name, *(sa.column(name, sa.String()) for name in columns))
        for name in columns:
            column = table.c[name]
            op.execute(
                table.update()
                .where(column.in_(list(mapping)))
                .values({name: sa.case(mapping, value=column, else_=column)})
            )


def upgrade() -> None:
    _rename(CODE_BY_LABEL)


def downgrade() -> None:
    _rename({code: label for label, code in CODE_BY_LABEL.items()})
