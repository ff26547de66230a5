"""Migration 0008 on a database with rows in place: every row, index and constraint is kept, ids are
never handed out again (not even those of rows deleted before it), and history gets its operator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import Connection, create_engine, inspect, text
from sqlmodel import SQLModel

import powerbank.models  # noqa: F401  (registers every table on the metadata)
from powerbank.db.migrate import alembic_config, upgrade

PREVIOUS_HEADS = ("0003_ocpp", "0004_api_tokens", "0005_activations", "0007_participation_source_codes")

# Rows as an older PowerBank stored them. Operator 1 deleted its team 4 (the newest) and its team 3,
# whose id SQLite then gave to operator 2's new team; the history of both deleted teams remains.
ROWS: dict[str, list[dict[str, Any]]] = {
    "operator": [
        {"id": 1, "name": "Nordic", "created_at": "2026-01-01 00:00:00.000000"},
        {"id": 2, "name": "Fjord", "created_at": "2026-01-01 00:00:00.000000"},
    ],
    "user": [
        {"id": 1, "email": "a@x.test", "display_name": "", "password_hash": "h", "created_at": "2026-01-01"},
        {"id": 2, "email": "b@x.test", "display_name": "", "password_hash": "h", "created_at": "2026-01-01"},
    ],
    "team": [
        {"id": 1, "operator_id": 1, "name": "Depot", "created_at": "2026-01-01 00:00:00.000000"},
        {"id": 2, "operator_id": 1, "name": "Yard", "created_at": "2026-01-01 00:00:00.000000"},
        {"id": 3, "operator_id": 2, "name": "Oslo", "created_at": "2026-03-01 00:00:00.000000"},
    ],
    "operator_membership": [{"id": 1, "operator_id": 1, "user_id": 1, "role": "admin"}],
    "team_membership": [
        {"id": 1, "team_id": 1, "user_id": 2, "role": "owner", "can_configure_charge_points": 1},
        {"id": 2, "team_id": 3, "user_id": 2, "role": "member", "can_configure_charge_points": 0},
    ],
    "charge_point": [
        {
            "id": cp_id,
            "team_id": team_id,
            "name": f"CP {cp_id}",
            "identity": f"CP-{cp_id}",
            "brand": "Easee",
            "model": "Home",
            "firmware": "",
            "serial": "",
            "country": "DK",
            "price_area": "DK1",
            "ocpp_password_hash": "h",
            "created_at": "2026-01-01",
            "updated_at": "2026-01-01",
            "online": 0,
        }
        for cp_id, team_id in ((1, 1), (2, 3))
    ],
    "powerbank_participation": [
        {
            "charge_point_id": 1,
            "state": "signed_up",
            "since": "2026-01-10",
            "source": "bulk",
            "reason": "",
            "version": 1,
        }
    ],
    "powerbank_participation_event": [
        {
            "id": event_id,
            "charge_point_id": cp_id,
            "team_id": team_id,
            "charge_point_name": f"CP {cp_id}",
            "actor_label": "a@x.test",
            "actor_user_id": 1,
            "at": at,
            "from_state": "not_signed_up",
            "to_state": "signed_up",
            "source": "bulk",
            "terms_version": "demo-v1",
            "reason": "",
        }
        for event_id, cp_id, team_id, at in (
            (1, 1, 1, "2026-01-10 00:00:00.000000"),
            (2, 7, 3, "2026-01-15 00:00:00.000000"),
            (3, 9, 4, "2026-01-20 00:00:00.000000"),
            (4, 8, 6, "2026-01-25 00:00:00.000000"),
        )
    ],
    "powerbank_terms_acceptance": [
        {
            "id": 1,
            "user_id": 1,
            "team_id": 1,
            "version": "demo-v1",
            "accepted_at": "2026-01-10",
            "charge_point_ids": "[1]",
        }
    ],
    "audit_log": [
        {
            "id": audit_id,
            "at": at,
            "operator_id": 1,
            "actor": "a@x.test",
            "action": "team.delete",
            "object_type": "Team",
            "object_id": team_id,
            "object_label": "",
        }
        for audit_id, team_id, at in ((1, 3, "2026-02-01 00:00:00.000000"), (2, 4, "2026-02-02 00:00:00.000000"))
    ],
    "compatible_model": [
        {"id": 1, "operator_id": 1, "brand": "Easee", "model": "Home", "brand_key": "easee", "model_key": "home"}
        | {"created_at": "2026-01-01"}
    ],
}


def _insert(connection: Connection, table: str, row: dict[str, Any]) -> int:
    columns = ", ".join(f'"{name}"' for name in row)
    values = ", ".join(f":{name}" for name in row)
    result = connection.execute(text(f'INSERT INTO "{table}" ({columns}) VALUES ({values})'), row)
    return result.lastrowid or 0


def _rows(connection: Connection, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    names = ", ".join(f'"{name}"' for name in columns)
    return [tuple(row) for row in connection.execute(text(f'SELECT {names} FROM "{table}" ORDER BY 1'))]


def _schema(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    return {
        table: {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            "indexes": sorted((i["name"], tuple(i["column_names"]), i["unique"]) for i in inspector.get_indexes(table)),
            "unique": sorted((u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)),
            "foreign_keys": sorted(
                (f["name"], tuple(f["constrained_columns"]), f["referred_table"], f["options"].get("ondelete"))
                for f in inspector.get_foreign_keys(table)
            ),
        }
        for table in inspector.get_table_names()
    }


def _autoincrement_tables(connection: Connection) -> set[str]:
    found = connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    return {name for name, sql in found if "AUTOINCREMENT" in sql}


def _surrogate_id_tables() -> set[str]:
    return {
        table.name
        for table in SQLModel.metadata.tables.values()
        if [column.name for column in table.primary_key.columns] == ["id"]
    }


def test_every_table_with_an_id_hands_out_ids_once_in_the_models_and_the_migrations(tmp_path: Path) -> None:
    models = {
        name for name, table in SQLModel.metadata.tables.items() if table.dialect_options["sqlite"]["autoincrement"]
    }
    assert models == _surrogate_id_tables()
    path = tmp_path / "fresh.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            assert _autoincrement_tables(connection) == models
    finally:
        engine.dispose()


def test_the_migration_keeps_every_row_and_constraint_and_no_id_comes_back(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    for head in PREVIOUS_HEADS:
        upgrade(url, head)
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            for table, rows in ROWS.items():
                for row in rows:
                    _insert(connection, table, row)
        with engine.connect() as connection:
            old_schema = _schema(connection)
            old_rows = {table: _rows(connection, table, list(rows[0])) for table, rows in ROWS.items()}
            assert _autoincrement_tables(connection) == set()

        # This migration's own result; later ones add tables of their own (with AUTOINCREMENT from the start).
        upgrade(url, "0008_ids_never_reused")

        with engine.connect() as connection:
            new_schema = _schema(connection)
            assert {table: _rows(connection, table, list(rows[0])) for table, rows in ROWS.items()} == old_rows
            present = set(inspect(connection).get_table_names())
            assert _autoincrement_tables(connection) == _surrogate_id_tables() & present
            operators = connection.execute(
                text("SELECT id, operator_id FROM powerbank_participation_event ORDER BY id")
            ).all()
            acceptances = connection.execute(text("SELECT id, operator_id FROM powerbank_terms_acceptance")).all()
        # Team 1's event is its operator's; team 3's is the operator that deleted the first team 3, not the
        # one whose team has that id now; team 4's is the operator that deleted it; team 6 nobody knows.
        assert [tuple(row) for row in operators] == [(1, 1), (2, 1), (3, 1), (4, None)]
        assert [tuple(row) for row in acceptances] == [(1, 1)]
        for table, shape in old_schema.items():
            expected = dict(shape)
            if table in ("powerbank_participation_event", "powerbank_terms_acceptance"):
                expected["columns"] = [*shape["columns"], ("operator_id", "INTEGER", True)]
            if table == "powerbank_terms_acceptance":
                expected["foreign_keys"] = [fk for fk in shape["foreign_keys"] if fk[2] != "team"]
            assert new_schema[table] == expected, table

        with engine.begin() as connection:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            # The deleted teams' ids (3 came back once already, 4 and 6 only in the history) stay theirs.
            new_team = _insert(connection, "team", {"operator_id": 2, "name": "New", "created_at": "2026-04-01"})
            assert new_team == 7
            connection.execute(text("DELETE FROM team WHERE id = :id"), {"id": new_team})
            assert _insert(connection, "team", {"operator_id": 2, "name": "Newer", "created_at": "2026-04-02"}) == 8
            charge_point = {**ROWS["charge_point"][0], "identity": "CP-NEW", "team_id": 8}
            del charge_point["id"]
            assert _insert(connection, "charge_point", charge_point) == 10
            # Foreign keys still cascade: deleting team 1 takes its charge point and membership, not its history.
            connection.execute(text("DELETE FROM team WHERE id = 1"))
            assert connection.execute(text("SELECT id FROM charge_point ORDER BY id")).scalars().all() == [2, 10]
            assert connection.execute(text("SELECT count(*) FROM team_membership")).scalar() == 1
            assert connection.execute(text("SELECT count(*) FROM powerbank_participation")).scalar() == 0
            assert connection.execute(text("SELECT count(*) FROM powerbank_terms_acceptance")).scalar() == 1
            assert connection.execute(text("SELECT count(*) FROM powerbank_participation_event")).scalar() == 4

        command.downgrade(alembic_config(url), "0007_participation_source_codes")
        with engine.connect() as connection:
            heads = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            assert sorted(heads) == list(PREVIOUS_HEADS)
            assert _autoincrement_tables(connection) == set()
            assert _schema(connection) == old_schema
            # The old schema kept no acceptance of a deleted team.
            assert connection.execute(text("SELECT count(*) FROM powerbank_terms_acceptance")).scalar() == 0
            assert _rows(connection, "operator", ["id", "name"]) == [(1, "Nordic"), (2, "Fjord")]
    finally:
        engine.dispose()
