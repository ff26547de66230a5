"""How long one minute's availability sampling takes for a large fleet.

    python -m bench.availability_bench                      # 20,000 chargers on a fresh SQLite file
    python -m bench.availability_bench --chargers 5000
    python -m tests.pg_server -- python -m bench.availability_bench   # on a throw-away PostgreSQL

The database gets N charge points of 20 operators in the eight price areas: 80 % signed up, 90 %
online, each with ``--samples`` meter samples (the newest a few seconds old, a tenth of them with no
power reading). Timed: ``availability.sample`` (the fleet query, the insert of one row per operator
and area, the prune), each run on a minute of its own, and the read of a 24-hour series. Prints the
figures; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text

from powerbank.db import standalone_session
from powerbank.db.migrate import upgrade
from powerbank.models import ChargePoint, MeterSample, Operator, Participation, Team
from powerbank.services import availability

AREAS = [
    ("DK", "DK1"),
    ("DK", "DK2"),
    ("SE", "SE1"),
    ("SE", "SE2"),
    ("SE", "SE3"),
    ("SE", "SE4"),
    ("GB", "GB"),
    ("IE", "IE"),
]
OPERATORS = 20


async def fill(url: str, chargers: int, samples: int, now: datetime) -> None:
    rng = random.Random(7)
    async with standalone_session(url) as session:
        await session.exec(
            insert(Operator.__table__), params=[{"name": f"Bench {n}", "created_at": now} for n in range(OPERATORS)]
        )  # type: ignore[attr-defined]
        operator_ids = list((await session.exec(text("SELECT id FROM operator ORDER BY id"))).scalars())  # type: ignore[call-overload]
        await session.exec(
            insert(Team.__table__),
            params=[{"operator_id": o, "name": "Fleet", "created_at": now} for o in operator_ids],
        )  # type: ignore[attr-defined]
        team_ids = list((await session.exec(text("SELECT id FROM team ORDER BY id"))).scalars())  # type: ignore[call-overload]
        rows = []
        for n in range(chargers):
            country, area = AREAS[n % len(AREAS)]
            rows.append(
                {
                    "team_id": team_ids[n % len(team_ids)],
                    "name": f"Charger {n}",
                    "identity": f"BENCH-{n:06d}",
                    "brand": "Easee",
                    "model": "Home",
                    "firmware": "",
                    "serial": "",
                    "country": country,
                    "price_area": area,
                    "ocpp_password_hash": "x",
                    "created_at": now,
                    "updated_at": now,
                    "online": rng.random() < 0.9,
                }
            )
        for first in range(0, len(rows), 2000):
            await session.exec(insert(ChargePoint.__table__), params=rows[first : first + 2000])  # type: ignore[attr-defined]
        cp_ids = list((await session.exec(text("SELECT id FROM charge_point ORDER BY id"))).scalars())  # type: ignore[call-overload]
        signed = [
            {"charge_point_id": cp, "state": "signed_up", "since": now, "source": "bulk", "reason": "", "version": 1}
            for cp in cp_ids
            if rng.random() < 0.8
        ]
        for first in range(0, len(signed), 5000):
            await session.exec(insert(Participation.__table__), params=signed[first : first + 5000])  # type: ignore[attr-defined]
        batch = []
        for k in range(samples):
            for cp in cp_ids:
                at = now - timedelta(seconds=10 * (samples - k))
                power = None if rng.random() < 0.1 else rng.uniform(0, 11000)
                batch.append(
                    {"charge_point_id": cp, "connector_id": 1, "measured_at": at, "received_at": at, "power_w": power}
                )
                if len(batch) >= 5000:
                    await session.exec(insert(MeterSample.__table__), params=batch)  # type: ignore[attr-defined]
                    batch = []
        if batch:
            await session.exec(insert(MeterSample.__table__), params=batch)  # type: ignore[attr-defined]
        await session.commit()


async def measure(url: str, runs: int, now: datetime) -> None:
    took, cpu, scan = [], [], []
    found = 0
    for n in range(runs):
        async with standalone_session(url) as session:
            # The machine's pace at that moment: a plain read of every charge point.
            started = time.perf_counter()
            await session.exec(text("SELECT count(*), sum(length(identity)) FROM charge_point"))  # type: ignore[call-overload]
            scan.append(time.perf_counter() - started)
            started, started_cpu = time.perf_counter(), time.process_time()
            sampled = await availability.sample(session, now + timedelta(minutes=n))
            await session.commit()
            took.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            found = len(sampled.rows)
    async with standalone_session(url) as session:
        started = time.perf_counter()
        ids = list((await session.exec(text("SELECT id FROM operator ORDER BY id LIMIT 1"))).scalars())  # type: ignore[call-overload]
        wanted = availability.clean_range("DK1", None, None, now + timedelta(minutes=runs))
        points = await availability.series(session, ids[0], wanted)
        read_s = time.perf_counter() - started
    print(f"rows per minute (operator x area): {found}")
    print(f"sample: median {statistics.median(took) * 1000:.1f} ms, max {max(took) * 1000:.1f} ms over {runs} minutes")
    print(f"  this process's CPU (SQLite: all of it; PostgreSQL: the client's): {statistics.median(cpu) * 1000:.1f} ms")
    print(f"  a plain read of every charge point, for scale: {statistics.median(scan) * 1000:.1f} ms")
    print(f"read of a 24-hour series ({len(points)} minutes): {read_s * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chargers", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=20, help="meter samples per charger")
    parser.add_argument("--runs", type=int, default=10, help="minutes sampled")
    args = parser.parse_args()
    now = datetime.now(UTC)
    admin = os.environ.get("POWERBANK_TEST_PG_URL")
    with tempfile.TemporaryDirectory() as folder:
        if admin:
            from tests import postgres

            name = postgres.fresh_name("availability_bench")
            postgres.create_database(name)
            url = postgres.url_of(name)
        else:
            url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        upgrade(url)
        started = time.perf_counter()
        asyncio.run(fill(url, args.chargers, args.samples, now))
        backend = "PostgreSQL" if admin else "SQLite"
        filled_s = time.perf_counter() - started
        print(
            f"{backend}: {args.chargers} chargers, {args.chargers * args.samples} samples, filled in {filled_s:.0f} s"
        )
        asyncio.run(measure(url, args.runs, now))
        if admin:
            postgres.drop_database(name)


if __name__ == "__main__":
    main()
