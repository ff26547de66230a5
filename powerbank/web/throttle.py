"""Log-in throttling: failed log-ins counted per email and per address, in this process."""

from __future__ import annotations

import time
from collections import deque


class LoginThrottle:
    """Count failed log-ins per email and per address within a sliding window (one process)."""

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

    def fail(self, keys: list[str]) -> None:
        now = time.monotonic()
        for key in keys:
            self._recent(key, now).append(now)
        # Guessing many different emails must not grow memory without bound.
        if len(self._failures) > self.MAX_KEYS:
            for key in [k for k, stamps in self._failures.items() if not stamps or now - stamps[-1] > self.window_s]:
                del self._failures[key]

    def succeed(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)
