"""The garbage collection policy of the serving process: freeze what lives long, collect all rarely."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from powerbank.runtime.gc_policy import GcPolicy, resident_bytes
from tests.helpers import eventually


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


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_policy_freezes_each_period_and_collects_everything_on_its_schedule() -> None:
    clock = FakeClock()
    policy = GcPolicy(full_every_s=600, growth=0, clock=clock)
    policy.step()  # The hub starts: everything is collected once, and what survived frozen.
    assert policy.full_collections == 1
    frozen = gc.get_freeze_count()

    lived_a_while = [Node() for _ in range(1000)]
    clock.now = 599
    policy.step()
    assert policy.full_collections == 1
    assert gc.get_freeze_count() >= frozen + len(lived_a_while)  # What lived through a period is frozen.

    clock.now = 600
    policy.step()
    assert policy.full_collections == 2
    assert policy.longest_full_s > 0
    clock.now = 1199
    policy.step()
    assert policy.full_collections == 2  # The next one counts from the last.
    clock.now = 1200
    policy.step()
    assert policy.full_collections == 3


async def test_the_running_policy_takes_its_steps_on_the_clock() -> None:
    clock = FakeClock()
    policy = GcPolicy(freeze_every_s=0, full_every_s=600, growth=0, clock=clock)
    task = asyncio.create_task(policy.run())
    try:
        await eventually(lambda: policy.full_collections == 1, message="no collection as the hub starts")
        clock.now = 600
        await eventually(lambda: policy.full_collections == 2, message="no collection once one was due")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


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


def test_a_hub_that_does_not_grow_is_not_paused() -> None:
    clock = FakeClock()
    policy = GcPolicy(full_every_s=0.0, memory=lambda: 100_000_000, clock=clock)
    for _ in range(20):  # Twenty freeze periods, each one past the (zero) full interval...
        policy.step()
        clock.now += 1
    assert policy.full_collections == 1  # ...and only the collection at its start ran.


def test_the_full_collection_waits_while_the_hub_is_busy() -> None:
    busy = True
    clock = FakeClock()
    policy = GcPolicy(full_every_s=0.0, growth=0, postpone=lambda: busy, clock=clock)
    for _ in range(20):  # Twenty freeze periods, each one past the (zero) full interval...
        policy.step()
        clock.now += 1
    assert policy.full_collections == 1  # ...and only the collection at its start ran, busy or not.
    busy = False
    policy.step()
    assert policy.full_collections == 2
