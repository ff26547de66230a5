"""Each user's language and time zone

Revision ID: 0020_languages
Revises: 0019_charger_security
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence

revision: str = "0020_languages"
down_revision: str | Sequence[str] | None = "0019_charger_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
