import pytest

from powerbank.services import passwords
from powerbank.services.passwords import (
    generate_secret,
    hash_password,
    hash_secret,
    is_secret_hash,
    verify_password,
    verify_secret,
)


def test_a_generated_secret_verifies_against_its_own_hash_only() -> None:
    secret = generate_secret()
    stored = hash_secret(secret)
    assert is_secret_hash(stored)
    assert verify_secret(stored, secret)
    assert not verify_secret(stored, secret + "x")
    assert not verify_secret(hash_secret(secret), generate_secret())


def test_two_hashes_of_one_secret_differ_by_their_salt() -> None:
    assert hash_secret("same") != hash_secret("same")


@pytest.mark.parametrize("stored", [None, "sha256$zz$00", "sha256$00$", "sha256$" + "0" * 32 + "$" + "0" * 64])
def test_a_missing_or_broken_secret_hash_never_matches(stored: str | None) -> None:
    assert not verify_secret(stored, "")
    assert not verify_secret(stored, "anything")


def test_people_passwords_stay_argon2() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$") and not is_secret_hash(stored)
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "wrong")


def test_a_generated_secret_never_starts_like_a_spreadsheet_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = iter(["-starts-with-minus", "_starts-with-underscore", "Fine-secret"])
    monkeypatch.setattr(passwords.secrets, "token_urlsafe", lambda _nbytes: next(drawn))
    assert generate_secret() == "Fine-secret"
