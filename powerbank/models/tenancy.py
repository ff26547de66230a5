"""Tenancy tables: operators, their teams, users and the roles they hold."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime, created_field
from powerbank.models.ids import NEVER_REUSE_IDS


class OperatorRole(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"


class TeamRole(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class Operator(SQLModel, table=True):
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120, unique=True)
    created_at: datetime = created_field()


class Team(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("operator_id", "name"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    operator_id: int = Field(foreign_key="operator.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=120)
    created_at: datetime = created_field()


class User(SQLModel, table=True):
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    # Stored lower-cased, so uniqueness is case-insensitive on every backend.
    email: str = Field(max_length=254, unique=True)
    display_name: str = Field(default="", max_length=120)
    # "" until the person sets a password from their invitation: no password matches it.
    password_hash: str = Field(max_length=255)
    # Part of every session cookie: raising it (password change, "log out everywhere") ends every
    # session signed in before.
    session_version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    created_at: datetime = created_field()
    # The person's language ("en", "da", "sv") and time zone (e.g. "Europe/Copenhagen"); None until chosen.
    locale: str | None = Field(default=None, max_length=8)
    time_zone: str | None = Field(default=None, max_length=40)


class OperatorMembership(SQLModel, table=True):
    __tablename__ = "operator_membership"
    __table_args__ = (UniqueConstraint("operator_id", "user_id"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    operator_id: int = Field(foreign_key="operator.id", index=True, ondelete="CASCADE")
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    role: str = Field(max_length=20)


class TeamMembership(SQLModel, table=True):
    __tablename__ = "team_membership"
    __table_args__ = (UniqueConstraint("team_id", "user_id"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    team_id: int = Field(foreign_key="team.id", index=True, ondelete="CASCADE")
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    role: str = Field(max_length=20)
    # Only meaningful for Owner and Admin; a Member can never configure charge points.
    can_configure_charge_points: bool = Field(default=True)


class Invitation(SQLModel, table=True):
    """A single-use link that lets a newly added person set their own password; only its SHA-256 is kept."""

    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    # The operator whose admin added the person (None: made by the command line).
    operator_id: int | None = Field(default=None, foreign_key="operator.id", ondelete="CASCADE")
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = created_field()
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    # Set when the link was used, or replaced by a newer one: it never works again.
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
