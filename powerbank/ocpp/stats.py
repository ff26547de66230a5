"""What the OCPP and dispatch hot paths count, as plain numbers (``/metrics`` publishes them).

A charger's message costs a dictionary increment here, and an answer's latency a bisect and two
additions: no lock, no label lookup, no object made per message. The event loop is the only
writer; ``powerbank/runtime/metrics.py`` reads these when Prometheus scrapes, and turns them into
its text format. They are per process (a node), like the connections they count.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

# Seconds: from a millisecond (an answer on a quiet hub) to a minute (a call that timed out).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    30.0,
    60.0,
)
# Items in one database write batch (reports.MAX_BATCH is 2000).
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000)
# Activations whose fan-out figures are kept (labelled by activation id, so the set stays small).
ACTIVATIONS_KEPT = 20


class Histogram:
    """Counts of observed values per bucket (upper bounds, the last one +Inf), their sum and count."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Return Prometheus's (le, cumulative count) pairs, +Inf last."""
        pairs: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            pairs.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return pairs


class Histograms(dict[str, Histogram]):
    """One histogram per label value, made on first use."""

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        super().__init__()
        self.bounds = tuple(bounds)

    def __missing__(self, key: str) -> Histogram:
        histogram = self[key] = Histogram(self.bounds)
        return histogram


@dataclass
class FanoutFigures:
    """One activation's fan-out: chargers answered, and seconds from its trigger to their answers."""

    answers: int
    median_s: float
    last_s: float
    queued_s: float


@dataclass
class OcppStats:
    """The process's counts (one instance, ``STATS``)."""

    # (direction "in"/"out", kind "call"/"result"/"error", action: a call's, or the call answered; "" unknown)
    messages: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # Seconds from a charger's call arriving to the hub's answer being queued, per action.
    reply_seconds: Histograms = field(default_factory=Histograms)
    # Seconds from an activation's trigger to each charger's answer, every fan-out together.
    fanout_answer_seconds: Histogram = field(default_factory=Histogram)
    # The last activations' fan-outs, by activation id (oldest first).
    activations: OrderedDict[str, FanoutFigures] = field(default_factory=OrderedDict)
    # What chargers answered fan-out frames (Accepted, Rejected, timeout, offline, error…).
    dispatch_statuses: Counter[str] = field(default_factory=Counter)
    # Database write batches of reports, boots and capabilities: items per batch and seconds per write.
    batch_sizes: Histograms = field(default_factory=lambda: Histograms(BATCH_SIZE_BUCKETS))
    batch_seconds: Histograms = field(default_factory=Histograms)
    batch_failures: Counter[str] = field(default_factory=Counter)

    def fanout_done(self, activation: str, queued_s: float, answer_delays_s: list[float]) -> None:
        """Keep one activation's fan-out figures (the latest ``ACTIVATIONS_KEPT``)."""
        delays = sorted(answer_delays_s)
        figures = FanoutFigures(
            answers=len(delays),
            median_s=delays[len(delays) // 2] if delays else 0.0,
            last_s=delays[-1] if delays else 0.0,
            queued_s=queued_s,
        )
        self.activations.pop(activation, None)
        self.activations[activation] = figures
        while len(self.activations) > ACTIVATIONS_KEPT:
            self.activations.popitem(last=False)


STATS = OcppStats()
