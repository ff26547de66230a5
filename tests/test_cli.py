"""Migrations on a fresh database, the `powerbank` command, the demo data and what each demo user sees."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel, select

from powerbank.cli import build_parser, main
from powerbank.db import standalone_session
from powerbank.db.migrate import alembic_config, upgrade
from powerbank.models import ChargePoint, Operator, OperatorMembership, Team, TeamMembership, User
from powerbank.rules.eligibility import model_problem
from powerbank.rules.gsrn import clean_facility_id
from powerbank.rules.validators import ValidationError
from powerbank.services.enrollment import catalogue_keys
from powerbank.services.passwords import verify_password, verify_secret
from powerbank.tools.demo_data import DEMO_PASSWORD
from tests.conftest import LoginAs

pytestmark = pytest.mark.usefixtures("fast_hashing")

CORE_TABLES = {
    "operator",
    "team",
    "user",
    "operator_membership",
    "team_membership",
    "charge_point",
    "compatible_model",
    "audit_log",
}


@pytest.fixture
def fresh_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty database file that the `powerbank` command is pointed at."""
    path = tmp_path / "fresh.db"
    monkeypatch.setenv("POWERBANK_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    return path


def _table_of(diff: Any) -> str | None:
    """Return the table an Alembic autogenerate difference is about."""
    if isinstance(diff, list):
        return _table_of(diff[0])
    for part in diff[1:]:
        if isinstance(part, str) and part in CORE_TABLES:
            return part
        table = getattr(part, "table", None)
        if table is not None:
            return table.name
        if hasattr(part, "columns") and hasattr(part, "name") and not hasattr(part, "table"):
            return part.name
    return None


def test_migrations_from_empty_to_head(fresh_db: Path) -> None:
    upgrade(f"sqlite+aiosqlite:///{fresh_db}")
    engine = create_engine(f"sqlite:///{fresh_db}")
    try:
        with engine.connect() as connection:
            assert CORE_TABLES <= set(inspect(connection).get_table_names())
            context = MigrationContext.configure(connection, opts={"compare_type": True, "render_as_batch": True})
            heads = set(ScriptDirectory.from_config(alembic_config(str(fresh_db))).get_heads())
            assert set(context.get_current_heads()) == heads
            drift = [diff for diff in compare_metadata(context, SQLModel.metadata) if _table_of(diff) in CORE_TABLES]
    finally:
        engine.dispose()
    assert drift == [], "models and migrations differ; write a migration"


def test_upgrade_is_idempotent(fresh_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "upgrade"]) == 0
    assert "latest schema" in capsys.readouterr().out


def test_every_migration_builds_on_the_core() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    assert script.get_bases() == ["0001_core"]


async def _demo_summary() -> dict[str, Any]:
    from powerbank.config import database_url

    summary: dict[str, Any] = {}
    async with standalone_session(database_url()) as session:
        operators = {op.id: op for op in await session.exec(select(Operator))}
        teams = {team.id: team for team in await session.exec(select(Team))}
        keys = {op_id: await catalogue_keys(session, op_id or 0) for op_id in operators}
        for cp in await session.exec(select(ChargePoint)):
            team = teams[cp.team_id]
            compatible = model_problem(cp, keys[team.operator_id]) is None
            try:
                facility = "valid" if cp.facility_id and clean_facility_id(cp.facility_id) else "none"
            except ValidationError:
                facility = "invalid"
            key = (operators[team.operator_id].name, team.name)
            summary.setdefault(key, Counter())[(cp.country, cp.price_area, compatible, facility)] += 1
            summary.setdefault("passwords", set()).add(cp.ocpp_password_hash)
        summary["operator roles"] = {
            (user.email, operators[m.operator_id].name, m.role)
            for m, user in await session.exec(select(OperatorMembership, User).join(User))
        }
        summary["team roles"] = {
            (user.email, teams[m.team_id].name, m.role, m.can_configure_charge_points)
            for m, user in await session.exec(select(TeamMembership, User).join(User))
        }
        summary["users"] = {user.email: user.password_hash for user in await session.exec(select(User))}
    return summary


NORDIC = ["Copenhagen Fleet", "Stockholm Offices", "London Depot", "Dublin Hub", "Berlin Garage"]
EXPECTED_CHARGE_POINTS = {
    ("Nordic Charge", "Copenhagen Fleet"): Counter(
        {("DK", "DK2", True, "none"): 4, ("DK", "DK2", False, "none"): 1, ("DK", "DK1", True, "none"): 1}
    ),
    ("Nordic Charge", "Stockholm Offices"): Counter(
        {("SE", "SE3", True, "valid"): 2, ("SE", "SE3", True, "none"): 3, ("SE", "SE3", False, "none"): 1}
    ),
    ("Nordic Charge", "London Depot"): Counter({("GB", "GB", True, "none"): 4}),
    ("Nordic Charge", "Dublin Hub"): Counter({("IE", "IE", True, "none"): 3}),
    ("Nordic Charge", "Berlin Garage"): Counter({("DE", None, True, "none"): 2}),
    ("Fjord Energy", "Oslo Yard"): Counter({("NO", None, True, "none"): 2}),
}
EXPECTED_OPERATOR_ROLES = {
    ("operator.admin@demo.test", "Nordic Charge", "admin"),
    ("operator.manager@demo.test", "Nordic Charge", "manager"),
    ("fjord.admin@demo.test", "Fjord Energy", "admin"),
}
EXPECTED_TEAM_ROLES = (
    {("owner@demo.test", team, "owner", True) for team in NORDIC[:2]}
    | {("admin@demo.test", team, "admin", True) for team in NORDIC}
    | {("readonly.admin@demo.test", team, "admin", False) for team in NORDIC[:2]}
    | {("member@demo.test", team, "member", False) for team in NORDIC[:2]}
)


def test_demo_data_command(fresh_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert main(["demo-data"]) == 0
    summary = asyncio.run(_demo_summary())
    for key, expected in EXPECTED_CHARGE_POINTS.items():
        assert summary[key] == expected, key
    assert set(EXPECTED_CHARGE_POINTS) == {key for key in summary if isinstance(key, tuple)}
    assert summary["operator roles"] == EXPECTED_OPERATOR_ROLES
    assert summary["team roles"] == EXPECTED_TEAM_ROLES
    assert len(summary["users"]) == 7
    assert all(verify_password(hash_, DEMO_PASSWORD) for hash_ in summary["users"].values())
    (charger_hash,) = summary["passwords"]
    assert verify_secret(charger_hash, "demo-charger")
    # A second load is refused, unless asked to do nothing when data exists (as `make run` does).
    assert main(["demo-data"]) == 1
    assert main(["demo-data", "--if-empty"]) == 0
    assert "already has data" in capsys.readouterr().out
    assert len(asyncio.run(_demo_summary())["users"]) == 7


def test_create_user_command(fresh_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert main(["create-user", "New.Person@Example.test", "--password", "a long password"]) == 0
    assert "Created user new.person@example.test" in capsys.readouterr().out
    users = asyncio.run(_demo_summary())["users"]
    assert verify_password(users["new.person@example.test"], "a long password")
    assert main(["create-user", "new.person@EXAMPLE.test", "--password", "another long one"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["create-user", "short@example.test", "--password", "short"]) == 1
    assert "at least 10 characters" in capsys.readouterr().err
    assert main(["create-user", "not-an-email", "--password", "a long password"]) == 1
    assert set(asyncio.run(_demo_summary())["users"]) == {"new.person@example.test"}


def test_create_user_reads_password_from_environment(fresh_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["db", "upgrade"]) == 0
    monkeypatch.setenv("POWERBANK_NEW_USER_PASSWORD", "from the environment")
    assert main(["create-user", "env@example.test"]) == 0
    assert verify_password(asyncio.run(_demo_summary())["users"]["env@example.test"], "from the environment")


def test_serve_options() -> None:
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "8080"])
    assert (args.host, args.port) == ("0.0.0.0", 8080)
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)


def test_serve_refuses_to_start_without_secret_key(
    fresh_db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("POWERBANK_DEMO", "POWERBANK_DEV", "POWERBANK_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve", "--port", "1"]) == 2
    assert "POWERBANK_SECRET_KEY" in capsys.readouterr().err


HOME_TABLE = [
    # user, teams seen on the home page, operator admin links, catalogue link, may configure in Copenhagen Fleet
    ("operator.admin@demo.test", NORDIC, True, True, True),
    ("operator.manager@demo.test", NORDIC, False, True, True),
    ("owner@demo.test", NORDIC[:2], False, False, True),
    ("admin@demo.test", NORDIC, False, False, True),
    ("readonly.admin@demo.test", NORDIC[:2], False, False, False),
    ("member@demo.test", NORDIC[:2], False, False, False),
    ("fjord.admin@demo.test", ["Oslo Yard"], True, True, None),
]


@pytest.mark.parametrize(
    ("email", "teams", "admin_links", "catalogue_link", "configures"), HOME_TABLE, ids=[row[0] for row in HOME_TABLE]
)
async def test_what_each_demo_user_sees(
    demo: list[ChargePoint],
    login_as: LoginAs,
    email: str,
    teams: list[str],
    admin_links: bool,
    catalogue_link: bool,
    configures: bool | None,
) -> None:
    client = await login_as(email)
    response = await client.get("/")
    body = await response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Demo" in body
    every_team = NORDIC + ["Oslo Yard"]
    assert [team for team in every_team if f">{team}</a>" in body] == teams
    operator = "Fjord Energy" if teams == ["Oslo Yard"] else "Nordic Charge"
    other = "Nordic Charge" if operator == "Fjord Energy" else "Fjord Energy"
    assert operator in body and other not in body
    assert ("Manage teams" in body) is admin_links and ("Members</a>" in body) is admin_links
    assert ("Audit log" in body) is admin_links
    assert ("Compatibility catalogue" in body) is catalogue_link
    copenhagen = next(cp.team_id for cp in demo if cp.identity == "CPH-001")
    tab = await client.get(f"/teams/{copenhagen}/charge-points")
    if configures is None:
        assert tab.status_code == 404
    else:
        tab_body = await tab.get_data(as_text=True)
        assert tab.status_code == 200 and "6 charge points" in tab_body
        assert ("Add charge point</a>" in tab_body) is configures
