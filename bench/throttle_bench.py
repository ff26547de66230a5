"""Benchmark the cost of a log-in or API rate check: in this process (SQLite), and shared in PostgreSQL (a cluster).

    python -m bench.throttle_bench postgresql+asyncpg://USER@HOST:PORT/DATABASE
    python -m bench.throttle_bench URL --logged     # the tables made LOGGED, to see what UNLOGGED saves

The database is migrated first and the throttle tables emptied. Figures, each a median over
``--checks`` sequential checks on one node (what one request waits for), then the time for a burst of
``--burst`` checks at once (what a node sees under load; they share its small pool of connections):

- log-in, allowed: ``start_attempt`` of an email and an address not at their limit;
- log-in, refused: the same at its limit (counted, found over, rolled back);
- log-in, success: ``attempt_succeeded`` (the attempt taken back, the email's failures forgotten);
- API request: ``spend`` of a token with room in its bucket.

Tests never assert time; this prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from powerbank.db.migrate import upgrade
from powerbank.services.api_tokens import TokenRateLimiter
from powerbank.web.throttle import ClusterCounters, LoginThrottle, SharedLoginThrottle, SharedTokenRateLimiter

TABLES = ("login_failures", "api_rate_bucket")


async def _median_us(check: Callable[[int], Awaitable[Any]], checks: int) -> float:
    took = []
    for n in range(checks):
        started = time.perf_counter()
        await check(n)
        took.append(time.perf_counter() - started)
    return statistics.median(took) * 1e6


async def _burst_ms(check: Callable[[int], Awaitable[Any]], burst: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(check(n) for n in range(burst)))
    return (time.perf_counter() - started) * 1e3


async def _measure(login: Any, limiter: Any, checks: int, burst: int, prefix: str) -> dict[str, float]:
    async def allowed(n: int) -> None:
        attempt = await login.start_attempt([f"email:{prefix}{n}@example.test", f"addr:{prefix}{n}"])
        assert not attempt.retry_after

    at_limit = [f"email:{prefix}full@example.test", f"addr:{prefix}full"]
    for _ in range(login.max_failures):
        await login.start_attempt(at_limit)

    async def refused(n: int) -> None:
        assert (await login.start_attempt(at_limit)).retry_after

    async def succeeded(n: int) -> None:
        keys = [f"email:{prefix}ok{n}@example.test", f"addr:{prefix}ok{n}"]
        await login.attempt_succeeded(await login.start_attempt(keys), forget=keys[:1])

    async def spend(n: int) -> None:
        assert await limiter.spend(n % 100) == 0

    return {
        "log-in allowed (µs)": await _median_us(allowed, checks),
        "log-in refused (µs)": await _median_us(refused, checks),
        "log-in allowed + success (µs)": await _median_us(succeeded, checks),
        "API request (µs)": await _median_us(spend, checks),
        f"burst of {burst} log-ins (ms)": await _burst_ms(lambda n: allowed(checks + n), burst),
        f"burst of {burst} API requests (ms)": await _burst_ms(spend, burst),
    }


async def run(url: str, *, logged: bool, checks: int, burst: int) -> None:
    in_memory = await _measure(LoginThrottle(5, 900), TokenRateLimiter(10**9, 60), checks, burst, "m")
    counters = ClusterCounters(url)
    await counters.open()
    try:
        for table in TABLES:
            await counters.pool.execute(f"TRUNCATE {table}")
            await counters.pool.execute(f"ALTER TABLE {table} SET {'LOGGED' if logged else 'UNLOGGED'}")
        settings = {name: await counters.pool.fetchval(f"SHOW {name}") for name in ("fsync", "synchronous_commit")}
        shared = await _measure(
            SharedLoginThrottle(counters, 5, 900), SharedTokenRateLimiter(counters, 10**9, 60), checks, burst, "s"
        )
    finally:
        await counters.close()
    print(f"PostgreSQL tables {'LOGGED' if logged else 'UNLOGGED'}; {settings}; pool of 4 connections")
    print(f"{'check':<34}{'in memory':>12}{'PostgreSQL':>12}")
    for name, value in in_memory.items():
        print(f"{name:<34}{value:>12.1f}{shared[name]:>12.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="a PostgreSQL database URL (postgresql+asyncpg://...)")
    parser.add_argument("--logged", action="store_true", help="make the tables LOGGED for this run")
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--burst", type=int, default=200)
    args = parser.parse_args()
    upgrade(args.url)
    asyncio.run(run(args.url, logged=args.logged, checks=args.checks, burst=args.burst))


if __name__ == "__main__":
    main()
