"""Migrations that rewrite stored values keep existing rows right, upgrading and downgrading."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from powerbank.db.migrate import alembic_config, upgrade

# What 0002_enrollment stored: the states and sources as people read them.
OLD_ROWS = [(1, "Signed up", "bulk"), (2, "Opted out", "API"), (3, "Suspended", "automatic")]
OLD_EVENTS = [(1, "Not signed up", "Signed up", "bulk"), (2, "Signed up", "Opted out", "API")]


def _stored(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT charge_point_id, state, source FROM powerbank_participation ORDER BY charge_point_id")
            )
            events = connection.execute(
                text(
                    "SELECT charge_point_id, from_state, to_state, source FROM powerbank_participation_event "
                    "ORDER BY charge_point_id"
                )
            )
            return [tuple(row) for row in rows], [tuple(event) for event in events]
    finally:
        engine.dispose()


def test_participation_states_and_sources_are_stored_as_codes_and_back(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url, "0002_enrollment")
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            # A plain connection does not enforce foreign keys: the rows need no charge point.
            for cp_id, state, source in OLD_ROWS:
                connection.execute(
                    text(
                        "INSERT INTO powerbank_participation (charge_point_id, state, since, source, reason, version) "
                        "VALUES (:cp_id, :state, '2026-01-01 00:00:00', :source, '', 1)"
                    ),
                    {"cp_id": cp_id, "state": state, "source": source},
                )
            for cp_id, from_state, to_state, source in OLD_EVENTS:
                connection.execute(
                    text(
                        "INSERT INTO powerbank_participation_event (charge_point_id, team_id, charge_point_name, "
                        "actor_label, at, from_state, to_state, source, reason) VALUES "
                        "(:cp_id, 1, 'Depot', 'someone', '2026-01-01 00:00:00', :from_state, :to_state, :source, '')"
                    ),
                    {"cp_id": cp_id, "from_state": from_state, "to_state": to_state, "source": source},
                )
    finally:
        engine.dispose()

    upgrade(url)
    assert _stored(path) == (
        [(1, "signed_up", "bulk"), (2, "opted_out", "api"), (3, "suspended", "automatic")],
        [(1, "not_signed_up", "signed_up", "bulk"), (2, "signed_up", "opted_out", "api")],
    )

    command.downgrade(alembic_config(url), "0002_enrollment")
    assert _stored(path) == (OLD_ROWS, OLD_EVENTS)
