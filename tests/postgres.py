"""The PostgreSQL the suite runs on under ``make test-pg``: one database per test, copied from a migrated template.

``tests/pg_server.py`` starts the cluster and sets POWERBANK_TEST_PG_URL; without it (``make test``)
the suite runs on SQLite and nothing here is used.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get("POWERBANK_TEST_PG_URL", "")
T = TypeVar("T")
_numbers = itertools.count(1)


def fresh_name(kind: str) -> str:
    """Return a database name no other test of this run (or another worker process) uses."""
    return f"powerbank_{kind}_{os.getpid()}_{next(_numbers)}"


def url_of(database: str) -> str:
    """Return the SQLAlchemy URL of a database of the test cluster."""
    return make_url(ADMIN_URL).set(database=database).render_as_string(hide_password=False)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end on a loop of its own, whether or not the caller's thread runs one."""
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as exc:  # handed to the caller
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


async def _execute(statement: str) -> None:
    url = make_url(ADMIN_URL)
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database=url.database
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def execute(statement: str) -> None:
    """Run one statement on the test cluster as its superuser (from sync or async code)."""
    _run(_execute(statement))


def create_database(name: str, template: str | None = None) -> None:
    """Create a database (a copy of ``template``, if given)."""
    _run(_execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))


def drop_database(name: str) -> None:
    """Drop a database, ending whatever connections a test left open to it."""
    _run(_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
