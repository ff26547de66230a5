"""Ids are never reused (SQLite AUTOINCREMENT on every table with an id); PowerBank history and terms
acceptances keep their operator and outlive a deleted team

Revision ID: 0008_ids_never_reused
Revises: 0003_ocpp, 0004_api_tokens, 0005_activations, 0007_participation_source_codes
Create Date: 2026-12-05 08:40:00.000000

Without AUTOINCREMENT SQLite hands out max(id) + 1, so the id of a deleted highest team (or charge
point) went to the next one created, and history filtered by that plain id showed it to a new tenant.
SQLite can only add AUTOINCREMENT by rebuilding a table (batch mode, recreate="always"); PostgreSQL
sequences never hand out a number twice, so there only the history columns change.
"""

from collections.abc import Sequence
from contextlib import AbstractContextManager

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision: str = "0008_ids_never_reused"
down_revision: str | Sequence[str] | None = (
    "0003_ocpp",
    "0004_api_tokens",
    "0005_activations",
    "0007_participation_source_codes",
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here, not read from the models: this migration must mean the same thing forever.
HISTORY_TABLES = {"powerbank_participation_event": "at", "powerbank_terms_acceptance": "accepted_at"}
ACCEPTANCE_TEAM_FK = "fk_powerbank_terms_acceptance_team_id_team"
# Every other table whose primary key is an id the database hands out.
ID_TABLES = (
    "operator",
    "team",
    "user",
    "operator_membership",
    "team_membership",
    "charge_point",
    "compatible_model",
    "audit_log",
    "powerbank_terms_version",
    "api_token",
    "activation",
    "dispatch",
    "connection_attempt",
    "ocpp_connector_status",
    "ocpp_meter_sample",
    "ocpp_transaction",
)
# Ids that history and the audit log still name after their row was deleted: (audit object type,
# (table, column) pairs). SQLite's AUTOINCREMENT starts above the highest id in the table, so a team
# deleted before this migration would otherwise be handed out once more.
REMEMBERED_IDS = {
    "team": ("Team", (("powerbank_participation_event", "team_id"), ("powerbank_terms_acceptance", "team_id"))),
    "charge_point": ("ChargePoint", (("powerbank_participation_event", "charge_point_id"),)),
    "user": ("User", (("powerbank_participation_event", "actor_user_id"), ("audit_log", "actor_user_id"))),
}

# The operator of a history row: its team's, if that team was made before the row was written (a
# younger team got the id of a deleted one); otherwise the operator that deleted the team first after
# the row was written (the audit log names it). Neither: the row stays without one, shown to nobody.
BACKFILL_OPERATOR = """
UPDATE {table} SET operator_id = COALESCE(
    (SELECT team.operator_id FROM team WHERE team.id = {table}.team_id AND team.created_at <= {table}.{at}),
    (SELECT audit_log.operator_id FROM audit_log
     WHERE audit_log.object_type = 'Team' AND audit_log.action = 'team.delete'
       AND audit_log.object_id = {table}.team_id AND audit_log.at >= {table}.{at}
     ORDER BY audit_log.at, audit_log.id LIMIT 1)
)
"""


def _on_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _require_foreign_keys_off() -> None:
    # Rebuilding drops the old table: with foreign keys on, that deletes its rows and cascades.
    if op.get_bind().exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("Run this migration with SQLite foreign keys off (migrations/env.py does).")


def _rebuild(table: str, *, autoincrement: bool) -> AbstractContextManager[BatchOperations]:
    if not _on_sqlite():
        return op.batch_alter_table(table)
    return op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement})


def _remember_deleted_ids() -> None:
    bind = op.get_bind()
    for table, (object_type, columns) in REMEMBERED_IDS.items():
        candidates = [f"SELECT MAX(id) FROM {table}"]
        candidates += [f"SELECT MAX({column}) FROM {source}" for source, column in columns]
        candidates.append(f"SELECT MAX(object_id) FROM audit_log WHERE object_type = '{object_type}'")
        highest = max((bind.exec_driver_sql(sql).scalar() or 0 for sql in candidates), default=0)
        if not highest:
            continue
        values = {"name": table, "seq": highest}
        stored = bind.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = :name"), values).first()
        if stored is None:
            bind.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:name, :seq)"), values)
        elif stored[0] < highest:
            bind.execute(sa.text("UPDATE sqlite_sequence SET seq = :seq WHERE name = :name"), values)


def upgrade() -> None:
    if _on_sqlite():
        _require_foreign_keys_off()
    with _rebuild("powerbank_participation_event", autoincrement=True) as batch_op:
        batch_op.add_column(sa.Column("operator_id", sa.Integer(), nullable=True))
    # Acceptances are evidence (R4): they outlive the team, like the history, instead of going with it.
    with _rebuild("powerbank_terms_acceptance", autoincrement=True) as batch_op:
        batch_op.add_column(sa.Column("operator_id", sa.Integer(), nullable=True))
        batch_op.drop_constraint(ACCEPTANCE_TEAM_FK, type_="foreignkey")
    for table, at in HISTORY_TABLES.items():
        op.execute(BACKFILL_OPERATOR.format(table=table, at=at))
    if _on_sqlite():
        for table in ID_TABLES:
            with _rebuild(table, autoincrement=True):
                pass
        _remember_deleted_ids()


def downgrade() -> None:
    if _on_sqlite():
        _require_foreign_keys_off()
        for table in ID_TABLES:
            with _rebuild(table, autoincrement=False):
                pass
    # The old schema deleted a team's acceptances with it.
    op.execute("DELETE FROM powerbank_terms_acceptance WHERE team_id NOT IN (SELECT id FROM team)")
    with _rebuild("powerbank_terms_acceptance", autoincrement=False) as batch_op:
        batch_op.drop_column("operator_id")
        batch_op.create_foreign_key(ACCEPTANCE_TEAM_FK, "team", ["team_id"], ["id"], ondelete="CASCADE")
    with _rebuild("powerbank_participation_event", autoincrement=False) as batch_op:
        batch_op.drop_column("operator_id")
