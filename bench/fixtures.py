"""Benchmark databases: a fresh migrated SQLite file or PostgreSQL database, filled in bulk in a few statements.

Each function takes the database as a SQLite file's path or as a database URL (PostgreSQL for the
cluster benchmark).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.config import PROJECT_ROOT
from powerbank.db import standalone_session, utcnow
from powerbank.models import (
    ChargePoint,
    OperatorMembership,
    OperatorRole,
    Participation,
    ParticipationSource,
    ParticipationState,
    Team,
    User,
)
from powerbank.rules.gsrn import make_facility_id
from powerbank.services.audit import SYSTEM
from powerbank.services.teams import create_operator

OPERATOR_NAME = "Bench Operator"
CHARGER_PASSWORD = "bench-charger-password"
PROBE_IDENTITY = "BENCH-PROBE"
USER_EMAIL = "bench.admin@bench.test"
USER_PASSWORD = "bench-user-password"
# A light argon2id cost: the same algorithm and code path as production, at 1 MiB and one pass,
# so thousands of chargers can connect in seconds. The production cost is measured separately.
LIGHT_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def identity(n: int) -> str:
    """Return the OCPP identity of bench charger ``n`` (the load generator uses the same names)."""
    return f"BENCH-{n:06d}"


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def database_url(database: Path | str) -> str:
    """Return the URL of a database given as a SQLite file's path or as a URL already."""
    return database if isinstance(database, str) else sqlite_url(database)


def migrate(database: Path | str) -> None:
    """Create the schema with ``powerbank db upgrade``, as an operator would."""
    env = {"POWERBANK_DATABASE_URL": database_url(database), "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [sys.executable, "-m", "powerbank.cli", "db", "upgrade"],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


@dataclass
class BenchTeam:
    operator_id: int
    team_id: int
    charge_point_ids: list[int]


async def _team(session: AsyncSession, team_name: str) -> tuple[int, int]:
    operator = await create_operator(session, SYSTEM, OPERATOR_NAME)
    team = Team(operator_id=operator.id or 0, name=team_name)
    session.add(team)
    await session.flush()
    return operator.id or 0, team.id or 0


async def _insert_charge_points(session: AsyncSession, team_id: int, rows: list[dict[str, object]]) -> list[int]:
    now = utcnow()
    for row in rows:
        row.update(team_id=team_id, created_at=now, updated_at=now, online=False)
    connection = await session.connection()
    result = await connection.execute(insert(ChargePoint).returning(ChargePoint.id, sort_by_parameter_order=True), rows)
    return [row[0] for row in result]


async def fill_charger_fleet(database: Path | str, chargers: int, password_hash: str) -> BenchTeam:
    """Insert ``chargers`` compatible DK2 charge points, all signed up, plus the lag probe (DK1)."""
    async with standalone_session(database_url(database)) as session:
        operator_id, team_id = await _team(session, "Bench Fleet")
        rows: list[dict[str, object]] = [
            {
                "name": f"Bench {n}",
                "identity": identity(n),
                "brand": "Easee",
                "model": "Home",
                "country": "DK",
                "price_area": "DK2",
                "ocpp_password_hash": password_hash,
            }
            for n in range(1, chargers + 1)
        ]
        # The probe only measures the hub's responsiveness: another area, so no activation targets it.
        rows.append(
            {
                "name": "Bench probe",
                "identity": PROBE_IDENTITY,
                "brand": "Easee",
                "model": "Home",
                "country": "DK",
                "price_area": "DK1",
                "ocpp_password_hash": password_hash,
            }
        )
        ids = await _insert_charge_points(session, team_id, rows)
        fleet = ids[:-1]
        now = utcnow()
        connection = await session.connection()
        await connection.execute(
            insert(Participation),
            [
                {
                    "charge_point_id": cp_id,
                    "state": ParticipationState.SIGNED_UP,
                    "since": now,
                    "source": ParticipationSource.AUTOMATIC,
                    "reason": "",
                    "version": 1,
                }
                for cp_id in fleet
            ],
        )
        await session.commit()
        return BenchTeam(operator_id, team_id, fleet)


async def fill_team_for_pages(path: Path, charge_points: int, password_hash: str) -> BenchTeam:
    """Insert a team of ``charge_points`` in five countries and an Operator Admin to look at it."""
    places = [("DK", "DK1"), ("SE", "SE3"), ("GB", "GB"), ("IE", "IE"), ("DE", None)]
    return await _fill_team(
        path, "Bench Pages", places, ("Charger", "PAGE", "Zaptec", "Go"), charge_points, password_hash
    )


async def fill_team_for_signup(path: Path, charge_points: int, password_hash: str) -> BenchTeam:
    """Insert a team of compatible charge points not yet signed up (DK1, GB, IE, and SE with Facility IDs)."""
    places = [("DK", "DK1"), ("DK", "DK1"), ("GB", "GB"), ("IE", "IE"), ("SE", "SE3")]
    return await _fill_team(
        path, "Bench Sign-up", places, ("Signup", "SIGN", "Easee", "Home"), charge_points, password_hash
    )


async def _fill_team(
    path: Path,
    team_name: str,
    places: list[tuple[str, str | None]],
    naming: tuple[str, str, str, str],
    charge_points: int,
    password_hash: str,
) -> BenchTeam:
    """Insert a team whose charge points cycle through ``places``, and an Operator Admin of its operator."""
    name, identity, brand, model = naming
    async with standalone_session(sqlite_url(path)) as session:
        operator_id, team_id = await _team(session, team_name)
        rows: list[dict[str, object]] = []
        for n in range(1, charge_points + 1):
            country, area = places[n % len(places)]
            rows.append(
                {
                    "name": f"{name} {n:05d}",
                    "identity": f"{identity}-{n:06d}",
                    "brand": brand,
                    "model": model,
                    "country": country,
                    "price_area": area,
                    "ocpp_password_hash": password_hash,
                    "facility_id": make_facility_id(f"{n:011d}") if country == "SE" else None,
                }
            )
        ids = await _insert_charge_points(session, team_id, rows)
        user = User(email=USER_EMAIL, display_name="Bench Admin", password_hash=LIGHT_HASHER.hash(USER_PASSWORD))
        session.add(user)
        await session.flush()
        session.add(OperatorMembership(operator_id=operator_id, user_id=user.id or 0, role=OperatorRole.ADMIN))
        await session.commit()
        return BenchTeam(operator_id, team_id, ids)
