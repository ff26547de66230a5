"""Log-in throttling: failed log-ins counted per email and per client address, in this process."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class LoginAttempt:
    """A log-in attempt counted against its keys before its password is checked.

    ``retry_after`` > 0: the attempt was refused (nothing counted) and may be retried after that many seconds.
    """

    keys: tuple[str, ...]
    at: float
    retry_after: int = 0


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
