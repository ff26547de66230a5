"""What a reader of the benchmark sees: RESULTS.md says what results.json holds, each target with its verdict.

And the harness still runs end to end on a tiny fleet (no timing targets: figures are the benchmark's job),
the cluster benchmark too, on PostgreSQL (make test-pg).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench import cluster_bench
from bench.cluster_bench import ClusterSettings, run_cluster
from bench.delivery_bench import DeliverySettings, run_delivery
from bench.node_bench import NodeSettings, run_node
from bench.report import ALONE, CLUSTER, cluster_verdicts, delivery_verdicts, node_verdicts, render, targets
from bench.run import BASELINE, POWERBANK, Settings, main, run_all
from tests import pg_server, postgres

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
CHARGERS = 20


def test_the_published_results_md_is_what_results_json_renders_to(tmp_path: Path) -> None:
    report = tmp_path / "RESULTS.md"
    assert main(["--report-only", "--results", str(BENCH_DIR / "results.json"), "--report", str(report)]) == 0
    # When this fails, RESULTS.md is stale: `python -m bench.run --report-only` writes it again.
    assert report.read_text() == (BENCH_DIR / "RESULTS.md").read_text()


def _run(fanout_last_s: float, cpu_ms_per_call: float) -> dict[str, Any]:
    """Return one run's figures (100 chargers), as bench.run records them."""
    return {
        "connect": {"booted": 100, "rss_after_kib": 100 * 1024},
        "rss_end_kib": 110 * 1024,
        "sustain": {"sent": 1000, "server_cpu_ms_per_call": cpu_ms_per_call},
        "fanout": {"received_last_s": fanout_last_s, "answered_95_s": 1.5},
    }


# A small run of 100 chargers where PowerBank meets every target it can at that size.
SMALL: dict[str, Any] = {
    "settings": {"sustain_s": 10.0},
    "network": {
        POWERBANK: {"100": [_run(0.5, cpu_ms_per_call=0.27)]},
        BASELINE: {"100": [_run(0.9, cpu_ms_per_call=0.25)]},
    },
    "pages": {
        "charge_points": 5000,
        "constant_queries": True,
        "large": {case: {"ms": {"median": 14.6}} for case in ("first_page", "search", "filter_country")},
    },
    "bulk_signup": {"charge_points": 2000, "large": {"ms": {"median": 63.6}, "queries": 8}},
}


def verdicts(results: dict[str, Any]) -> dict[str, str]:
    """Return each target of the report's Targets table with its verdict."""
    rows = [line.strip("|").split(" | ") for line in targets(results)[2:]]
    return {row[0].strip(): row[-1].strip() for row in rows}


def test_a_small_run_that_meets_its_targets_says_so_and_what_it_could_not_measure() -> None:
    assert verdicts(SMALL) == {
        "100 chargers connected in one process, RSS ≤ 1 GB": "met",
        "sustained 1,000 incoming calls/s, p99 ≤ 50 ms": "not measured",
        "fan-out to 100: last frame ≤ 1 s": "met",
        "fan-out to 100: 95 % answered ≤ 3 s": "met",
        "fan-out at least as fast as the baseline's": "met",
        "per-message cost within 1.1× of the baseline's at every size": "met",
        "5,000 charge point tab ≤ 100 ms, constant queries": "met",
        "2,000 sign-ups in one save ≤ 1 s": "met",
    }


def _changed(path: str, value: Any) -> dict[str, Any]:
    """Return SMALL with one figure changed, named by its path (``network.powerbank.100.fanout.received_last_s``)."""
    results = copy.deepcopy(SMALL)
    *parents, key = path.split(".")
    node: Any = results
    for part in parents:
        node = node[part]
        if isinstance(node, list):  # The runs of one size: there is one.
            node = node[0]
    node[key] = value
    return results


@pytest.mark.parametrize(
    ("path", "value", "target", "verdict"),
    [
        (
            "network.powerbank.100.connect.booted",
            99,
            "100 chargers connected in one process, RSS ≤ 1 GB",
            "**missed** (not all booted)",
        ),
        (
            "network.powerbank.100.rss_end_kib",
            1100 * 1024,
            "100 chargers connected in one process, RSS ≤ 1 GB",
            "**missed**",
        ),
        ("network.powerbank.100.fanout.received_last_s", 1.2, "fan-out to 100: last frame ≤ 1 s", "**missed**"),
        ("network.powerbank.100.fanout.received_last_s", None, "fan-out to 100: last frame ≤ 1 s", "not measured"),
        ("network.powerbank.100.fanout.answered_95_s", 3.5, "fan-out to 100: 95 % answered ≤ 3 s", "**missed**"),
        (
            "network.baseline.100.fanout.received_last_s",
            0.4,
            "fan-out at least as fast as the baseline's",
            "**missed**",
        ),
        (
            # 1.2× the baseline's 0.25 ms.
            "network.powerbank.100.sustain.server_cpu_ms_per_call",
            0.3,
            "per-message cost within 1.1× of the baseline's at every size",
            "**missed**",
        ),
        ("pages.constant_queries", False, "5,000 charge point tab ≤ 100 ms, constant queries", "**missed**"),
        ("bulk_signup.large.ms.median", 1200, "2,000 sign-ups in one save ≤ 1 s", "**missed**"),
    ],
)
def test_a_target_missed_is_shown_as_missed(path: str, value: Any, target: str, verdict: str) -> None:
    assert verdicts(_changed(path, value))[target] == verdict


async def test_a_tiny_benchmark_run_produces_every_figure(tmp_path: Path) -> None:
    settings = Settings(
        sizes=[CHARGERS],
        repeats=1,
        sustain_s=1,
        interval_s=0.5,
        pages_size=30,
        signup_size=12,
        in_process_repeats=1,
        argon2_repeats=1,
        results_path=tmp_path / "results.json",
        report_path=tmp_path / "RESULTS.md",
        mode="quick",
    )

    results = await run_all(settings)

    assert results["machine"]["cores"] >= 1
    assert results["argon2"]["production"]["wall_ms"] > results["argon2"]["light"]["wall_ms"] > 0
    for kind in (BASELINE, POWERBANK):
        (run,) = results["network"][kind][str(CHARGERS)]
        assert "error" not in run, run.get("error")
        assert run["connect"]["booted"] == CHARGERS
        assert run["connect"]["rss_after_kib"] > 0
        assert run["sustain"]["answered"] > 0
        assert run["sustain"]["p99_ms"] is not None
        assert run["sustain"]["loop_lag_samples"] > 0
    baseline_fanout = results["network"][BASELINE][str(CHARGERS)][0]["fanout"]
    assert baseline_fanout["received"] == CHARGERS
    assert baseline_fanout["answered_100_s"] is not None
    assert results["pages"]["large"]["first_page"]["queries"] > 0
    assert results["bulk_signup"]["large"]["signed_up"] == 12

    report = render(results)
    assert "## Targets" in report
    assert "| 20 | time until all booted |" in report
    # Every target the tiny run could judge carries a verdict a reader can act on.
    for target, verdict in verdicts(results).items():
        assert verdict in ("met", "not measured") or verdict.startswith("**missed**"), target


def _layout(nodes: int, fanout_last_s: float, cpu_ms_per_call: float) -> dict[str, Any]:
    """Return one run of the cluster benchmark (30 chargers), as bench.cluster_bench records it."""
    return {
        "nodes": nodes,
        "connect": {"booted": 30},
        "fanout": {"received": 30, "received_last_s": fanout_last_s},
        "sustain": {"server_cpu_ms_per_call": cpu_ms_per_call, "calls_per_node_per_s": 100.0},
    }


def _cluster(cluster_last_s: float, cluster_cpu_ms: float) -> dict[str, Any]:
    return {
        "settings": {"chargers": 30},
        "runs": {
            ALONE: [_layout(1, 0.5, 0.30)],
            CLUSTER: [_layout(3, cluster_last_s, cluster_cpu_ms)],
        },
    }


CLUSTER_FANOUT = "fan-out to 30 across 3 nodes on PostgreSQL: last frame ≤ 1.5 s and ≤ 1.3× one node's"
CLUSTER_COST = "node CPU per message among 3 nodes ≤ 1.2× alone"


@pytest.mark.parametrize(
    ("cluster_last_s", "cluster_cpu_ms", "fanout", "cost"),
    [
        (0.6, 0.33, "met", "met"),
        # Within 1.5 s but more than 1.3× one node's 0.5 s; CPU 1.3× alone's.
        (0.7, 0.39, "**missed**", "**missed**"),
    ],
)
def test_the_cluster_targets_are_judged_against_the_node_alone(
    cluster_last_s: float, cluster_cpu_ms: float, fanout: str, cost: str
) -> None:
    results = {**SMALL, "cluster": _cluster(cluster_last_s, cluster_cpu_ms)}
    found = verdicts(results)
    assert (found[CLUSTER_FANOUT], found[CLUSTER_COST]) == (fanout, cost)


def test_a_skipped_cluster_benchmark_says_so() -> None:
    results = {**SMALL, "cluster": {"skipped": "PostgreSQL is not installed"}}
    found = verdicts(results)
    assert found["fan-out to the fleet across 3 nodes on PostgreSQL: last frame ≤ 1.5 s and ≤ 1.3× one node's"] == (
        "not measured"
    )
    assert "**Not measured**: PostgreSQL is not installed." in render({"cluster": results["cluster"]})


@pytest.mark.postgres_only
async def test_a_tiny_cluster_benchmark_run_produces_every_figure() -> None:
    chargers = 12
    settings = ClusterSettings(chargers=chargers, repeats=1, sustain_s=1, interval_s=0.5, idle_s=0.5, mode="quick")

    cluster = await run_cluster(settings, postgres.ADMIN_URL)

    for layout, nodes in ((ALONE, 1), (CLUSTER, 3)):
        (run,) = cluster["runs"][layout]
        assert "error" not in run, run.get("error")
        assert run["nodes"] == nodes
        assert run["connect"]["booted"] == chargers
        assert run["database_connections"] >= nodes
        assert run["fanout"]["received"] == chargers
        assert run["fanout"]["received_last_s"] is not None
        assert run["sustain"]["answered"] > 0
        assert run["sustain"]["server_cpu_ms_per_call"] is not None
        assert run["sustain"]["db_commits_per_s"] > 0
        assert len(run["sustain"]["node_cpu_s_each"]) == nodes
    # Both targets are judged (met or missed: timing is not this test's business).
    assert all(met is not None for _target, _measured, met in cluster_verdicts(cluster))
    report = render({"cluster": cluster})
    assert "## 6. Several nodes on one PostgreSQL" in report
    assert "| fan-out: trigger → last SetChargingProfile received |" in report


def test_without_postgresql_the_cluster_benchmark_says_loudly_it_was_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_postgresql() -> Path:
        raise SystemExit("PostgreSQL is not installed: `apt-get install postgresql`")

    monkeypatch.delenv(cluster_bench.PG_URL_VARIABLE, raising=False)
    monkeypatch.setattr(pg_server, "_bindir", no_postgresql)
    results, report = tmp_path / "results.json", tmp_path / "RESULTS.md"

    assert cluster_bench.main(["--results", str(results), "--report", str(report)]) == 0

    assert "CLUSTER BENCHMARK SKIPPED" in capsys.readouterr().err
    assert "skipped" in json.loads(results.read_text())["cluster"]
    assert "**Not measured**: PostgreSQL is not installed" in report.read_text()


async def test_a_tiny_delivery_benchmark_run_produces_every_figure() -> None:
    settings = DeliverySettings(
        steps=[5, 10], step_s=2, rest_s=0, record_chargers=12, window_s=30, repeats=1, mode="quick"
    )

    found = await run_delivery(settings)

    ramp, record = found["ramp"], found["record"]
    assert "error" not in ramp, ramp.get("error")
    assert ramp["fanout"]["received"] == 10
    assert [step["chargers"] for step in ramp["steps"]] == [5, 10]
    for step in ramp["steps"]:
        # Every report sent was stored as one row, with the activation keeping them all (none pruned).
        assert step["sent"] > 0
        assert step["rows_stored"] == step["sent"]
        assert step["lost"] == 0
        assert step["p99_ms"] is not None
        assert step["bytes_per_sample"] is not None
    if any(step["holds"] for step in ramp["steps"]):
        # The largest step that held, again while the activation's response is read over the API.
        assert ramp["while_response_read"]["request"]["status"] == 200
    assert "error" not in record, record.get("error")
    # 12 samples before the trigger, one a second through the window and the minute after it.
    assert record["samples"] == 12 * (12 + 30 + 60)
    assert record["storage"]["evidence_rows"] > 0
    for source in ("meter_samples", "evidence"):
        assert record[source]["delivery_of_ms"]["median"] > 0
        assert record[source]["parts_ms"]["load_samples"] > 0
        assert record[source]["page"]["queries"] > 0
        assert sum(record[source]["verdicts"].values()) == 12
    # Judged where a limit is set (met or missed: timing is not this test's business); storage is a figure.
    judged = [met for _target, _measured, met in delivery_verdicts(found)]
    assert judged[2] is not None and judged[3] is not None
    report = render({"delivery": found})
    assert "## 7. Proof of delivery: reporting every second, and the record" in report
    assert "| p99 frame sent → reply received |" in report
    assert "| `delivery_of`, whole |" in report


def _node(
    rss_kib: float = 700 * 1024,
    p99_ms: float = 30.0,
    storm_s: tuple[float, float] = (6.0, 5.0),
    storm_failed: int = 0,
    profile_max_s: float = 0.8,
    profile_never: int = 0,
    fanout_last_s: tuple[float, float] = (1.05, 1.0),
    loaded_last_s: tuple[float, float] = (1.5, 1.4),
    answered_95_s: float = 1.2,
) -> dict[str, Any]:
    """Return the figures of bench.node_bench (100 chargers in each part), made up."""

    def fanout(last: tuple[float, float], kind: int) -> dict[str, Any]:
        return {"targets": 100, "received": 100, "received_last_s": last[kind], "answered_95_s": answered_95_s}

    def storm(seconds: float, failed: int) -> dict[str, Any]:
        return {"storm": {"seconds": seconds, "failed_attempts": failed, "never_connected": 0, "booted": 100}}

    profile = {"max_s": profile_max_s, "p95_s": 0.5, "over_1s": int(profile_max_s > 1), "never": profile_never}
    run = {
        POWERBANK: {"idle": fanout(fanout_last_s, 0), "loaded": fanout(loaded_last_s, 0)},
        BASELINE: {"idle": fanout(fanout_last_s, 1), "loaded": fanout(loaded_last_s, 1)},
    }
    return {
        "settings": {"hold_chargers": 100},
        "hold": {
            "chargers": 100,
            "connect": {"booted": 100},
            "rss_end_kib": rss_kib - 16 * 100,
            "frame_log_full_kib": 16 * 100,
            "rss_with_full_frame_log_kib": rss_kib,
            "sustain": {"p99_ms": p99_ms, "unanswered": 0, "calls_per_s": 20.0, "server_cpu_pct": 10.0},
        },
        "storm": {
            "chargers": 100,
            "runs": {
                POWERBANK: [{**storm(storm_s[0], storm_failed), "boot_to_profile": profile}],
                BASELINE: [storm(storm_s[1], 0)],
            },
        },
        "fanout": {"chargers": 100, "runs": [run, copy.deepcopy(run)]},
    }


NODE_TARGETS = (
    "100 chargers on one node: RSS with a full frame log ≤ 1 GiB, sustained load answered at p99 ≤ 50 ms",
    "reconnect storm of 100: last boot accepted ≤ 1.5× the baseline's, none refused or failed",
    "storm during an activation: every charger's limit ≤ 1 s after its boot",
    "fan-out to 100: last frame ≤ 1.1× the floor's, idle and under load, every run",
    "fan-out to 100: 95 % answered ≤ 1.5 s, every run",
)


@pytest.mark.parametrize(
    ("changes", "missed"),
    [
        ({}, set()),
        ({"rss_kib": 1100 * 1024}, {0}),
        ({"p99_ms": 60.0}, {0}),
        # 1.6× the baseline's storm; a storm as fast, with one refused attempt.
        ({"storm_s": (8.0, 5.0)}, {1}),
        ({"storm_failed": 1}, {1}),
        ({"profile_max_s": 1.2}, {2}),
        ({"profile_never": 3}, {2}),
        # Missed in one run under load only (1.2× the floor's), the other runs within 1.1×.
        ({"loaded_last_s": (1.68, 1.4)}, {3}),
        ({"answered_95_s": 1.6}, {4}),
    ],
)
def test_the_one_node_targets_are_judged_against_the_baselines_of_the_same_run(
    changes: dict[str, Any], missed: set[int]
) -> None:
    results = {**SMALL, "node": _node(**changes)}
    found = verdicts(results)
    assert {target: found[target] for target in NODE_TARGETS} == {
        target: "**missed**" if index in missed else "met" for index, target in enumerate(NODE_TARGETS)
    }


def test_a_fan_out_missed_in_one_run_of_two_is_missed() -> None:
    node = _node()
    node["fanout"]["runs"][1][POWERBANK]["idle"]["received_last_s"] = 1.2
    assert [met for _target, _measured, met in node_verdicts(node)][3] is False
    node["fanout"]["runs"][1][POWERBANK]["idle"]["received"] = 99
    node["fanout"]["runs"][1][POWERBANK]["idle"]["received_last_s"] = 1.0
    # Every run within 1.1×, but a charger never received its frame.
    assert [met for _target, _measured, met in node_verdicts(node)][3] is False


async def test_a_tiny_one_node_benchmark_run_produces_every_figure() -> None:
    settings = NodeSettings(
        hold_chargers=CHARGERS,
        storm_chargers=CHARGERS,
        storm_jitter_s=0.2,
        storm_timeout_s=30,
        profile_timeout_s=10,
        fanout_chargers=CHARGERS,
        fanout_repeats=1,
        sustain_s=1,
        interval_s=0.5,
        mode="quick",
    )

    node = await run_node(settings)

    hold = node["hold"]
    assert "error" not in hold, hold.get("error")
    assert hold["connect"]["booted"] == CHARGERS
    assert hold["sustain"]["answered"] > 0
    assert hold["rss_with_full_frame_log_kib"] > hold["rss_end_kib"] > 0
    for kind in (POWERBANK, BASELINE):
        (run,) = node["storm"]["runs"][kind]
        assert "error" not in run, run.get("error")
        assert run["storm"]["booted"] == CHARGERS
        assert run["storm"]["seconds"] is not None
    (powerbank_storm,) = node["storm"]["runs"][POWERBANK]
    # The activation running during the storm reached every charger that booted.
    assert powerbank_storm["boot_to_profile"]["received"] == CHARGERS
    assert powerbank_storm["boot_to_profile"]["never"] == 0
    (run,) = node["fanout"]["runs"]
    for kind in (POWERBANK, BASELINE):
        for phase in ("idle", "loaded"):
            assert "error" not in run[kind][phase], run[kind][phase].get("error")
            assert run[kind][phase]["received"] == run[kind][phase]["targets"] == CHARGERS
            assert run[kind][phase]["answered_95_s"] is not None
    assert run[POWERBANK]["loaded"]["sustain"]["answered"] > 0
    # Every target is judged (met or missed: timing is not this test's business).
    assert all(met is not None for _target, _measured, met in node_verdicts(node))
    report = render({"node": node})
    assert "## 8. One node at 20,000 chargers" in report
    assert "| first attempt → last BootNotification accepted |" in report
    assert "| 1 loaded | trigger → last SetChargingProfile received |" in report


def test_a_hold_short_of_twenty_thousand_is_projected_and_given_no_verdict() -> None:
    node = {
        "machine": {"open_files": 20_000},
        "hold": {
            "chargers": 19_000,
            "connect": {"booted": 19_000, "rss_per_connection_kib": 40.0},
            "rss_end_kib": 800 * 1024,
            "frame_log_full_kib": 19_000 * 3.0,
            "rss_with_full_frame_log_kib": 800 * 1024 + 19_000 * 3.0,
            "sustain": {"p99_ms": 30.0, "unanswered": 0, "calls_per_s": 3800, "server_cpu_pct": 90},
        },
    }
    target, measured, met = node_verdicts(node)[0]
    assert target.startswith("20,000 chargers on one node")
    # 800 MiB + 19,000 × 3 KiB of frame log, plus 1,000 more chargers at 43 KiB each.
    assert "allows 20,000 open files" in measured and "projected from 43.0 KiB per charger, 898 MiB" in measured
    assert met is None
