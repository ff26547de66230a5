"""Keep Python's cyclic garbage collector from stalling the event loop of a busy hub.

Each connected charger holds a few hundred objects the collector tracks (Hypercorn's protocol,
the websocket, its tasks, queues and futures, our connection). A full collection walks all of
them: about 1 s with 5,000 chargers on the benchmark machine, and under sustained load it came
every few seconds, holding every socket for that second (bench/RESULTS.md). Here the objects
that have lived a while are frozen (``gc.freeze``: moved where the collector never looks), so a
full collection only walks what is young.

Frozen garbage that forms reference cycles (a charger that disconnected) is not collected while
frozen, so from time to time everything is unfrozen and collected once: one pause (2.1 s with
10,000 chargers connected, measured) instead of one every few seconds. That pause is only worth
taking when there is something to reclaim: it runs when the process's memory has grown by a
quarter since the last one, at most every ``full_every_s``, and never while ``postpone()`` says
the hub is busy (an activation may be active: its fan-out and releases must not wait for the
collector). A hub whose chargers stay connected does not grow, so it does not pause: under a
sustained 1,000 calls/s the frozen objects stayed within 1 % for two minutes (measured with 5,000
chargers). Where the memory cannot be read (no /proc), the full collection follows the clock.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Callable

logger = logging.getLogger("powerbank.gc")

# How often what has lived a while is frozen, and the shortest time between full collections.
FREEZE_EVERY_S = 1.0
FULL_EVERY_S = 600.0
# Growth of the resident memory since the last full collection that makes the next one due.
FULL_AFTER_GROWTH = 0.25
# A full collection at least this long is logged as a warning.
LONG_PAUSE_S = 0.25

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """Return this process's resident memory (Linux /proc), or None where it cannot be read cheaply."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


class GcPolicy:
    """Freeze long-lived objects regularly; collect everything when memory grew, rarely."""

    def __init__(
        self,
        freeze_every_s: float = FREEZE_EVERY_S,
        full_every_s: float = FULL_EVERY_S,
        postpone: Callable[[], bool] = lambda: False,
        growth: float = FULL_AFTER_GROWTH,
        memory: Callable[[], int | None] = resident_bytes,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.freeze_every_s = freeze_every_s
        self.full_every_s = full_every_s
        self.postpone = postpone
        self.growth = growth
        self.memory = memory
        self.clock = clock
        self.full_collections = 0
        self.longest_full_s = 0.0
        self._memory_after_full: int | None = None
        self._last_full_at: float | None = None

    def collect_everything(self) -> None:
        """Unfreeze, collect all generations, and freeze what survived."""
        started = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        took = time.perf_counter() - started
        self.full_collections += 1
        self.longest_full_s = max(self.longest_full_s, took)
        self._memory_after_full = self.memory()
        # A long one held every socket meanwhile: worth a warning (the benchmark reads it from the log).
        # (Not gc.get_freeze_count(): it walks every frozen object, a pause of its own.)
        logger.log(
            logging.WARNING if took >= LONG_PAUSE_S else logging.INFO, "full garbage collection took %.3f s", took
        )

    def full_collection_due(self, since_last_s: float) -> bool:
        """Whether everything should be collected now (the hub's business aside)."""
        if since_last_s < self.full_every_s:
            return False
        if self.growth <= 0:
            return True
        now, before = self.memory(), self._memory_after_full
        if now is None or before is None:
            return True
        return now >= before * (1 + self.growth)

    def step(self) -> None:
        """Do one freeze period's work: collect everything when due (always at the first), else freeze."""
        if self._full_collection_now():
            self.collect_everything()
            self._last_full_at = self.clock()
        else:
            # Young garbage is collected first (cheap: young objects only), so little is frozen with it.
            gc.collect(1)
            gc.freeze()

    def _full_collection_now(self) -> bool:
        # The hub's start is a full collection's moment whatever its business: nothing is frozen yet.
        if self._last_full_at is None:
            return True
        return self.full_collection_due(self.clock() - self._last_full_at) and not self.postpone()

    async def run(self) -> None:
        """Run until cancelled (while the app serves)."""
        while True:
            self.step()
            await asyncio.sleep(self.freeze_every_s)
