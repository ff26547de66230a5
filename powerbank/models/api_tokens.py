"""API tokens: the credentials scripts and integrations use for the JSON API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime, utcnow
from powerbank.models.ids import NEVER_REUSE_IDS


class TokenAccess(StrEnum):
    READ = "read"
    WRITE = "write"


class ApiToken(SQLModel, table=True):
    """A bearer token scoped to one operator, or to one team of it; only its SHA-256 is kept."""

    __tablename__ = "api_token"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    operator_id: int = Field(foreign_key="operator.id", index=True, ondelete="CASCADE")
    # None: the token covers every team of the operator.
    team_id: int | None = Field(default=None, foreign_key="team.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=80)
    access: str = Field(max_length=10)
    # The token is high-entropy random, so a fast hash is enough and keeps per-request checks cheap.
    token_hash: str = Field(max_length=64, unique=True)
    # The first characters of the token, so people can tell their tokens apart.
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # None when the token was made with the `powerbank api-token create` command.
    created_by_user_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
