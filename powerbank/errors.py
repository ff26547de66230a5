"""Domain errors; the web layer turns them into 404, 403 and 409 answers."""

from __future__ import annotations


class NotFoundError(LookupError):
    """The object does not exist, or belongs to a tenant the caller cannot see."""


class ForbiddenError(PermissionError):
    """The caller sees the object but may not do this to it."""


class ConflictError(RuntimeError):
    """The change clashes with the current state (a duplicate, a stale version)."""


class FormErrors(ValueError):
    """Several fields are invalid; ``errors`` maps each field name to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors
