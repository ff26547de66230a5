"""Notification preferences, webhooks and their deliveries

Revision ID: 0018_notifications
Revises: 0017_earnings
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence

revision: str = "0018_notifications"
down_revision: str | Sequence[str] | None = "0017_earnings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
