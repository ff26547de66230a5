"""Market prices, revenue shares and monthly statements

Revision ID: 0017_earnings
Revises: 0016_meter_quarters
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence

revision: str = "0017_earnings"
down_revision: str | Sequence[str] | None = "0016_meter_quarters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
