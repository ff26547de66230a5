"""An activation's delivery is judged once for all its readers, again only when stale or when its window changed."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from powerbank.db import utcnow
from powerbank.models import Activation
from powerbank.services.delivery import Delivery, DeliveryCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def activation(activation_id: int = 1, **fields: Any) -> Activation:
    now = utcnow()
    return Activation(
        id=activation_id,
        operator_id=1,
        price_area="DK2",
        market="Test",
        action="pause",
        start_at=now,
        duration_s=30,
        end_at=now + timedelta(seconds=30),
        created_by="grid@example.test",
        triggered_at=now,
        **fields,
    )


class Judge:
    """A computation that takes ``cost`` seconds of the clock and counts its calls."""

    def __init__(self, clock: Clock, cost: float = 0.0) -> None:
        self.clock, self.cost, self.calls = clock, cost, 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> Delivery | None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        self.clock.now += self.cost
        return Delivery([], None, 0)  # type: ignore[arg-type]


async def test_a_live_result_is_reused_for_a_share_of_what_it_cost_then_judged_again() -> None:
    clock = Clock()
    cache = DeliveryCache(clock, duty=0.2, min_age_s=1.0)
    judge = Judge(clock, cost=2.0)
    live = activation()
    first = await cache.get(live, judge)
    clock.now += 9.0  # 2 s of judging stays fresh for 10 s
    assert await cache.get(live, judge) is first and judge.calls == 1
    clock.now += 1.5
    assert await cache.get(live, judge) is not first and judge.calls == 2

    cheap = Judge(clock, cost=0.001)
    other = activation(2)
    await cache.get(other, cheap)
    clock.now += 0.5
    await cache.get(other, cheap)
    assert cheap.calls == 1  # at least a second
    clock.now += 0.6
    await cache.get(other, cheap)
    assert cheap.calls == 2


async def test_readers_during_a_judgement_wait_for_it_rather_than_start_another() -> None:
    clock = Clock()
    cache = DeliveryCache(clock)
    judge = Judge(clock)
    judge.gate = asyncio.Event()
    live = activation()
    readers = [asyncio.create_task(cache.get(live, judge)) for _ in range(5)]
    await asyncio.sleep(0)
    judge.gate.set()
    results = await asyncio.gather(*readers)
    assert judge.calls == 1 and all(result is results[0] for result in results)


async def test_a_cancelled_window_or_kept_evidence_is_judged_again_and_kept_evidence_for_good() -> None:
    clock = Clock()
    cache = DeliveryCache(clock)
    judge = Judge(clock)
    live = activation()
    await cache.get(live, judge)
    live.ended_at = utcnow()  # cancelled: another window
    await cache.get(live, judge)
    assert judge.calls == 2
    live.evidence_kept_at = utcnow()
    kept = await cache.get(live, judge)
    assert judge.calls == 3
    clock.now += 3600
    assert await cache.get(live, judge) is kept and judge.calls == 3


async def test_only_the_newest_activations_are_held_and_a_failure_is_not() -> None:
    clock = Clock()
    cache = DeliveryCache(clock, kept=2)
    judge = Judge(clock)
    done = [activation(n, evidence_kept_at=utcnow()) for n in (1, 2, 3)]
    for each in done:
        await cache.get(each, judge)
    await cache.get(done[2], judge)
    await cache.get(done[1], judge)
    assert judge.calls == 3
    await cache.get(done[0], judge)  # the oldest was let go
    assert judge.calls == 4

    async def fails() -> Delivery | None:
        raise RuntimeError("database away")

    broken = activation(9)
    with pytest.raises(RuntimeError):
        await cache.get(broken, fails)
    assert await cache.get(broken, judge) is not None and judge.calls == 5
