"""A monthly earnings statement of a large team: its page, its CSV and PDF, and recomputing it.

    .venv/bin/python -m bench.earnings_bench                          # 5,000 charge points, 200 activations
    .venv/bin/python -m bench.earnings_bench --charge-points 1000 --activations 20 --no-pdf

A fresh SQLite file gets one operator with a team of N DK2 charge points and a team of 50 (to show
the number of queries does not grow with the team), hourly FCR-D up capacity prices and an energy
price for October 2026, every charge point available every hour of it (with a few gaps), and
``--activations`` activations each with every charge point's delivered energy (one in ten accepted
but did not deliver). The month is computed once (timed: ``refresh_month``, the write side), then
the statement page, its CSV and (once) its PDF are fetched in-process as an Operator Admin. Prints
the figures and a verdict against the targets (page ≤ 300 ms, CSV ≤ 1 s, constant queries);
nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import fixtures
from bench.inprocess import CSRF_RE, QueryCounter, spread
from powerbank import create_app
from powerbank.db import standalone_session
from powerbank.rules.earnings import month_bounds
from powerbank.services import earnings
from powerbank.web import state

MONTH = "2026-10"
PAGE_TARGET_MS = 300.0
CSV_TARGET_MS = 1000.0
SMALL_TEAM = 50


def fill(path: Path, charge_points: int, activations: int) -> dict[str, int]:
    """Insert the operator, its two teams, an admin, prices, hours and deliveries (plain sqlite3: fast)."""
    start, end = month_bounds(MONTH)
    now = datetime(2026, 11, 2, tzinfo=UTC)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.000000")

    def at(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%d %H:%M:%S.000000")

    db = sqlite3.connect(path)
    cur = db.cursor()
    cur.execute("INSERT INTO operator (name, created_at) VALUES ('Bench Operator', ?)", (stamp,))
    operator_id = int(cur.lastrowid or 0)
    team_ids = []
    for name in ("Bench Earnings", "Bench Small"):
        cur.execute("INSERT INTO team (operator_id, name, created_at) VALUES (?, ?, ?)", (operator_id, name, stamp))
        team_ids.append(int(cur.lastrowid or 0))
    password_hash = fixtures.LIGHT_HASHER.hash(fixtures.CHARGER_PASSWORD)
    sizes = (charge_points, SMALL_TEAM)
    cp_ids: list[int] = []
    for team_id, size in zip(team_ids, sizes, strict=True):
        for n in range(size):
            cur.execute(
                "INSERT INTO charge_point (team_id, name, identity, brand, model, firmware, serial, country,"
                " price_area, ocpp_password_hash, created_at, updated_at, online, smart_charging)"
                " VALUES (?, ?, ?, 'Easee', 'Home', '', '', 'DK', 'DK2', ?, ?, ?, 0, 0)",
                (team_id, f"Charger {team_id}-{n:05d}", f"EARN-{team_id}-{n:06d}", password_hash, stamp, stamp),
            )
            cp_ids.append(int(cur.lastrowid or 0))
    user_hash = fixtures.LIGHT_HASHER.hash(fixtures.USER_PASSWORD)
    cur.execute(
        "INSERT INTO user (email, display_name, password_hash, created_at) VALUES (?, 'Bench Admin', ?, ?)",
        (fixtures.USER_EMAIL, user_hash, stamp),
    )
    cur.execute(
        "INSERT INTO operator_membership (operator_id, user_id, role) VALUES (?, ?, 'admin')",
        (operator_id, cur.lastrowid),
    )
    hours = []
    moment = start
    while moment < end:
        hours.append(moment)
        moment += timedelta(hours=1)
    cur.executemany(
        "INSERT INTO market_price (operator_id, price_area, market, kind, currency, starts_at, ends_at, price,"
        " entered_by, entered_at) VALUES (?, 'DK2', 'FCR-D up', 'capacity', 'DKK', ?, ?, ?, 'bench', ?)",
        [
            (operator_id, at(h), at(h + timedelta(hours=1)), f"{150 + (h.hour * 37 + h.day * 11) % 400}.25", stamp)
            for h in hours
        ],
    )
    cur.execute(
        "INSERT INTO market_price (operator_id, price_area, market, kind, currency, starts_at, ends_at, price,"
        " entered_by, entered_at) VALUES (?, 'DK2', 'FCR-D up', 'energy', 'DKK', ?, ?, '1850.0000', 'bench', ?)",
        (operator_id, at(start), at(end), stamp),
    )
    cur.executemany(
        "INSERT INTO available_hour (charge_point_id, hour, power_w) VALUES (?, ?, ?)",
        (
            (cp_id, at(h), float(1000 + (cp_id * 13 + index * 7) % 9000))
            for cp_id in cp_ids
            for index, h in enumerate(hours)
            if (cp_id + index) % 17
        ),
    )
    for a in range(activations):
        trigger = start + timedelta(minutes=a * (len(hours) * 60 // max(activations, 1)))
        cur.execute(
            "INSERT INTO activation (operator_id, price_area, market, action, start_at, duration_s, end_at, state,"
            " created_by, created_at, triggered_at, ended_at, evidence_kept_at)"
            " VALUES (?, 'DK2', 'FCR-D up', 'pause', ?, 900, ?, 'ended', 'bench', ?, ?, ?, ?)",
            (
                operator_id,
                at(trigger),
                at(trigger + timedelta(minutes=15)),
                at(trigger),
                at(trigger),
                at(trigger + timedelta(minutes=15)),
                at(trigger + timedelta(minutes=16)),
            ),
        )
        activation_id = cur.lastrowid
        cur.execute("INSERT INTO earnings_settled (activation_id, settled_at) VALUES (?, ?)", (activation_id, stamp))
        cur.executemany(
            "INSERT INTO delivered_energy (activation_id, charge_point_id, operator_id, price_area, market,"
            " triggered_at, verdict, delivered_wh) VALUES (?, ?, ?, 'DK2', 'FCR-D up', ?, ?, ?)",
            (
                (
                    activation_id,
                    cp_id,
                    operator_id,
                    at(trigger),
                    "accepted but not delivered" if (cp_id + a) % 10 == 0 else "delivered",
                    0.0 if (cp_id + a) % 10 == 0 else 1800.0 + (cp_id % 7) * 100,
                )
                for cp_id in cp_ids
            ),
        )
    db.commit()
    db.close()
    return {"operator_id": operator_id, "team_id": team_ids[0], "small_team_id": team_ids[1]}


async def refresh(url: str, operator_id: int) -> dict[str, Any]:
    """Compute the month once, as the keeper or a price import does; time it."""
    async with standalone_session(url) as session:
        started = time.perf_counter()
        lines = await earnings.refresh_month(session, operator_id, MONTH, datetime(2026, 11, 2, tzinfo=UTC))
        await session.commit()
        return {"lines": lines, "s": round(time.perf_counter() - started, 2)}


async def fetch(url: str, ids: dict[str, int], repeats: int, pdf: bool) -> dict[str, Any]:
    """Time the statement page, its CSV and its PDF in-process; count their queries."""
    app = create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "bench",
            "QUART_AUTH_COOKIE_SECURE": False,
            "SESSION_COOKIE_SECURE": False,
            "EARNINGS_REFRESH_S": 0,
            "AVAILABILITY_SAMPLING": False,
        }
    )
    figures: dict[str, Any] = {}
    async with app.test_app():
        client = app.test_client()
        match = CSRF_RE.search(await (await client.get("/login")).get_data(as_text=True))
        if match is None:
            raise RuntimeError("no CSRF token on /login")
        form = {"email": fixtures.USER_EMAIL, "password": fixtures.USER_PASSWORD, "csrf_token": match.group(1)}
        if (await client.post("/login", form=form)).status_code != 303:
            raise RuntimeError("bench log-in failed")
        engine = state.engine(app)
        cases = {
            "page": f"/teams/{ids['team_id']}/earnings?month={MONTH}",
            "csv": f"/teams/{ids['team_id']}/earnings/{MONTH}.csv",
            "page_small_team": f"/teams/{ids['small_team_id']}/earnings?month={MONTH}",
            "csv_small_team": f"/teams/{ids['small_team_id']}/earnings/{MONTH}.csv",
            "section": f"/teams/{ids['team_id']}/earnings/section",
        }
        for name, path in cases.items():
            times, queries, size = [], 0, 0
            for attempt in range(repeats + 1):
                counter = QueryCounter()
                with counter.listening(engine):
                    started = time.perf_counter()
                    response = await client.get(path)
                    body = await response.get_data(as_text=False)
                    elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(f"{path} answered HTTP {response.status_code}")
                if attempt:  # the first is a warm-up (template compilation, statement caches)
                    times.append(1000 * elapsed)
                    queries, size = counter.count, len(body)
            figures[name] = {"path": path, "ms": spread(times), "queries": queries, "bytes": size}
        if pdf:
            started = time.perf_counter()
            response = await client.get(f"/teams/{ids['team_id']}/earnings/{MONTH}.pdf")
            body = await response.get_data(as_text=False)
            figures["pdf"] = {
                "s": round(time.perf_counter() - started, 2),
                "bytes": len(body),
                "ok": response.status_code == 200 and body.startswith(b"%PDF"),
            }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--charge-points", type=int, default=5000)
    parser.add_argument("--activations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-pdf", action="store_true", help="skip the PDF (it takes seconds for a large team)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="earnings-bench-") as workdir:
        path = Path(workdir) / "earnings.db"
        fixtures.migrate(path)
        started = time.perf_counter()
        ids = fill(path, args.charge_points, args.activations)
        url = fixtures.sqlite_url(path)
        print(
            f"filled in {time.perf_counter() - started:.1f} s: {args.charge_points} charge points,"
            f" {args.activations} activations, {MONTH}"
        )
        computed = asyncio.run(refresh(url, ids["operator_id"]))
        print(
            f"refresh_month (the write side, every charge point of the operator): {computed['s']} s,"
            f" {computed['lines']} lines"
        )
        figures = asyncio.run(fetch(url, ids, args.repeats, not args.no_pdf))
    for name, value in figures.items():
        if "ms" in value:
            ms = value["ms"]
            print(
                f"{name:16} median {ms['median']:7.1f} ms (min {ms['min']:.1f}, max {ms['max']:.1f}, {ms['runs']} runs)"
                f"  {value['queries']} queries  {value['bytes'] / 1024:.0f} KiB"
            )
    if "pdf" in figures:
        print(
            f"{'pdf':16} {figures['pdf']['s']} s  {figures['pdf']['bytes'] / 1024:.0f} KiB  ok={figures['pdf']['ok']}"
        )
    page, csv_figures = figures["page"], figures["csv"]
    verdicts = {
        f"statement page <= {PAGE_TARGET_MS:.0f} ms": page["ms"]["median"] <= PAGE_TARGET_MS,
        f"CSV <= {CSV_TARGET_MS:.0f} ms": csv_figures["ms"]["median"] <= CSV_TARGET_MS,
        "constant queries (page)": page["queries"] == figures["page_small_team"]["queries"],
        "constant queries (CSV)": csv_figures["queries"] == figures["csv_small_team"]["queries"],
    }
    for target, met in verdicts.items():
        print(f"{'MET ' if met else 'MISSED'} {target}")


if __name__ == "__main__":
    main()
