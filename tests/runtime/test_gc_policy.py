"""The garbage collection policy of the serving process: freeze what lives long, collect all rarely."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from powerbank.runtime.gc_policy import GcPolicy, resident_bytes


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_frozen_cycles_wait_for_the_full_collection() -> None:
    node = Node()
    ref = weakref.ref(node)
    gc.freeze()
    del node

    gc.collect()
    assert ref() is not None  # Frozen: the collector does not look at it, however often it runs.

    policy = GcPolicy()
    policy.collect_everything()
    assert ref() is None
    assert policy.full_collections == 1
    assert gc.get_freeze_count() > 0  # What survived is frozen again.


@asynccontextmanager
async def running(policy: GcPolicy) -> AsyncIterator[None]:
    """Run the policy's loop while the block runs (at most 10 s)."""
    task = asyncio.create_task(policy.run())
    try:
        async with asyncio.timeout(10):
            yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_the_policy_freezes_regularly_and_collects_everything_on_its_schedule() -> None:
    policy = GcPolicy(freeze_every_s=0.01, full_every_s=0.05, growth=0)
    async with running(policy):
        while policy.full_collections < 2:
            await asyncio.sleep(0.01)
    assert policy.longest_full_s > 0
    assert gc.get_freeze_count() > 0


def test_a_full_collection_is_due_only_once_memory_grew_and_not_too_soon() -> None:
    memory = 100_000_000
    policy = GcPolicy(full_every_s=600, growth=0.25, memory=lambda: memory)
    policy.collect_everything()  # Measures the memory it leaves: 100 MB.
    memory = 124_000_000
    assert not policy.full_collection_due(since_last_s=3600)  # Grown, but by less than a quarter.
    memory = 125_000_000
    assert not policy.full_collection_due(since_last_s=599)  # Enough growth, too soon.
    assert policy.full_collection_due(since_last_s=600)
    policy.collect_everything()  # The next one is measured from here.
    assert not policy.full_collection_due(since_last_s=3600)


def test_without_a_memory_reading_the_full_collection_follows_the_clock() -> None:
    policy = GcPolicy(full_every_s=600, memory=lambda: None)
    policy.collect_everything()
    assert not policy.full_collection_due(since_last_s=599)
    assert policy.full_collection_due(since_last_s=600)


def test_growth_zero_means_the_clock_alone() -> None:
    memory = 100_000_000
    policy = GcPolicy(full_every_s=600, growth=0, memory=lambda: memory)
    policy.collect_everything()
    memory = 90_000_000  # Even when the memory shrank (pages swapped out, say).
    assert not policy.full_collection_due(since_last_s=599)
    assert policy.full_collection_due(since_last_s=600)


def test_resident_memory_is_read_where_the_system_tells_it() -> None:
    reading = resident_bytes()
    if Path("/proc/self/statm").exists():
        assert reading is not None and reading > 10_000_000  # A Python process with pytest loaded.
    else:
        assert reading is None


async def test_a_hub_that_does_not_grow_is_not_paused() -> None:
    policy = GcPolicy(freeze_every_s=0.01, full_every_s=0.0, memory=lambda: 100_000_000)
    async with running(policy):
        for _ in range(20):  # Twenty freeze periods, each one past the (zero) full interval...
            await asyncio.sleep(0.01)
    assert policy.full_collections == 1  # ...and only the collection at its start ran.


async def test_the_full_collection_waits_while_the_hub_is_busy() -> None:
    busy = True
    policy = GcPolicy(freeze_every_s=0.01, full_every_s=0.0, growth=0, postpone=lambda: busy)
    async with running(policy):
        for _ in range(20):  # Twenty freeze periods, each one past the (zero) full interval...
            await asyncio.sleep(0.01)
        assert policy.full_collections == 1  # ...and only the collection at its start ran.
        busy = False
        while policy.full_collections < 2:
            await asyncio.sleep(0.01)
