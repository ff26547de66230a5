"""Proof of delivery at scale: chargers reporting power every second during an activation, and the record.

    python -m bench.delivery_bench            # the full run (a ramp to 7,500 chargers, a 10,000-charger record)
    python -m bench.delivery_bench --quick    # small: a ramp to 300 chargers, a 500-charger record (~1 min)

Two parts, each on its own fresh SQLite database (copies of one migrated with `powerbank db upgrade`):

- **Reporting every second** (network): one `powerbank serve` process and the load generator
  (`bench/loadgen.py`, separate processes) on the same machine. Every charger connects and boots, an
  activation is triggered on their area (`POST /api/v1/activations`): the hub sends each its limit,
  asks it to report every second (fine metering) and keeps its samples unpruned as evidence. Then the
  ramp: for each step, the first N chargers send MeterValues every second for a while (the others stay
  connected and silent). A step holds when the p99 of frame sent → reply received is within the limit
  and no sample is lost: every MeterValues the generator sent was answered, and the database holds a
  row for each (rows counted by id above the highest before the step). The ramp stops at the first
  step that does not hold. The largest step that held is run once more while the activation's
  response is read over the API (`GET /api/v1/activations/<id>/response`, computed on the node that
  answers the chargers). Storage: the database's size in use (SQLite ``page_count - freelist_count``
  times ``page_size``, read through a separate read-only connection: what the file holds once its
  write-ahead log is checkpointed) before and after each step, divided by the rows stored.
- **The record** (in-process): a database with N chargers, one ended activation with a dispatch row
  per charger, and their meter samples as fine metering leaves them (every 10 s before the trigger,
  every second from the trigger to a minute after the window). Timed: ``delivery.delivery_of`` (the
  per-charger verdicts and the area's response curve at 1 s) with its parts, and the activation page
  (`GET /activations/<id>` with the Quart test client, logged in as an Operator Admin), first from the
  chargers' meter samples, then once the evidence is kept (``delivery.keep_evidence``, whose storage is
  measured as above).

The figures go to the ``delivery`` entry of results.json (the file `bench.run` writes; a quick run:
results-quick.json) and RESULTS.md is written again from it.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import math
import random
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlmodel import select

from bench import fixtures
from bench.inprocess import CSRF_RE, QueryCounter
from bench.loadgen import percentile, raise_open_files_limit
from bench.procs import LoadGenerators, http_json, ping_probe
from bench.report import VERDICT_WORDS, announce, delivery_verdicts, record_section
from bench.run import (
    BENCH_DIR,
    POWERBANK,
    _connect,
    _fanout,
    _server,
    load_average,
    machine,
    prepare_template,
    scan_log,
    start_profiler,
    stop_profiler,
    wait_probes,
)
from powerbank import create_app
from powerbank.db import make_engine, make_sessionmaker, standalone_session, utcnow
from powerbank.models import (
    Activation,
    ActivationAction,
    ActivationState,
    Dispatch,
    DispatchStatus,
    OperatorMembership,
    OperatorRole,
    User,
)
from powerbank.runtime.gc_policy import GcPolicy
from powerbank.services import activations as activations_service
from powerbank.services import delivery
from powerbank.web import state

# The targets (also in bench/report.py, which judges them).
P99_LIMIT_MS = 100.0
FULL_STEPS = (500, 1000, 2500, 5000, 7500)
QUICK_STEPS = (100, 300)
# The activation the ramp runs under: long enough that every step's samples are kept (not pruned).
RAMP_ACTIVATION = {"price_area": "DK2", "action": "pause", "duration_s": 900, "market": "FCR-D up"}
# Before the trigger chargers report at their own interval; from the trigger at 1 s (fine metering).
BEFORE_INTERVAL_S = 10
BEFORE_S = 120
CHARGING_W = 7360.0
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


@dataclass
class DeliverySettings:
    steps: list[int] = field(default_factory=lambda: list(FULL_STEPS))
    step_s: float = 20.0
    interval_s: float = 1.0
    rest_s: float = 5.0
    loadgen_processes: int = 1
    record_chargers: int = 10_000
    # The recorded activation's window: its samples (and the time to read them) grow with it.
    window_s: int = 120
    repeats: int = 3
    mode: str = "full"
    parts: tuple[str, ...] = ("ramp", "record")
    # Record the server with py-spy (the `bench` extra) during the ramp's steps, into this folder.
    profile_dir: Path | None = None
    # Chargers connected during the ramp (default: the largest step's).
    connected: int | None = None


# Storage -------------------------------------------------------------------------------------


def sqlite_bytes_in_use(path: Path) -> int:
    """Return the bytes a SQLite database holds in pages in use, write-ahead log included.

    Read through a read-only connection of its own: in WAL mode the page count is that of the newest
    commit, so this is what the file holds once the log is checkpointed, less its free pages.
    """
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        size = connection.execute("PRAGMA page_size").fetchone()[0]
    finally:
        connection.close()
    return int((pages - free) * size)


def _scalar(path: Path, statement: str, *params: Any) -> int:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return int(connection.execute(statement, params).fetchone()[0] or 0)
    finally:
        connection.close()


# Part 1: reporting every second ------------------------------------------------------------------


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


async def _ramp_step(
    server: Any,
    generators: LoadGenerators,
    database: Path,
    chargers: int,
    settings: DeliverySettings,
    during: Callable[[], Awaitable[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Run one step: the first ``chargers`` report every interval for ``step_s``; return what was measured.

    ``during`` is started a quarter into the step (a request made while the chargers report).
    """
    step: dict[str, Any] = {"chargers": chargers, "load_average_before": load_average()}
    top_id = _scalar(database, "SELECT max(id) FROM ocpp_meter_sample")
    bytes_before = sqlite_bytes_in_use(database)
    stop = asyncio.Event()
    probe = asyncio.create_task(
        ping_probe(server.ocpp_url, fixtures.PROBE_IDENTITY, fixtures.CHARGER_PASSWORD, stop, every=0.1)
    )
    await asyncio.sleep(0.3)
    cpu_before, gen_before, started = server.cpu_seconds(), generators.cpu_seconds(), time.monotonic()
    per = -(-chargers // generators.count)
    meter = asyncio.create_task(
        generators.command(
            settings.step_s + 120,
            cmd="meter",
            seconds=settings.step_s,
            interval=settings.interval_s,
            chargers=per,
            drain=10,
        )
    )
    request: asyncio.Task[dict[str, Any]] | None = None
    if during is not None:
        await asyncio.sleep(settings.step_s / 4)
        request = asyncio.create_task(during())
    answers = await meter
    elapsed = time.monotonic() - started
    if request is not None:
        step["request"] = await request
    server_cpu, gen_cpu = server.cpu_seconds() - cpu_before, generators.cpu_seconds() - gen_before
    stop.set()
    round_trips = sorted(await asyncio.wait_for(probe, 30))
    latencies = sorted(x for a in answers for x in a["latencies"])
    sent = sum(a["sent"] for a in answers)
    stored = _scalar(database, "SELECT count(*) FROM ocpp_meter_sample WHERE id > ?", top_id)
    grown = sqlite_bytes_in_use(database) - bytes_before
    seconds = max(a["seconds"] for a in answers)
    answered = len(latencies)
    unanswered = sum(a["unanswered"] for a in answers)
    p99 = _ms(percentile(latencies, 0.99))
    lost = max(0, sent - stored)
    step.update(
        reporting=sum(a["chargers"] for a in answers),
        sent=sent,
        answered=answered,
        unanswered=unanswered,
        call_errors=sum(a["call_errors"] for a in answers),
        rows_stored=stored,
        lost=lost,
        offered_per_s=sent / seconds if seconds else None,
        answered_per_s=answered / seconds if seconds else None,
        p50_ms=_ms(percentile(latencies, 0.50)),
        p99_ms=p99,
        max_ms=_ms(latencies[-1] if latencies else None),
        loop_lag_p99_ms=_ms(percentile(round_trips, 0.99)),
        server_cpu_pct=100 * server_cpu / elapsed,
        server_cpu_ms_per_sample=1000 * server_cpu / answered if answered else None,
        loadgen_cpu_pct=100 * gen_cpu / elapsed,
        # How late the generator itself sent a report: a generator that falls behind offers less.
        loadgen_latest_send_s=max(a["latest_send_s"] for a in answers),
        bytes_grown=grown,
        bytes_per_sample=grown / stored if stored else None,
        load_average_after=load_average(),
    )
    step["holds"] = bool(
        p99 is not None
        and p99 <= P99_LIMIT_MS
        and lost == 0
        and unanswered == 0
        and step["call_errors"] == 0
        and sent >= 0.95 * chargers * settings.step_s / settings.interval_s
    )
    return step


async def run_ramp(settings: DeliverySettings, workdir: Path, migrated: Path) -> dict[str, Any]:
    """Connect the largest step's chargers to one node, trigger an activation, then ramp the reporters."""
    largest = max(settings.connected or 0, *settings.steps)
    light_hash = fixtures.LIGHT_HASHER.hash(fixtures.CHARGER_PASSWORD)
    template, token = await prepare_template(workdir, migrated, largest, light_hash, "delivery")
    server = _server(POWERBANK, workdir, template, light_hash, "delivery-ramp")
    database = workdir / "powerbank-delivery-ramp.db"
    generators = LoadGenerators(
        server.ocpp_url,
        fixtures.CHARGER_PASSWORD,
        largest,
        settings.loadgen_processes,
        workdir / "loadgen-delivery.log",
    )
    ramp: dict[str, Any] = {"chargers_connected": largest, "steps": [], "load_average_before": load_average()}
    profiler: asyncio.subprocess.Process | None = None
    try:
        await server.start()
        await asyncio.sleep(0.5)
        await generators.start()
        ramp["connect"] = await _connect(server, generators, largest)
        ramp["capability_probe"] = await wait_probes(generators)
        fanout = await _fanout(server, generators, token)
        ramp["fanout"] = {
            key: fanout.get(key) for key in ("targets", "received", "received_last_s", "answered_95_s", "skipped")
        }
        # Fine metering asks every charger to report every second, after the limits: let it finish.
        ramp["metering_notes"] = await _wait_metering(database, int(fanout.get("received") or 0))
        if settings.profile_dir is not None:
            profiler = await start_profiler(
                server.pid, settings.profile_dir / "delivery-ramp.txt", every_thread=True, rate=100
            )
        for chargers in sorted(settings.steps):
            print(f"[bench] delivery: {chargers:,} chargers reporting every {settings.interval_s:g} s", flush=True)
            step = await _ramp_step(server, generators, database, chargers, settings)
            ramp["steps"].append(step)
            print(
                f"[bench]   p99 {step['p99_ms']} ms, sent {step['sent']}, stored {step['rows_stored']}, "
                f"lost {step['lost']}, unanswered {step['unanswered']}, server CPU {step['server_cpu_pct']:.0f} %, "
                f"generator {step['loadgen_cpu_pct']:.0f} %, {step['bytes_per_sample']} B/sample, "
                f"load {step['load_average_before']}: {'holds' if step['holds'] else 'does NOT hold'}",
                flush=True,
            )
            if not step["holds"]:
                break
            await asyncio.sleep(settings.rest_s)
        largest_held = max((step["chargers"] for step in ramp["steps"] if step["holds"]), default=None)
        if largest_held is not None and token is not None:
            activation_id = await _activation_id(server.http, token)
            print(
                f"[bench] delivery: {largest_held:,} chargers again, reading the activation's response meanwhile",
                flush=True,
            )
            step = await _ramp_step(
                server,
                generators,
                database,
                largest_held,
                settings,
                during=lambda: _read_response(server.http, token, activation_id),
            )
            ramp["while_response_read"] = step
            print(
                f"[bench]   p99 {step['p99_ms']} ms, max {step['max_ms']} ms, lost {step['lost']}, "
                f"response read in {step['request'].get('seconds')} s: {'holds' if step['holds'] else 'does NOT hold'}",
                flush=True,
            )
        ramp["rss_end_kib"] = server.rss_kib()
    except Exception as exc:
        ramp["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        if profiler is not None:
            await stop_profiler(profiler)
        await generators.stop()
        await server.stop()
        ramp["server_log"] = scan_log(server.log_path)
        template.unlink(missing_ok=True)
    held = [step["chargers"] for step in ramp["steps"] if step["holds"]]
    ramp["largest_holding"] = max(held) if held else None
    ramp["load_average_after"] = load_average()
    return ramp


async def _activation_id(http: str, token: str) -> int:
    """Return the id of the newest activation (the ramp's), from the API's list."""
    _status, listing = await http_json(
        "GET", f"{http}/api/v1/activations", headers={"Authorization": f"Bearer {token}"}
    )
    return max(int(item["id"]) for item in listing["items"])


async def _read_response(http: str, token: str, activation_id: int) -> dict[str, Any]:
    """Read the activation's response (`GET /api/v1/activations/<id>/response`: the curve and verdicts)."""
    started = time.monotonic()
    status, body = await http_json(
        "GET",
        f"{http}/api/v1/activations/{activation_id}/response",
        headers={"Authorization": f"Bearer {token}"},
        timeout=600,
    )
    return {
        "status": status,
        "seconds": time.monotonic() - started,
        "rows": len(body.get("rows") or []) if isinstance(body, dict) else None,
        "chargers": len(body.get("chargers") or []) if isinstance(body, dict) else None,
    }


async def _wait_metering(database: Path, chargers: int, timeout_s: float = 30) -> dict[str, int]:
    """Wait (bounded) until fine metering noted what each charger took; return the notes counted."""
    deadline = time.monotonic() + timeout_s
    while True:
        notes = _metering_notes(database)
        noted = sum(count for note, count in notes.items() if note != "None")
        if noted >= chargers or time.monotonic() > deadline:
            return notes
        await asyncio.sleep(0.25)


def _metering_notes(database: Path) -> dict[str, int]:
    """Count the fine metering notes on the activation's dispatch rows (what the chargers took)."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        rows = connection.execute("SELECT metering, count(*) FROM dispatch GROUP BY metering").fetchall()
    finally:
        connection.close()
    return {str(note): int(count) for note, count in rows}


# Part 2: the record of a large activation --------------------------------------------------------


@dataclass
class Record:
    activation_id: int
    samples: int
    chargers: int
    window_s: int


def _text(moment: datetime) -> str:
    """Return a UTC datetime as SQLAlchemy stores it in SQLite (no zone, microseconds)."""
    return moment.strftime(SQLITE_TIME)


def _sample_rows(
    charge_point_ids: list[int], trigger: datetime, window_end: datetime, seed: int = 7
) -> Iterator[tuple[Any, ...]]:
    """Yield meter sample rows: every 10 s before the trigger, every second to a minute after the window.

    Each charger draws about 7.4 kW, pauses a few seconds after the trigger (most within 5 s, some
    late, a few not at all) and draws again after the window. Received a quarter of a second after
    measured.
    """
    rng = random.Random(seed)
    lag = timedelta(milliseconds=250)
    after_s = int((window_end - trigger).total_seconds()) + delivery.CONTEXT_S
    for cp_id in charge_point_ids:
        draw = CHARGING_W * rng.uniform(0.9, 1.1)
        kind = rng.random()
        paused_after = 1e9 if kind < 0.02 else rng.uniform(10, 40) if kind < 0.07 else rng.uniform(1, 5)
        offset = rng.uniform(0, 1)
        for second in range(-BEFORE_S, 0, BEFORE_INTERVAL_S):
            at = trigger + timedelta(seconds=second + offset)
            yield cp_id, 1, _text(at), _text(at + lag), draw, None
        for second in range(0, after_s):
            at = trigger + timedelta(seconds=second + offset)
            in_window = at <= window_end
            power = 0.0 if in_window and second + offset >= paused_after else draw
            yield cp_id, 1, _text(at), _text(at + lag), power, None


async def build_record(database: Path, chargers: int, window_s: int) -> tuple[Record, dict[str, Any]]:
    """Fill a migrated database with the fleet, an ended activation, its dispatch rows and samples."""
    light_hash = fixtures.LIGHT_HASHER.hash(fixtures.CHARGER_PASSWORD)
    team = await fixtures.fill_charger_fleet(database, chargers, light_hash)
    # The window ended more than a minute ago: the curve and the verdicts are complete.
    window_end = utcnow().replace(microsecond=0) - timedelta(seconds=delivery.CONTEXT_S + 5)
    trigger = window_end - timedelta(seconds=window_s)
    async with standalone_session(fixtures.sqlite_url(database)) as session:
        user = User(email=fixtures.USER_EMAIL, display_name="Bench Admin", password_hash=_user_hash())
        session.add(user)
        await session.flush()
        session.add(OperatorMembership(operator_id=team.operator_id, user_id=user.id or 0, role=OperatorRole.ADMIN))
        activation = Activation(
            operator_id=team.operator_id,
            price_area="DK2",
            market="FCR-D up",
            action=ActivationAction.PAUSE,
            start_at=trigger,
            duration_s=window_s,
            end_at=window_end,
            state=ActivationState.ENDED,
            created_by="bench",
            triggered_at=trigger,
            last_sent_at=trigger + timedelta(seconds=1),
            ended_at=window_end,
        )
        session.add(activation)
        await session.flush()
        activation_id = activation.id or 0
        connection = await session.connection()
        await connection.execute(
            insert(Dispatch),
            [
                {
                    "activation_id": activation_id,
                    "charge_point_id": cp_id,
                    "identity": fixtures.identity(n),
                    "status": DispatchStatus.ACCEPTED,
                    "detail": "",
                    "limit_w": 0.0,
                    "sent_at": trigger + timedelta(milliseconds=100 + n % 800),
                    "answered_at": trigger + timedelta(milliseconds=300 + n % 1500),
                    "released_at": window_end + timedelta(milliseconds=200),
                    "release_reason": "window ended",
                    "release_status": "Accepted",
                    "metering": "every 1 s (was 10 s)",
                }
                for n, cp_id in enumerate(team.charge_point_ids, start=1)
            ],
        )
        await session.commit()
    before = sqlite_bytes_in_use(database)
    started = time.perf_counter()
    writer = sqlite3.connect(database, timeout=30)
    try:
        writer.executemany(
            "INSERT INTO ocpp_meter_sample (charge_point_id, connector_id, measured_at, received_at, power_w, "
            "energy_wh) VALUES (?, ?, ?, ?, ?, ?)",
            _sample_rows(team.charge_point_ids, trigger, window_end),
        )
        writer.commit()
        samples = int(writer.execute("SELECT count(*) FROM ocpp_meter_sample").fetchone()[0])
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        writer.close()
    grown = sqlite_bytes_in_use(database) - before
    storage = {
        "meter_samples": samples,
        "meter_bytes": grown,
        "meter_bytes_per_sample": grown / samples if samples else None,
        "seed_s": time.perf_counter() - started,
    }
    return Record(activation_id, samples, chargers, window_s), storage


def _user_hash() -> str:
    return fixtures.LIGHT_HASHER.hash(fixtures.USER_PASSWORD)


def _spread(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {"median": ordered[len(ordered) // 2], "min": ordered[0], "max": ordered[-1], "runs": len(ordered)}


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def timing(module: Any, names: tuple[str, ...]) -> Iterator[dict[str, float]]:
    """Count the seconds spent in some functions of a module while in the block (they are wrapped).

    The caller's code finds them by name at call time, so it is timed as it runs, whatever it does inside.
    """
    spent = dict.fromkeys(names, 0.0)
    originals = {name: getattr(module, name) for name in names if hasattr(module, name)}

    def wrapped(name: str, original: Any) -> Any:
        if inspect.iscoroutinefunction(original):

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    spent[name] += time.perf_counter() - started

            return timed_async

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return timed

    for name, original in originals.items():
        setattr(module, name, wrapped(name, original))
    try:
        yield spent
    finally:
        for name, original in originals.items():
            setattr(module, name, original)


# delivery_of's steps: reading the samples, judging each charger, the area's curve.
DELIVERY_PARTS = ("load_samples", "judge", "area_response")


async def time_delivery(database: Path, record: Record, repeats: int) -> dict[str, Any]:
    """Time ``delivery_of`` on the record, and its steps; return the figures."""
    engine = make_engine(fixtures.sqlite_url(database))
    figures: dict[str, Any] = {}
    try:
        maker = make_sessionmaker(engine)
        runs: list[float] = []
        parts: list[dict[str, float]] = []
        result: delivery.Delivery | None = None
        for _ in range(repeats):
            async with maker() as session:
                activation = await session.get(Activation, record.activation_id)
                assert activation is not None
                dispatches = await activations_service.dispatches_of(session, record.activation_id)
                with timing(delivery, DELIVERY_PARTS) as spent:
                    started = time.perf_counter()
                    result = await delivery.delivery_of(session, activation, dispatches)
                    runs.append(1000 * (time.perf_counter() - started))
                parts.append({name: 1000 * seconds for name, seconds in spent.items()})
            # One slow run is measurement enough: the figure is far from the target either way.
            if runs[-1] > 15_000:
                break
        figures["delivery_of_ms"] = _spread(runs)
        # The steps of the median run, and what the rest of delivery_of took.
        middle = parts[runs.index(figures["delivery_of_ms"]["median"])]
        figures["parts_ms"] = {**middle, "rest": figures["delivery_of_ms"]["median"] - sum(middle.values())}
        assert result is not None
        figures["curve_points"] = len(result.area.points)
        figures["verdicts"] = {str(v): result.count(v) for v in delivery.Verdict if result.count(v)}
        figures["half_s"], figures["full_s"] = result.area.half_s, result.area.full_s
    finally:
        await engine.dispose()
    return figures


async def time_page(database: Path, record: Record, repeats: int) -> dict[str, Any]:
    """Time the activation page with the Quart test client, logged in as an Operator Admin."""
    app = create_app(
        {
            "DATABASE_URL": fixtures.sqlite_url(database),
            "SECRET_KEY": "bench",
            "QUART_AUTH_COOKIE_SECURE": False,
            "SESSION_COOKIE_SECURE": False,
        }
    )
    url = f"/activations/{record.activation_id}"
    # Requests only: not the app's lifecycle, whose background work (the leader copying this very
    # activation's evidence, say) would change what is measured. The engine is opened here instead.
    engine = make_engine(fixtures.sqlite_url(database))
    state.hold_database(app, engine)
    try:
        client = app.test_client()
        login_page = await (await client.get("/login")).get_data(as_text=True)
        match = CSRF_RE.search(login_page)
        if match is None:
            raise RuntimeError("no CSRF token on /login")
        response = await client.post(
            "/login",
            form={"email": fixtures.USER_EMAIL, "password": fixtures.USER_PASSWORD, "csrf_token": match.group(1)},
        )
        if response.status_code != 303:
            raise RuntimeError(f"bench log-in failed: HTTP {response.status_code}")
        times: list[float] = []
        queries, size = 0, 0
        for _ in range(repeats):
            counter = QueryCounter()
            with counter.listening(engine):
                started = time.perf_counter()
                response = await client.get(url)
                body = await response.get_data()
                elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered HTTP {response.status_code}")
            times.append(1000 * elapsed)
            queries, size = counter.count, len(body)
            if times[-1] > 15_000:
                break
    finally:
        await engine.dispose()
    return {"url": url, "ms": _spread(times), "queries": queries, "bytes": size}


async def keep_evidence(database: Path, record: Record) -> dict[str, Any]:
    """Copy the record's samples to the evidence, then judge it and store the verdicts and the record the
    page reads (as the leader does); return their storage and times."""
    before = sqlite_bytes_in_use(database)
    async with standalone_session(fixtures.sqlite_url(database)) as session:
        activation = (await session.exec(select(Activation).where(Activation.id == record.activation_id))).one()
        started = time.perf_counter()
        kept = await delivery.keep_evidence(session, activation, utcnow())
        await session.commit()
        elapsed = time.perf_counter() - started
        rows = _scalar(database, "SELECT count(*) FROM delivery_sample WHERE activation_id = ?", record.activation_id)
        grown = sqlite_bytes_in_use(database) - before
        started = time.perf_counter()
        await delivery.keep_verdicts(session, activation, utcnow())
        await session.commit()
        recorded = time.perf_counter() - started
    return {
        "kept": kept,
        "evidence_rows": rows,
        "evidence_bytes": grown,
        "evidence_bytes_per_sample": grown / rows if rows else None,
        "keep_evidence_ms": 1000 * elapsed,
        "keep_record_ms": 1000 * recorded,
        "record_bytes": sqlite_bytes_in_use(database) - before - grown,
    }


async def run_record(settings: DeliverySettings, workdir: Path, migrated: Path) -> dict[str, Any]:
    """Build the record of a large activation and time its delivery figures and page, before and after
    its evidence is kept."""
    database = workdir / "delivery-record.db"
    shutil.copy(migrated, database)
    result: dict[str, Any] = {
        "chargers": settings.record_chargers,
        "window_s": settings.window_s,
        "load_average_before": load_average(),
    }
    try:
        record, storage = await build_record(database, settings.record_chargers, settings.window_s)
        result["storage"] = storage
        result["samples"] = record.samples
        print(
            f"[bench] delivery record: {record.chargers:,} chargers, {record.samples:,} samples "
            f"({storage['meter_bytes_per_sample']:.0f} B each)",
            flush=True,
        )
        for source in ("meter_samples", "evidence"):
            if source == "evidence":
                result["storage"].update(await keep_evidence(database, record))
            figures: dict[str, Any] = {"load_average": load_average()}
            figures.update(await time_delivery(database, record, settings.repeats))
            figures["page"] = await time_page(database, record, settings.repeats)
            figures["load_average_after"] = load_average()
            result[source] = figures
            print(
                f"[bench]   from {source}: delivery_of {figures['delivery_of_ms']['median']:.0f} ms "
                f"(parts {figures['parts_ms']}), page {figures['page']['ms']['median']:.0f} ms, "
                f"load {figures['load_average']}",
                flush=True,
            )
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    result["peak_rss_mib"] = _peak_rss_mib()
    result["load_average_after"] = load_average()
    return result


# Running it ------------------------------------------------------------------------------------


async def run_delivery(settings: DeliverySettings) -> dict[str, Any]:
    """Run the parts asked for; return the figures."""
    raise_open_files_limit()
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": machine(),
        "mode": settings.mode,
        "settings": {
            **{key: value for key, value in asdict(settings).items() if key != "profile_dir"},
            "parts": list(settings.parts),
            "p99_limit_ms": P99_LIMIT_MS,
        },
        "database": "SQLite",
    }
    with tempfile.TemporaryDirectory(prefix="powerbank-delivery-bench-") as tmp:
        workdir = Path(tmp)
        migrated = workdir / "migrated.db"
        await asyncio.to_thread(fixtures.migrate, migrated)
        if "ramp" in settings.parts:
            # This process measures loop lag with its ping probe: its own collector must not pause it.
            collector = asyncio.create_task(GcPolicy(full_every_s=math.inf).run())
            try:
                results["ramp"] = await run_ramp(settings, workdir, migrated)
            finally:
                collector.cancel()
        if "record" in settings.parts:
            results["record"] = await run_record(settings, workdir, migrated)
    results["duration_s"] = time.monotonic() - started
    return results


def carry_over(previous: dict[str, Any], figures: dict[str, Any]) -> None:
    """A part run alone (--only) keeps the other part's figures of the previous run, and says so."""
    for part in ("ramp", "record"):
        if part not in figures and part in previous:
            figures[part] = previous[part]
            figures.setdefault("carried_over", []).append(
                {
                    "part": part,
                    "date": previous.get("machine", {}).get("date"),
                    "commit": previous.get("machine", {}).get("commit"),
                }
            )


def verdict_word(measured: str, verdict: bool | None) -> str:
    """PASS, MISS, FIGURE for a figure with no limit set, or NOT MEASURED."""
    if verdict is None and "no limit set" in measured:
        return "FIGURE"
    return VERDICT_WORDS[verdict]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PowerBank's proof-of-delivery benchmark")
    parser.add_argument("--quick", action="store_true", help="a ramp to 300 chargers, a 500-charger record")
    parser.add_argument("--steps", help=f"chargers reporting at each step (default {','.join(map(str, FULL_STEPS))})")
    parser.add_argument("--step-seconds", type=float, help="length of each step (default 20; quick: 8)")
    parser.add_argument("--loadgen-processes", type=int, default=1)
    parser.add_argument("--record-chargers", type=int, help="chargers in the record (default 10,000; quick: 500)")
    parser.add_argument("--window-seconds", type=int, help="the recorded activation's window (default 120; quick: 60)")
    parser.add_argument("--repeats", type=int, help="timed runs of delivery_of and of the page (default 3)")
    parser.add_argument("--only", choices=("ramp", "record"), help="run one part only")
    parser.add_argument("--connected", type=int, help="chargers connected in the ramp (default: the largest step)")
    parser.add_argument("--profile", type=Path, help="record the server with py-spy during the ramp, in this folder")
    parser.add_argument("--results", type=Path, help="default bench/results.json (quick: results-quick.json)")
    parser.add_argument("--report", type=Path, help="default bench/RESULTS.md (quick: RESULTS-quick.md)")
    args = parser.parse_args(argv)
    suffix = "-quick" if args.quick else ""
    settings = DeliverySettings(
        steps=[int(s) for s in args.steps.split(",")]
        if args.steps
        else list(QUICK_STEPS if args.quick else FULL_STEPS),
        step_s=args.step_seconds or (8.0 if args.quick else 20.0),
        rest_s=2.0 if args.quick else 5.0,
        loadgen_processes=args.loadgen_processes,
        record_chargers=args.record_chargers or (500 if args.quick else 10_000),
        window_s=args.window_seconds or (60 if args.quick else 120),
        repeats=args.repeats or 3,
        mode="quick" if args.quick else "full",
        parts=(args.only,) if args.only else ("ramp", "record"),
        profile_dir=args.profile,
        connected=args.connected,
    )
    figures = asyncio.run(run_delivery(settings))
    results_path = args.results or BENCH_DIR / f"results{suffix}.json"
    report_path = args.report or BENCH_DIR / f"RESULTS{suffix}.md"
    record_section("delivery", figures, results_path, report_path, carry=carry_over)
    announce("proof of delivery targets", delivery_verdicts(figures), verdict_word)
    print(f"[bench] delivery bench done in {figures['duration_s']:.0f} s: {results_path}, {report_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
