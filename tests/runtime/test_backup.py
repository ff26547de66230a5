"""`powerbank backup` while chargers report, and `powerbank restore`: nothing acknowledged is missing."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call as call16
from quart import Quart

from powerbank import cli
from powerbank.db.schema import code_heads
from powerbank.ocpp.registry import registry_of
from tests.conftest import Factory
from tests.helpers import eventually
from tests.ocpp.support import charger

# Chargers reporting at once while the backup is taken, each sending its next MeterValues as soon as
# the previous one is answered (POWERBANK_TEST_BACKUP_CHARGERS=1000 for the full-size run).
CHARGERS = int(os.environ.get("POWERBANK_TEST_BACKUP_CHARGERS", "100"))
REPORTS_BEFORE_BACKUP = 1000
# Chargers connecting at the same time (more make the websocket handshakes time out on a busy machine).
CONNECTING_TOGETHER = 25


def run_cli(monkeypatch: pytest.MonkeyPatch, url: str, *argv: str) -> int:
    monkeypatch.setenv("POWERBANK_DATABASE_URL", url)
    return cli.main(list(argv))


def sqlite_file(url: str) -> Path:
    return Path(url.removeprefix("sqlite+aiosqlite:///"))


def meter_values(power_w: int, at: datetime) -> call16.MeterValues:
    sample = {"value": str(power_w), "measurand": "Power.Active.Import", "unit": "W"}
    return call16.MeterValues(
        connector_id=1, meter_value=[{"timestamp": at.isoformat().replace("+00:00", "Z"), "sampled_value": [sample]}]
    )


@pytest.mark.served
@pytest.mark.sqlite_only
async def test_a_backup_taken_while_chargers_report_restores_every_acknowledged_report(
    app: Quart, factory: Factory, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = await factory.team()
    charge_points = [await factory.charge_point(team) for _ in range(CHARGERS)]
    # Every sample kept (none pruned to the newest), so each acknowledged one must be found.
    registry_of(app).keep_samples([cp.id or 0 for cp in charge_points], 3600)
    acknowledged: list[tuple[int, float]] = []
    answered_at: list[float] = []
    stop = asyncio.Event()
    started = datetime.now(UTC)

    async def report(station: Any, charge_point_id: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await station.call(meter_values(n, started + timedelta(milliseconds=n)))
            acknowledged.append((charge_point_id, float(n)))
            answered_at.append(time.perf_counter())

    backup_path = tmp_path / "backups" / "powerbank.db"
    async with AsyncExitStack() as stack:
        stations: list[Any] = []
        for first in range(0, len(charge_points), CONNECTING_TOGETHER):
            group = charge_points[first : first + CONNECTING_TOGETHER]
            stations += await asyncio.gather(*(stack.enter_async_context(charger(app, cp.identity)) for cp in group))
        reporters = [
            asyncio.create_task(report(station, cp.id or 0))
            for station, cp in zip(stations, charge_points, strict=True)
        ]
        await eventually(lambda: len(acknowledged) >= REPORTS_BEFORE_BACKUP, timeout=60)
        # Answered before the backup began: each must be in it.
        before = set(acknowledged)
        # As an operator runs it: another process, beside the serving hub.
        began = time.perf_counter()
        command = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "powerbank.cli",
            "backup",
            str(backup_path),
            env={**os.environ, "POWERBANK_DATABASE_URL": database_url},
        )
        assert await command.wait() == 0
        ended = time.perf_counter()
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*reporters)
    # Figures, not verdicts: how long the backup took and whether the chargers were answered meanwhile.
    during = sum(1 for at in answered_at if began <= at <= ended)
    rate = sum(1 for at in answered_at if ended < at <= ended + 1.0)
    print(
        f"\nbackup while {CHARGERS} chargers report: {ended - began:.3f} s (the whole command), "
        f"{during} reports answered meanwhile; {rate} answered in the second after it"
    )

    restored_url = f"sqlite+aiosqlite:///{tmp_path / 'restored' / 'powerbank.db'}"
    assert await asyncio.to_thread(run_cli, monkeypatch, restored_url, "restore", str(backup_path)) == 0
    with sqlite3.connect(sqlite_file(restored_url)) as restored:
        assert restored.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = set(restored.execute("SELECT charge_point_id, power_w FROM ocpp_meter_sample"))
        (revision,) = restored.execute("SELECT version_num FROM alembic_version").fetchone()
        # One snapshot: each charger's quarter-hour sums hold exactly the samples the backup holds.
        quarters = dict(restored.execute("SELECT charge_point_id, sum(samples) FROM meter_quarter GROUP BY 1"))
        samples = dict(restored.execute("SELECT charge_point_id, count(*) FROM ocpp_meter_sample GROUP BY 1"))
    missing = before - rows
    assert not missing, f"{len(missing)} acknowledged reports are not in the backup, e.g. {sorted(missing)[:5]}"
    assert revision in code_heads()
    assert quarters == samples


@pytest.mark.served
@pytest.mark.sqlite_only
async def test_restore_refuses_the_database_a_node_serves_from(
    app: Quart, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    backup_path = tmp_path / "backup.db"
    assert await asyncio.to_thread(run_cli, monkeypatch, database_url, "backup", str(backup_path)) == 0
    capsys.readouterr()

    assert await asyncio.to_thread(run_cli, monkeypatch, database_url, "restore", str(backup_path)) == 1

    assert "is in use" in capsys.readouterr().err
    assert (await app.test_client().get("/readyz")).status_code == 200


@pytest.mark.sqlite_only
def test_a_backup_never_overwrites_and_restore_checks_what_it_is_given(
    migrated_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{migrated_template}"
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"keep me")
    assert run_cli(monkeypatch, url, "backup", str(existing)) == 1
    assert "already exists" in capsys.readouterr().err and existing.read_bytes() == b"keep me"

    target = f"sqlite+aiosqlite:///{tmp_path / 'target.db'}"
    assert run_cli(monkeypatch, target, "restore", str(existing)) == 1
    assert "not a SQLite database" in capsys.readouterr().err

    newer = tmp_path / "newer.db"
    assert run_cli(monkeypatch, url, "backup", str(newer)) == 0
    with sqlite3.connect(newer) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    connection.close()
    assert run_cli(monkeypatch, target, "restore", str(newer)) == 1
    assert "9999_from_the_future" in capsys.readouterr().err
    assert not (tmp_path / "target.db").exists()

    # A database nothing serves from is replaced without --force; an older backup is told to be upgraded.
    older = tmp_path / "older.db"
    assert run_cli(monkeypatch, url, "backup", str(older)) == 0
    with sqlite3.connect(older) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001_core'")
    connection.close()
    capsys.readouterr()
    assert run_cli(monkeypatch, target, "restore", str(older)) == 0
    assert "powerbank db upgrade" in capsys.readouterr().out


@pytest.mark.parametrize("url", ["postgresql+asyncpg://powerbank@db.example.com/powerbank"])
def test_postgresql_is_backed_up_with_pg_dump(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(monkeypatch, url, "backup", str(tmp_path / "x.db")) == 1
    assert "pg_dump" in capsys.readouterr().err
    assert run_cli(monkeypatch, url, "restore", str(tmp_path / "x.db")) == 1
    assert "pg_dump" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()
