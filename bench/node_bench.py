"""One node at 20,000 chargers: memory and load, a reconnect storm, and the fan-out against its floor.

    python -m bench.node_bench            # full: 20,000 held, a 10,000-charger storm, fan-outs to 10,000
    python -m bench.node_bench --quick    # 1,000 chargers in each part, a 0.5 s storm, one run each

Three parts, each against servers started fresh for it (PowerBank: `powerbank serve` on a fresh SQLite
database, as bench/run.py does), with the baselines measured in the same run on the same machine:

- **hold**: PowerBank holds every charger under the sustained load (Heartbeat and MeterValues every 10 s
  per charger). Its RSS is read from /proc; the frame log is not full after a short load phase, so the
  size a full one holds (measured in-process, per charger) is added on top.
- **storm**: every charger connects at once after a restart (PowerBank: the fleet connected, booted and
  was probed once, then the hub restarted on the same database), each at a uniformly random moment within
  the jitter, with no limit on handshakes at a time, retrying after a failure. From the first attempt to
  the last BootNotification accepted, PowerBank beside the baseline (bench/baseline_server.py). PowerBank
  has an activation running (created through the API before the storm): each charger's time from its
  BootNotification answered to its first SetChargingProfile received.
- **fanout**: trigger → last SetChargingProfile received, PowerBank beside the floor (the baseline's
  `GET /bench/floor`: one frame serialised once and handed to every socket at once), idle and in the
  middle of a sustained-load phase, in every run.

The figures go into results.json under "node" (kept as the other benchmarks wrote it) and RESULTS.md is
written again from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import fixtures
from bench.inprocess import bench_frame_log
from bench.loadgen import percentile, raise_open_files_limit
from bench.procs import LoadGenerators, ServerProcess, http_json
from bench.report import announce, node_verdicts, record_section
from bench.run import (
    ACTIVATION,
    BASELINE,
    BENCH_DIR,
    POWERBANK,
    TRIGGER_TIMEOUT_S,
    Settings,
    _activation_record,
    _connect,
    _server,
    _share,
    _sustain,
    load_average,
    machine,
    prepare_template,
    scan_log,
    start_profiler,
    stop_profiler,
    wait_probes,
)
from powerbank.runtime.gc_policy import GcPolicy

PARTS = ("hold", "storm", "fanout")
# Rough rates on a 2-core machine, for the estimate printed up front.
POWERBANK_CONNECTS_PER_S, BASELINE_CONNECTS_PER_S, FLEET_ROWS_PER_S = 300.0, 900.0, 2000.0


@dataclass
class NodeSettings:
    hold_chargers: int = 20_000
    storm_chargers: int = 10_000
    storm_jitter_s: float = 5.0
    # How long a charger of the storm keeps retrying before it counts as never connected.
    storm_timeout_s: float = 120.0
    storm_repeats: int = 1
    # A charger's first SetChargingProfile after its boot, waited for at most this long.
    profile_timeout_s: float = 30.0
    fanout_chargers: int = 10_000
    fanout_repeats: int = 2
    sustain_s: float = 30.0
    interval_s: float = 10.0
    loadgen_processes: int = 1
    mode: str = "full"
    parts: tuple[str, ...] = PARTS
    # Record each PowerBank server with py-spy (the `bench` extra) into this folder.
    profile_dir: Path | None = None

    def sustain_settings(self, chargers: int) -> Settings:
        return Settings(sizes=[chargers], repeats=1, sustain_s=self.sustain_s, interval_s=self.interval_s)


def estimate_s(settings: NodeSettings) -> float:
    """Return a rough estimate of the whole run's length in seconds (printed up front)."""
    total, sustain = 0.0, settings.sustain_s + 15
    if "hold" in settings.parts:
        n = settings.hold_chargers
        total += n / FLEET_ROWS_PER_S + 20 + n / POWERBANK_CONNECTS_PER_S + sustain
    if "storm" in settings.parts:
        n, jitter = settings.storm_chargers, settings.storm_jitter_s
        total += n / FLEET_ROWS_PER_S + settings.storm_repeats * (
            2 * jitter + n / BASELINE_CONNECTS_PER_S + n / POWERBANK_CONNECTS_PER_S + 40
        )
    if "fanout" in settings.parts:
        n = settings.fanout_chargers
        total += n / FLEET_ROWS_PER_S + settings.fanout_repeats * (
            n / BASELINE_CONNECTS_PER_S + 2 * n / POWERBANK_CONNECTS_PER_S + 3 * sustain + 40
        )
    return total


# Open files a process needs beside its chargers' sockets (database, listening socket, pipes, logs).
SPARE_FILES = 500


def generator_processes(chargers: int, wanted: int, open_files: int) -> int:
    """Return how many load generator processes hold ``chargers``: as many as asked, or more if one
    process could not open that many sockets."""
    return max(wanted, math.ceil(chargers / max(1, open_files - SPARE_FILES)))


def open_files_note(settings: NodeSettings, open_files: int) -> str | None:
    """Say so if a server process cannot hold the largest fleet asked for: its sockets need open files."""
    largest = max(
        [settings.hold_chargers if "hold" in settings.parts else 0]
        + [settings.storm_chargers if "storm" in settings.parts else 0]
        + [settings.fanout_chargers if "fanout" in settings.parts else 0]
    )
    if open_files >= largest + SPARE_FILES:
        return None
    return (
        f"this machine allows {open_files:,} open files per process (`ulimit -Hn`), fewer than the server needs "
        f"for {largest:,} chargers (one socket each, plus about {SPARE_FILES}): some cannot connect. Raise it "
        "(e.g. `ulimit -Hn 65536` as root, or the container's `--ulimit nofile=65536`) and run again."
    )


# A server is quiet once it uses less than this share of a core over half a second (waited for at most 20 s).
QUIET_CPU_SHARE, QUIET_WINDOW_S, QUIET_TIMEOUT_S = 0.10, 0.5, 20.0


async def quiet(server: ServerProcess) -> float:
    """Wait (bounded) until the server has worked off what connecting left it (boot records, capability
    probes); return how long that took. Idle figures then describe an idle server."""
    started = time.monotonic()
    while time.monotonic() - started < QUIET_TIMEOUT_S:
        before = server.cpu_seconds()
        await asyncio.sleep(QUIET_WINDOW_S)
        if server.cpu_seconds() - before < QUIET_CPU_SHARE * QUIET_WINDOW_S:
            break
    return time.monotonic() - started


class Fleet:
    """A server and the load generators of one run, stopped together."""

    def __init__(self, server: ServerProcess, chargers: int, settings: NodeSettings, log: Path) -> None:
        self.server = server
        self.profile = (
            settings.profile_dir / f"{log.stem.removeprefix('loadgen-')}.txt"
            if settings.profile_dir is not None and server.kind == POWERBANK
            else None
        )
        self.profiler: asyncio.subprocess.Process | None = None
        processes = generator_processes(chargers, settings.loadgen_processes, raise_open_files_limit())
        self.generators = LoadGenerators(server.ocpp_url, fixtures.CHARGER_PASSWORD, chargers, processes, log)

    async def __aenter__(self) -> Fleet:
        await self.server.start()
        if self.profile is not None:
            self.profiler = await start_profiler(self.server.pid, self.profile)
        await asyncio.sleep(0.5)
        await self.generators.start()
        # Answered once the generators have started up (their imports are not measured).
        await self.generators.command(60, cmd="stats")
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.generators.stop()
        if self.profiler is not None:
            await stop_profiler(self.profiler)
        await self.server.stop()


# Hold ------------------------------------------------------------------------------------------------


async def run_hold(
    settings: NodeSettings, workdir: Path, template: Path, light_hash: str, frame_log_kib: float
) -> dict[str, Any]:
    """Connect every charger to one PowerBank, hold the sustained load; return memory and latency."""
    chargers = settings.hold_chargers
    result: dict[str, Any] = {"chargers": chargers, "load_average_before": load_average()}
    server = _server(POWERBANK, workdir, template, light_hash, f"hold-{chargers}")
    try:
        async with Fleet(server, chargers, settings, workdir / f"loadgen-hold-{chargers}.log") as fleet:
            result["connect"] = await _connect(server, fleet.generators, chargers)
            result["capability_probe"] = await wait_probes(fleet.generators)
            result["quiet_after_s"] = await quiet(server)
            result["rss_connected_kib"] = server.rss_kib()
            result["sustain"] = await _sustain(server, fleet.generators, settings.sustain_settings(chargers))
            result["rss_end_kib"] = server.rss_kib()
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        result["server_log"] = scan_log(server.log_path)
    rss = max(result.get("rss_connected_kib") or 0, result.get("rss_end_kib") or 0) or None
    result["frame_log_full_kib"] = frame_log_kib * chargers
    result["rss_with_full_frame_log_kib"] = rss + frame_log_kib * chargers if rss else None
    return result


# Storm -----------------------------------------------------------------------------------------------


async def run_storm(
    kind: str, settings: NodeSettings, workdir: Path, template: Path, token: str | None, light_hash: str, tag: str
) -> dict[str, Any]:
    """Let every charger connect at once (PowerBank: with an activation running); return what was measured."""
    chargers = settings.storm_chargers
    result: dict[str, Any] = {"server": kind, "chargers": chargers, "load_average_before": load_average()}
    server = _server(kind, workdir, template, light_hash, f"storm-{tag}")
    try:
        if kind == POWERBANK:
            # A storm follows a restart: the fleet was connected (booted, probed) before the hub went.
            async with Fleet(server, chargers, settings, workdir / f"loadgen-before-storm-{tag}.log") as fleet:
                result["before_restart"] = await _connect(server, fleet.generators, chargers)
                await wait_probes(fleet.generators)
        async with Fleet(server, chargers, settings, workdir / f"loadgen-storm-{kind}-{tag}.log") as fleet:
            if kind == POWERBANK:
                result["activation"] = await _start_activation(server, token)
            cpu_before, gen_before = server.cpu_seconds(), fleet.generators.cpu_seconds()
            answers = await fleet.generators.command(
                settings.storm_timeout_s + settings.storm_jitter_s + 120,
                cmd="storm",
                jitter=settings.storm_jitter_s,
                timeout=settings.storm_timeout_s + settings.storm_jitter_s,
            )
            result["storm"] = _storm_figures(answers, chargers)
            result["storm"]["server_cpu_s"] = server.cpu_seconds() - cpu_before
            # A load generator near a whole core would be what limits the storm, not the server.
            result["storm"]["loadgen_cpu_s"] = fleet.generators.cpu_seconds() - gen_before
            result["storm"]["rss_after_kib"] = server.rss_kib()
            if kind == POWERBANK and "id" in result["activation"]:
                delays = await fleet.generators.command(
                    settings.profile_timeout_s + 60, cmd="boot_to_profile", timeout=settings.profile_timeout_s
                )
                result["boot_to_profile"] = _profile_figures(delays)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        result["server_log"] = scan_log(server.log_path)
    return result


async def _start_activation(server: ServerProcess, token: str | None) -> dict[str, Any]:
    if token is None:
        return {"skipped": "no write API token"}
    status, body = await http_json(
        "POST",
        f"{server.http}/api/v1/activations",
        ACTIVATION,
        {"Authorization": f"Bearer {token}"},
        timeout=TRIGGER_TIMEOUT_S,
    )
    if status not in (200, 201, 202) or not isinstance(body, dict):
        return {"skipped": f"the activation answered HTTP {status}: {json.dumps(body)[:300]}"}
    return {"id": body["id"], "status": status}


def _storm_figures(answers: list[dict[str, Any]], chargers: int) -> dict[str, Any]:
    first = [a["first_attempt"] for a in answers if a["first_attempt"] is not None]
    last = [a["last_booted"] for a in answers if a["last_booted"] is not None]
    failures: dict[str, int] = {}
    for answer in answers:
        for reason, count in answer["failures"].items():
            failures[reason] = failures.get(reason, 0) + count
    booted = sum(a["booted"] for a in answers)
    seconds = max(last) - min(first) if first and last else None
    return {
        "booted": booted,
        "never_connected": chargers - booted,
        # Every failed attempt (refused, timed out, closed), each followed by a retry while time was left.
        "failed_attempts": sum(failures.values()),
        "failures": failures,
        "retries": sum(a["retries"] for a in answers),
        "seconds": seconds,
        "per_second": booted / seconds if seconds else None,
    }


def _profile_figures(answers: list[dict[str, Any]]) -> dict[str, Any]:
    delays = sorted(d for a in answers for d in a["delays"])
    return {
        "booted": sum(a["booted"] for a in answers),
        "received": len(delays),
        "never": sum(a["never"] for a in answers),
        "p50_s": percentile(delays, 0.50),
        "p95_s": percentile(delays, 0.95),
        "max_s": delays[-1] if delays else None,
        "over_1s": sum(d > 1.0 for d in delays),
    }


# Fan-out ---------------------------------------------------------------------------------------------


async def run_fanout_floor(
    settings: NodeSettings, workdir: Path, light_hash: str, tag: str
) -> dict[str, dict[str, Any]]:
    """On one baseline server: the floor idle, then in the middle of a sustained-load phase."""
    chargers = settings.fanout_chargers
    found: dict[str, dict[str, Any]] = {}
    server = _server(BASELINE, workdir, None, light_hash, f"floor-{tag}")
    try:
        async with Fleet(server, chargers, settings, workdir / f"loadgen-floor-{tag}.log") as fleet:
            connect = await _connect(server, fleet.generators, chargers)
            for phase in ("idle", "loaded"):
                found[phase] = {"connect": connect, "load_average_before": load_average()}
                found[phase].update(await fan_out(server, fleet.generators, None, phase == "loaded", settings))
    except Exception as exc:
        found.setdefault("idle", {})
        for phase in ("idle", "loaded"):
            found.setdefault(phase, {})["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        for figures in found.values():
            figures["server_log"] = scan_log(server.log_path)
    return found


async def run_fanout_powerbank(
    settings: NodeSettings, workdir: Path, template: Path, token: str | None, light_hash: str, tag: str, phase: str
) -> dict[str, Any]:
    """On a fresh PowerBank (one activation per server): one fan-out, idle or in the middle of the load."""
    chargers = settings.fanout_chargers
    result: dict[str, Any] = {"load_average_before": load_average()}
    server = _server(POWERBANK, workdir, template, light_hash, f"fanout-{phase}-{tag}")
    try:
        async with Fleet(server, chargers, settings, workdir / f"loadgen-fanout-{phase}-{tag}.log") as fleet:
            result["connect"] = await _connect(server, fleet.generators, chargers)
            result["capability_probe"] = await wait_probes(fleet.generators)
            result.update(await fan_out(server, fleet.generators, token, phase == "loaded", settings))
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        result["server_log"] = scan_log(server.log_path)
    return result


async def fan_out(
    server: ServerProcess, generators: LoadGenerators, token: str | None, loaded: bool, settings: NodeSettings
) -> dict[str, Any]:
    """Trigger one fan-out (loaded: half-way through a sustained-load phase); return when it arrived.

    The baseline's trigger is its floor; PowerBank's, an activation through the API.
    """
    if server.kind == POWERBANK and token is None:
        return {"skipped": "no write API token"}
    settled_s = await quiet(server)
    sustaining = None
    if loaded:
        sustaining = asyncio.create_task(
            _sustain(server, generators, settings.sustain_settings(settings.fanout_chargers))
        )
        # _sustain starts its load half a second after it is called.
        await asyncio.sleep(0.5 + settings.sustain_s / 2)
    cpu_before = server.cpu_seconds()
    triggered_mono, triggered_wall = time.monotonic(), time.time()
    try:
        if server.kind == BASELINE:
            status, body = await http_json(
                "GET", f"{server.http}/bench/floor?exclude={fixtures.PROBE_IDENTITY}", timeout=TRIGGER_TIMEOUT_S
            )
        else:
            status, body = await http_json(
                "POST",
                f"{server.http}/api/v1/activations",
                ACTIVATION,
                {"Authorization": f"Bearer {token}"},
                timeout=TRIGGER_TIMEOUT_S,
            )
        trigger_s = time.monotonic() - triggered_mono
    finally:
        sustain = await sustaining if sustaining is not None else None
    if status not in (200, 201, 202) or not isinstance(body, dict):
        return {"skipped": f"trigger answered HTTP {status}: {json.dumps(body)[:300]}"}
    # Every SetChargingProfile received since the trigger (during a load phase, read after it).
    answers = await generators.command(180, cmd="profiles", timeout=60)
    received = sorted(t - triggered_mono for a in answers for t in a["received"])
    cpu = server.cpu_seconds() - cpu_before
    if server.kind == BASELINE:
        record = await _floor_record(server, int(body["id"]))
        answered = sorted(t - triggered_mono for t in record["answered"])
        own: dict[str, Any] = {
            "targets": record["targets"],
            "statuses": record["statuses"],
            "last_handed_s": record["last_sent"] - triggered_mono if record.get("last_sent") else None,
        }
    else:
        answered, own = await _activation_record(server, token or "", body, triggered_wall, len(received))
        if own.get("recorded_last_send_s") is not None and own.get("post_to_triggered_s") is not None:
            own["last_handed_s"] = own["post_to_triggered_s"] + own["recorded_last_send_s"]
    targets = own.get("targets") or len(received)
    return {
        "loaded": loaded,
        "quiet_after_s": settled_s,
        "trigger_http_ms": 1000 * trigger_s,
        "targets": targets,
        "received": len(received),
        "answered": len(answered),
        "received_p50_s": percentile(received, 0.5),
        "received_last_s": received[-1] if received else None,
        "answered_95_s": _share(answered, targets, 0.95),
        "answered_100_s": _share(answered, targets, 1.0),
        # Idle: CPU of the fan-out alone; loaded: of the load phase's rest too.
        "server_cpu_s": cpu,
        **({"sustain": sustain} if sustain is not None else {}),
        **own,
    }


async def _floor_record(server: ServerProcess, floor_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        _status, record = await http_json("GET", f"{server.http}/bench/floor/{floor_id}")
        if record["done"] or time.monotonic() > deadline:
            return dict(record)
        await asyncio.sleep(0.2)


# Running it ------------------------------------------------------------------------------------------


async def run_node(settings: NodeSettings) -> dict[str, Any]:
    """Run the parts asked for; return the figures."""
    open_files = raise_open_files_limit()
    started = time.monotonic()
    note = open_files_note(settings, open_files)
    if note:
        print(f"[bench] WARNING: {note}", file=sys.stderr, flush=True)
    results: dict[str, Any] = {
        "machine": {**machine(), "open_files": open_files},
        "notes": [note] if note else [],
        "mode": settings.mode,
        "settings": {
            **{key: value for key, value in asdict(settings).items() if key != "profile_dir"},
            "parts": list(settings.parts),
        },
        "estimate_s": estimate_s(settings),
    }
    light_hash = fixtures.LIGHT_HASHER.hash(fixtures.CHARGER_PASSWORD)
    frame_log = await asyncio.to_thread(bench_frame_log)
    results["frame_log"] = frame_log
    with tempfile.TemporaryDirectory(prefix="powerbank-node-bench-") as tmp:
        workdir = Path(tmp)
        migrated = workdir / "migrated.db"
        await asyncio.to_thread(fixtures.migrate, migrated)
        # This process measures loop lag with its ping probe: its own collector must not pause it.
        collector = asyncio.create_task(GcPolicy(full_every_s=math.inf).run())
        try:
            if "hold" in settings.parts:
                template, _token = await prepare_template(workdir, migrated, settings.hold_chargers, light_hash, "hold")
                print(f"[bench] hold: {settings.hold_chargers:,} chargers on one PowerBank", flush=True)
                results["hold"] = await run_hold(settings, workdir, template, light_hash, frame_log["kib_per_charger"])
                template.unlink()
            if "storm" in settings.parts:
                results["storm"] = await _storms(settings, workdir, migrated, light_hash)
            if "fanout" in settings.parts:
                results["fanout"] = await _fanouts(settings, workdir, migrated, light_hash)
        finally:
            collector.cancel()
    results["duration_s"] = time.monotonic() - started
    return results


async def _storms(settings: NodeSettings, workdir: Path, migrated: Path, light_hash: str) -> dict[str, Any]:
    chargers = settings.storm_chargers
    template, token = await prepare_template(workdir, migrated, chargers, light_hash, "storm")
    runs: dict[str, list[dict[str, Any]]] = {BASELINE: [], POWERBANK: []}
    for repeat in range(settings.storm_repeats):
        # Which server goes first alternates.
        order = (BASELINE, POWERBANK) if repeat % 2 == 0 else (POWERBANK, BASELINE)
        for kind in order:
            print(
                f"[bench] storm: {kind}, {chargers:,} chargers within {settings.storm_jitter_s:g} s, "
                f"run {repeat + 1}/{settings.storm_repeats}",
                flush=True,
            )
            run = await run_storm(kind, settings, workdir, template, token, light_hash, f"{kind}-{repeat}")
            runs[kind].append(run)
            storm, profile = run.get("storm") or {}, run.get("boot_to_profile") or {}
            print(
                f"[bench]   {storm.get('booted')} booted in {storm.get('seconds')} s, "
                f"{storm.get('failed_attempts')} failed attempts {storm.get('failures')}; boot → profile "
                f"max {profile.get('max_s')} s, p95 {profile.get('p95_s')} s, never {profile.get('never')} "
                f"{run.get('error', '')}",
                flush=True,
            )
    template.unlink()
    return {"chargers": chargers, "runs": runs}


async def _fanouts(settings: NodeSettings, workdir: Path, migrated: Path, light_hash: str) -> dict[str, Any]:
    chargers = settings.fanout_chargers
    template, token = await prepare_template(workdir, migrated, chargers, light_hash, "fanout")
    runs: list[dict[str, Any]] = []
    for repeat in range(settings.fanout_repeats):
        print(f"[bench] fan-out: floor, {chargers:,} chargers, run {repeat + 1}/{settings.fanout_repeats}", flush=True)
        floor = await run_fanout_floor(settings, workdir, light_hash, str(repeat))
        ours: dict[str, Any] = {}
        for phase in ("idle", "loaded"):
            print(f"[bench] fan-out: PowerBank {phase}, run {repeat + 1}/{settings.fanout_repeats}", flush=True)
            ours[phase] = await run_fanout_powerbank(settings, workdir, template, token, light_hash, str(repeat), phase)
        runs.append({BASELINE: floor, POWERBANK: ours})
        for phase in ("idle", "loaded"):
            print(
                f"[bench]   {phase}: floor last {floor.get(phase, {}).get('received_last_s')} s, PowerBank last "
                f"{ours[phase].get('received_last_s')} s, 95 % answered {ours[phase].get('answered_95_s')} s "
                f"{ours[phase].get('error', '')}{ours[phase].get('skipped', '')}",
                flush=True,
            )
    template.unlink()
    return {"chargers": chargers, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One PowerBank node at 20,000 chargers")
    parser.add_argument("--quick", action="store_true", help="1,000 chargers in each part, one run each")
    parser.add_argument("--hold-chargers", type=int, help="chargers held under load (default 20,000; quick 1,000)")
    parser.add_argument("--storm-chargers", type=int, help="chargers of the storm (default 10,000; quick 1,000)")
    parser.add_argument("--storm-jitter", type=float, help="seconds the storm's starts spread over (default 5)")
    parser.add_argument("--fanout-chargers", type=int, help="chargers of the fan-out (default 10,000; quick 1,000)")
    parser.add_argument("--repeats", type=int, help="fan-out runs (default 2; quick 1)")
    parser.add_argument("--storm-repeats", type=int, default=1)
    parser.add_argument("--sustain-seconds", type=float, help="length of a sustained-load phase (default 30)")
    parser.add_argument("--loadgen-processes", type=int, default=1)
    parser.add_argument("--only", choices=PARTS, action="append", help="run this part only (may repeat)")
    parser.add_argument("--profile", type=Path, help="record each PowerBank server with py-spy into this folder")
    parser.add_argument("--results", type=Path, help="default bench/results.json (quick: results-quick.json)")
    parser.add_argument("--report", type=Path, help="default bench/RESULTS.md (quick: RESULTS-quick.md)")
    args = parser.parse_args(argv)
    quick = args.quick
    storm_chargers = args.storm_chargers or (1000 if quick else 10_000)
    settings = NodeSettings(
        hold_chargers=args.hold_chargers or (1000 if quick else 20_000),
        storm_chargers=storm_chargers,
        # Quick: the same arrival rate as 10,000 chargers within 5 s.
        storm_jitter_s=args.storm_jitter if args.storm_jitter is not None else 5.0 * storm_chargers / 10_000,
        storm_timeout_s=60.0 if quick else 120.0,
        storm_repeats=args.storm_repeats,
        fanout_chargers=args.fanout_chargers or (1000 if quick else 10_000),
        fanout_repeats=args.repeats or (1 if quick else 2),
        sustain_s=args.sustain_seconds or (10.0 if quick else 30.0),
        loadgen_processes=args.loadgen_processes,
        mode="quick" if quick else "full",
        parts=tuple(args.only) if args.only else PARTS,
        profile_dir=args.profile,
    )
    print(f"[bench] one-node bench ({settings.mode}): about {estimate_s(settings) / 60:.0f} min", flush=True)
    figures = asyncio.run(run_node(settings))
    suffix = "-quick" if quick else ""
    results_path = args.results or BENCH_DIR / f"results{suffix}.json"
    report_path = args.report or BENCH_DIR / f"RESULTS{suffix}.md"
    record_section("node", figures, results_path, report_path)
    announce("one node at 20,000 chargers, targets", node_verdicts(figures))
    print(f"[bench] one-node bench done in {figures['duration_s']:.0f} s: {results_path}, {report_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
