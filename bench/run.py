"""Run the benchmarks: PowerBank beside the bare baseline in one run; write results.json and RESULTS.md.

    python -m bench.run            # full: 1,000, 5,000 and 10,000 chargers, 3 runs each
    python -m bench.run --quick    # 1,000 chargers only, shorter load phase (< 3 minutes)

Each network run starts a fresh server process (PowerBank with a fresh SQLite database, or the
baseline), connects the load generator's chargers, holds a sustained load, then fans out one
activation, and stops the server. Runs alternate between the two servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from sqlmodel import select

from bench import fixtures
from bench.inprocess import bench_bulk_signup, bench_frame_log, bench_pages
from bench.loadgen import percentile, raise_open_files_limit
from bench.procs import LoadGenerators, Measured, ServerProcess, free_port, http_json, ping_probe
from bench.report import write_report
from powerbank.config import PROJECT_ROOT
from powerbank.models import Operator
from powerbank.runtime.gc_policy import GcPolicy

BENCH_DIR = PROJECT_ROOT / "bench"
POWERBANK, BASELINE = "powerbank", "baseline"
# PowerBank runs at these sizes take minutes (connections are set up at tens per second): fewer repeats.
LARGE, HUGE = 5_000, 10_000
TRIGGER_TIMEOUT_S = 120
ACTIVATION = {"price_area": "DK2", "action": "pause", "duration_s": 300, "market": "Test"}


@dataclass
class Settings:
    sizes: list[int]
    repeats: int
    sustain_s: float
    large_repeats: int = 2
    huge_repeats: int = 1
    interval_s: float = 10.0
    loadgen_processes: int = 1
    production_hash_size: int = 0
    pages_size: int = 5000
    signup_size: int = 2000
    in_process_repeats: int = 7
    argon2_repeats: int = 10
    servers: list[str] = field(default_factory=lambda: [BASELINE, POWERBANK])
    results_path: Path = BENCH_DIR / "results.json"
    report_path: Path = BENCH_DIR / "RESULTS.md"
    mode: str = "full"
    profile_dir: Path | None = None
    # PowerBank's seconds between full garbage collections (None: its default, 10 minutes).
    gc_full_every_s: float | None = None
    gc_full_after_growth: float | None = None

    def repeats_for(self, chargers: int) -> int:
        """Return how many runs each server gets at this size."""
        if chargers >= HUGE:
            return min(self.repeats, self.huge_repeats)
        return min(self.repeats, self.large_repeats) if chargers >= LARGE else self.repeats


def machine() -> dict[str, Any]:
    """Describe the machine and the checkout the figures come from."""
    meminfo = Path("/proc/meminfo").read_text().split("\n")
    total_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":!bench"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        commit, status = "", []
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(total_kib / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit,
        # Files changed but not committed outside bench/ (the figures describe the tree as it was).
        "uncommitted_files": len(status),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def load_average() -> float:
    """Return the machine's 1-minute load average (other work on a shared machine shows here)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def measure_argon2(repeats: int = 10) -> dict[str, Any]:
    """Time one argon2 verification at PowerBank's production cost and at the bench's light cost."""
    figures: dict[str, Any] = {}
    for name, hasher in (("production", PasswordHasher()), ("light", fixtures.LIGHT_HASHER)):
        encoded = hasher.hash(fixtures.CHARGER_PASSWORD)
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            hasher.verify(encoded, fixtures.CHARGER_PASSWORD)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        figures[name] = {
            "params": encoded.split("$")[3],
            "wall_ms": 1000 * statistics.median(walls),
            "cpu_ms": 1000 * statistics.median(cpus),
        }
    return figures


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


async def prepare_template(
    workdir: Path, migrated: Path, chargers: int, password_hash: str, tag: str
) -> tuple[Path, str | None]:
    """Build a database with the fleet and a write API token; return it and the token."""
    path = workdir / f"template-{tag}-{chargers}.db"
    shutil.copy(migrated, path)
    await fixtures.fill_charger_fleet(path, chargers, password_hash)
    return path, await create_write_token(path)


async def create_write_token(database: Path | str) -> str | None:
    """Create a write API token of the bench operator with `powerbank api-token create`; return it."""
    env = {**_powerbank_env(database), "PYTHONPATH": str(PROJECT_ROOT)}
    created = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "powerbank.cli",
            "api-token",
            "create",
            "--operator",
            fixtures.OPERATOR_NAME,
            "--scope",
            "write",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if created.returncode == 0 and created.stdout.strip():
        return created.stdout.strip().splitlines()[-1]
    return await _token_from_service(database)


async def _token_from_service(database: Path | str) -> str | None:
    """Create the write token with the API token service (a checkout whose CLI lacks `api-token`)."""
    try:
        from powerbank.models import TokenAccess
        from powerbank.services.api_tokens import TokenRequest, create_token
    except ImportError:
        return None
    from powerbank.db import standalone_session
    from powerbank.services.audit import SYSTEM

    async with standalone_session(fixtures.database_url(database)) as session:
        operator = (await session.exec(select(Operator).where(Operator.name == fixtures.OPERATOR_NAME))).one()
        _token, secret = await create_token(
            session, SYSTEM, operator.id or 0, TokenRequest("bench", TokenAccess.WRITE, None, None)
        )
        await session.commit()
    return secret


def _powerbank_env(
    database: Path | str, gc_full_every_s: float | None = None, gc_full_after_growth: float | None = None
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("POWERBANK_") and key not in {"PYTHONPATH"}
    }
    env["POWERBANK_DATABASE_URL"] = fixtures.database_url(database)
    env["POWERBANK_SECRET_KEY"] = secrets.token_urlsafe(32)
    if gc_full_every_s is not None:
        env["POWERBANK_GC_FULL_EVERY_S"] = str(gc_full_every_s)
        # On the clock alone unless told otherwise, so the pause of a full collection is measured.
        env["POWERBANK_GC_FULL_AFTER_GROWTH"] = str(gc_full_after_growth or 0)
    elif gc_full_after_growth is not None:
        env["POWERBANK_GC_FULL_AFTER_GROWTH"] = str(gc_full_after_growth)
    return env


def _server(
    kind: str,
    workdir: Path,
    template: Path | None,
    password_hash: str,
    tag: str,
    gc_full_every_s: float | None = None,
    gc_full_after_growth: float | None = None,
) -> ServerProcess:
    port = free_port()
    log = workdir / f"{kind}-{tag}.log"
    if kind == BASELINE:
        argv = [sys.executable, "-m", "bench.baseline_server", "--port", str(port), "--password-hash", password_hash]
        return ServerProcess(kind, argv, dict(os.environ), port, log)
    assert template is not None
    database = workdir / f"powerbank-{tag}.db"
    shutil.copy(template, database)
    argv = [sys.executable, "-m", "powerbank.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return ServerProcess(kind, argv, _powerbank_env(database, gc_full_every_s, gc_full_after_growth), port, log)


async def network_run(
    kind: str,
    chargers: int,
    settings: Settings,
    workdir: Path,
    template: Path | None,
    token: str | None,
    password_hash: str,
    tag: str,
    phases: tuple[str, ...],
) -> dict[str, Any]:
    """Start one server, connect the chargers, then run the given phases; return what was measured."""
    result: dict[str, Any] = {"server": kind, "chargers": chargers, "load_average_before": load_average()}
    server = _server(
        kind, workdir, template, password_hash, tag, settings.gc_full_every_s, settings.gc_full_after_growth
    )
    generators = LoadGenerators(
        server.ocpp_url, fixtures.CHARGER_PASSWORD, chargers, settings.loadgen_processes, workdir / f"loadgen-{tag}.log"
    )
    profiler: asyncio.subprocess.Process | None = None
    try:
        await server.start()
        if settings.profile_dir is not None:
            profiler = await start_profiler(server.pid, settings.profile_dir / f"{kind}-{tag}.txt")
        await asyncio.sleep(0.5)
        await generators.start()
        result["connect"] = await _connect(server, generators, chargers)
        if kind == POWERBANK:
            result["capability_probe"] = await wait_probes(generators)
        # The fan-out first, on a server that is not working off a backlog of the sustained load.
        if "fanout" in phases:
            result["fanout"] = await _fanout(server, generators, token)
        if "sustain" in phases:
            result["sustain"] = await _sustain(server, generators, settings)
        result["rss_end_kib"] = server.rss_kib()
        result["load_average_after"] = load_average()
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        await generators.stop()
        if profiler is not None:
            await stop_profiler(profiler)
        await server.stop()
        result["server_log"] = scan_log(server.log_path)
    return result


# Lines of a server log worth counting: database contention, and errors of any kind.
GC_PAUSE = re.compile(r"full garbage collection took ([0-9.]+) s")
LOG_SIGNS = {
    "pool_timeouts": "QueuePool limit",
    "database_locked": "database is locked",
    "tracebacks": "Traceback (most recent call last)",
}


def scan_log(path: Path) -> dict[str, Any]:
    """Count the telling lines of a server's log, and find its longest full garbage collection."""
    counts: dict[str, Any] = dict.fromkeys(LOG_SIGNS, 0)
    if path.exists():
        with path.open(errors="replace") as log:
            for line in log:
                for name, sign in LOG_SIGNS.items():
                    if sign in line:
                        counts[name] += 1
                found = GC_PAUSE.search(line)
                if found:
                    counts["full_gcs"] = counts.get("full_gcs", 0) + 1
                    counts["longest_full_gc_s"] = max(counts.get("longest_full_gc_s", 0.0), float(found[1]))
    return counts


async def start_profiler(
    pid: int, output: Path, *, every_thread: bool = False, rate: int = 200
) -> asyncio.subprocess.Process:
    """Sample the server with py-spy (the `bench` extra) until stopped, as collapsed stacks: the thread
    holding the GIL, or with ``every_thread`` each thread (the database writer's too) by name."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("py-spy")),
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--threads" if every_thread else "--gil",
        "--nonblocking",
        "--rate",
        str(rate),
        "--output",
        str(output),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def stop_profiler(profiler: asyncio.subprocess.Process) -> None:
    """Stop py-spy so it writes its output (bounded in time)."""
    if profiler.returncode is None:
        profiler.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(profiler.wait(), 30)
    except TimeoutError:
        profiler.kill()
        await profiler.wait()


async def wait_probes(generators: LoadGenerators) -> dict[str, int]:
    """Wait (bounded) until PowerBank asked every connected charger its configuration; say how many it asked."""
    answers = await generators.command(120, cmd="wait_probes", timeout=60)
    return {"asked": sum(a["probed"] for a in answers), "connected": sum(a["connected"] for a in answers)}


async def _connect(server: Measured, generators: LoadGenerators, chargers: int) -> dict[str, Any]:
    rss_before = server.rss_kib()
    cpu_before, gen_before = server.cpu_seconds(), generators.cpu_seconds()
    answers = await generators.command(max(300, chargers * 0.2), cmd="connect", timeout=max(120, chargers * 0.15))
    booted = sum(a["booted"] for a in answers)
    last = [a["last_booted"] for a in answers if a["last_booted"] is not None]
    seconds = max(last) - min(a["started"] for a in answers) if last else None
    failures: dict[str, int] = {}
    for answer in answers:
        for reason, count in answer["failures"].items():
            failures[reason] = failures.get(reason, 0) + count
    rss_after = server.rss_kib()
    return {
        "booted": booted,
        "failed": chargers - booted,
        "failures": failures,
        "seconds": seconds,
        "per_second": booted / seconds if seconds else None,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_per_connection_kib": (rss_after - rss_before) / booted if booted else None,
        "server_cpu_s": server.cpu_seconds() - cpu_before,
        "server_cpu_ms_per_connection": 1000 * (server.cpu_seconds() - cpu_before) / booted if booted else None,
        "loadgen_cpu_s": generators.cpu_seconds() - gen_before,
    }


async def _sustain(
    server: Measured, generators: LoadGenerators, settings: Settings, share: float = 1.0
) -> dict[str, Any]:
    stop = asyncio.Event()
    probe = asyncio.create_task(ping_probe(server.ocpp_url, fixtures.PROBE_IDENTITY, fixtures.CHARGER_PASSWORD, stop))
    await asyncio.sleep(0.5)
    cpu_before, gen_before, started = server.cpu_seconds(), generators.cpu_seconds(), time.monotonic()
    answers = await generators.command(
        settings.sustain_s + 120,
        cmd="sustain",
        seconds=settings.sustain_s,
        interval=settings.interval_s,
        drain=10,
        share=share,
    )
    elapsed = time.monotonic() - started
    server_cpu, gen_cpu = server.cpu_seconds() - cpu_before, generators.cpu_seconds() - gen_before
    stop.set()
    round_trips = sorted(await asyncio.wait_for(probe, 30))
    latencies = sorted(x for a in answers for x in a["latencies"])
    seconds = max(a["seconds"] for a in answers)
    answered = len(latencies)
    return {
        "sent": sum(a["sent"] for a in answers),
        "answered": answered,
        "unanswered": sum(a["unanswered"] for a in answers),
        "call_errors": sum(a["call_errors"] for a in answers),
        "calls_per_s": answered / seconds if seconds else None,
        "p50_ms": _ms(percentile(latencies, 0.50)),
        "p99_ms": _ms(percentile(latencies, 0.99)),
        "max_ms": _ms(latencies[-1] if latencies else None),
        "server_cpu_pct": 100 * server_cpu / elapsed,
        "server_cpu_ms_per_call": 1000 * server_cpu / answered if answered else None,
        "loop_lag_p50_ms": _ms(percentile(round_trips, 0.50)),
        "loop_lag_p99_ms": _ms(percentile(round_trips, 0.99)),
        "loop_lag_samples": len(round_trips),
        "loadgen_cpu_pct": 100 * gen_cpu / elapsed,
    }


async def _fanout(server: Measured, generators: LoadGenerators, token: str | None) -> dict[str, Any]:
    if server.kind == POWERBANK and token is None:
        return {"skipped": "no write API token: neither `powerbank api-token create` nor the token service exists"}
    waiting = asyncio.create_task(generators.command(180, cmd="profiles", timeout=120))
    try:
        await asyncio.sleep(0.2)
        cpu_before, gen_before = server.cpu_seconds(), generators.cpu_seconds()
        triggered_mono, triggered_wall = time.monotonic(), time.time()
        try:
            if server.kind == BASELINE:
                status, body = await http_json("GET", f"{server.http}/bench/fanout", timeout=TRIGGER_TIMEOUT_S)
            else:
                status, body = await http_json(
                    "POST",
                    f"{server.http}/api/v1/activations",
                    ACTIVATION,
                    {"Authorization": f"Bearer {token}"},
                    timeout=TRIGGER_TIMEOUT_S,
                )
        except OSError as exc:
            return {"skipped": f"the trigger request failed after {time.monotonic() - triggered_mono:.0f} s: {exc}"}
        trigger_answered_s = time.monotonic() - triggered_mono
        if status not in (200, 201, 202) or not isinstance(body, dict):
            return {"skipped": f"trigger answered HTTP {status}: {json.dumps(body)[:300]}"}
        per_generator = [sorted(t - triggered_mono for t in a["received"]) for a in await waiting]
        received = sorted(t for times in per_generator for t in times)
    finally:
        if not waiting.done():
            waiting.cancel()
    gen_cpu = generators.cpu_seconds() - gen_before
    if server.kind == BASELINE:
        record = await _baseline_record(server, int(body["id"]))
        answered = sorted(t - triggered_mono for t in record["answered"])
        own: dict[str, Any] = {"statuses": record["statuses"], "targets": record["targets"]}
    else:
        answered, own = await _activation_record(server, token or "", body, triggered_wall, len(received))
    cpu = server.cpu_seconds() - cpu_before
    targets = own.get("targets") or len(received)
    return {
        "targets": targets,
        "received": len(received),
        "answered": len(answered),
        "trigger_http_ms": 1000 * trigger_answered_s,
        "received_p50_s": percentile(received, 0.5),
        "received_last_s": received[-1] if received else None,
        # Per load generator process (in the cluster benchmark, per node).
        "received_last_s_each": [times[-1] if times else None for times in per_generator],
        "answered_50_s": _share(answered, targets, 0.50),
        "answered_95_s": _share(answered, targets, 0.95),
        "answered_100_s": _share(answered, targets, 1.0),
        "server_cpu_s": cpu,
        "server_cpu_ms_per_charger": 1000 * cpu / targets if targets else None,
        "loadgen_cpu_s": gen_cpu,
        **own,
    }


def _share(sorted_times: list[float], total: int, fraction: float) -> float | None:
    """Return when ``fraction`` of ``total`` had happened, None if it never did."""
    needed = max(1, math.ceil(total * fraction - 1e-9))
    return sorted_times[needed - 1] if len(sorted_times) >= needed else None


async def _baseline_record(server: Measured, fanout_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        _status, record = await http_json("GET", f"{server.http}/bench/fanout/{fanout_id}")
        if record["done"] or time.monotonic() > deadline:
            return dict(record)
        await asyncio.sleep(0.2)


def _parse_time(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


async def _activation_record(
    server: Measured, token: str, created: dict[str, Any], triggered_wall: float, expected: int
) -> tuple[list[float], dict[str, Any]]:
    """Read the activation's own record until it holds ``expected`` dispatches, none pending (bounded).

    Return the answer times. Dispatch records are written in batches while the answers come in.
    """
    url = f"{server.http}/api/v1/activations/{created['id']}"
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 60
    while True:
        # The list holds summaries only: polling it costs the server little, unlike the record of
        # thousands of chargers, which is read once at the end.
        _status, listing = await http_json("GET", f"{server.http}/api/v1/activations", headers=headers)
        summary = next(
            (item.get("summary") or {} for item in listing.get("items") or [] if item.get("id") == created["id"]), {}
        )
        complete = (summary.get("total") or 0) >= expected and summary.get("answered", 0) >= expected
        if (complete and not summary.get("pending")) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    _status, record = await http_json("GET", url, headers=headers)
    summary = record.get("summary") or {}
    chargers = record.get("chargers") or []
    answered = sorted(
        t - triggered_wall for t in (_parse_time(c.get("answered_at")) for c in chargers) if t is not None
    )
    statuses: dict[str, int] = {}
    for charger in chargers:
        statuses[str(charger.get("status"))] = statuses.get(str(charger.get("status")), 0) + 1
    triggered_at = _parse_time(record.get("triggered_at"))
    own = {
        "targets": summary.get("total") or len(chargers),
        "statuses": statuses,
        "summary": summary,
        # The hub's own clock: from its trigger (triggered_at) to the last frame handed to the sockets.
        "recorded_last_send_s": summary.get("last_send_s"),
        "recorded_answered_95_s": summary.get("answered_95_s"),
        "post_to_triggered_s": triggered_at - triggered_wall if triggered_at else None,
    }
    return answered, own


async def run_network(settings: Settings, workdir: Path, migrated: Path, results: dict[str, Any]) -> None:
    """Run every size and repeat for both servers, alternating them."""
    light_hash = fixtures.LIGHT_HASHER.hash(fixtures.CHARGER_PASSWORD)
    network: dict[str, dict[str, list[dict[str, Any]]]] = {kind: {} for kind in settings.servers}
    results["network"] = network
    for chargers in settings.sizes:
        template, token = await prepare_template(workdir, migrated, chargers, light_hash, "light")
        results.setdefault("api_token_available", token is not None)
        repeats = settings.repeats_for(chargers)
        for repeat in range(repeats):
            for kind in settings.servers:
                tag = f"{chargers}-{repeat}"
                print(f"[bench] {kind}: {chargers} chargers, run {repeat + 1}/{repeats}", flush=True)
                run = await network_run(
                    kind, chargers, settings, workdir, template, token, light_hash, tag, ("sustain", "fanout")
                )
                network[kind].setdefault(str(chargers), []).append(run)
                _log_run(run)
        template.unlink()
    if settings.production_hash_size:
        chargers = settings.production_hash_size
        production_hash = PasswordHasher().hash(fixtures.CHARGER_PASSWORD)
        template, token = await prepare_template(workdir, migrated, chargers, production_hash, "production")
        results["production_hash"] = {}
        for kind in settings.servers:
            print(f"[bench] {kind}: {chargers} chargers with the production argon2 cost (connect only)", flush=True)
            run = await network_run(
                kind, chargers, settings, workdir, template, token, production_hash, f"production-{chargers}", ()
            )
            results["production_hash"][kind] = run
            _log_run(run)


def _log_run(run: dict[str, Any]) -> None:
    connect, sustain, fanout = run.get("connect", {}), run.get("sustain", {}), run.get("fanout", {})
    print(
        f"[bench]   connect {connect.get('seconds')} s, booted {connect.get('booted')}, "
        f"RSS/conn {connect.get('rss_per_connection_kib')} KiB; sustain p99 {sustain.get('p99_ms')} ms, "
        f"{sustain.get('calls_per_s')} calls/s; fan-out last {fanout.get('received_last_s')} s, "
        f"95% {fanout.get('answered_95_s')} s {fanout.get('skipped', '')} {run.get('error', '')}",
        flush=True,
    )


async def run_all(settings: Settings) -> dict[str, Any]:
    """Run everything and return the results (also written to results.json and RESULTS.md)."""
    raise_open_files_limit()
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": machine(),
        "mode": settings.mode,
        "settings": {k: v for k, v in asdict(settings).items() if not k.endswith(("_path", "_dir"))},
    }
    results["argon2"] = measure_argon2(settings.argon2_repeats)
    with tempfile.TemporaryDirectory(prefix="powerbank-bench-") as tmp:
        workdir = Path(tmp)
        migrated = workdir / "migrated.db"
        await asyncio.to_thread(fixtures.migrate, migrated)
        print("[bench] pages and bulk sign-up (in-process)", flush=True)
        results["pages"] = await bench_pages(workdir, migrated, settings.pages_size, settings.in_process_repeats)
        results["bulk_signup"] = await bench_bulk_signup(
            workdir, migrated, settings.signup_size, max(3, settings.in_process_repeats // 2)
        )
        results["frame_log"] = bench_frame_log()
        # This process measures loop lag with its ping probe: its own collector must not pause it.
        collector = asyncio.create_task(GcPolicy(full_every_s=math.inf).run())
        try:
            await run_network(settings, workdir, migrated, results)
        finally:
            collector.cancel()
    results["duration_s"] = time.monotonic() - started
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks from the command line."""
    parser = argparse.ArgumentParser(description="PowerBank benchmarks")
    parser.add_argument("--quick", action="store_true", help="1,000 chargers only, shorter phases")
    parser.add_argument("--sizes", help="comma-separated charger counts (default 1000,5000,10000)")
    parser.add_argument("--repeats", type=int, help="runs per size and server (default 3; quick: 2)")
    parser.add_argument("--large-repeats", type=int, default=2, help=f"runs from {LARGE:,} chargers")
    parser.add_argument("--huge-repeats", type=int, default=1, help=f"runs from {HUGE:,} chargers")
    parser.add_argument("--sustain-seconds", type=float, help="length of the sustained-load phase")
    parser.add_argument("--loadgen-processes", type=int, default=1)
    parser.add_argument("--servers", default=f"{BASELINE},{POWERBANK}", help="which servers to measure")
    parser.add_argument("--pages-size", type=int, default=5000)
    parser.add_argument("--signup-size", type=int, default=2000)
    parser.add_argument(
        "--production-hash-size",
        type=int,
        help="also connect this many chargers with PowerBank's production argon2 cost (0: skip)",
    )
    parser.add_argument(
        "--gc-full-every-s",
        type=float,
        help="PowerBank's seconds between full garbage collections (to measure their pause)",
    )
    parser.add_argument(
        "--gc-full-after-growth",
        type=float,
        help="PowerBank's memory growth that makes a full collection due (default 0.25 on "
        "its own, 0 with --gc-full-every-s)",
    )
    parser.add_argument("--profile", type=Path, help="record each server with py-spy into this folder")
    parser.add_argument("--report-only", action="store_true", help="only write RESULTS.md again from results.json")
    parser.add_argument("--results", type=Path, help="default bench/results.json (quick: results-quick.json)")
    parser.add_argument("--report", type=Path, help="default bench/RESULTS.md (quick: RESULTS-quick.md)")
    args = parser.parse_args(argv)
    # A quick run never overwrites the published figures of the full run.
    suffix = "-quick" if args.quick else ""
    args.results = args.results or BENCH_DIR / f"results{suffix}.json"
    args.report = args.report or BENCH_DIR / f"RESULTS{suffix}.md"
    if args.report_only:
        write_report(json.loads(args.results.read_text()), args.report)
        return 0
    quick = args.quick
    settings = Settings(
        sizes=[int(s) for s in args.sizes.split(",")] if args.sizes else ([1000] if quick else [1000, 5000, 10000]),
        repeats=args.repeats or (2 if quick else 3),
        sustain_s=args.sustain_seconds or (10.0 if quick else 20.0),
        large_repeats=args.large_repeats,
        huge_repeats=args.huge_repeats,
        loadgen_processes=args.loadgen_processes,
        production_hash_size=(
            args.production_hash_size if args.production_hash_size is not None else (0 if quick else 1000)
        ),
        pages_size=args.pages_size,
        signup_size=args.signup_size,
        in_process_repeats=5 if quick else 9,
        servers=args.servers.split(","),
        profile_dir=args.profile,
        gc_full_every_s=args.gc_full_every_s,
        gc_full_after_growth=args.gc_full_after_growth,
        results_path=args.results,
        report_path=args.report,
        mode="quick" if quick else "full",
    )
    results = asyncio.run(run_all(settings))
    settings.results_path.write_text(json.dumps(results, indent=1) + "\n")
    write_report(results, settings.report_path)
    print(f"[bench] done in {results['duration_s']:.0f} s: {settings.results_path}, {settings.report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
