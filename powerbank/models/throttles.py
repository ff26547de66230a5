"""What the nodes of a cluster count together: failed log-ins and API requests (used on PostgreSQL only).

Times are seconds on the cluster's clock (the database's clock, as each node reads it; see
``powerbank.web.throttle``). The tables exist on SQLite too, since every backend has one schema,
but a lone SQLite node counts in its own memory and leaves them empty.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

# An array of failure times on PostgreSQL; SQLite has no arrays, and never reads the column.
FAILURE_TIMES = JSON().with_variant(postgresql.ARRAY(Float()), "postgresql")


class LoginFailures(SQLModel, table=True):
    """The recent failed log-ins counted against one key (an email or a client address)."""

    __tablename__ = "login_failures"

    key: str = Field(primary_key=True)
    # Oldest first; an attempt in progress is in here until it succeeds.
    failed_at: list[float] = Field(sa_column=Column(FAILURE_TIMES, nullable=False))
    # The newest failure: a row whose newest failure left the window is pruned by this index.
    last_failed_at: float = Field(index=True)


class ApiRateBucket(SQLModel, table=True):
    """One API token's bucket of requests: how full it was at ``updated_at``."""

    __tablename__ = "api_rate_bucket"

    # No foreign key: a deleted token's bucket is pruned like any full one.
    token_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    level: float
    updated_at: float = Field(index=True)
    # Whether the last request taken from the bucket was allowed.
    granted: bool
