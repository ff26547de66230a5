"""Turn results.json into RESULTS.md: figures with medians, spreads, ratios and the targets."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ANALYSIS_PATH = Path(__file__).with_name("ANALYSIS.md")
POWERBANK, BASELINE = "powerbank", "baseline"

# (section, key, label, unit) of each network figure shown, in order.
NETWORK_FIGURES: dict[str, list[tuple[str, str, str]]] = {
    "connect": [
        ("run:load_average_before", "machine load average (1 min) at the run's start", ""),
        ("seconds", "time until all booted", "s"),
        ("per_second", "boots per second", "/s"),
        ("failed", "failures", ""),
        ("rss_after_kib", "server RSS with all connected", "MiB"),
        ("rss_per_connection_kib", "server RSS per connection", "KiB"),
        ("run:rss_end_kib", "server RSS at the end of the run (after load and fan-out)", "MiB"),
        ("server_log:pool_timeouts", "server log: database pool timeouts in the whole run", ""),
        ("server_log:database_locked", "server log: `database is locked` in the whole run", ""),
        ("server_log:longest_full_gc_s", "server log: longest full garbage collection (logged from 0.25 s)", "s"),
        ("server_cpu_ms_per_connection", "server CPU per connection (incl. auth)", "ms"),
        ("loadgen_cpu_s", "load generator CPU", "s"),
    ],
    "sustain": [
        ("calls_per_s", "incoming calls answered per second", "/s"),
        ("p50_ms", "p50 frame sent → reply received", "ms"),
        ("p99_ms", "p99 frame sent → reply received", "ms"),
        ("unanswered", "calls unanswered", ""),
        ("server_cpu_pct", "server CPU (of one core)", "%"),
        ("server_cpu_ms_per_call", "server CPU per call", "ms"),
        ("loop_lag_p99_ms", "loop lag p99 (ping→pong on an idle socket)", "ms"),
        ("loadgen_cpu_pct", "load generator CPU (of one core)", "%"),
    ],
    "fanout": [
        ("trigger_http_ms", "trigger request answered", "ms"),
        ("post_to_triggered_s", "trigger sent → activation's triggered_at (PowerBank's clock)", "s"),
        ("recorded_last_send_s", "triggered_at → last frame handed to the sockets (PowerBank's record)", "s"),
        ("received_p50_s", "trigger → 50 % SetChargingProfile received", "s"),
        ("received_last_s", "trigger → last SetChargingProfile received", "s"),
        ("answered_50_s", "trigger → 50 % answered (server's record)", "s"),
        ("answered_95_s", "trigger → 95 % answered", "s"),
        ("answered_100_s", "trigger → 100 % answered", "s"),
        ("server_cpu_ms_per_charger", "server CPU per charger", "ms"),
        ("loadgen_cpu_s", "load generator CPU from trigger to last frame received", "s"),
    ],
}


# The cluster benchmark (bench/cluster_bench.py): its two layouts, its figures and its targets.
ALONE, CLUSTER = "alone", "cluster"
CLUSTER_FANOUT_S, CLUSTER_FANOUT_RATIO, CLUSTER_MESSAGE_RATIO = 1.5, 1.3, 1.2
CLUSTER_FIGURES: list[tuple[str, str, str]] = [
    ("run:load_average_before", "machine load average (1 min) at the run's start", ""),
    ("connect:seconds", "time until all booted", "s"),
    ("connect:failed", "failures", ""),
    ("connect:rss_after_kib", "nodes' RSS with all connected, in all", "MiB"),
    ("connect:rss_after_kib_per_node", "RSS per node with all connected", "MiB"),
    ("connect:rss_per_connection_kib", "RSS per connection", "KiB"),
    ("connect:server_cpu_ms_per_connection", "node CPU per connection (incl. auth and boot)", "ms"),
    ("run:database_connections", "database connections open, all nodes (once connected)", ""),
    ("run:database_connections_per_node", "database connections per node (once connected)", ""),
    ("fanout:trigger_http_ms", "fan-out: trigger request answered", "ms"),
    ("fanout:post_to_triggered_s", "fan-out: trigger sent → activation's triggered_at", "s"),
    ("fanout:received_p50_s", "fan-out: trigger → 50 % SetChargingProfile received", "s"),
    ("fanout:received_last_s", "fan-out: trigger → last SetChargingProfile received", "s"),
    ("fanout:answered_95_s", "fan-out: trigger → 95 % answered (the activation's record)", "s"),
    ("fanout:server_cpu_ms_per_charger", "fan-out: nodes' CPU per charger, in all", "ms"),
    ("idle:cpu_pct", "idle: nodes' CPU with every charger connected and silent, in all (of one core)", "%"),
    ("sustain:calls_per_node_per_s", "load: incoming calls answered per second, per node", "/s"),
    ("sustain:calls_per_s", "load: incoming calls answered per second, in all", "/s"),
    ("sustain:p50_ms", "load: p50 frame sent → reply received", "ms"),
    ("sustain:p99_ms", "load: p99 frame sent → reply received", "ms"),
    ("sustain:unanswered", "load: calls unanswered", ""),
    ("sustain:loop_lag_p99_ms", "load: loop lag p99 of the first node (ping→pong)", "ms"),
    ("sustain:server_cpu_ms_per_call", "load: node CPU per call", "ms"),
    ("sustain:server_cpu_ms_per_call_net_of_idle", "load: node CPU per call, less the idle CPU", "ms"),
    ("sustain:db_commits_per_s", "load: database commits per second", "/s"),
    ("sustain:db_rows_written_per_s", "load: database rows written (inserted, updated, deleted) per second", "/s"),
    ("sustain:db_commits_per_call", "load: database commits per call", ""),
    ("sustain:db_rows_written_per_call", "load: database rows written per call", ""),
    ("sustain:db_cpu_pct", "load: PostgreSQL's CPU (of one core)", "%"),
    ("sustain:db_cpu_ms_per_call", "load: PostgreSQL's CPU per call", "ms"),
    ("sustain:db_connections", "load: database connections open at its end, all nodes", ""),
    ("server_log:pool_timeouts", "nodes' logs: database pool timeouts in the whole run", ""),
    ("server_log:tracebacks", "nodes' logs: tracebacks in the whole run", ""),
]


def fmt(value: float | None, unit: str = "") -> str:
    """Format a figure with three significant digits and its unit."""
    if value is None:
        return "–"
    if unit == "MiB":
        value = value / 1024
    if value == 0 or abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".strip() if unit not in ("", "%", "/s") else f"{text}{unit}"


def values(runs: list[dict[str, Any]], section: str, key: str) -> list[float]:
    """Return one figure from every run that has it."""
    found = []
    for run in runs:
        value = (run if section == "run" else run.get(section) or {}).get(key)
        if isinstance(value, (int, float)):
            found.append(float(value))
    return found


def median(runs: list[dict[str, Any]], section: str, key: str) -> float | None:
    found = values(runs, section, key)
    return statistics.median(found) if found else None


def with_spread(runs: list[dict[str, Any]], section: str, key: str, unit: str) -> str:
    """Return 'median (min–max, n runs)' of a figure."""
    found = values(runs, section, key)
    if not found:
        return "–"
    text = fmt(statistics.median(found), unit)
    if len(found) > 1:
        text += f" ({fmt(min(found), unit)}–{fmt(max(found), unit)}, n={len(found)})"
    return text


def ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or denominator == 0:
        return "–"
    return f"{numerator / denominator:.2f}×"


def _network_section(results: dict[str, Any], section: str) -> list[str]:
    network = results.get("network", {})
    lines = ["| chargers | figure | PowerBank | baseline | PowerBank / baseline |", "| --- | --- | --- | --- | --- |"]
    sizes = sorted({int(n) for runs in network.values() for n in runs})
    for size in sizes:
        ours = network.get(POWERBANK, {}).get(str(size), [])
        base = network.get(BASELINE, {}).get(str(size), [])
        for figure, label, unit in NETWORK_FIGURES[section]:
            source, _, key = figure.rpartition(":")
            source = source or section
            lines.append(
                f"| {size:,} | {label} | {with_spread(ours, source, key, unit)} | "
                f"{with_spread(base, source, key, unit)} | "
                f"{ratio(median(ours, source, key), median(base, source, key))} |"
            )
    notes = sorted(
        {
            str(run[section]["skipped"])
            for runs in network.get(POWERBANK, {}).values()
            for run in runs
            if isinstance(run.get(section), dict) and "skipped" in run[section]
        }
    )
    notes += sorted(
        {str(run["error"]) for kind in network.values() for runs in kind.values() for run in runs if "error" in run}
    )
    lines += [""] + [f"- Not measured in some runs: {note}" for note in notes] if notes else []
    return lines


def _largest(results: dict[str, Any], kind: str, minimum: int = 0) -> tuple[int | None, list[dict[str, Any]]]:
    runs = results.get("network", {}).get(kind, {})
    sizes = sorted(int(n) for n in runs if int(n) >= minimum)
    return (sizes[-1], runs[str(sizes[-1])]) if sizes else (None, [])


def _verdict(value: float | None, limit: float, smaller_is_better: bool = True) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= limit if smaller_is_better else value >= limit) else "**missed**"


# PowerBank's server CPU per incoming call, at most this times the baseline's, at every size measured.
MESSAGE_RATIO = 1.1


def _per_message_target(results: dict[str, Any]) -> str:
    """Return the per-message cost row: every size measured, met only if met at each."""
    network = results.get("network", {})
    figures, verdicts = [], []
    for n in sorted(int(key) for key in network.get(POWERBANK, {})):
        ours, base = network[POWERBANK][str(n)], network.get(BASELINE, {}).get(str(n), [])
        per_call = median(ours, "sustain", "server_cpu_ms_per_call")
        base_call = median(base, "sustain", "server_cpu_ms_per_call")
        figures.append(
            f"{n:,} chargers: {fmt(per_call, 'ms')} vs {fmt(base_call, 'ms')} ({ratio(per_call, base_call)})"
        )
        if base_call:
            verdicts.append(_verdict(per_call, MESSAGE_RATIO * base_call))
    verdict = "not measured" if not verdicts else "met" if all(v == "met" for v in verdicts) else "**missed**"
    return (
        f"| per-message cost within {MESSAGE_RATIO:g}× of the baseline's at every size | CPU per call, "
        "PowerBank vs baseline: "
        f"{'; '.join(figures)} | {verdict} |"
    )


def targets(results: dict[str, Any]) -> list[str]:
    """Return the targets table, each with the figure that decides it."""
    lines = ["| target | measured | verdict |", "| --- | --- | --- |"]
    if "network" not in results:
        return lines + _cluster_targets(results) + _delivery_targets(results) + _node_targets(results)
    size, ours = _largest(results, POWERBANK)
    _size, base = _largest(results, BASELINE)
    if size is not None:
        # The larger of RSS once all are connected and RSS at the end, with the same chargers still connected.
        rss_connected, rss_end = median(ours, "connect", "rss_after_kib"), median(ours, "run", "rss_end_kib")
        rss = max(value for value in (rss_connected, rss_end, 0.0) if value is not None)
        booted = median(ours, "connect", "booted")
        lines.append(
            f"| {size:,} chargers connected in one process, RSS ≤ 1 GB | {fmt(booted)} booted, "
            f"RSS {fmt(rss_connected, 'MiB')} once connected, {fmt(rss_end, 'MiB')} after the load | "
            f"{_verdict(rss, 1024 * 1024) if booted == size else '**missed** (not all booted)'} |"
        )
    sustain_s = results["settings"]["sustain_s"]
    loaded = [
        (int(n), runs)
        for n, runs in results.get("network", {}).get(POWERBANK, {}).items()
        if (median(runs, "sustain", "sent") or 0) / sustain_s >= 950
    ]
    if loaded:
        n, runs = min(loaded, key=lambda item: item[0])
        p99 = median(runs, "sustain", "p99_ms")
        answered = median(runs, "sustain", "calls_per_s")
        unanswered = median(runs, "sustain", "unanswered")
        met = _verdict(p99, 50) if not unanswered and (answered or 0) >= 950 else "**missed**"
        lines.append(
            "| sustained 1,000 incoming calls/s, p99 ≤ 50 ms | "
            f"{fmt((median(runs, 'sustain', 'sent') or 0) / sustain_s, '/s')}"
            f" offered ({n:,} chargers), {fmt(answered, '/s')} answered, {fmt(unanswered)} unanswered, "
            f"p99 {fmt(p99, 'ms')} | {met} |"
        )
    else:
        lines.append(
            "| sustained 1,000 incoming calls/s, p99 ≤ 50 ms | fewer than 1,000 calls/s in this run "
            "(5,000 chargers give 1,000/s) | not measured |"
        )
    if size is not None:
        last = median(ours, "fanout", "received_last_s")
        p95 = median(ours, "fanout", "answered_95_s")
        lines.append(
            f"| fan-out to {size:,}: last frame ≤ 1 s | {fmt(last, 's')} (received by the load generator) | "
            f"{_verdict(last, 1.0)} |"
        )
        unrecorded = next(
            (run["fanout"]["not_recorded"] for run in ours if "not_recorded" in run.get("fanout", {})), None
        )
        lines.append(
            f"| fan-out to {size:,}: 95 % answered ≤ 3 s | "
            f"{fmt(p95, 's') if p95 is not None or unrecorded is None else 'not recorded: ' + unrecorded} | "
            f"{_verdict(p95, 3.0) if p95 is not None or unrecorded is None else '**missed** (no record)'} |"
        )
        base_last = median(base, "fanout", "received_last_s")
        lines.append(
            f"| fan-out at least as fast as the baseline's | PowerBank {fmt(last, 's')}, baseline "
            f"{fmt(base_last, 's')} ({ratio(last, base_last)}) | "
            f"{_verdict(last, base_last) if base_last is not None else 'not measured'} |"
        )
        lines.append(_per_message_target(results))
    pages = results.get("pages", {}).get("large")
    if pages:
        worst = max(pages[case]["ms"]["median"] for case in ("first_page", "search", "filter_country"))
        constant = results["pages"]["constant_queries"]
        lines.append(
            f"| {results['pages']['charge_points']:,} charge point tab ≤ 100 ms, constant queries | slowest "
            f"{fmt(worst, 'ms')}; queries {'the same' if constant else 'NOT the same'} at 50 and "
            f"{results['pages']['charge_points']:,} | "
            f"{_verdict(worst, 100) if constant else '**missed**'} |"
        )
    signup = results.get("bulk_signup", {})
    if "large" in signup:
        ms = signup["large"]["ms"]["median"]
        lines.append(
            f"| {signup['charge_points']:,} sign-ups in one save ≤ 1 s | {fmt(ms, 'ms')}, "
            f"{signup['large']['queries']} queries | {_verdict(ms, 1000)} |"
        )
    return lines + _cluster_targets(results) + _delivery_targets(results) + _node_targets(results)


def cluster_verdicts(cluster: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Return the cluster benchmark's targets: (target, what was measured, met or not; None: not measured)."""
    chargers = cluster.get("settings", {}).get("chargers")
    size = f"{chargers:,}" if chargers else "the fleet"
    fanout_target = (
        f"fan-out to {size} across 3 nodes on PostgreSQL: last frame ≤ {CLUSTER_FANOUT_S} s and "
        f"≤ {CLUSTER_FANOUT_RATIO}× one node's"
    )
    message_target = f"node CPU per message among 3 nodes ≤ {CLUSTER_MESSAGE_RATIO}× alone"
    if "skipped" in cluster:
        return [(fanout_target, f"skipped: {cluster['skipped']}", None), (message_target, "skipped", None)]
    runs = cluster.get("runs", {})
    alone, together = runs.get(ALONE, []), runs.get(CLUSTER, [])
    last, last_alone = median(together, "fanout", "received_last_s"), median(alone, "fanout", "received_last_s")
    # Every charger that booted received its frame (those that failed to connect show in the connections).
    runs_of_both = [*alone, *together]
    complete = bool(alone and together) and all(
        (run.get("fanout") or {}).get("received") == (run.get("connect") or {}).get("booted") for run in runs_of_both
    )
    fanout: bool | None = None
    if last is not None and last_alone is not None:
        fanout = complete and last <= CLUSTER_FANOUT_S and last <= CLUSTER_FANOUT_RATIO * last_alone
    cost = median(together, "sustain", "server_cpu_ms_per_call")
    cost_alone = median(alone, "sustain", "server_cpu_ms_per_call")
    per_node = median(together, "sustain", "calls_per_node_per_s")
    message = None if cost is None or not cost_alone else cost <= CLUSTER_MESSAGE_RATIO * cost_alone
    return [
        (
            fanout_target,
            f"3 nodes {fmt(last, 's')}, one node {fmt(last_alone, 's')} ({ratio(last, last_alone)}), "
            f"medians of {len(together)} and {len(alone)} runs"
            + ("" if complete else "; NOT every charger that booted received its frame"),
            fanout,
        ),
        (
            message_target,
            f"{fmt(cost, 'ms')} among 3, {fmt(cost_alone, 'ms')} alone ({ratio(cost, cost_alone)}), "
            f"{fmt(per_node, '/s')} calls per node",
            message,
        ),
    ]


def _cluster_targets(results: dict[str, Any]) -> list[str]:
    if "cluster" not in results:
        return []
    words = {True: "met", False: "**missed**", None: "not measured"}
    return [
        f"| {target} | {measured} | {words[met]} |" for target, measured, met in cluster_verdicts(results["cluster"])
    ]


def _cluster(results: dict[str, Any]) -> list[str]:
    cluster = results.get("cluster")
    if not cluster:
        return []
    lines = ["## 6. Several nodes on one PostgreSQL", ""]
    if "skipped" in cluster:
        return [*lines, f"**Not measured**: {cluster['skipped']}.", ""]
    settings, machine, postgres = cluster["settings"], cluster["machine"], cluster.get("postgres", {})
    runs = cluster["runs"]
    lines += [
        f"`python -m bench.cluster_bench{' --quick' if cluster['mode'] == 'quick' else ''}` (part of "
        f"`{'make bench-quick' if cluster['mode'] == 'quick' else 'make bench'}`) on {machine['date']}, commit "
        f"`{machine['commit']}`"
        + (f" plus {machine['uncommitted_files']} uncommitted files" if machine.get("uncommitted_files") else "")
        + f", in {cluster.get('duration_s', 0) / 60:.0f} min, on the same machine: nodes, PostgreSQL "
        f"{postgres.get('version', '?')} and the load generators share its {machine['cores']} cores. "
        f"PostgreSQL is the throw-away one of `tests/pg_server.py`: fsync={postgres.get('fsync')}, "
        f"synchronous_commit={postgres.get('synchronous_commit')}, "
        f"full_page_writes={postgres.get('full_page_writes')} (a commit costs no disk flush here, unlike "
        f"production), shared_buffers={postgres.get('shared_buffers')}.",
        "",
        f"{settings['chargers']:,} chargers, {settings['repeats']} runs of each layout (which goes first "
        "alternates), each on a fresh copy of the database: **one node alone** holding every charger, and "
        f"**{settings['nodes']} nodes** each holding a third (`POWERBANK_NODE_ID` set, the default heartbeat "
        f"and lease). The same {settings['loadgen_processes']} load generator processes in both; in the cluster "
        "generator i connects to node i, and together they make at most "
        f"{settings.get('handshakes_at_a_time', 256)} handshakes at a time (`bench/run.py`'s one generator: 256). "
        "The activation is triggered on the first node (`POST "
        "/api/v1/activations`); it claims it and the NOTIFY in that commit tells the others. Sustained load: "
        f"{settings['sustain_s']:.0f} s of a Heartbeat and a MeterValues every {settings['interval_s']:.0f} s "
        "per sending charger, at the same rate per node in both layouts (alone, only a third of the chargers "
        "send; the rest stay connected and silent). CPU figures are of the node processes (`/proc`), summed "
        "over the nodes; per call, divided by the calls all of them answered. PostgreSQL's figures come from "
        "`pg_stat_database` for the bench's database and from the CPU time of PostgreSQL's processes "
        f"(connections that closed during the load are missed). Idle: {settings['idle_s']:.0f} s after the "
        "fan-out with every charger connected and silent.",
        "",
        *[f"Note: {note}\n" for note in cluster.get("notes", [])],
        "| figure | one node alone | 3 nodes | 3 nodes / alone |",
        "| --- | --- | --- | --- |",
    ]
    alone, together = runs.get(ALONE, []), runs.get(CLUSTER, [])
    for figure, label, unit in CLUSTER_FIGURES:
        section, _, key = figure.partition(":")
        lines.append(
            f"| {label} | {with_spread(alone, section, key, unit)} | {with_spread(together, section, key, unit)} | "
            f"{ratio(median(together, section, key), median(alone, section, key))} |"
        )
    errors = sorted({str(run["error"]) for layout in runs.values() for run in layout if "error" in run})
    skipped = sorted(
        {
            str(run["fanout"]["skipped"])
            for layout in runs.values()
            for run in layout
            if "skipped" in run.get("fanout", {})
        }
    )
    lines += [""] + [f"- Not measured in some runs: {note}" for note in errors + skipped] if errors or skipped else []
    return [*lines, ""]


# The proof-of-delivery benchmark (bench/delivery_bench.py): its targets and its figures.
DELIVERY_CHARGERS, DELIVERY_P99_MS, DELIVERY_CURVE_MS, DELIVERY_PAGE_MS = 5000, 100.0, 1000.0, 200.0
DELIVERY_STEP_FIGURES: list[tuple[str, str, str]] = [
    ("load_average_before", "machine load average (1 min) at the step's start", ""),
    ("offered_per_s", "MeterValues sent per second", "/s"),
    ("answered_per_s", "answered per second", "/s"),
    ("p50_ms", "p50 frame sent → reply received", "ms"),
    ("p99_ms", "p99 frame sent → reply received", "ms"),
    ("max_ms", "slowest reply", "ms"),
    ("sent", "MeterValues sent", ""),
    ("rows_stored", "meter rows stored", ""),
    ("lost", "samples lost (sent, not stored)", ""),
    ("unanswered", "unanswered after 10 s", ""),
    ("loop_lag_p99_ms", "loop lag p99 (ping→pong)", "ms"),
    ("server_cpu_pct", "server CPU (of one core)", "%"),
    ("server_cpu_ms_per_sample", "server CPU per MeterValues", "ms"),
    ("loadgen_cpu_pct", "load generator CPU (of one core)", "%"),
    ("loadgen_latest_send_s", "load generator's latest send behind its schedule", "s"),
    ("bytes_per_sample", "database bytes per sample", "B"),
]


def _per_charger_hour(bytes_per_sample: float | None, interval_s: float) -> float | None:
    return None if bytes_per_sample is None else bytes_per_sample * 3600 / interval_s


def delivery_verdicts(found: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Return the proof-of-delivery targets: (target, what was measured, met or not; None: not measured or no limit)."""
    ramp, record = found.get("ramp") or {}, found.get("record") or {}
    settings = found.get("settings", {})
    interval = settings.get("interval_s", 1.0)
    limit = settings.get("p99_limit_ms", DELIVERY_P99_MS)
    rows: list[tuple[str, str, bool | None]] = []
    target = (
        f"chargers reporting every {interval:g} s on one node, p99 ≤ {limit:g} ms and no sample lost: "
        f"≥ {DELIVERY_CHARGERS:,}"
    )
    steps = ramp.get("steps") or []
    if not steps:
        rows.append((target, f"not measured{': ' + ramp['error'] if 'error' in ramp else ''}", None))
    else:
        held = [step for step in steps if step.get("holds")]
        best = held[-1] if held else None
        failed = next((step for step in steps if not step.get("holds")), None)
        text = (
            f"{best['chargers']:,} held (p99 {fmt(best.get('p99_ms'), 'ms')}, {best.get('lost', 0):,} lost, load "
            f"{fmt(best.get('load_average_before'))})"
            if best
            else "none of the steps held"
        )
        if failed:
            text += (
                f"; {failed['chargers']:,} did not (p99 {fmt(failed.get('p99_ms'), 'ms')}, "
                f"{failed.get('lost', 0):,} lost, {failed.get('unanswered', 0):,} unanswered, load "
                f"{fmt(failed.get('load_average_before'))})"
            )
        elif max(step["chargers"] for step in steps) < DELIVERY_CHARGERS:
            text += f"; no step of {DELIVERY_CHARGERS:,} was run"
        largest = ramp.get("largest_holding")
        ran_enough = bool(failed) or max(step["chargers"] for step in steps) >= DELIVERY_CHARGERS
        rows.append((target, text, (largest or 0) >= DELIVERY_CHARGERS if ran_enough else None))
    storage = record.get("storage") or {}
    meter = _per_charger_hour(storage.get("meter_bytes_per_sample"), interval)
    evidence = _per_charger_hour(storage.get("evidence_bytes_per_sample"), interval)
    # Any step's rows tell what a sample costs (held or not); small steps grow the file by too few pages.
    measured = [
        step["bytes_per_sample"] for step in steps if step.get("bytes_per_sample") and step["rows_stored"] >= 5000
    ]
    live = _per_charger_hour(statistics.median(measured), interval) if measured else None
    rows.append(
        (
            f"storage per charger-hour at {interval:g} s (SQLite, database size in use)",
            f"meter samples {fmt(_kib(live), 'KiB')} as the hub stored them in the ramp, "
            f"{fmt(_kib(meter), 'KiB')} in the record; delivery evidence {fmt(_kib(evidence), 'KiB')} more "
            f"(no limit set)",
            None,
        )
    )
    chargers = record.get("chargers")
    size = f"{chargers:,}" if chargers else "the"
    an_activation = f"a {chargers:,}-charger activation" if chargers else "an activation"
    fresh, kept = record.get("meter_samples") or {}, record.get("evidence") or {}
    curve = (fresh.get("delivery_of_ms") or {}).get("median")
    curve_kept = (kept.get("delivery_of_ms") or {}).get("median")
    rows.append(
        (
            f"response curve of {an_activation} computed in ≤ {DELIVERY_CURVE_MS / 1000:g} s "
            "after the window (`delivery_of`)",
            f"{fmt(curve, 'ms')} from the meter samples, {fmt(curve_kept, 'ms')} from the kept evidence "
            f"({record.get('samples', 0):,} samples, load {fmt(fresh.get('load_average'))})",
            None if curve is None else curve <= DELIVERY_CURVE_MS,
        )
    )
    page = ((fresh.get("page") or {}).get("ms") or {}).get("median")
    page_kept = ((kept.get("page") or {}).get("ms") or {}).get("median")
    pages = [value for value in (page, page_kept) if value is not None]
    rows.append(
        (
            f"activation page with {size} dispatch rows and their samples ≤ {DELIVERY_PAGE_MS:g} ms",
            f"{fmt(page, 'ms')} from the meter samples, {fmt(page_kept, 'ms')} from the kept evidence "
            f"({(fresh.get('page') or {}).get('queries', '–')} queries)",
            None if not pages else max(pages) <= DELIVERY_PAGE_MS,
        )
    )
    return rows


def _step(ramp: dict[str, Any], chargers: int) -> dict[str, Any]:
    return next((step for step in ramp.get("steps") or [] if step["chargers"] == chargers), {})


def _kib(value: float | None) -> float | None:
    return None if value is None else value / 1024


def _delivery_targets(results: dict[str, Any]) -> list[str]:
    if "delivery" not in results:
        return []
    words = {True: "met", False: "**missed**", None: "not measured"}
    return [
        f"| {target} | {measured} | {words[met] if 'no limit set' not in measured else 'figure only'} |"
        for target, measured, met in delivery_verdicts(results["delivery"])
    ]


def _delivery(results: dict[str, Any]) -> list[str]:
    found = results.get("delivery")
    if not found:
        return []
    settings, machine = found["settings"], found["machine"]
    quick = found["mode"] == "quick"
    lines = [
        "## 7. Proof of delivery: reporting every second, and the record",
        "",
        f"`python -m bench.delivery_bench{' --quick' if quick else ''}` (`make bench-delivery`) on "
        f"{machine['date']}, commit `{machine['commit']}`"
        + (f" plus {machine['uncommitted_files']} uncommitted files" if machine.get("uncommitted_files") else "")
        + f", in {found.get('duration_s', 0) / 60:.0f} min, on {found.get('database', 'SQLite')}. The server, "
        f"{settings['loadgen_processes']} load generator process(es) and the probe share the machine's "
        f"{machine['cores']} cores with other work: the load average is given beside each figure.",
        "",
        *[
            f"Note: the {carried['part']} figures are those of an earlier run ({carried.get('date')}, commit "
            f"`{carried.get('commit')}`); this run measured the other part only.\n"
            for carried in found.get("carried_over", [])
        ],
    ]
    ramp = found.get("ramp")
    if ramp:
        lines += [
            "### Chargers reporting every second during an activation",
            "",
            f"One `powerbank serve` holds {ramp.get('chargers_connected', 0):,} chargers (every one signed up "
            "in DK2). An activation is triggered on DK2 (`POST /api/v1/activations`, a pause of "
            f"{RAMP_DURATION_TEXT}): the hub limits every charger, asks each to report every second "
            "(fine metering; the load generator accepts) and keeps their samples unpruned. Then each step: the "
            f"first N chargers send MeterValues every {settings['interval_s']:g} s for {settings['step_s']:.0f} s "
            "(spread evenly; the others stay connected and silent), then up to 10 s for the last replies. "
            f"A step holds when p99 ≤ {settings['p99_limit_ms']:g} ms and no sample is lost (every MeterValues "
            "answered, and a row stored for each: rows counted by id above the highest before the step). The "
            "ramp stops at the first step that does not hold. Storage: SQLite pages in use "
            "(`page_count - freelist_count`, read through a read-only connection, the write-ahead log "
            "included) before and after the step, per row stored.",
            "",
            f"Connected: {fmt((ramp.get('connect') or {}).get('booted'))} booted in "
            f"{fmt((ramp.get('connect') or {}).get('seconds'), 's')}; the activation reached "
            f"{fmt((ramp.get('fanout') or {}).get('received'))} chargers (last limit received after "
            f"{fmt((ramp.get('fanout') or {}).get('received_last_s'), 's')}); fine metering noted "
            + (
                ", ".join(f"“{note}” × {count:,}" for note, count in (ramp.get("metering_notes") or {}).items())
                or "nothing"
            )
            + f". Largest step that held: **{fmt(ramp.get('largest_holding'))}** chargers.",
            "",
        ]
        steps = ramp.get("steps") or []
        if steps:
            lines += [
                "| figure | " + " | ".join(f"{step['chargers']:,} chargers" for step in steps) + " |",
                "| --- | " + " | ".join("---" for _ in steps) + " |",
            ]
            for key, label, unit in DELIVERY_STEP_FIGURES:
                lines.append(f"| {label} | " + " | ".join(fmt(step.get(key), unit) for step in steps) + " |")
            lines.append("| holds | " + " | ".join("yes" if step.get("holds") else "**no**" for step in steps) + " |")
            lines.append("")
        during = ramp.get("while_response_read")
        if during:
            request = during.get("request") or {}
            lines += [
                f"The largest step that held, run again while the activation's response is read once "
                f"(`GET /api/v1/activations/<id>/response`, started {settings['step_s'] / 4:.0f} s into the step; "
                f"it answered HTTP {request.get('status')} in {fmt(request.get('seconds'), 's')}, "
                f"{fmt(request.get('rows'))} curve rows): the node computes `delivery_of` on the event loop "
                f"that answers the chargers. {during['chargers']:,} chargers: p99 {fmt(during.get('p99_ms'), 'ms')} "
                f"(without the read: {fmt(_step(ramp, during['chargers']).get('p99_ms'), 'ms')}), slowest reply "
                f"{fmt(during.get('max_ms'), 'ms')}, loop lag p99 {fmt(during.get('loop_lag_p99_ms'), 'ms')}, "
                f"{fmt(during.get('lost'))} samples lost, {fmt(during.get('unanswered'))} unanswered, load "
                f"{fmt(during.get('load_average_before'))}: {'holds' if during.get('holds') else '**does not hold**'}.",
                "",
            ]
        if "error" in ramp:
            lines += [f"- Not measured in full: {ramp['error']}", ""]
    record = found.get("record")
    if record:
        storage = record.get("storage") or {}
        lines += [
            "### The record of a large activation",
            "",
            f"In-process, on a database with {record['chargers']:,} chargers and one ended pause (FCR-D up) of "
            f"{record['window_s']} s with a dispatch row per charger (Accepted), and {record.get('samples', 0):,} "
            f"meter samples: every {BEFORE_INTERVAL_TEXT} in the two minutes before the trigger, then every second "
            "from the trigger to a minute after the window (most chargers pause within 5 s, some late, a few not "
            "at all). `delivery_of` is timed whole (median of up to "
            f"{settings['repeats']} runs; one when a run takes over 15 s), its steps timed as it runs them (the "
            "median run's); the page is "
            "`GET /activations/<id>` with the Quart test client (the same runs). First from the chargers' meter "
            "samples (the minute after the window: a live page judges the activation whole), then from the "
            "evidence `keep_evidence` copies to `delivery_sample`, which the leader then judges once and stores "
            "(`keep_verdicts`: verdicts and the record); from then on the page reads the record, 100 chargers "
            "to a page.",
            "",
            "| figure | from the meter samples | from the kept evidence |",
            "| --- | --- | --- |",
        ]
        fresh, kept = record.get("meter_samples") or {}, record.get("evidence") or {}
        for label, getter, unit in (
            ("machine load average (1 min) at the start", lambda f: f.get("load_average"), ""),
            ("`delivery_of`, whole", lambda f: (f.get("delivery_of_ms") or {}).get("median"), "ms"),
            ("… reading the samples (`load_samples`)", lambda f: (f.get("parts_ms") or {}).get("load_samples"), "ms"),
            ("… judging each charger (`judge`)", lambda f: (f.get("parts_ms") or {}).get("judge"), "ms"),
            ("… the area's curve (`area_response`)", lambda f: (f.get("parts_ms") or {}).get("area_response"), "ms"),
            ("… the rest", lambda f: (f.get("parts_ms") or {}).get("rest"), "ms"),
            ("activation page", lambda f: ((f.get("page") or {}).get("ms") or {}).get("median"), "ms"),
            ("activation page: SQL statements", lambda f: (f.get("page") or {}).get("queries"), "statements"),
            ("activation page: size", lambda f: _kib((f.get("page") or {}).get("bytes")), "KiB"),
        ):
            cells = [
                f"{value:,}" if unit == "statements" and isinstance(value, int) else fmt(value, unit)
                for value in (getter(fresh), getter(kept))
            ]
            lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
        verdicts = fresh.get("verdicts") or {}
        lines += [
            "",
            f"Verdicts: {', '.join(f'{name} {count:,}' for name, count in verdicts.items()) or '–'}; area 50 % at "
            f"{fmt(fresh.get('half_s'), 's')}, 90 % at {fmt(fresh.get('full_s'), 's')}. Storage in the record: "
            f"{fmt(storage.get('meter_bytes_per_sample'), 'B')} per meter sample, "
            f"{fmt(storage.get('evidence_bytes_per_sample'), 'B')} per evidence row "
            f"({fmt(storage.get('evidence_rows'))} rows copied in {fmt(storage.get('keep_evidence_ms'), 'ms')} in "
            f"one statement; the hub copies 250 chargers at a time), judged and stored in "
            f"{fmt(storage.get('keep_record_ms'), 'ms')} ({fmt(_kib(storage.get('record_bytes')), 'KiB')} of record). "
            f"The bench process's peak RSS: {fmt(record.get('peak_rss_mib'))} MiB.",
            "",
        ]
        if "error" in record:
            lines += [f"- Not measured in full: {record['error']}", ""]
    return lines


RAMP_DURATION_TEXT = "900 s, longer than the ramp"
BEFORE_INTERVAL_TEXT = "10 s"


# One node at 20,000 chargers (bench/node_bench.py): its targets and its figures.
NODE_RSS_KIB, NODE_P99_MS = 1024 * 1024, 50.0
# The fleet one node must hold. A machine that allows fewer open files per process cannot connect
# it; a full run there holds what it can, and the rest is projected from the measured per charger.
NODE_HOLD_TARGET = 20_000
NODE_STORM_RATIO, NODE_PROFILE_S = 1.5, 1.0
NODE_FANOUT_RATIO, NODE_ANSWERED_95_S = 1.1, 1.5
WORDS = {True: "met", False: "**missed**", None: "not measured"}


def node_verdicts(node: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Return the one-node targets: (target, what was measured, met or not; None: not measured)."""
    settings = node.get("settings", {})
    return [
        _hold_verdict(node),
        *_storm_verdicts(node.get("storm"), settings.get("storm_chargers")),
        *_fanout_verdicts(node.get("fanout"), settings.get("fanout_chargers")),
    ]


def _hold_verdict(node: dict[str, Any]) -> tuple[str, str, bool | None]:
    hold = node.get("hold") or {}
    chargers = hold.get("chargers") or node.get("settings", {}).get("hold_chargers") or 0
    target = (
        f"{chargers:,} chargers on one node: RSS with a full frame log ≤ 1 GiB, sustained load answered at "
        f"p99 ≤ {NODE_P99_MS:g} ms"
    )
    if "connect" not in hold:
        return target, f"not measured{': ' + hold['error'] if 'error' in hold else ''}", None
    connect, sustain = hold.get("connect") or {}, hold.get("sustain") or {}
    total, p99 = hold.get("rss_with_full_frame_log_kib"), sustain.get("p99_ms")
    booted, unanswered = connect.get("booted"), sustain.get("unanswered")
    met = None
    if total is not None and p99 is not None:
        met = booted == chargers and not unanswered and total <= NODE_RSS_KIB and p99 <= NODE_P99_MS
    measured = (
        f"{_count(booted)} booted; RSS {fmt(hold.get('rss_end_kib'), 'MiB')} + full frame log "
        f"{fmt(hold.get('frame_log_full_kib'), 'MiB')} = {fmt(total, 'MiB')}; "
        f"{fmt(sustain.get('calls_per_s'), '/s')} answered, p99 {fmt(p99, 'ms')}, {_count(unanswered)} unanswered, "
        f"server CPU {fmt(sustain.get('server_cpu_pct'), '%')}"
    )
    per_charger = (connect.get("rss_per_connection_kib") or 0) + (hold.get("frame_log_full_kib") or 0) / (chargers or 1)
    if NODE_HOLD_TARGET // 2 <= chargers < NODE_HOLD_TARGET and total is not None and per_charger:
        # Not the target's fleet: what was held, and the rest projected; no verdict on a projection.
        projected = total + (NODE_HOLD_TARGET - chargers) * per_charger
        open_files = node.get("machine", {}).get("open_files")
        limit = f" (this machine allows {open_files:,} open files per process)" if open_files else ""
        target = target.replace(f"{chargers:,} chargers", f"{NODE_HOLD_TARGET:,} chargers", 1)
        measured += (
            f"; {NODE_HOLD_TARGET:,} cannot connect here{limit}: projected from "
            f"{fmt(per_charger, 'KiB')} per charger, {fmt(projected, 'MiB')}"
        )
        met = None
    return target, measured, met


def _storm_verdicts(storm: dict[str, Any] | None, size: int | None) -> list[tuple[str, str, bool | None]]:
    storm = storm or {}
    runs = storm.get("runs") or {}
    ours, base = runs.get(POWERBANK, []), runs.get(BASELINE, [])
    target = (
        f"reconnect storm of {storm.get('chargers') or size or 0:,}: last boot accepted ≤ {NODE_STORM_RATIO:g}× the "
        "baseline's, none refused or failed"
    )
    profile_target = f"storm during an activation: every charger's limit ≤ {NODE_PROFILE_S:g} s after its boot"
    if not ours or not base:
        return [(target, "not measured", None), (profile_target, "not measured", None)]
    seconds, base_seconds = median(ours, "storm", "seconds"), median(base, "storm", "seconds")
    failed = sum(int((run.get("storm") or {}).get("failed_attempts") or 0) for run in ours)
    never = sum(int((run.get("storm") or {}).get("never_connected") or 0) for run in ours)
    base_failed = sum(int((run.get("storm") or {}).get("failed_attempts") or 0) for run in base)
    met = None
    if seconds is not None and base_seconds:
        met = seconds <= NODE_STORM_RATIO * base_seconds and failed == 0 and never == 0
    rows: list[tuple[str, str, bool | None]] = [
        (
            target,
            f"PowerBank {fmt(seconds, 's')}, baseline {fmt(base_seconds, 's')} ({ratio(seconds, base_seconds)}); "
            f"PowerBank {failed:,} failed attempts, {never:,} never connected (baseline {base_failed:,} failed "
            "attempts)",
            met,
        )
    ]
    profiles = [run["boot_to_profile"] for run in ours if run.get("boot_to_profile")]
    if not profiles:
        skipped = next(
            (str(run["activation"]["skipped"]) for run in ours if "skipped" in (run.get("activation") or {})), ""
        )
        return [*rows, (profile_target, f"not measured{': ' + skipped if skipped else ''}", None)]
    worst = max((p["max_s"] for p in profiles if p.get("max_s") is not None), default=None)
    p95 = max((p["p95_s"] for p in profiles if p.get("p95_s") is not None), default=None)
    over = sum(int(p.get("over_1s") or 0) for p in profiles)
    missing = sum(int(p.get("never") or 0) for p in profiles)
    met_profile = None if worst is None and not missing else over == 0 and missing == 0
    rows.append(
        (
            profile_target,
            f"max {fmt(worst, 's')}, p95 {fmt(p95, 's')}; {over:,} over {NODE_PROFILE_S:g} s, {missing:,} never "
            f"received (worst of {len(profiles)} runs)",
            met_profile,
        )
    )
    return rows


def _fanout_verdicts(fanout: dict[str, Any] | None, size: int | None) -> list[tuple[str, str, bool | None]]:
    fanout = fanout or {}
    chargers, runs = fanout.get("chargers") or size or 0, fanout.get("runs") or []
    target = f"fan-out to {chargers:,}: last frame ≤ {NODE_FANOUT_RATIO:g}× the floor's, idle and under load, every run"
    answered_target = f"fan-out to {chargers:,}: 95 % answered ≤ {NODE_ANSWERED_95_S:g} s, every run"
    if not runs:
        return [(target, "not measured", None), (answered_target, "not measured", None)]
    pairs, answered = [], []
    fast: list[bool | None] = []
    prompt: list[bool | None] = []
    complete = True
    for run in runs:
        for phase in ("idle", "loaded"):
            ours, floor = (run.get(POWERBANK) or {}).get(phase) or {}, (run.get(BASELINE) or {}).get(phase) or {}
            last, floor_last, p95 = ours.get("received_last_s"), floor.get("received_last_s"), ours.get("answered_95_s")
            pairs.append(f"{phase} {fmt(last, 's')} vs {fmt(floor_last, 's')} ({ratio(last, floor_last)})")
            answered.append(f"{phase} {fmt(p95, 's')}")
            complete = complete and bool(ours.get("targets")) and ours.get("received") == ours.get("targets")
            fast.append(None if last is None or not floor_last else last <= NODE_FANOUT_RATIO * floor_last)
            prompt.append(None if p95 is None else p95 <= NODE_ANSWERED_95_S)
    verdict = every(fast)
    return [
        (
            target,
            "PowerBank vs floor, trigger → last SetChargingProfile received: "
            + "; ".join(pairs)
            + ("" if complete else "; NOT every charger received its frame"),
            False if verdict is not None and not complete else verdict,
        ),
        (answered_target, "PowerBank: " + "; ".join(answered), every(prompt)),
    ]


def every(judged: list[bool | None]) -> bool | None:
    """Return met only if met in every run: missed if missed in any, else not measured if any was not."""
    if any(j is False for j in judged):
        return False
    return None if not judged or any(j is None for j in judged) else True


def _node_targets(results: dict[str, Any]) -> list[str]:
    if "node" not in results:
        return []
    return [f"| {target} | {measured} | {WORDS[met]} |" for target, measured, met in node_verdicts(results["node"])]


# (section:key, label, unit) of the storm's figures, PowerBank beside the baseline.
NODE_STORM_FIGURES: list[tuple[str, str, str]] = [
    ("run:load_average_before", "machine load average (1 min) at the run's start", ""),
    ("storm:seconds", "first attempt → last BootNotification accepted", "s"),
    ("storm:per_second", "boots accepted per second", "/s"),
    ("storm:booted", "booted", ""),
    ("storm:never_connected", "never connected (retried until the timeout)", ""),
    ("storm:failed_attempts", "failed attempts (each followed by a retry)", ""),
    ("storm:server_cpu_s", "server CPU during the storm", "s"),
    ("storm:loadgen_cpu_s", "load generator CPU during the storm", "s"),
    ("storm:rss_after_kib", "server RSS after the storm", "MiB"),
    ("boot_to_profile:p50_s", "BootNotification answered → first SetChargingProfile, p50", "s"),
    ("boot_to_profile:p95_s", "… p95", "s"),
    ("boot_to_profile:max_s", "… slowest", "s"),
    ("boot_to_profile:over_1s", "… chargers over 1 s", ""),
    ("boot_to_profile:never", "… chargers that never received one", ""),
    ("server_log:tracebacks", "server log: tracebacks", ""),
    ("server_log:database_locked", "server log: `database is locked`", ""),
]
# (section:key or key, label, unit) of each fan-out's figures, PowerBank beside the floor.
NODE_FANOUT_FIGURES: list[tuple[str, str, str]] = [
    ("load_average_before", "machine load average (1 min) at the run's start", ""),
    ("connect:seconds", "all chargers connected in (before the fan-out)", "s"),
    ("quiet_after_s", "server quiet (< 10 % of a core) after connecting, in", "s"),
    ("trigger_http_ms", "trigger request answered", "ms"),
    ("last_handed_s", "trigger → last frame handed to the sockets (the server's own clock)", "s"),
    ("received_p50_s", "trigger → 50 % SetChargingProfile received", "s"),
    ("received_last_s", "trigger → last SetChargingProfile received", "s"),
    ("received", "SetChargingProfile received", ""),
    ("answered_95_s", "trigger → 95 % answered (the server's record)", "s"),
    ("answered_100_s", "trigger → 100 % answered", "s"),
    ("sustain:p99_ms", "sustained load: p99 frame sent → reply received", "ms"),
    ("sustain:unanswered", "sustained load: calls unanswered", ""),
]


def _count(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, (int, float)) else "–"


def _number(figures: dict[str, Any], path: str) -> float | None:
    section, _, key = path.rpartition(":")
    value = (figures.get(section) or {}).get(key) if section else figures.get(key)
    return float(value) if isinstance(value, (int, float)) else None


def _node(results: dict[str, Any]) -> list[str]:
    node = results.get("node")
    if not node:
        return []
    settings, machine = node["settings"], node["machine"]
    quick = node["mode"] == "quick"
    lines = [
        "## 8. One node at 20,000 chargers",
        "",
        f"`python -m bench.node_bench{' --quick' if quick else ''}` "
        f"(`make {'bench-node' if quick else 'bench'}`) on {machine['date']}, commit `{machine['commit']}`"
        + (f" plus {machine['uncommitted_files']} uncommitted files" if machine.get("uncommitted_files") else "")
        + f", in {node.get('duration_s', 0) / 60:.0f} min on the same machine ({machine['cores']} cores, shared by "
        "server, load generator and probe). Every run starts its server fresh (PowerBank: `powerbank serve` on a "
        "fresh SQLite database); the baselines are measured in the same run. Sustained load: "
        f"{settings['sustain_s']:.0f} s of a Heartbeat and, half an interval later, MeterValues every "
        f"{settings['interval_s']:.0f} s per charger.",
        "",
        *[f"**Note**: {note}\n" for note in node.get("notes", [])],
        "| target | measured | verdict |",
        "| --- | --- | --- |",
        *[f"| {target} | {measured} | {WORDS[met]} |" for target, measured, met in node_verdicts(node)],
        "",
        *_node_hold(node),
        *_node_storm(node),
        *_node_fanout(node),
    ]
    return lines


def _node_hold(node: dict[str, Any]) -> list[str]:
    hold = node.get("hold")
    if not hold:
        return []
    connect, sustain, probe = hold.get("connect") or {}, hold.get("sustain") or {}, hold.get("capability_probe") or {}
    frame_log, log = node.get("frame_log") or {}, hold.get("server_log") or {}
    lines = [
        f"### Holding {hold['chargers']:,} chargers",
        "",
        f"The frame log keeps the last {frame_log.get('frames_per_charger', 100)} frames per charger; after the "
        "short load phase it is far from full, so a full one's size (measured in-process with tracemalloc: "
        f"{fmt(frame_log.get('kib_per_charger'), 'KiB')} per charger) is added to the RSS measured, which already "
        "holds the part filled: the sum errs high. The load starts once the server is quiet after connecting "
        "(under 10 % of a core, at most 20 s).",
        "",
        "| figure | PowerBank |",
        "| --- | --- |",
    ]
    for label, value, unit in (
        ("machine load average (1 min) at the start", hold.get("load_average_before"), ""),
        ("booted", connect.get("booted"), "count"),
        ("time until all booted (256 handshakes at a time)", connect.get("seconds"), "s"),
        ("asked their configuration (capability probe)", probe.get("asked"), "count"),
        ("server quiet (< 10 % of a core) after connecting, in", hold.get("quiet_after_s"), "s"),
        ("RSS with all connected", hold.get("rss_connected_kib"), "MiB"),
        ("RSS after the sustained load", hold.get("rss_end_kib"), "MiB"),
        ("frame log when full", hold.get("frame_log_full_kib"), "MiB"),
        ("RSS with a full frame log", hold.get("rss_with_full_frame_log_kib"), "MiB"),
        ("incoming calls answered per second", sustain.get("calls_per_s"), "/s"),
        ("p50 frame sent → reply received", sustain.get("p50_ms"), "ms"),
        ("p99 frame sent → reply received", sustain.get("p99_ms"), "ms"),
        ("slowest reply", sustain.get("max_ms"), "ms"),
        ("calls unanswered", sustain.get("unanswered"), "count"),
        ("server CPU (of one core)", sustain.get("server_cpu_pct"), "%"),
        ("server CPU per call", sustain.get("server_cpu_ms_per_call"), "ms"),
        ("loop lag p99 (ping→pong on an idle socket)", sustain.get("loop_lag_p99_ms"), "ms"),
        ("load generator CPU (of one core)", sustain.get("loadgen_cpu_pct"), "%"),
        ("server log: `database is locked`", log.get("database_locked"), "count"),
        ("server log: tracebacks", log.get("tracebacks"), "count"),
    ):
        lines.append(f"| {label} | {_count(value) if unit == 'count' else fmt(value, unit)} |")
    return [*lines, "", *([f"- Not measured in full: {hold['error']}", ""] if "error" in hold else [])]


def _node_storm(node: dict[str, Any]) -> list[str]:
    storm, settings = node.get("storm"), node["settings"]
    if not storm:
        return []
    runs = storm.get("runs") or {}
    ours, base = runs.get(POWERBANK, []), runs.get(BASELINE, [])
    lines = [
        f"### Reconnect storm of {storm['chargers']:,}",
        "",
        f"Every charger starts connecting at a uniformly random moment within {settings['storm_jitter_s']:g} s, "
        "with no limit on handshakes at a time; a failed connection or boot (refused, timed out, closed) is "
        f"counted and retried after 1 to 3 s, for up to {settings['storm_timeout_s']:.0f} s. PowerBank has an "
        "activation of DK2 running, created through the API before the storm (every charger is signed up in DK2): "
        "after its boot each charger is probed (GetConfiguration) and sent its limit. The baseline "
        "(`bench/baseline_server.py`) has no activation.",
        "",
        "| figure | PowerBank | baseline | PowerBank / baseline |",
        "| --- | --- | --- | --- |",
    ]
    for figure, label, unit in NODE_STORM_FIGURES:
        section, _, key = figure.partition(":")
        lines.append(
            f"| {label} | {with_spread(ours, section, key, unit)} | {with_spread(base, section, key, unit)} | "
            f"{ratio(median(ours, section, key), median(base, section, key))} |"
        )
    for kind, kind_runs in ((POWERBANK, ours), (BASELINE, base)):
        failures: dict[str, int] = {}
        for run in kind_runs:
            for reason, count in ((run.get("storm") or {}).get("failures") or {}).items():
                failures[reason] = failures.get(reason, 0) + count
        if failures:
            lines += ["", f"{kind}'s failed attempts: " + ", ".join(f"{r} × {c:,}" for r, c in failures.items())]
    errors = sorted({str(run["error"]) for run in [*ours, *base] if "error" in run})
    return [*lines, "", *[f"- Not measured in some runs: {error}" for error in errors], *([""] if errors else [])]


def _node_fanout(node: dict[str, Any]) -> list[str]:
    fanout = node.get("fanout")
    if not fanout:
        return []
    lines = [
        f"### Fan-out to {fanout['chargers']:,} against its floor",
        "",
        "The floor is the baseline's `GET /bench/floor`: one SetChargingProfile frame serialised once and handed to "
        "every connected socket at once (`websockets.broadcast`), its answers collected by message id. PowerBank's "
        "fan-out is an activation (`POST /api/v1/activations`) on a fresh server per fan-out (one activation per "
        "server), after every charger answered the capability probe. Each server is first left to work off what "
        "connecting left it (until it uses under 10 % of a core, at most 20 s). Idle: every charger connected "
        "and silent; "
        "loaded: triggered half-way through a sustained-load phase. Received times are the load generator's, when "
        "it reads each frame (during a load phase, collected after it).",
        "",
        "| run | figure | PowerBank | floor | PowerBank / floor |",
        "| --- | --- | --- | --- | --- |",
    ]
    errors: set[str] = set()
    for index, run in enumerate(fanout.get("runs") or [], 1):
        for phase in ("idle", "loaded"):
            ours, floor = (run.get(POWERBANK) or {}).get(phase) or {}, (run.get(BASELINE) or {}).get(phase) or {}
            for figures in (ours, floor):
                errors |= {str(figures[key]) for key in ("error", "skipped") if key in figures}
            for figure, label, unit in NODE_FANOUT_FIGURES:
                mine, theirs = _number(ours, figure), _number(floor, figure)
                lines.append(
                    f"| {index} {phase} | {label} | {fmt(mine, unit)} | {fmt(theirs, unit)} | {ratio(mine, theirs)} |"
                )
    return [
        *lines,
        "",
        *[f"- Not measured in some runs: {error}" for error in sorted(errors)],
        *([""] if errors else []),
    ]


def _pages(results: dict[str, Any]) -> list[str]:
    pages = results.get("pages")
    if not pages:
        return ["Not measured."]
    lines = [
        "| request | charge points in team | server time | SQL queries | response |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label in ("large", "small"):
        for case, title in (
            ("first_page", "first page (full page)"),
            ("search", "search (htmx fragment)"),
            ("filter_country", "filter country=SE (htmx fragment)"),
        ):
            figure = pages[label][case]
            ms = figure["ms"]
            lines.append(
                f"| {title} `{figure['url'].split('/', 3)[-1]}` | {pages[label]['charge_points']:,} | "
                f"{fmt(ms['median'], 'ms')} ({fmt(ms['min'], 'ms')}–{fmt(ms['max'], 'ms')}, n={ms['runs']}) | "
                f"{figure['queries']} | {figure['bytes'] / 1024:.0f} KiB |"
            )
    return lines


def _signup(results: dict[str, Any]) -> list[str]:
    signup = results.get("bulk_signup", {})
    if not signup:
        return ["Not measured."]
    lines = ["| charge points in one save | time | SQL queries | signed up |", "| --- | --- | --- | --- |"]
    for label in ("large", "small"):
        figure = signup[label]
        ms = figure["ms"]
        lines.append(
            f"| {figure['charge_points']:,} | {fmt(ms['median'], 'ms')} ({fmt(ms['min'], 'ms')}–"
            f"{fmt(ms['max'], 'ms')}, n={ms['runs']}) | {figure['queries']} | {figure['signed_up']:,} |"
        )
    return lines


def _frame_log(results: dict[str, Any]) -> list[str]:
    figure = results.get("frame_log")
    if not figure:
        return []
    per = figure["kib_per_charger"]
    return [
        f"PowerBank also keeps the last {figure['frames_per_charger']} OCPP frames of every charger in memory "
        f"(`powerbank/services/frame_log.py`). Once full, that is {fmt(per, 'KiB')} per charger (tracemalloc, "
        f"Heartbeat and MeterValues traffic), {fmt(per * 10000, 'MiB')} for 10,000 chargers: it fills "
        "after about 100 frames per charger, i.e. minutes after the runs above end, so add it to their RSS.",
        "",
    ]


def _argon2(results: dict[str, Any]) -> list[str]:
    argon2 = results.get("argon2", {})
    lines = ["| argon2id cost | parameters | one verification, wall | CPU |", "| --- | --- | --- | --- |"]
    for name in ("production", "light"):
        if name in argon2:
            figure = argon2[name]
            lines.append(
                f"| {name} | `{figure['params']}` | {fmt(figure['wall_ms'], 'ms')} | {fmt(figure['cpu_ms'], 'ms')} |"
            )
    production = results.get("production_hash")
    if production:
        lines += [
            "",
            "Connecting with the production cost (one run each; connect only):",
            "",
            "| server | chargers | time until all booted | boots per second | failures | server CPU per connection |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for kind in (POWERBANK, BASELINE):
            run = production.get(kind, {})
            connect = run.get("connect", {})
            lines.append(
                f"| {kind} | {run.get('chargers', 0):,} | {fmt(connect.get('seconds'), 's')} | "
                f"{fmt(connect.get('per_second'), '/s')} | {connect.get('failed', '–')} | "
                f"{fmt(connect.get('server_cpu_ms_per_connection'), 'ms')} |"
            )
    return lines


def render(results: dict[str, Any]) -> str:
    """Return RESULTS.md for some results."""
    if "network" not in results:
        # The cluster benchmark alone, with no results of bench.run to add to.
        return "\n".join(
            [
                "# PowerBank benchmarks",
                "",
                "## Targets",
                "",
                *targets(results),
                "",
                *_cluster(results),
                *_delivery(results),
                *_node(results),
            ]
        )
    machine = results["machine"]
    settings = results["settings"]
    lines = [
        "# PowerBank benchmarks",
        "",
        f"Generated by `{'make bench-quick' if results['mode'] == 'quick' else 'make bench'}` "
        f"(`python -m bench.run{' --quick' if results['mode'] == 'quick' else ''}`) on {machine['date']}, "
        f"commit `{machine['commit']}`"
        + (f" plus {machine['uncommitted_files']} uncommitted files" if machine.get("uncommitted_files") else "")
        + f", in {results.get('duration_s', 0) / 60:.0f} min. Raw figures: "
        "[results.json](results.json).",
        "",
        f"Machine: {machine['cores']} cores ({machine['cpu_model']}), {machine['memory_gib']} GiB memory, "
        f"Python {machine['python']}, {machine['platform']}. Server, load generator and probe share it.",
        "",
        f"Each network figure is the median of the runs per size and server ({settings['repeats']} up to 1,000 "
        f"chargers, {settings.get('large_repeats', settings['repeats'])} from 5,000, "
        f"{settings.get('huge_repeats', settings['repeats'])} from 10,000: a PowerBank run there takes minutes; range "
        "and run count in brackets), runs alternating between the baseline and PowerBank, each against a fresh "
        "server process "
        "(PowerBank: `powerbank serve` on a fresh SQLite database). The baseline is `bench/baseline_server.py`: "
        "bare `websockets`, the `ocpp` library's ChargePoint handlers, argon2 Basic auth, no database, and a naive "
        f"`asyncio.gather` of `call()` per charger. Sustained load: {settings['sustain_s']:.0f} s with every charger "
        f"sending a Heartbeat and, half an interval later, MeterValues every {settings['interval_s']:.0f} s.",
        "",
        *[f"Note: {note}" for note in results.get("notes", [])],
        "",
        "## Targets",
        "",
        *targets(results),
        "",
        "## 1. Connections",
        "",
        "Chargers connect (HTTP Basic auth, subprotocol ocpp1.6) at most 256 handshakes at a time and send a "
        "BootNotification; the time runs from the first connection attempt to the last boot accepted. RSS is "
        "VmRSS of the server process before and after. These runs store the chargers' password with a light "
        "argon2id cost (below), so the figures show the server rather than the password hash.",
        "",
        *_network_section(results, "connect"),
        "",
        *_frame_log(results),
        "### Password verification cost",
        "",
        *_argon2(results),
        "",
        "## 2. Sustained load",
        "",
        "Latency is from the frame sent to its reply received, as the load generator sees it (it includes the "
        "generator's own scheduling). Loop lag is measured from outside: websocket ping → pong round trips every "
        "100 ms on an idle, authenticated connection, answered by the server's websocket layer on its event loop.",
        "",
        *_network_section(results, "sustain"),
        "",
        "## 3. Activation fan-out",
        "",
        "Right after every charger has booted (and, for PowerBank, answered the capability probe; every charger "
        "is signed up in DK2), before the sustained load, one activation is triggered: "
        "`POST /api/v1/activations` with a write token for PowerBank, `GET /bench/fanout` for the baseline. "
        "Received times are taken by the load generator when it reads each SetChargingProfile; answered times "
        "come from the server's own record (PowerBank: the activation's dispatches; baseline: its fan-out record).",
        "",
        *_network_section(results, "fanout"),
        "",
        "## 4. Charge points tab",
        "",
        "In-process with the Quart test client, logged in as an Operator Admin; server time is the whole request "
        "inside the process (routing, queries, template), after one warm-up request.",
        "",
        *_pages(results),
        "",
        "## 5. Bulk sign-up",
        "",
        "`enrollment.bulk_sign_up(..., sign_up_all=True)` on a team of compatible charge points in DK1, GB, IE and "
        "SE (with Facility IDs), including the commit; fresh database per run.",
        "",
        *_signup(results),
        "",
        *_cluster(results),
        *_delivery(results),
        *_node(results),
    ]
    if ANALYSIS_PATH.exists():
        lines += [ANALYSIS_PATH.read_text().rstrip(), ""]
    return "\n".join(lines)


def write_report(results: dict[str, Any], path: Path) -> None:
    """Write RESULTS.md."""
    path.write_text(render(results))


def record_section(
    name: str,
    figures: dict[str, Any],
    results_path: Path,
    report_path: Path,
    carry: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
) -> None:
    """Put one benchmark's figures in results.json under ``name``, the other sections kept as they
    were written, and write RESULTS.md again. ``carry(previous, figures)`` may first take what the
    figures lack from the section's previous figures."""
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if carry is not None:
        carry(results.get(name) or {}, figures)
    results[name] = figures
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=1) + "\n")
    write_report(results, report_path)


VERDICT_WORDS = {True: "PASS", False: "MISS", None: "NOT MEASURED"}


def announce(
    title: str,
    verdicts: Iterable[tuple[str, str, bool | None]],
    word: Callable[[str, bool | None], str] = lambda measured, verdict: VERDICT_WORDS[verdict],
) -> None:
    """Print a benchmark's targets, each with PASS or MISS (or why it was not measured)."""
    print(f"[bench] {title}:", flush=True)
    for target, measured, verdict in verdicts:
        print(f"[bench]   {word(measured, verdict)}: {target}: {measured}", flush=True)
