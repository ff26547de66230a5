"""Migrations on a fresh database, the `powerbank` command, the demo data and what each demo user sees."""

from __future__ import annotations

import asyncio
import re
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


@pytest.fixture
def no_mail(monkeypatch: pytest.MonkeyPatch) -> None:
    """A production shell without email: no SMTP server, no demo or development mode."""
    for name in ("POWERBANK_SMTP_HOST", "POWERBANK_PUBLIC_URL", "POWERBANK_DEMO", "POWERBANK_DEV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("POWERBANK_NEW_USER_PASSWORD", raising=False)


def _never_asked(prompt: str = "") -> str:
    raise AssertionError("no password may be asked for here")


async def _outbox() -> tuple[list[Any], list[Any]]:
    from powerbank.config import database_url
    from powerbank.models import Invitation, MailMessage

    async with standalone_session(database_url()) as session:
        return list(await session.exec(select(Invitation))), list(await session.exec(select(MailMessage)))


def test_create_operator_with_a_new_admin_asks_for_their_password(
    fresh_db: Path, no_mail: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0
    prompts: list[str] = []

    def typed(prompt: str = "") -> str:
        prompts.append(prompt)
        return "typed at the terminal"

    monkeypatch.setattr("getpass.getpass", typed)
    assert main(["create-operator", " Harbour Power ", "--admin", "First@Example.test"]) == 0
    out = capsys.readouterr().out
    assert "Created operator Harbour Power with first@example.test as its Operator Admin" in out
    assert len(prompts) == 1
    summary = asyncio.run(_demo_summary())
    assert summary["operator roles"] == {("first@example.test", "Harbour Power", "admin")}
    assert verify_password(summary["users"]["first@example.test"], "typed at the terminal")
    # The operator starts with the shipped compatibility catalogue, as any operator does.
    assert ("easee", "home") in asyncio.run(_catalogue_of("Harbour Power"))
    assert asyncio.run(_outbox()) == ([], [])


async def _catalogue_of(operator_name: str) -> Any:
    from powerbank.config import database_url

    async with standalone_session(database_url()) as session:
        operator = (await session.exec(select(Operator).where(Operator.name == operator_name))).one()
        return await catalogue_keys(session, operator.id or 0)


def test_create_operator_makes_an_existing_user_its_admin(
    fresh_db: Path, no_mail: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0
    assert main(["create-user", "you@example.test", "--password", "my own password"]) == 0
    monkeypatch.setattr("getpass.getpass", _never_asked)
    assert main(["create-operator", "Harbour Power", "--admin", "YOU@example.test"]) == 0
    assert "they log in with their own password" in capsys.readouterr().out
    summary = asyncio.run(_demo_summary())
    assert summary["operator roles"] == {("you@example.test", "Harbour Power", "admin")}
    assert verify_password(summary["users"]["you@example.test"], "my own password")


async def _accept_invitation(path: str, email: str) -> tuple[str, int]:
    from powerbank import create_app
    from powerbank.config import database_url
    from tests.conftest import csrf_of
    from tests.helpers import TEST_CONFIG

    app = create_app({**TEST_CONFIG, "DEMO": False, "DATABASE_URL": database_url()})
    async with app.test_app():
        client = app.test_client()
        page = await (await client.get(path)).get_data(as_text=True)
        token = await csrf_of(client, path)
        form = {"password": "chosen by them", "confirm": "chosen by them", "csrf_token": token}
        accepted = await client.post(path, form=form)
        return page, accepted.status_code


def test_create_operator_invites_a_new_admin_when_email_is_set_up(
    fresh_db: Path, no_mail: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0
    monkeypatch.setenv("POWERBANK_SMTP_HOST", "mail.example.test")
    monkeypatch.setenv("POWERBANK_PUBLIC_URL", "https://powerbank.example.test/")
    monkeypatch.setattr("getpass.getpass", _never_asked)
    assert main(["create-operator", "Harbour Power", "--admin", "new.admin@example.test"]) == 0
    out = capsys.readouterr().out
    assert "invitation email" in out and "outbox" in out and "`powerbank serve`" in out
    summary = asyncio.run(_demo_summary())
    assert summary["operator roles"] == {("new.admin@example.test", "Harbour Power", "admin")}
    assert summary["users"] == {"new.admin@example.test": ""}
    invitations, outbox = asyncio.run(_outbox())
    assert len(invitations) == 1 and [mail.to_address for mail in outbox] == ["new.admin@example.test"]
    (path,) = re.findall(r"https://powerbank\.example\.test(/invitations/\S+)", outbox[0].body)
    page, accepted = asyncio.run(_accept_invitation(path, "new.admin@example.test"))
    assert "new.admin@example.test" in page and accepted == 303
    assert verify_password(asyncio.run(_demo_summary())["users"]["new.admin@example.test"], "chosen by them")


CREATE_OPERATOR_REFUSALS = [
    # arguments, environment, what stderr says
    (["harbour POWER", "--admin", "x@example.test"], {}, "An operator named 'harbour POWER' already exists."),
    (["  ", "--admin", "x@example.test"], {}, "Operator name is required."),
    (["N" * 121, "--admin", "x@example.test"], {}, "at most 120"),
    (["Fjord", "--admin", "not-an-email"], {}, "Enter a valid email address."),
    (["Fjord", "--admin", "x@example.test"], {"POWERBANK_NEW_USER_PASSWORD": "short"}, "at least 10 characters"),
    (
        ["Fjord", "--admin", "x@example.test"],
        {"POWERBANK_SMTP_HOST": "mail.example.test"},
        "POWERBANK_PUBLIC_URL must be set",
    ),
]


@pytest.mark.parametrize(("argv", "env", "message"), CREATE_OPERATOR_REFUSALS)
def test_create_operator_refuses_and_saves_nothing(
    fresh_db: Path,
    no_mail: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    assert main(["db", "upgrade"]) == 0
    monkeypatch.setenv("POWERBANK_NEW_USER_PASSWORD", "a long password")
    assert main(["create-operator", "Harbour Power", "--admin", "first@example.test"]) == 0
    before = asyncio.run(_demo_summary())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main(["create-operator", *argv]) == 2
    assert message in capsys.readouterr().err
    after = asyncio.run(_demo_summary())
    assert after["operator roles"] == before["operator roles"] and set(after["users"]) == set(before["users"])
    assert asyncio.run(_operator_names()) == ["Harbour Power"]


async def _operator_names() -> list[str]:
    from powerbank.config import database_url

    async with standalone_session(database_url()) as session:
        return [operator.name for operator in await session.exec(select(Operator))]


async def _add_team(operator_name: str, team_name: str) -> None:
    from powerbank.config import database_url

    async with standalone_session(database_url()) as session:
        operator = (await session.exec(select(Operator).where(Operator.name == operator_name))).one()
        session.add(Team(operator_id=operator.id or 0, name=team_name))
        await session.commit()


@pytest.fixture
def harbour(fresh_db: Path, no_mail: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Harbour Power with its admin, a team Quay, and person@example.test who holds no role yet."""
    monkeypatch.setenv("POWERBANK_NEW_USER_PASSWORD", "a long password")
    assert main(["db", "upgrade"]) == 0
    assert main(["create-operator", "Harbour Power", "--admin", "admin@example.test"]) == 0
    assert main(["create-user", "person@example.test"]) == 0
    asyncio.run(_add_team("Harbour Power", "Quay"))


GRANTS = [
    # options after EMAIL, the roles person@example.test then holds (operator, team), what is printed
    (["--role", "manager"], {"manager"}, set(), "person@example.test is now Operator Manager of Harbour Power."),
    (["--role", "admin"], {"admin"}, set(), "is now Operator Admin of Harbour Power."),
    (
        ["--team", "Quay", "--role", "owner"],
        set(),
        {("owner", True)},
        "is now Team Owner in Quay (Harbour Power), with the right to configure charge points.",
    ),
    (
        ["--team", "quay", "--role", "admin", "--no-configure"],
        set(),
        {("admin", False)},
        "is now Team Admin in Quay (Harbour Power), without the right to configure charge points.",
    ),
    (["--team", "Quay", "--role", "member"], set(), {("member", False)}, "is now Team Member in Quay (Harbour Power)."),
]


async def _roles_of(email: str) -> tuple[set[str], set[tuple[str, bool]]]:
    summary = await _demo_summary()
    operator_roles = {role for user, _, role in summary["operator roles"] if user == email}
    team_roles = {(role, configures) for user, _, role, configures in summary["team roles"] if user == email}
    return operator_roles, team_roles


@pytest.mark.parametrize(("options", "operator_roles", "team_roles", "printed"), GRANTS)
def test_grant_gives_a_role(
    harbour: None,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    operator_roles: set[str],
    team_roles: set[tuple[str, bool]],
    printed: str,
) -> None:
    capsys.readouterr()
    assert main(["grant", "Person@Example.test", "--operator", "harbour power", *options]) == 0
    assert printed in capsys.readouterr().out
    assert asyncio.run(_roles_of("person@example.test")) == (operator_roles, team_roles)


GRANT_REFUSALS = [
    (["person@example.test", "--operator", "Harbour Power", "--role", "owner"], "owner is a team role"),
    (["person@example.test", "--operator", "Harbour Power", "--team", "Quay", "--role", "manager"], "operator role"),
    (["person@example.test", "--operator", "Harbour Power", "--role", "admin", "--no-configure"], "about a team role"),
    (["person@example.test", "--operator", "Nowhere", "--role", "admin"], "No operator named 'Nowhere'."),
    (["person@example.test", "--operator", "Harbour Power", "--team", "Dock", "--role", "member"], "no team named"),
    (["nobody@example.test", "--operator", "Harbour Power", "--role", "admin"], "powerbank create-user"),
    (["not-an-email", "--operator", "Harbour Power", "--role", "admin"], "Enter a valid email address."),
]


@pytest.mark.parametrize(("argv", "message"), GRANT_REFUSALS)
def test_grant_refuses_and_changes_nothing(
    harbour: None, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    before = asyncio.run(_demo_summary())
    capsys.readouterr()
    assert main(["grant", *argv]) == 2
    assert message in capsys.readouterr().err
    after = asyncio.run(_demo_summary())
    assert (after["operator roles"], after["team roles"]) == (before["operator roles"], before["team roles"])


def test_grant_changes_a_held_role_but_keeps_an_operator_admin(
    harbour: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # The only admin cannot be made manager: nobody could manage Harbour Power any more.
    assert main(["grant", "admin@example.test", "--operator", "Harbour Power", "--role", "manager"]) == 2
    assert "at least one Operator Admin" in capsys.readouterr().err
    assert asyncio.run(_roles_of("admin@example.test")) == ({"admin"}, set())
    assert main(["grant", "person@example.test", "--operator", "Harbour Power", "--role", "admin"]) == 0
    assert main(["grant", "admin@example.test", "--operator", "Harbour Power", "--role", "manager"]) == 0
    assert asyncio.run(_roles_of("admin@example.test")) == ({"manager"}, set())
    assert (
        main(["grant", "person@example.test", "--operator", "Harbour Power", "--team", "Quay", "--role", "owner"]) == 0
    )
    assert (
        main(["grant", "person@example.test", "--operator", "Harbour Power", "--team", "Quay", "--role", "member"]) == 0
    )
    assert asyncio.run(_roles_of("person@example.test")) == ({"admin"}, {("member", False)})


def test_an_operator_name_taken_after_the_check_is_still_refused(
    fresh_db: Path, no_mail: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from powerbank.cli import _create_operator
    from powerbank.errors import ConflictError

    assert main(["db", "upgrade"]) == 0
    monkeypatch.setenv("POWERBANK_NEW_USER_PASSWORD", "a long password")
    assert main(["create-operator", "Harbour Power", "--admin", "first@example.test"]) == 0
    # Another command made the operator between this one's check and its write: the write refuses too.
    with pytest.raises(ConflictError, match="already exists"):
        asyncio.run(_create_operator("HARBOUR power", "second@example.test", "a long password", None))
    assert asyncio.run(_operator_names()) == ["Harbour Power"]
    assert set(asyncio.run(_demo_summary())["users"]) == {"first@example.test"}


def test_create_operator_says_when_its_admin_has_no_password_yet(
    fresh_db: Path, no_mail: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 0
    monkeypatch.setenv("POWERBANK_SMTP_HOST", "mail.example.test")
    monkeypatch.setenv("POWERBANK_PUBLIC_URL", "https://powerbank.example.test")
    assert main(["create-operator", "Harbour Power", "--admin", "invited@example.test"]) == 0
    monkeypatch.delenv("POWERBANK_SMTP_HOST")
    monkeypatch.setattr("getpass.getpass", _never_asked)
    capsys.readouterr()
    assert main(["create-operator", "Fjord Power", "--admin", "invited@example.test"]) == 0
    assert "have not chosen a password yet" in capsys.readouterr().out
    assert asyncio.run(_roles_of("invited@example.test")) == ({"admin"}, set())
