"""Keep Python's cyclic garbage collector from stalling the event loop of a busy hub.

Each connected charger holds a few hundred objects the collector tracks (Hypercorn's protocol,
the websocket, its tasks, queues and futures, our connection). A full collection walks all of
them: about 1 s with 5,000 chargers on the benchmark machine, and under sustained load it came
every few seconds, holding every socket for that second (bench/RESULTS.md). Here the objects
that have lived a while are frozen (``gc.freeze``: moved where the collector never looks), so a
full collection only walks what is young. Frozen garbage that forms reference cycles (a charger
that disconnected) is not collected while frozen, so every ``full_every_s`` everything is
unfrozen and collected once, one pause instead of one every few seconds (2.1 s with 10,000
chargers connected, measured), and never while ``postpone()`` says the hub is busy (an
activation is active: its fan-out and releases must not wait for the collector).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

logger = logging.getLogger("powerbank.gc")

# How often what has lived a while is frozen, and how often everything is collected once.
FREEZE_EVERY_S = 1.0
FULL_EVERY_S = 600.0
# A full collection at least this long is logged as a warning.
LONG_PAUSE_S = 0.25


class GcPolicy:
    """Freeze long-lived objects regularly; collect everything once in a while."""

    def __init__(self, freeze_every_s: float = FREEZE_EVERY_S, full_every_s: float = FULL_EVERY_S,
                 postpone: Callable[[], bool] = lambda: False) -> None:
        self.freeze_every_s = freeze_every_s
        self.full_every_s = full_every_s
        self.postpone = postpone
        self.full_collections = 0
        self.longest_full_s = 0.0

    def collect_everything(self) -> None:
        """Unfreeze, collect all generations, and freeze what survived."""
        started = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        took = time.perf_counter() - started
        self.full_collections += 1
        self.longest_full_s = max(self.longest_full_s, took)
        # A long one held every socket meanwhile: worth a warning (the benchmark reads it from the log).
        logger.log(logging.WARNING if took >= LONG_PAUSE_S else logging.INFO,
                   "full garbage collection took %.3f s; %d objects frozen", took, gc.get_freeze_count())

    async def run(self) -> None:
        """Run until cancelled (while the app serves)."""
        self.collect_everything()
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(self.freeze_every_s)
            if time.monotonic() - last_full >= self.full_every_s and not self.postpone():
                self.collect_everything()
                last_full = time.monotonic()
            else:
                # Young garbage is collected first (cheap: young objects only), so little is frozen with it.
                gc.collect(1)
                gc.freeze()
