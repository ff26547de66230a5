"""Several nodes on one PostgreSQL: an activation's fan-out and the cost of a message, one node alone vs three.

    python -m bench.cluster_bench            # 10,000 chargers, 2 runs of each layout (part of `make bench`)
    python -m bench.cluster_bench --quick    # 1,000 chargers, 1 run of each (`make bench-cluster`)

It needs PostgreSQL's programs (Debian's `postgresql` package). Without POWERBANK_TEST_PG_URL it runs
itself again under `python -m tests.pg_server`, a throw-away PostgreSQL on loopback; without
PostgreSQL it says loudly that the cluster part was skipped, and records why in the results.

Each run starts on a fresh copy of a database filled with the fleet (every charger signed up in DK2):

- alone: one `powerbank serve` node holds every charger;
- cluster: three nodes, each holding a third of the chargers.

Both layouts use the same three load generator processes (in the cluster, generator i connects to
node i), and the same phases as `bench/run.py`: connect and boot, one activation triggered with
`POST /api/v1/activations` on the first node (time until the last SetChargingProfile is received),
a few idle seconds (the nodes' CPU with nothing to do), then a sustained load. In that load each
node of either layout receives the same messages per second: in the cluster every charger sends,
alone only the first third of them (the others stay connected, idle), so CPU per message compares
one node's work at the same load, alone and among three. A sending charger sends every 30 s (not
bench/run.py's 10 s): at 10 s, three nodes' 2,000 messages a second with PostgreSQL and the load
generators need more CPU than a 2-core machine has, and a saturated machine is what would be measured.
PostgreSQL's side is read from its statistics (commits and rows written in the bench's database) and
its processes' CPU time.

The figures go to the `cluster` entry of results.json (the file `bench.run` writes; a quick run:
results-quick.json) and RESULTS.md is written again from it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from bench import fixtures
from bench.loadgen import MAX_CONNECTING, raise_open_files_limit
from bench.procs import CLOCK_TICKS, LoadGenerators, ServerProcess, free_port
from bench.report import POWERBANK, announce, cluster_verdicts, record_section
from bench.run import (
    BENCH_DIR,
    Settings,
    _connect,
    _fanout,
    _powerbank_env,
    _sustain,
    create_write_token,
    load_average,
    machine,
    scan_log,
    wait_probes,
)
from powerbank.config import PROJECT_ROOT

ALONE, CLUSTER = "alone", "cluster"
NODES = 3
PG_URL_VARIABLE = "POWERBANK_TEST_PG_URL"
IDLE_S = 5.0


@dataclass
class ClusterSettings:
    chargers: int = 10_000
    repeats: int = 2
    sustain_s: float = 20.0
    # Each sending charger's Heartbeat and MeterValues come every this many seconds (see main).
    interval_s: float = 30.0
    idle_s: float = IDLE_S
    mode: str = "full"


class Nodes:
    """The nodes of one layout, measured together (summed CPU and memory) and one by one.

    Requests (the trigger, the activation's record) go to the first node, as do the ping probe's.
    """

    kind = POWERBANK

    def __init__(self, servers: list[ServerProcess]) -> None:
        self.servers = servers

    @property
    def http(self) -> str:
        return self.servers[0].http

    @property
    def ocpp_url(self) -> str:
        return self.servers[0].ocpp_url

    def rss_kib(self) -> int:
        return sum(server.rss_kib() for server in self.servers)

    def cpu_seconds(self) -> float:
        return sum(server.cpu_seconds() for server in self.servers)

    def cpu_each(self) -> list[float]:
        return [server.cpu_seconds() for server in self.servers]

    async def start(self) -> None:
        await asyncio.gather(*(server.start() for server in self.servers))

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop() for server in self.servers))


class Postgres:
    """The PostgreSQL the nodes share: databases made from a template, its statistics and its processes' CPU."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.postmaster: int | None = None

    def url(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    async def _connect(self, database: str | None = None) -> asyncpg.Connection:
        url = make_url(self.admin_url)
        return await asyncpg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            database=database or url.database,
        )

    async def execute(self, statement: str) -> None:
        connection = await self._connect()
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    async def create(self, name: str, template: str | None = None) -> str:
        """Create a database (a copy of ``template``, if given); return its URL."""
        await self.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    async def drop(self, name: str) -> None:
        await self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def describe(self) -> dict[str, Any]:
        """Return PostgreSQL's version and the settings that decide what a write costs."""
        connection = await self._connect()
        try:
            figures: dict[str, Any] = {"version": await connection.fetchval("SHOW server_version")}
            for setting in ("fsync", "synchronous_commit", "full_page_writes", "max_connections", "shared_buffers"):
                figures[setting] = await connection.fetchval(f"SHOW {setting}")
            # While this connection's backend lives: its parent is the postmaster.
            self.postmaster = _parent(int(await connection.fetchval("SELECT pg_backend_pid()")))
        finally:
            await connection.close()
        return figures

    async def statistics(self, database: str) -> dict[str, Any]:
        """Return the database's counters (commits, rows written) and the connections open to it."""
        connection = await self._connect()
        try:
            row = await connection.fetchrow(
                "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted "
                "FROM pg_stat_database WHERE datname = $1",
                database,
            )
            connections = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
            )
        finally:
            await connection.close()
        return {**dict(row or {}), "connections": int(connections), "cpu": self.cpu_by_process()}

    def cpu_by_process(self) -> dict[int, float]:
        """Return the CPU seconds of each of PostgreSQL's processes (the postmaster's children)."""
        found: dict[int, float] = {}
        if self.postmaster is None:
            return found
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == self.postmaster:
                found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return found


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def _database_delta(before: dict[str, Any], after: dict[str, Any], seconds: float, calls: int) -> dict[str, Any]:
    """Return what PostgreSQL did between two readings of its statistics."""
    written = sum(after[key] - before[key] for key in ("tup_inserted", "tup_updated", "tup_deleted"))
    commits = after["xact_commit"] - before["xact_commit"]
    cpu = sum(seconds_now - before["cpu"].get(pid, 0.0) for pid, seconds_now in after["cpu"].items())
    return {
        "db_commits_per_s": commits / seconds,
        "db_rows_written_per_s": written / seconds,
        "db_commits_per_call": commits / calls if calls else None,
        "db_rows_written_per_call": written / calls if calls else None,
        "db_cpu_pct": 100 * cpu / seconds,
        "db_cpu_ms_per_call": 1000 * cpu / calls if calls else None,
        "db_connections": after["connections"],
    }


def _node(url: str, name: str, secret_key: str, log: Path) -> ServerProcess:
    port = free_port()
    env = {**_powerbank_env(url), "POWERBANK_NODE_ID": name, "POWERBANK_SECRET_KEY": secret_key}
    argv = [sys.executable, "-m", "powerbank.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return ServerProcess(POWERBANK, argv, env, port, log)


def _merge_logs(logs: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for log in logs:
        for key, value in log.items():
            merged[key] = max(merged.get(key, 0), value) if key.startswith("longest") else merged.get(key, 0) + value
    return merged


async def _idle(nodes: Nodes, seconds: float) -> dict[str, Any]:
    """Measure the nodes' CPU while their chargers are connected and silent (heartbeats, leader checks, pings)."""
    before, started = nodes.cpu_each(), time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    each = [after - first for first, after in zip(before, nodes.cpu_each(), strict=True)]
    return {"seconds": elapsed, "cpu_pct": 100 * sum(each) / elapsed, "cpu_pct_each": [100 * c / elapsed for c in each]}


async def _measured_sustain(
    nodes: Nodes,
    generators: LoadGenerators,
    settings: Settings,
    share: float,
    postgres: Postgres,
    database: str,
    idle: dict[str, Any],
) -> dict[str, Any]:
    """Run the sustained load (bench.run's) and add each node's CPU and what the database did."""
    before_db, cpu_before, started = await postgres.statistics(database), nodes.cpu_each(), time.monotonic()
    sustain = await _sustain(nodes, generators, settings, share)
    # PostgreSQL's backends report their counters at most once a second.
    await asyncio.sleep(1.5)
    elapsed = time.monotonic() - started
    cpu_each = [after - first for first, after in zip(cpu_before, nodes.cpu_each(), strict=True)]
    after_db = await postgres.statistics(database)
    answered = int(sustain["answered"])
    # The part of the nodes' CPU that the idle phase says they spend anyway, over the same time.
    idle_cpu = idle["cpu_pct"] / 100 * elapsed
    sustain.update(
        node_cpu_s_each=cpu_each,
        calls_per_node_per_s=sustain["calls_per_s"] / len(nodes.servers) if sustain["calls_per_s"] else None,
        server_cpu_ms_per_call_net_of_idle=(1000 * (sum(cpu_each) - idle_cpu) / answered if answered else None),
        **_database_delta(before_db, after_db, elapsed, answered),
    )
    return sustain


async def layout_run(
    layout: str,
    settings: ClusterSettings,
    postgres: Postgres,
    template: str,
    token: str | None,
    workdir: Path,
    tag: str,
) -> dict[str, Any]:
    """Start one layout's nodes on a fresh copy of the fleet, run the phases, stop; return what was measured."""
    count = NODES if layout == CLUSTER else 1
    database = f"bench_{layout}_{tag}"
    url = await postgres.create(database, template)
    secret_key = secrets.token_urlsafe(32)
    nodes = Nodes(
        [
            _node(url, f"{layout}-{index + 1}", secret_key, workdir / f"{layout}-{tag}-node-{index + 1}.log")
            for index in range(count)
        ]
    )
    generators = LoadGenerators(
        [server.ocpp_url for server in nodes.servers],
        fixtures.CHARGER_PASSWORD,
        settings.chargers,
        NODES,
        workdir / f"loadgen-{layout}-{tag}.log",
        # The hub sees as many handshakes at a time as in bench/run.py's runs (one generator there).
        max_connecting=MAX_CONNECTING // NODES,
    )
    run_settings = Settings(
        sizes=[settings.chargers], repeats=1, sustain_s=settings.sustain_s, interval_s=settings.interval_s
    )
    result: dict[str, Any] = {
        "layout": layout,
        "nodes": count,
        "chargers": settings.chargers,
        "load_average_before": load_average(),
    }
    try:
        await nodes.start()
        await asyncio.sleep(0.5)
        await generators.start()
        result["connect"] = await _connect(nodes, generators, settings.chargers)
        result["connect"]["rss_after_kib_per_node"] = result["connect"]["rss_after_kib"] / count
        result["capability_probe"] = await wait_probes(generators)
        result["database_connections"] = (await postgres.statistics(database))["connections"]
        result["database_connections_per_node"] = result["database_connections"] / count
        result["fanout"] = await _fanout(nodes, generators, token)
        result["idle"] = await _idle(nodes, settings.idle_s)
        # Each node receives what one cluster node receives: alone, a third of the chargers send.
        share = 1.0 if layout == CLUSTER else 1 / NODES
        result["sustain"] = await _measured_sustain(
            nodes, generators, run_settings, share, postgres, database, result["idle"]
        )
        result["rss_end_kib"] = nodes.rss_kib()
        result["rss_end_kib_per_node"] = result["rss_end_kib"] / count
        result["load_average_after"] = load_average()
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        await generators.stop()
        await nodes.stop()
        result["server_log"] = _merge_logs([scan_log(server.log_path) for server in nodes.servers])
        await postgres.drop(database)
    return result


async def prepare_template(postgres: Postgres, chargers: int) -> tuple[str, str | None]:
    """Make a migrated database holding the fleet and a write API token; return its name and the token."""
    name = f"bench_template_{os.getpid()}"
    await postgres.drop(name)
    url = await postgres.create(name)
    await asyncio.to_thread(fixtures.migrate, url)
    await fixtures.fill_charger_fleet(url, chargers, fixtures.LIGHT_HASHER.hash(fixtures.CHARGER_PASSWORD))
    return name, await create_write_token(url)


async def run_cluster(settings: ClusterSettings, admin_url: str, logs: Path | None = None) -> dict[str, Any]:
    """Run both layouts ``settings.repeats`` times, alternating which goes first; return the figures.

    The nodes' and load generators' logs are written in ``logs`` (default: a temporary folder, removed).
    """
    raise_open_files_limit()
    started = time.monotonic()
    postgres = Postgres(admin_url)
    results: dict[str, Any] = {
        "machine": machine(),
        "mode": settings.mode,
        "settings": {
            **settings.__dict__,
            "nodes": NODES,
            "loadgen_processes": NODES,
            "handshakes_at_a_time": NODES * (MAX_CONNECTING // NODES),
        },
        "postgres": await postgres.describe(),
        "runs": {ALONE: [], CLUSTER: []},
    }
    template, token = await prepare_template(postgres, settings.chargers)
    try:
        with tempfile.TemporaryDirectory(prefix="powerbank-cluster-bench-") as tmp:
            workdir = Path(tmp) if logs is None else logs
            workdir.mkdir(parents=True, exist_ok=True)
            for repeat in range(settings.repeats):
                order = (ALONE, CLUSTER) if repeat % 2 == 0 else (CLUSTER, ALONE)
                for layout in order:
                    print(
                        f"[bench] cluster bench: {layout}, {settings.chargers} chargers, "
                        f"run {repeat + 1}/{settings.repeats}",
                        flush=True,
                    )
                    run = await layout_run(layout, settings, postgres, template, token, workdir, str(repeat))
                    results["runs"][layout].append(run)
                    _log_run(run)
    finally:
        await postgres.drop(template)
    results["duration_s"] = time.monotonic() - started
    return results


def _log_run(run: dict[str, Any]) -> None:
    connect, sustain, fanout = run.get("connect", {}), run.get("sustain", {}), run.get("fanout", {})
    print(
        f"[bench]   connect {connect.get('seconds')} s, booted {connect.get('booted')}; fan-out last "
        f"{fanout.get('received_last_s')} s {fanout.get('skipped', '')}; CPU/call "
        f"{sustain.get('server_cpu_ms_per_call')} ms at {sustain.get('calls_per_node_per_s')} calls/s per node; "
        f"database {sustain.get('db_commits_per_s')} commits/s {run.get('error', '')}",
        flush=True,
    )


def postgres_missing() -> str | None:
    """Return why PostgreSQL cannot be started here, or None when it can."""
    from tests import pg_server

    try:
        pg_server._bindir()
    except SystemExit as exc:
        return str(exc.code)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PowerBank's cluster benchmark (several nodes on PostgreSQL)")
    parser.add_argument("--quick", action="store_true", help="1,000 chargers, one run of each layout")
    parser.add_argument("--chargers", type=int, help="chargers in all (default 10,000; quick: 1,000)")
    parser.add_argument("--repeats", type=int, help="runs of each layout (default 2; quick: 1)")
    parser.add_argument("--sustain-seconds", type=float, help="length of the sustained load (default 20; quick: 10)")
    parser.add_argument(
        "--interval",
        type=float,
        default=30.0,
        help="seconds between a sending charger's messages (default 30: 10,000 chargers on three nodes at 10 s "
        "need more than this 2-core machine; see ANALYSIS.md)",
    )
    parser.add_argument("--results", type=Path, help="default bench/results.json (quick: results-quick.json)")
    parser.add_argument("--report", type=Path, help="default bench/RESULTS.md (quick: RESULTS-quick.md)")
    parser.add_argument("--logs", type=Path, help="keep the nodes' and load generators' logs in this folder")
    args = parser.parse_args(argv)
    suffix = "-quick" if args.quick else ""
    results_path = args.results or BENCH_DIR / f"results{suffix}.json"
    report_path = args.report or BENCH_DIR / f"RESULTS{suffix}.md"
    admin_url = os.environ.get(PG_URL_VARIABLE, "")
    if not admin_url:
        missing = postgres_missing()
        if missing is None:
            # Run again with a throw-away PostgreSQL of our own.
            command = [sys.executable, "-m", "bench.cluster_bench", *(sys.argv[1:] if argv is None else argv)]
            return subprocess.run(
                [sys.executable, "-m", "tests.pg_server", "--", *command], cwd=PROJECT_ROOT
            ).returncode
        banner = "!" * 100
        print(
            f"\n{banner}\n[bench] CLUSTER BENCHMARK SKIPPED: PostgreSQL is not installed ({missing}).\n"
            f"[bench] The fan-out across nodes and the per-message cost in a cluster were NOT measured.\n{banner}\n",
            file=sys.stderr,
            flush=True,
        )
        record_section("cluster", {"skipped": f"PostgreSQL is not installed: {missing}"}, results_path, report_path)
        return 0
    settings = ClusterSettings(
        chargers=args.chargers or (1000 if args.quick else 10_000),
        repeats=args.repeats or (1 if args.quick else 2),
        sustain_s=args.sustain_seconds or (10.0 if args.quick else 20.0),
        interval_s=args.interval,
        mode="quick" if args.quick else "full",
    )
    cluster = asyncio.run(run_cluster(settings, admin_url, args.logs))
    record_section("cluster", cluster, results_path, report_path)
    announce("cluster targets", cluster_verdicts(cluster))
    print(f"[bench] cluster bench done in {cluster['duration_s']:.0f} s: {results_path}, {report_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
