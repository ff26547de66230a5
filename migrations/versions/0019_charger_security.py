"""Charge point security profiles, the operator CA and charger certificates

Revision ID: 0019_charger_security
Revises: 0018_notifications
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence

revision: str = "0019_charger_security"
down_revision: str | Sequence[str] | None = "0018_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
