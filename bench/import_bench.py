"""Benchmark the CSV import of charge points: a 10,000-row file checked and saved, by the service and by the pages.

    python -m bench.import_bench              # 10,000 rows, 5 runs each
    python -m bench.import_bench --rows 2000 --repeats 3

Each run starts from a fresh migrated SQLite database (``powerbank db upgrade``) holding one
operator, one empty team and its Operator Admin. The file is what a spreadsheet on Windows saves:
Windows-1252, semicolons, half Swedish charge points with Facility IDs, half Danish (DK2, which
the import signs up for PowerBank by itself). Figures:

- service: ``preview_import`` (the check) and ``import_charge_points`` plus the commit (the save),
  timed apart, with the SQL statements each sends, at 10 rows and at the full size;
- pages: what a person waits for: uploading the file to the preview, then pressing Import (the
  Quart test client in this process, logged in as the Operator Admin).

Targets: check and save ≤ 5 s at 10,000 rows, and the same number of statements at 10 rows as
at 10,000. The figures are printed with a verdict for each target; tests never assert time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlmodel import select
from werkzeug.datastructures import FileStorage

from bench import fixtures
from bench.inprocess import CSRF_RE, QueryCounter, spread
from powerbank import create_app
from powerbank.db import make_engine, make_sessionmaker, standalone_session
from powerbank.models import OperatorMembership, OperatorRole, Team, User
from powerbank.rules.gsrn import make_facility_id
from powerbank.services import imports
from powerbank.services.audit import SYSTEM
from powerbank.services.teams import create_operator

TARGET_S = 5.0
TEAM_NAME = "Bench Import"
CONTENT_RE = re.compile(r'name="content" value="([^"]+)"')


def import_file(rows: int) -> bytes:
    """Return an import file of ``rows`` charge points as a spreadsheet on Windows saves it."""
    lines = [";".join(label for _, label in imports.COLUMNS)]
    for n in range(1, rows + 1):
        if n % 2:
            lines.append(f"Stockholm laddare {n:05d};STO-IMP-{n:06d};Zaptec;Go;SE;SE3;{make_facility_id(f'{n:011d}')}")
        else:
            lines.append(f"Amager lader {n:05d};CPH-IMP-{n:06d};Easee;Home;DK;DK2;")
    return ("\r\n".join(lines) + "\r\n").encode("cp1252")


async def _empty_team(path: Path) -> int:
    """Make an operator with one empty team and its Operator Admin; return the team's id."""
    async with standalone_session(fixtures.sqlite_url(path)) as session:
        operator = await create_operator(session, SYSTEM, fixtures.OPERATOR_NAME)
        team = Team(operator_id=operator.id or 0, name=TEAM_NAME)
        user = User(
            email=fixtures.USER_EMAIL,
            display_name="Bench Admin",
            password_hash=fixtures.LIGHT_HASHER.hash(fixtures.USER_PASSWORD),
        )
        session.add_all([team, user])
        await session.flush()
        session.add(OperatorMembership(operator_id=operator.id or 0, user_id=user.id or 0, role=OperatorRole.ADMIN))
        await session.commit()
        return team.id or 0


async def service_run(database: Path, data: bytes) -> dict[str, Any]:
    """Check and save one file with the import service; time each step and count its statements."""
    team_id = await _empty_team(database)
    engine = make_engine(fixtures.sqlite_url(database))
    try:
        async with make_sessionmaker(engine)() as session:
            team = (await session.exec(select(Team).where(Team.id == team_id))).one()
            check, save = QueryCounter(), QueryCounter()
            with check.listening(engine):
                started = time.perf_counter()
                text, _encoding = imports.decode_csv(data)
                preview = await imports.preview_import(session, SYSTEM, team, text)
                checked = time.perf_counter()
            if not preview.ok:
                raise RuntimeError(f"the bench file has problems: {preview.problems[:3]}")
            with save.listening(engine):
                started_save = time.perf_counter()
                imported = await imports.import_charge_points(session, SYSTEM, team, text)
                await session.commit()
                saved = time.perf_counter()
    finally:
        await engine.dispose()
    return {
        "check_s": checked - started,
        "save_s": saved - started_save,
        "total_s": (checked - started) + (saved - started_save),
        "check_queries": check.count,
        "save_queries": save.count,
        "imported": len(imported),
    }


async def pages_run(database: Path, data: bytes) -> dict[str, Any]:
    """Upload the file to the preview and press Import, as the Operator Admin in a browser would."""
    team_id = await _empty_team(database)
    app = create_app(
        {
            "DATABASE_URL": fixtures.sqlite_url(database),
            "SECRET_KEY": "bench",
            "QUART_AUTH_COOKIE_SECURE": False,
            "SESSION_COOKIE_SECURE": False,
        }
    )
    async with app.test_app():
        client = app.test_client()
        match = CSRF_RE.search(await (await client.get("/login")).get_data(as_text=True))
        if match is None:
            raise RuntimeError("no CSRF token on /login")
        form = {"email": fixtures.USER_EMAIL, "password": fixtures.USER_PASSWORD, "csrf_token": match.group(1)}
        if (await client.post("/login", form=form)).status_code != 303:
            raise RuntimeError("bench log-in failed")
        page = await (await client.get(f"/teams/{team_id}/charge-points/import")).get_data(as_text=True)
        token = CSRF_RE.search(page)
        if token is None:
            raise RuntimeError("no CSRF token on the import page")
        started = time.perf_counter()
        response = await client.post(
            f"/teams/{team_id}/charge-points/import/preview",
            form={"csrf_token": token.group(1)},
            files={"file": FileStorage(io.BytesIO(data), filename="bench.csv", content_type="text/csv")},
        )
        preview = await response.get_data(as_text=True)
        checked = time.perf_counter()
        content = CONTENT_RE.search(preview)
        if response.status_code != 200 or content is None:
            raise RuntimeError(f"the preview answered HTTP {response.status_code}")
        response = await client.post(
            f"/teams/{team_id}/charge-points/import", form={"csrf_token": token.group(1), "content": content.group(1)}
        )
        done = await response.get_data()
        saved = time.perf_counter()
        if response.status_code != 201:
            raise RuntimeError(f"the import answered HTTP {response.status_code}")
    return {
        "check_s": checked - started,
        "save_s": saved - checked,
        "total_s": saved - started,
        "preview_kib": len(preview.encode()) / 1024,
        "carried_kib": len(content.group(1)) / 1024,
        "done_kib": len(done) / 1024,
    }


def _figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [key for key in runs[0] if key.endswith("_s")]
    figures: dict[str, Any] = {key: spread([run[key] for run in runs]) for key in keys}
    figures.update({key: max(run[key] for run in runs) for key in runs[0] if key not in keys})
    return figures


async def run(rows: int, repeats: int, workdir: Path) -> dict[str, Any]:
    migrated = workdir / "migrated.db"
    fixtures.migrate(migrated)
    data, small = import_file(rows), import_file(10)
    results: dict[str, Any] = {"rows": rows, "file_kib": len(data) / 1024, "limit_kib": imports.MAX_IMPORT_BYTES / 1024}
    for label, file, runner in (
        ("service_small", small, service_run),
        ("service", data, service_run),
        ("pages", data, pages_run),
    ):
        runs = []
        # One warm-up run (imports, statement caches, templates) that is not counted.
        for attempt in range(repeats + 1):
            database = workdir / f"{label}-{attempt}.db"
            shutil.copy(migrated, database)
            figures = await runner(database, file)
            if attempt:
                runs.append(figures)
        results[label] = _figures(runs)
    return results


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def report(results: dict[str, Any]) -> str:
    """Return the figures and the targets table, as bench/RESULTS.md shows them."""
    rows, service, small, pages = results["rows"], results["service"], results["service_small"], results["pages"]

    def median(figures: dict[str, Any], key: str) -> float:
        return float(figures[key]["median"])

    lines = [
        f"CSV import of {rows:,} charge points ({results['file_kib']:,.0f} KiB, limit "
        f"{results['limit_kib']:,.0f} KiB); medians of {service['total_s']['runs']} runs, range in brackets",
        "",
        "| step | check | save | total | statements (check + save) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, figures in (("service, 10 rows", small), (f"service, {rows:,} rows", service)):
        lines.append(
            f"| {label} | {median(figures, 'check_s'):.3f} s | {median(figures, 'save_s'):.3f} s | "
            f"{median(figures, 'total_s'):.3f} s ({figures['total_s']['min']:.3f}–{figures['total_s']['max']:.3f}) | "
            f"{figures['check_queries']} + {figures['save_queries']} |"
        )
    lines.append(
        f"| pages, {rows:,} rows (upload to preview, then Import) | {median(pages, 'check_s'):.3f} s | "
        f"{median(pages, 'save_s'):.3f} s | {median(pages, 'total_s'):.3f} s "
        f"({pages['total_s']['min']:.3f}–{pages['total_s']['max']:.3f}) | – |"
    )
    constant = (small["check_queries"], small["save_queries"]) == (service["check_queries"], service["save_queries"])
    lines += [
        "",
        f"Preview page {pages['preview_kib']:,.0f} KiB (its packed file {pages['carried_kib']:,.0f} KiB of the "
        f"form's 488 KiB), passwords page {pages['done_kib']:,.0f} KiB.",
        "",
        "| target | measured | verdict |",
        "| --- | --- | --- |",
        f"| {rows:,} rows checked and saved ≤ {TARGET_S:g} s (service) | {median(service, 'total_s'):.2f} s | "
        f"{_verdict(service['total_s']['max'] <= TARGET_S)} |",
        f"| {rows:,} rows checked and saved ≤ {TARGET_S:g} s (pages) | {median(pages, 'total_s'):.2f} s | "
        f"{_verdict(pages['total_s']['max'] <= TARGET_S)} |",
        f"| statements independent of the rows | 10 rows: {small['check_queries']} + {small['save_queries']}, "
        f"{rows:,} rows: {service['check_queries']} + {service['save_queries']} | "
        f"{_verdict(constant)} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=imports.MAX_IMPORT_ROWS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="powerbank-import-bench-") as workdir:
        results = asyncio.run(run(args.rows, args.repeats, Path(workdir)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
