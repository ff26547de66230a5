"""`/metrics` in the Prometheus text format, for a token (``POWERBANK_METRICS_TOKEN``).

What a node publishes: chargers connected per OCPP version; OCPP messages in and out per kind and
action; how long the hub takes to answer a charger's call; how long an activation's fan-out takes
to be answered (every fan-out, and each of the last activations); what chargers answered; database
write batches (items, seconds); how late the event loop runs; garbage collection pauses; and the
process's own figures (CPU, memory, open files).

The hot paths only count (``powerbank/ocpp/stats.py``); everything is read and formatted here when
Prometheus scrapes. Without a token configured the endpoint does not exist (404); a request
without the right ``Authorization: Bearer`` token is answered 401.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from quart import Quart, Response, request

from powerbank.ocpp.registry import find_registry
from powerbank.ocpp.stats import STATS, Histogram, Histograms

# How often the event loop's lateness is measured.
LOOP_LAG_EVERY_S = 0.5
# Garbage collection pauses: from 0.1 ms (a young collection) to seconds (a full one, many chargers).
GC_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class RuntimeStats:
    """The event loop's lateness and the collector's pauses in this process (one instance, ``RUNTIME``)."""

    def __init__(self) -> None:
        self.loop_lag = Histogram()
        self.last_loop_lag_s = 0.0
        self.gc_pauses = Histograms(GC_BUCKETS)
        self._gc_started: float | None = None
        self._watching_gc = False

    def watch_gc(self) -> None:
        """Time every garbage collection of this process (automatic ones and the GC policy's)."""
        if not self._watching_gc:
            gc.callbacks.append(self._on_gc)
            self._watching_gc = True

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self.gc_pauses[str(info.get("generation", ""))].observe(time.perf_counter() - self._gc_started)
            self._gc_started = None

    async def measure_loop_lag(self, every_s: float = LOOP_LAG_EVERY_S) -> None:
        """Sleep ``every_s`` again and again, and note how much later than asked the loop woke up."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + every_s
            await asyncio.sleep(every_s)
            self.last_loop_lag_s = max(0.0, loop.time() - asked)
            self.loop_lag.observe(self.last_loop_lag_s)


RUNTIME = RuntimeStats()


def _histogram(
    name: str, documentation: str, labels: list[str], histograms: Iterable[tuple[list[str], Histogram]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for values, histogram in histograms:
        family.add_metric(values, histogram.cumulative(), histogram.sum)
    return family


class PowerBankCollector(Collector):
    """Read the node's counts when scraped."""

    def __init__(self, app: Quart) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        connected = GaugeMetricFamily(
            "powerbank_chargers_connected", "Chargers connected to this node, per OCPP version", labels=["protocol"]
        )
        registry = find_registry(self.app)
        protocols = Counter(c.protocol for c in registry.connections() if not c.closed) if registry else Counter()
        for protocol in ("ocpp1.6", "ocpp2.0.1"):
            protocols.setdefault(protocol, 0)
        for protocol, count in sorted(protocols.items()):
            connected.add_metric([protocol], count)
        yield connected

        messages = CounterMetricFamily(
            "powerbank_ocpp_messages",
            "OCPP messages received (in) and sent (out): calls per action, answers (per action answered, when known)",
            labels=["direction", "kind", "action"],
        )
        for (direction, kind, action), count in sorted(STATS.messages.items()):
            messages.add_metric([direction, kind, action], count)
        yield messages

        yield _histogram(
            "powerbank_ocpp_reply_seconds",
            "Seconds from a charger's call arriving to the hub's answer, per action",
            ["action"],
            (([action], histogram) for action, histogram in sorted(STATS.reply_seconds.items())),
        )
        yield _histogram(
            "powerbank_fanout_answer_seconds",
            "Seconds from an activation's trigger to each charger's answer to its frame (every fan-out)",
            [],
            [([], STATS.fanout_answer_seconds)],
        )
        per_activation = GaugeMetricFamily(
            "powerbank_activation_fanout_seconds",
            "The last activations' fan-outs: seconds from the trigger to all frames queued, "
            "to the median answer and to the last answer",
            labels=["activation", "stage"],
        )
        answered = GaugeMetricFamily(
            "powerbank_activation_fanout_answers",
            "Chargers that answered each of the last activations' fan-outs",
            labels=["activation"],
        )
        for activation, figures in STATS.activations.items():
            per_activation.add_metric([activation, "queued"], figures.queued_s)
            per_activation.add_metric([activation, "median_answer"], figures.median_s)
            per_activation.add_metric([activation, "last_answer"], figures.last_s)
            answered.add_metric([activation], figures.answers)
        yield per_activation
        yield answered

        statuses = CounterMetricFamily(
            "powerbank_dispatch_answers",
            "What chargers answered activation frames (Accepted, Rejected, timeout, offline, error…)",
            labels=["status"],
        )
        for status, count in sorted(STATS.dispatch_statuses.items()):
            statuses.add_metric([status], count)
        yield statuses

        yield _histogram(
            "powerbank_db_write_batch_items",
            "Items stored in one database write batch (group commit), per kind",
            ["what"],
            (([what], histogram) for what, histogram in sorted(STATS.batch_sizes.items())),
        )
        yield _histogram(
            "powerbank_db_write_batch_seconds",
            "Seconds to store one database write batch, waiting for the write lock included",
            ["what"],
            (([what], histogram) for what, histogram in sorted(STATS.batch_seconds.items())),
        )
        failures = CounterMetricFamily(
            "powerbank_db_write_batch_failures",
            "Write batches that failed together and were stored one item at a time",
            labels=["what"],
        )
        for what, count in sorted(STATS.batch_failures.items()):
            failures.add_metric([what], count)
        yield failures

        yield _histogram(
            "powerbank_event_loop_lag_seconds",
            f"How much later than asked the event loop woke a task sleeping {LOOP_LAG_EVERY_S:g} s",
            [],
            [([], RUNTIME.loop_lag)],
        )
        yield GaugeMetricFamily(
            "powerbank_event_loop_last_lag_seconds",
            "The event loop's lateness at the last measurement",
            value=RUNTIME.last_loop_lag_s,
        )
        yield _histogram(
            "powerbank_gc_pause_seconds",
            "Garbage collection pauses, per generation collected",
            ["generation"],
            (([generation], histogram) for generation, histogram in sorted(RUNTIME.gc_pauses.items())),
        )


def metrics_registry(app: Quart) -> CollectorRegistry:
    """Return a Prometheus registry of this app's figures and the process's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PowerBankCollector(app))
    ProcessCollector(registry=registry)
    return registry


def _authorised(token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def install_metrics(app: Quart) -> None:
    """Serve ``/metrics``, and measure the event loop and the collector while the app serves."""
    registry = metrics_registry(app)
    lag_task: list[asyncio.Task[None]] = []

    async def metrics() -> Response:
        """The node's figures for Prometheus (a bearer token; 404 when no token is configured)."""
        token = app.config.get("METRICS_TOKEN")
        if not token:
            return Response("Not found\n", status=404, content_type="text/plain")
        if not _authorised(str(token)):
            return Response(
                "A bearer token is needed\n",
                status=401,
                content_type="text/plain",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return Response(
            generate_latest(registry), content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"}
        )

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])

    @app.before_serving
    async def start_measuring() -> None:
        RUNTIME.watch_gc()
        lag_task.append(asyncio.create_task(RUNTIME.measure_loop_lag(), name="event loop lag"))

    @app.after_serving
    async def stop_measuring() -> None:
        while lag_task:
            lag_task.pop().cancel()
