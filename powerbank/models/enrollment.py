"""PowerBank enrollment tables: participation per charge point, terms, acceptances, history."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from powerbank.db import UTCDateTime, utcnow
from powerbank.models.ids import NEVER_REUSE_IDS


class ParticipationState(StrEnum):
    """A charge point's PowerBank state; the value is what the database stores, ``label`` what people read."""

    SIGNED_UP = "signed_up"
    NOT_SIGNED_UP = "not_signed_up"
    OPTED_OUT = "opted_out"
    SUSPENDED = "suspended"

    @property
    def label(self) -> str:
        """Return the state as pages, the CSV export and the API name it: "Signed up", "Opted out"..."""
        return _STATE_LABELS[self]

    @classmethod
    def from_label(cls, label: str) -> ParticipationState:
        """Return the state a label names; ValueError when none does."""
        for state, state_label in _STATE_LABELS.items():
            if state_label == label:
                return state
        raise ValueError(f"{label!r} is not a participation state")


_STATE_LABELS: dict[ParticipationState, str] = {
    ParticipationState.SIGNED_UP: "Signed up",
    ParticipationState.NOT_SIGNED_UP: "Not signed up",
    ParticipationState.OPTED_OUT: "Opted out",
    ParticipationState.SUSPENDED: "Suspended",
}


class ParticipationSource(StrEnum):
    """How a participation changed; the value is what the database stores, ``label`` what people read."""

    BULK = "bulk"
    SINGLE = "single"
    AUTOMATIC = "automatic"
    API = "api"

    @property
    def label(self) -> str:
        """Return the source as the history, the CSV export and the API name it: "bulk", "API"..."""
        return "API" if self is ParticipationSource.API else self.value


class Participation(SQLModel, table=True):
    """The current PowerBank state of one charge point; no row means "Not signed up"."""

    __tablename__ = "powerbank_participation"

    charge_point_id: int = Field(primary_key=True, foreign_key="charge_point.id", ondelete="CASCADE")
    state: str = Field(max_length=20)
    since: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    source: str = Field(max_length=12)
    reason: str = Field(default="", max_length=200)
    # Optimistic concurrency: every change is an UPDATE ... WHERE version = <the version read>.
    version: int = Field(default=1)


class TermsVersion(SQLModel, table=True):
    """A published version of the PowerBank terms and conditions; the newest published one is current."""

    __tablename__ = "powerbank_terms_version"
    __table_args__ = NEVER_REUSE_IDS

    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=40, unique=True)
    published_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    text: str


class TermsAcceptance(SQLModel, table=True):
    """One acceptance of a terms version by a user, for a team, naming the charge points signed up.

    Evidence (R4), so it outlives the team: team and operator are kept as plain ids, and the team's
    acceptances are those of its id and its operator (ids are never reused).
    """

    __tablename__ = "powerbank_terms_acceptance"
    __table_args__ = (Index("ix_powerbank_terms_acceptance_lookup", "user_id", "team_id", "version"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE")
    team_id: int = Field(index=True)
    # None only on rows from before migration 0008 whose team's operator could not be told.
    operator_id: int | None = Field(default=None)
    version: str = Field(max_length=40)
    accepted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    charge_point_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class ParticipationEvent(SQLModel, table=True):
    """One change of a charge point's participation (R8); rows are only ever inserted.

    Charge point, team and operator are kept as plain ids with the charge point's name, so the
    history outlives a deleted charge point or team, for its operator's audit; a team's history is
    that of its id and its operator (ids are never reused).
    """

    __tablename__ = "powerbank_participation_event"
    __table_args__ = (Index("ix_powerbank_participation_event_team_at", "team_id", "at"), NEVER_REUSE_IDS)

    id: int | None = Field(default=None, primary_key=True)
    charge_point_id: int = Field(index=True)
    team_id: int
    # None only on rows from before migration 0008 whose team's operator could not be told.
    operator_id: int | None = Field(default=None)
    charge_point_name: str = Field(max_length=120)
    actor_user_id: int | None = Field(default=None)
    actor_label: str = Field(max_length=254)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    from_state: str = Field(max_length=20)
    to_state: str = Field(max_length=20)
    source: str = Field(max_length=12)
    terms_version: str | None = Field(default=None, max_length=40)
    reason: str = Field(default="", max_length=200)

    @property
    def from_label(self) -> str:
        """Return the state before the change as people read it."""
        return ParticipationState(self.from_state).label

    @property
    def to_label(self) -> str:
        """Return the state after the change as people read it."""
        return ParticipationState(self.to_state).label

    @property
    def source_label(self) -> str:
        """Return how the change was made as people read it."""
        return ParticipationSource(self.source).label
