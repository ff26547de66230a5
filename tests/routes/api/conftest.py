"""Fixtures of the API tests."""

from __future__ import annotations

import functools

import pytest

from powerbank.services.passwords import hash_password

_hash_once = functools.cache(hash_password)


@pytest.fixture(autouse=True)
def _hash_demo_passwords_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash each demo password once: argon2 at full cost for every demo user makes each test seconds slower."""
    monkeypatch.setattr("powerbank.services.users.hash_password", _hash_once)
