"""Failed log-ins and API requests counted in PostgreSQL: every node of a cluster counts together.

Two apps on one database stand for two nodes. The rules are those of the in-process classes, step
for step: the same script of attempts gets the same answers from both kinds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from quart import Quart
from sqlalchemy.engine import make_url

from powerbank import create_app
from powerbank.services.api_tokens import TokenRateLimiter
from powerbank.web import state
from powerbank.web.throttle import (
    ClusterCounters,
    LoginAttempt,
    LoginThrottle,
    LoginThrottling,
    SharedLoginThrottle,
    SharedTokenRateLimiter,
)
from tests.helpers import TEST_CONFIG

pytestmark = pytest.mark.postgres_only

MAX_FAILURES = 3
API_LIMIT = 5


@pytest.fixture
async def nodes(database_url: str) -> AsyncIterator[tuple[Quart, Quart]]:
    """Two apps serving on one PostgreSQL database, as two nodes of a cluster."""
    config = {
        **TEST_CONFIG,
        "DATABASE_URL": database_url,
        "LOGIN_MAX_FAILURES": MAX_FAILURES,
        "API_RATE_LIMIT": API_LIMIT,
        "API_RATE_WINDOW_S": 3600,
    }
    one = create_app({**config, "NODE_ID": "throttle-node-1"})
    two = create_app({**config, "NODE_ID": "throttle-node-2"})
    async with one.test_app(), two.test_app():
        yield one, two


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A clock the throttles of both kinds read, moved by the test (asyncio keeps the real one)."""
    now = [1000.0]
    fake = SimpleNamespace(monotonic=lambda: now[0])
    monkeypatch.setattr("powerbank.web.throttle.time", fake)
    monkeypatch.setattr("powerbank.services.api_tokens.time", fake)
    return now


@pytest.fixture
async def counters(database_url: str) -> AsyncIterator[ClusterCounters]:
    opened = ClusterCounters(database_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def _rows(database_url: str, table: str) -> list[Any]:
    url = make_url(database_url)
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database=url.database
    )
    try:
        key = "key" if table == "login_failures" else "token_id"
        return [row[0] for row in await connection.fetch(f"SELECT {key} FROM {table} ORDER BY {key}")]
    finally:
        await connection.close()


def test_a_postgresql_app_counts_with_the_other_nodes(database_url: str) -> None:
    app = create_app({**TEST_CONFIG, "DATABASE_URL": database_url})
    assert isinstance(state.login_throttle(app), SharedLoginThrottle)
    assert isinstance(state.api_rate_limiter(app), SharedTokenRateLimiter)


async def test_failed_log_ins_on_two_nodes_add_up_to_one_limit(nodes: tuple[Quart, Quart]) -> None:
    one, two = (state.login_throttle(app) for app in nodes)
    keys = ["email:someone@example.test", "addr:192.0.2.1"]
    answers = [await throttle.start_attempt(keys) for throttle in (one, two, one)]
    assert [attempt.retry_after for attempt in answers] == [0, 0, 0]
    # The fourth, on either node, is refused: the first failure leaves the window in 15 minutes.
    for throttle in (two, one):
        refused = await throttle.start_attempt(keys)
        assert 15 * 60 - 5 <= refused.retry_after <= 15 * 60 + 1

    # A success on node 2 forgets the email's failures on every node, not the address's.
    await two.attempt_succeeded(answers[2], forget=keys[:1])
    assert (await one.start_attempt(keys[:1])).retry_after == 0
    assert (await one.start_attempt(keys[1:])).retry_after == 0
    assert (await two.start_attempt(keys[1:])).retry_after > 0


async def test_a_parallel_burst_on_two_nodes_gets_no_more_guesses_than_the_limit(nodes: tuple[Quart, Quart]) -> None:
    throttles = [state.login_throttle(app) for app in nodes]
    # One email guessed from many addresses at once, half on each node: each attempt locks two rows.
    attempts = await asyncio.gather(
        *(throttles[n % 2].start_attempt(["email:victim@example.test", f"addr:198.51.100.{n}"]) for n in range(40))
    )
    assert sum(attempt.retry_after == 0 for attempt in attempts) == MAX_FAILURES
    # The refused ones counted nothing against their addresses.
    assert (await throttles[0].start_attempt(["addr:198.51.100.39"])).retry_after == 0


async def test_attempts_sharing_keys_in_any_order_never_deadlock(nodes: tuple[Quart, Quart]) -> None:
    throttles = [state.login_throttle(app) for app in nodes]
    emails, addresses = [f"email:{n}@example.test" for n in range(4)], [f"addr:203.0.113.{n}" for n in range(4)]

    async def attempt(n: int) -> LoginAttempt:
        keys = [emails[n % 4], addresses[(n // 4) % 4]]
        started = await throttles[n % 2].start_attempt(keys if n % 3 else keys[::-1])
        if not started.retry_after and n % 5 == 0:
            await throttles[(n + 1) % 2].attempt_succeeded(started, forget=keys[:1])
        return started

    attempts = await asyncio.wait_for(asyncio.gather(*(attempt(n) for n in range(64))), timeout=60)
    assert any(attempt.retry_after for attempt in attempts) and any(not attempt.retry_after for attempt in attempts)


# Each step: advance the clock, start an attempt on these keys (its answer recorded), or let an
# earlier attempt (by its index in the answers) succeed and forget these keys' failures.
LOGIN_SCRIPT: list[tuple[str, Any, list[str]]] = [
    ("start", None, ["email:a", "addr:1"]),
    ("advance", 10.5, []),
    ("start", None, ["email:a", "addr:2"]),
    ("start", None, ["email:a", "addr:3"]),
    ("start", None, ["email:b", "addr:1"]),
    ("start", None, ["email:c", "addr:1"]),
    ("succeed", 3, ["email:b"]),
    ("start", None, ["email:c", "addr:1"]),
    ("start", None, ["email:z", "addr:3"]),
    ("start", None, ["email:y", "addr:3"]),
    ("start", None, ["email:x", "addr:3"]),
    ("advance", 50.25, []),
    ("start", None, ["email:a", "addr:9"]),
    ("start", None, ["email:a", "addr:9"]),
    ("advance", 10, []),
    ("start", None, ["email:a", "addr:8"]),
]
# Limit 2 per minute. The refused attempt on addr:3 counted nothing there; the success of the
# attempt on email:b gave addr:1 its try back; after 60.75 s the first failure of email:a expired.
LOGIN_ANSWERS = [0, 0, 50, 0, 50, 0, 0, 0, 61, 0, 10, 0]


async def _play(throttle: LoginThrottling, clock: list[float]) -> list[int]:
    answers: list[LoginAttempt] = []
    for step, value, keys in LOGIN_SCRIPT:
        if step == "advance":
            clock[0] += value
        elif step == "start":
            answers.append(await throttle.start_attempt(keys))
        else:
            await throttle.attempt_succeeded(answers[value], forget=keys)
    return [attempt.retry_after for attempt in answers]


async def test_the_shared_throttle_answers_as_the_one_in_memory(counters: ClusterCounters, clock: list[float]) -> None:
    in_memory = await _play(LoginThrottle(max_failures=2, window_s=60), clock)
    clock[0] = 1000.0
    shared = await _play(SharedLoginThrottle(counters, max_failures=2, window_s=60), clock)
    assert in_memory == shared == LOGIN_ANSWERS


async def test_an_api_token_spends_from_one_bucket_on_every_node(nodes: tuple[Quart, Quart]) -> None:
    one, two = (state.api_rate_limiter(app) for app in nodes)
    waits = [await (one if n % 2 else two).spend(7) for n in range(API_LIMIT + 2)]
    assert waits[:API_LIMIT] == [0] * API_LIMIT
    # Refilled at 5 requests an hour: one more in 12 minutes.
    assert all(700 <= wait <= 720 for wait in waits[API_LIMIT:])
    assert await two.spend(8) == 0


async def test_a_parallel_burst_of_one_token_on_two_nodes_gets_its_capacity(nodes: tuple[Quart, Quart]) -> None:
    limiters = [state.api_rate_limiter(app) for app in nodes]
    waits = await asyncio.gather(*(limiters[n % 2].spend(9) for n in range(30)))
    assert waits.count(0) == API_LIMIT


async def test_the_shared_bucket_refills_as_the_one_in_memory(counters: ClusterCounters, clock: list[float]) -> None:
    answers = []
    for limiter in (TokenRateLimiter(2, 10), SharedTokenRateLimiter(counters, 2, 10)):
        clock[0] = 1000.0
        first = [await limiter.spend(1), await limiter.spend(1), await limiter.spend(1), await limiter.spend(2)]
        clock[0] += 5.5
        answers.append(first + [await limiter.spend(1), await limiter.spend(1)])
    assert answers[0] == answers[1] == [0, 0, 5, 0, 0, 5]


async def test_stale_counts_are_pruned_in_batches_when_due(
    database_url: str, counters: ClusterCounters, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ClusterCounters, "PRUNE_BATCH", 2)
    throttle = SharedLoginThrottle(counters, max_failures=5, window_s=10)
    limiter = SharedTokenRateLimiter(counters, 5, 10)
    for n in range(5):
        await throttle.start_attempt([f"email:{n}"])
        await limiter.spend(n)
    # Stale after 10 s, but a node prunes once a minute, never on every request.
    clock[0] += 20
    await throttle.start_attempt(["email:fresh"])
    await limiter.spend(100)
    await counters.close()
    assert len(await _rows(database_url, "login_failures")) == 6
    assert len(await _rows(database_url, "api_rate_bucket")) == 6

    await counters.open()
    clock[0] += ClusterCounters.PRUNE_EVERY_S
    await throttle.start_attempt(["email:late"])
    await limiter.spend(200)
    await counters.close()
    assert await _rows(database_url, "login_failures") == ["email:late"]
    assert await _rows(database_url, "api_rate_bucket") == [200]
