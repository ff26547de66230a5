"""The log-in throttle's counting, and the client address read from a trusted proxy's header."""

from __future__ import annotations

import pytest

from powerbank.web.throttle import LoginThrottle, forwarded_client_address


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr("powerbank.web.throttle.time.monotonic", lambda: now[0])
    return now


def test_an_attempt_counts_when_it_starts_and_a_success_takes_it_back(clock: list[float]) -> None:
    throttle = LoginThrottle(max_failures=2, window_s=60)
    keys = ["email:a@example.test", "addr:192.0.2.1"]
    first, second = throttle.start(keys), throttle.start(keys)
    assert (first.retry_after, second.retry_after) == (0, 0)
    # Both are still being checked: a third may not start, whatever their outcome will be.
    assert throttle.start(keys).retry_after == 61
    throttle.succeeded(second, forget=keys[:1])
    assert throttle.retry_after(keys[:1]) == 0
    assert throttle.retry_after(keys[1:]) == 0
    assert throttle.start(keys[1:]).retry_after == 0
    assert throttle.start(keys[1:]).retry_after == 61


def test_a_refused_attempt_counts_nothing(clock: list[float]) -> None:
    throttle = LoginThrottle(max_failures=1, window_s=60)
    assert throttle.start(["addr:192.0.2.1"]).retry_after == 0
    refused = throttle.start(["addr:192.0.2.1", "email:b@example.test"])
    assert refused.retry_after == 61
    assert throttle.retry_after(["email:b@example.test"]) == 0


@pytest.mark.parametrize(
    ("values", "proxies", "expected"),
    [
        ([], 1, "10.0.0.2"),
        (["198.51.100.1"], 1, "198.51.100.1"),
        (["192.0.2.77, 198.51.100.1"], 1, "198.51.100.1"),
        (["192.0.2.77", "198.51.100.1"], 1, "198.51.100.1"),
        (["192.0.2.77, 198.51.100.1, 10.0.0.9"], 2, "198.51.100.1"),
        (["198.51.100.1"], 2, "10.0.0.2"),
        ([" , "], 1, "10.0.0.2"),
        (["x" * 1000], 1, "x" * 64),
    ],
)
def test_the_client_address_is_the_one_the_trusted_proxies_wrote(
    values: list[str], proxies: int, expected: str
) -> None:
    assert forwarded_client_address("10.0.0.2", values, proxies) == expected
