"""Run Alembic migrations from code (CLI, `make run`, tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from powerbank.config import RESOURCE_ROOT


def alembic_config(database_url: str) -> Config:
    """Return the Alembic config of this checkout, aimed at ``database_url``."""
    config = Config(str(RESOURCE_ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Migrate the database to ``revision`` (all heads by default).

    Alembic runs its own event loop, so call this outside a running one.
    """
    command.upgrade(alembic_config(database_url), revision)
