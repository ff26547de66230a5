"""In-process benchmarks: the Charge points tab of a large team, and one bulk sign-up.

Both run inside this process (the Quart test client, or the enrollment service directly) and
count SQL statements with a ``before_cursor_execute`` listener on the engine.
"""

from __future__ import annotations

import re
import shutil
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from bench import fixtures
from powerbank import create_app
from powerbank.db import make_engine, make_sessionmaker
from powerbank.models import Team, User
from powerbank.rules.permissions import load_principal
from powerbank.services.enrollment import bulk_sign_up, current_terms
from powerbank.web import state

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class QueryCounter:
    """Count the SQL statements an engine sends."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *_args: Any) -> None:
        self.count += 1

    @contextmanager
    def listening(self, engine: AsyncEngine) -> Iterator[QueryCounter]:
        event.listen(engine.sync_engine, "before_cursor_execute", self)
        try:
            yield self
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", self)


def spread(values: list[float]) -> dict[str, float]:
    """Return the median and the range of some measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def _copy(template: Path, path: Path) -> Path:
    shutil.copy(template, path)
    return path


async def _tab_figures(database: Path, team_id: int, repeats: int, search: str) -> dict[str, Any]:
    """Time the Charge points tab's first page, a search and a filter; count their queries."""
    app = create_app(
        {
            "DATABASE_URL": fixtures.sqlite_url(database),
            "SECRET_KEY": "bench",
            "QUART_AUTH_COOKIE_SECURE": False,
            "SESSION_COOKIE_SECURE": False,
        }
    )
    figures: dict[str, Any] = {}
    async with app.test_app():
        client = app.test_client()
        login_page = await (await client.get("/login")).get_data(as_text=True)
        match = CSRF_RE.search(login_page)
        if match is None:
            raise RuntimeError("no CSRF token on /login")
        token = match.group(1)
        response = await client.post(
            "/login", form={"email": fixtures.USER_EMAIL, "password": fixtures.USER_PASSWORD, "csrf_token": token}
        )
        if response.status_code != 303:
            raise RuntimeError(f"bench log-in failed: HTTP {response.status_code}")
        base = f"/teams/{team_id}/charge-points"
        cases = {
            "first_page": (base, {}),
            "search": (f"{base}?q={search}", {"HX-Request": "true"}),
            "filter_country": (f"{base}?country=SE", {"HX-Request": "true"}),
        }
        engine = state.engine(app)
        for name, (url, headers) in cases.items():
            times, queries, size = [], [], 0
            # One warm-up request (template compilation, statement caches) that is not counted.
            for attempt in range(repeats + 1):
                counter = QueryCounter()
                with counter.listening(engine):
                    started = time.perf_counter()
                    response = await client.get(url, headers=headers)
                    body = await response.get_data()
                    elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered HTTP {response.status_code}")
                if attempt:
                    times.append(1000 * elapsed)
                    queries.append(counter.count)
                    size = len(body)
            figures[name] = {"url": url, "ms": spread(times), "queries": max(queries), "bytes": size}
    return figures


async def bench_pages(workdir: Path, migrated: Path, size: int, repeats: int) -> dict[str, Any]:
    """Measure the Charge points tab of a team of ``size`` charge points, and of 50 for comparison."""
    password_hash = fixtures.LIGHT_HASHER.hash(fixtures.CHARGER_PASSWORD)
    results: dict[str, Any] = {"charge_points": size}
    for label, count in (("large", size), ("small", 50)):
        database = _copy(migrated, workdir / f"pages-{label}.db")
        team = await fixtures.fill_team_for_pages(database, count, password_hash)
        results[label] = {"charge_points": count, **await _tab_figures(database, team.team_id, repeats, "Charger 0001")}
    results["constant_queries"] = all(
        results["large"][case]["queries"] == results["small"][case]["queries"]
        for case in ("first_page", "search", "filter_country")
    )
    return results


async def _one_signup(database: Path, team_id: int) -> tuple[float, int, int]:
    engine = make_engine(fixtures.sqlite_url(database))
    try:
        async with make_sessionmaker(engine)() as session:
            user = (await session.exec(select(User).where(User.email == fixtures.USER_EMAIL))).one()
            principal = await load_principal(session, user)
            team = await session.get(Team, team_id)
            assert team is not None
            terms = await current_terms(session)
            counter = QueryCounter()
            with counter.listening(engine):
                started = time.perf_counter()
                result = await bulk_sign_up(
                    session,
                    principal,
                    team,
                    accept_terms_version=terms.version,
                    charge_point_ids=None,
                    sign_up_all=True,
                    facility_ids={},
                )
                await session.commit()
                elapsed = time.perf_counter() - started
            return elapsed, counter.count, len(result.signed_up)
    finally:
        await engine.dispose()


async def bench_bulk_signup(workdir: Path, migrated: Path, size: int, repeats: int) -> dict[str, Any]:
    """Time signing up ``size`` charge points in one save (enrollment service), and 10 for comparison."""
    password_hash = fixtures.LIGHT_HASHER.hash(fixtures.CHARGER_PASSWORD)
    results: dict[str, Any] = {"charge_points": size}
    for label, count, runs in (("large", size, repeats), ("small", 10, repeats)):
        filled = _copy(migrated, workdir / f"signup-{label}-filled.db")
        team = await fixtures.fill_team_for_signup(filled, count, password_hash)
        times, queries, signed = [], [], []
        for run in range(runs):
            elapsed, count_queries, signed_up = await _one_signup(
                _copy(filled, workdir / f"signup-{label}-{run}.db"), team.team_id
            )
            times.append(1000 * elapsed)
            queries.append(count_queries)
            signed.append(signed_up)
        results[label] = {
            "charge_points": count,
            "ms": spread(times),
            "queries": max(queries),
            "signed_up": min(signed),
        }
    results["bounded_queries"] = results["large"]["queries"] == results["small"]["queries"]
    return results


def bench_frame_log(chargers: int = 1000) -> dict[str, Any]:
    """Measure the memory the OCPP frame log holds per charger once it is full (tracemalloc)."""
    import tracemalloc

    from powerbank.services.frame_log import FrameLog

    meter_values = (
        '[2,"1","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"2026-11-23T20:00:00Z",'
        '"sampledValue":[{"value":"7360","measurand":"Power.Active.Import","unit":"W"},'
        '{"value":"123456","measurand":"Energy.Active.Import.Register","unit":"Wh"}]}]}]'
    )
    cycle = [
        (False, '[2,"1","Heartbeat",{}]'),
        (True, '[3,"1",{"currentTime":"2026-11-23T20:00:00.000000+00:00"}]'),
        (False, meter_values),
        (True, '[3,"1",{}]'),
    ]
    log = FrameLog()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(chargers):
        identity = fixtures.identity(n)
        for index in range(log.size):
            outgoing, text = cycle[index % len(cycle)]
            # Frames arrive as new strings from the socket, so each one is its own object.
            log.add(identity, outgoing, "".join([text[:1], text[1:]]))
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {"chargers": chargers, "frames_per_charger": log.size, "kib_per_charger": held / 1024 / chargers}
