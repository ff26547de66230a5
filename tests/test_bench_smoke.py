"""The benchmark harness still runs end to end and produces its figures (a tiny run, no timing targets)."""

from __future__ import annotations

from pathlib import Path

from bench.report import render
from bench.run import BASELINE, POWERBANK, Settings, run_all

CHARGERS = 20


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
