"""Log-in throttling and API rate limits: in this process on a lone node, in PostgreSQL for a cluster.

A lone node (SQLite) counts in memory: ``LoginThrottle`` and ``services.api_tokens.TokenRateLimiter``.
Nodes that share PostgreSQL count in the database (``SharedLoginThrottle``, ``SharedTokenRateLimiter``),
so three nodes behind a balancer give an attacker no more guesses, and a token no more requests, than
one. Both kinds keep the same rules; routes reach either through the async protocols
``LoginThrottling`` and ``web.state.RateLimiter``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from sqlalchemy.engine import make_url

from powerbank.tasks import BackgroundTasks

logger = logging.getLogger("powerbank.throttle")


@dataclass(frozen=True)
class LoginAttempt:
    """A log-in attempt counted against its keys before its password is checked.

    ``retry_after`` > 0: the attempt was refused (nothing counted) and may be retried after that many seconds.
    """

    keys: tuple[str, ...]
    at: float
    retry_after: int = 0


class LoginThrottling(Protocol):
    """What the log-in page needs of its throttle (``LoginThrottle`` in one process, ``SharedLoginThrottle``)."""

    async def start_attempt(self, keys: list[str]) -> LoginAttempt:
        """Count an attempt as failed for every key now, unless a key is already at its limit."""
        ...

    async def attempt_succeeded(self, attempt: LoginAttempt, *, forget: list[str]) -> None:
        """Take back a successful attempt, and forget every failure of the keys in ``forget``."""
        ...


class LoginThrottle:
    """Count failed log-ins per key (email, client address) within a sliding window (one process).

    An attempt is counted as failed when it starts (``start``), in the same step as the check, and
    taken back if it succeeds: a burst of parallel attempts can then never get more guesses checked
    than the limit, however the password checks interleave.
    """

    MAX_KEYS = 10_000

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        stamps = self._failures.setdefault(key, deque())
        while stamps and now - stamps[0] > self.window_s:
            stamps.popleft()
        return stamps

    def retry_after(self, keys: list[str]) -> int:
        """Return seconds to wait before another try, or 0 when allowed."""
        now = time.monotonic()
        wait = 0.0
        for key in keys:
            stamps = self._recent(key, now)
            if len(stamps) >= self.max_failures:
                wait = max(wait, self.window_s - (now - stamps[0]))
        return int(wait) + 1 if wait > 0 else 0

    def start(self, keys: list[str]) -> LoginAttempt:
        """Count an attempt as failed for every key now, unless a key is already at its limit.

        Check and count are one step with no await between them, so parallel attempts cannot all pass.
        """
        wait = self.retry_after(keys)
        now = time.monotonic()
        if wait:
            return LoginAttempt(tuple(keys), now, retry_after=wait)
        self._record(keys, now)
        return LoginAttempt(tuple(keys), now)

    async def start_attempt(self, keys: list[str]) -> LoginAttempt:
        """Count an attempt as failed for every key now, unless a key is already at its limit (``start``)."""
        return self.start(keys)

    async def attempt_succeeded(self, attempt: LoginAttempt, *, forget: list[str]) -> None:
        """Take back a successful attempt, and forget every failure of the keys in ``forget`` (``succeeded``)."""
        self.succeeded(attempt, forget=forget)

    def succeeded(self, attempt: LoginAttempt, *, forget: list[str]) -> None:
        """Take back a successful attempt, and forget every failure of the keys in ``forget``."""
        for key in attempt.keys:
            stamps = self._failures.get(key)
            if stamps is not None and attempt.at in stamps:
                stamps.remove(attempt.at)
        self.succeed(forget)

    def fail(self, keys: list[str]) -> None:
        """Count a failed log-in for every key."""
        self._record(keys, time.monotonic())

    def _record(self, keys: list[str], now: float) -> None:
        for key in keys:
            self._recent(key, now).append(now)
        # Guessing many different emails must not grow memory without bound.
        if len(self._failures) > self.MAX_KEYS:
            for key in [k for k, stamps in self._failures.items() if not stamps or now - stamps[-1] > self.window_s]:
                del self._failures[key]

    def succeed(self, keys: list[str]) -> None:
        """Forget every failure of the keys."""
        for key in keys:
            self._failures.pop(key, None)


def forwarded_client_address(remote_address: str, header_values: list[str], proxies: int) -> str:
    """Return the client's address as the nearest of ``proxies`` trusted proxies reported it.

    Each proxy appends the address it was reached from, so only the last ``proxies`` entries were
    written by proxies we trust; anything before them came from the client and could be forged. A
    request that did not pass through every proxy keeps the address of its connection.
    """
    entries = [entry.strip() for value in header_values for entry in value.split(",") if entry.strip()]
    if proxies < 1 or len(entries) < proxies:
        return remote_address
    # An address, never more: a longer entry is someone's attempt to fill memory.
    return entries[-proxies][:64]


# ---- shared by the nodes of a cluster (PostgreSQL) ----

_START_ATTEMPT = """
INSERT INTO login_failures AS f (key, failed_at, last_failed_at)
SELECT k.key, ARRAY[$2::float8], $2::float8 FROM unnest($1::text[]) AS k(key) ORDER BY k.key
ON CONFLICT (key) DO UPDATE SET
    failed_at = ARRAY(SELECT t FROM unnest(f.failed_at) AS t WHERE $2::float8 - t <= $3::float8) || $2::float8,
    last_failed_at = $2::float8
RETURNING
    cardinality(f.failed_at) - 1,
    (SELECT min(t) FROM unnest(f.failed_at[1:cardinality(f.failed_at) - 1]) AS t)
"""
# One occurrence of the attempt's time is taken out, as in memory: another attempt may share it.
_ATTEMPT_SUCCEEDED = """
INSERT INTO login_failures AS f (key, failed_at, last_failed_at)
SELECT k.key, '{}', $3::float8 FROM unnest($1::text[]) AS k(key) ORDER BY k.key
ON CONFLICT (key) DO UPDATE SET failed_at = CASE
    WHEN f.key = ANY($2::text[]) THEN '{}'::float8[]
    WHEN array_position(f.failed_at, $4::float8) IS NULL THEN f.failed_at
    ELSE f.failed_at[:array_position(f.failed_at, $4::float8) - 1]
        || f.failed_at[array_position(f.failed_at, $4::float8) + 1:]
END
"""
_PRUNE_LOGIN_FAILURES = """
DELETE FROM login_failures WHERE key IN (
    SELECT key FROM login_failures WHERE last_failed_at < $1::float8
    ORDER BY last_failed_at LIMIT $2 FOR UPDATE SKIP LOCKED
)
"""
# The bucket's level now: what it held, refilled for the time since (never past full, never for a
# time before its last request: another node's clock may lag this one's a little).
_REFILLED = "least($2::float8, b.level + greatest(0, $4::float8 - b.updated_at) * $3::float8)"
_TAKE_REQUEST = f"""
INSERT INTO api_rate_bucket AS b (token_id, level, updated_at, granted)
VALUES ($1, CASE WHEN $2::float8 >= 1 THEN $2::float8 - 1 ELSE $2::float8 END, $4::float8, $2::float8 >= 1)
ON CONFLICT (token_id) DO UPDATE SET
    level = CASE WHEN {_REFILLED} >= 1 THEN {_REFILLED} - 1 ELSE {_REFILLED} END,
    granted = {_REFILLED} >= 1,
    updated_at = greatest(b.updated_at, $4::float8)
RETURNING level, granted
"""
_PRUNE_RATE_BUCKETS = """
DELETE FROM api_rate_bucket WHERE token_id IN (
    SELECT token_id FROM api_rate_bucket WHERE updated_at < $1::float8
    ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED
)
"""


class ClusterCounters:
    """The database connections and the clock with which every node counts the same (PostgreSQL).

    The clock is the database's, read at the first check and then followed on this process's
    monotonic clock: the nodes agree on it within a round trip, and a step of a machine's wall
    clock neither lengthens nor shortens a window.
    """

    PRUNE_EVERY_S = 60.0
    PRUNE_BATCH = 1_000

    def __init__(self, database_url: str, *, pool_size: int = 4) -> None:
        url = make_url(database_url)
        self._connect_args: dict[str, Any] = {
            "host": url.host,
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "database": url.database,
        }
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._offset: float | None = None
        self._pruning = BackgroundTasks(logger, "pruning the shared log-in and API counts")

    async def open(self) -> None:
        """Make the pool; it connects at the first check, so a node starts while the database is away."""
        # Connections of their own: a request holding its session's connection while it waits for a
        # count must never wait for a pool that requests like it have emptied.
        self._pool = await asyncpg.create_pool(min_size=0, max_size=self._pool_size, **self._connect_args)

    async def close(self) -> None:
        """Let any pruning end, then disconnect."""
        await self._pruning.wait()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        """Return the open connections."""
        if self._pool is None:
            raise RuntimeError("The shared log-in and API counts are not open (is the app serving?)")
        return self._pool

    async def now(self) -> float:
        """Return the time on the cluster's clock, in seconds."""
        if self._offset is None:
            before = time.monotonic()
            database_now = await self.pool.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
            self._offset = database_now - (before + time.monotonic()) / 2
        return time.monotonic() + self._offset

    def prune(self, statement: str, older_than: float) -> None:
        """Delete in the background, a batch at a time, the rows ``statement`` finds older than ``older_than``.

        Rows other nodes are counting with right now are skipped, not waited for: the next prune gets them.
        """
        self._pruning.spawn(self._prune(statement, older_than))

    async def _prune(self, statement: str, older_than: float) -> None:
        while True:
            status = await self.pool.execute(statement, older_than, self.PRUNE_BATCH)
            if int(status.rsplit(" ", 1)[-1]) < self.PRUNE_BATCH:
                return


class _PruneSchedule:
    """When this node next prunes a table: at most every ``ClusterCounters.PRUNE_EVERY_S``, never per request."""

    def __init__(self) -> None:
        self._due = time.monotonic()

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._due:
            return False
        self._due = now + ClusterCounters.PRUNE_EVERY_S
        return True


class SharedLoginThrottle:
    """``LoginThrottle``'s counting, done in PostgreSQL so that every node of a cluster counts together.

    Each key's recent failures are one row; an attempt locks the rows of its keys (always in the
    same order, so two attempts never wait for each other in a cycle), counts itself in each, and
    is rolled back whole if one key was already at its limit. A parallel burst on several nodes
    therefore gets no more guesses checked than the limit, as in one process.
    """

    def __init__(self, counters: ClusterCounters, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._counters = counters
        self._prune_schedule = _PruneSchedule()

    async def start_attempt(self, keys: list[str]) -> LoginAttempt:
        """Count an attempt as failed for every key now, unless a key is already at its limit."""
        now = await self._counters.now()
        async with self._counters.pool.acquire() as connection:
            transaction = connection.transaction()
            await transaction.start()
            try:
                counted = await connection.fetch(_START_ATTEMPT, sorted(set(keys)), now, self.window_s)
                wait = self._retry_after(counted, now)
            except BaseException:
                await transaction.rollback()
                raise
            if wait:
                await transaction.rollback()
            else:
                await transaction.commit()
        if self._prune_schedule.due():
            self._counters.prune(_PRUNE_LOGIN_FAILURES, now - self.window_s)
        return LoginAttempt(tuple(keys), now, retry_after=wait)

    def _retry_after(self, counted: Sequence[asyncpg.Record], now: float) -> int:
        """Return ``LoginThrottle.retry_after`` of the keys, from (failures before this one, oldest) per key."""
        wait = 0.0
        for failures, oldest in counted:
            if failures >= self.max_failures and oldest is not None:
                wait = max(wait, self.window_s - (now - oldest))
        return int(wait) + 1 if wait > 0 else 0

    async def attempt_succeeded(self, attempt: LoginAttempt, *, forget: list[str]) -> None:
        """Take back a successful attempt, and forget every failure of the keys in ``forget``."""
        keys = sorted(set(attempt.keys) | set(forget))
        await self._counters.pool.execute(_ATTEMPT_SUCCEEDED, keys, forget, await self._counters.now(), attempt.at)


class SharedTokenRateLimiter:
    """``TokenRateLimiter``'s token bucket, kept in PostgreSQL so that every node of a cluster spends from it.

    One statement refills and spends a token's bucket, its row locked meanwhile: requests of one
    token on several nodes at once each see the level the one before left.
    """

    def __init__(self, counters: ClusterCounters, limit: int, window_s: float) -> None:
        self.capacity = float(limit)
        self.refill_per_s = limit / window_s
        self.window_s = window_s
        self._counters = counters
        self._prune_schedule = _PruneSchedule()

    async def spend(self, token_id: int) -> int:
        """Spend one request of the token; return 0 if allowed, else seconds to wait."""
        now = await self._counters.now()
        row = await self._counters.pool.fetchrow(_TAKE_REQUEST, token_id, self.capacity, self.refill_per_s, now)
        if self._prune_schedule.due():
            # A bucket untouched for a whole window is full again: the same as no row.
            self._counters.prune(_PRUNE_RATE_BUCKETS, now - self.window_s)
        level, granted = row
        if granted:
            return 0
        return max(1, math.ceil((1 - level) / self.refill_per_s))
