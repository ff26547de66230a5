"""PowerBank enrollment: participation, terms versions and acceptances, participation history

Revision ID: 0002_enrollment
Revises: 0001_core
Create Date: 2026-11-23 19:54:31.294396
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

import powerbank.db

# A clearly marked placeholder, so the sign-up flow works out of the box; an operator of a real
# deployment publishes their own terms as a newer version.
DEMO_TERMS_VERSION = "demo-v1"
DEMO_TERMS_TEXT = (
    "DEMO TERMS AND CONDITIONS (version demo-v1) - placeholder text, not a legal agreement.\n\n"
    "1. By signing a charge point up for PowerBank, you allow the hub to pause or reduce charging on it "
    "when the electricity grid needs balancing, within the limits and time windows of the balancing market.\n"
    "2. Every limit ends by itself: the charge point resumes normal charging when the window ends, "
    "or at once when you stop participating.\n"
    "3. You can stop participating at any time from the charge point's functionalities.\n"
    "4. In Sweden the Facility ID (anläggnings-ID) of the charge point's meter is required and is shared "
    "with the balance responsible party.\n"
    "5. Replace these demo terms with your own before signing up real charge points."
)

revision: str = "0002_enrollment"
down_revision: str | Sequence[str] | None = "0001_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "powerbank_participation_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("charge_point_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("charge_point_name", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("actor_label", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("from_state", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("to_state", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("terms_version", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_powerbank_participation_event")),
    )
    with op.batch_alter_table("powerbank_participation_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_powerbank_participation_event_charge_point_id"), ["charge_point_id"], unique=False
        )
        batch_op.create_index("ix_powerbank_participation_event_team_at", ["team_id", "at"], unique=False)

    op.create_table(
        "powerbank_terms_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("published_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("text", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_powerbank_terms_version")),
        sa.UniqueConstraint("version", name=op.f("uq_powerbank_terms_version_version")),
    )
    op.create_table(
        "powerbank_terms_acceptance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("accepted_at", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("charge_point_ids", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_powerbank_terms_acceptance_team_id_team"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_powerbank_terms_acceptance_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_powerbank_terms_acceptance")),
    )
    with op.batch_alter_table("powerbank_terms_acceptance", schema=None) as batch_op:
        batch_op.create_index("ix_powerbank_terms_acceptance_lookup", ["user_id", "team_id", "version"], unique=False)
        batch_op.create_index(batch_op.f("ix_powerbank_terms_acceptance_team_id"), ["team_id"], unique=False)

    op.create_table(
        "powerbank_participation",
        sa.Column("charge_point_id", sa.Integer(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("since", powerbank.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_point.id"],
            name=op.f("fk_powerbank_participation_charge_point_id_charge_point"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("charge_point_id", name=op.f("pk_powerbank_participation")),
    )
    terms = sa.table(
        "powerbank_terms_version",
        sa.column("version", sa.String()),
        sa.column("published_at", powerbank.db.UTCDateTime(timezone=True)),
        sa.column("text", sa.String()),
    )
    op.bulk_insert(
        terms,
        [
            {
                "version": DEMO_TERMS_VERSION,
                "published_at": datetime(2024, 2, 29, tzinfo=UTC),
                "text": DEMO_TERMS_TEXT,
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("powerbank_participation")
    with op.batch_alter_table("powerbank_terms_acceptance", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_powerbank_terms_acceptance_team_id"))
        batch_op.drop_index("ix_powerbank_terms_acceptance_lookup")

    op.drop_table("powerbank_terms_acceptance")
    op.drop_table("powerbank_terms_version")
    with op.batch_alter_table("powerbank_participation_event", schema=None) as batch_op:
        batch_op.drop_index("ix_powerbank_participation_event_team_at")
        batch_op.drop_index(batch_op.f("ix_powerbank_participation_event_charge_point_id"))

    op.drop_table("powerbank_participation_event")
