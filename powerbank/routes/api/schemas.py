"""Request and response bodies of the JSON API v1, and how domain objects become them.

The OpenAPI document is generated from these models.

Request bodies are strict (no type coercion) and reject unknown fields; query strings are
parsed from text, so they coerce numbers but also reject unknown parameters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from powerbank.models import ParticipationEvent, ParticipationState
from powerbank.services.charge_points import connection_status
from powerbank.services.enrollment import RowStatus
from powerbank.services.imports import MAX_IMPORT_BYTES, MAX_IMPORT_ROWS

MAX_PAGE_SIZE = 500
MAX_BULK_IDS = 10_000
# Ids have at most nine digits (powerbank.web.ids), which every database's integer column holds:
# a larger id is refused (422) before it reaches a query, where PostgreSQL's 32-bit ids would overflow.
MAX_ID = 999_999_999

ConnectionStatus = Literal["Online", "Offline", "Never connected"]

STATE_LABELS = [state.label for state in ParticipationState]


def _state_named(value: object) -> object:
    # The API names states as people read them ("Signed up"), not by the codes the database stores.
    if isinstance(value, str) and not isinstance(value, ParticipationState):
        try:
            return ParticipationState.from_label(value)
        except ValueError:
            expected = ", ".join(repr(label) for label in STATE_LABELS[:-1]) + f" or {STATE_LABELS[-1]!r}"
            raise PydanticCustomError("enum", f"Input should be {expected}") from None
    return value


# A participation state, read and written in JSON by its label.
StateLabel = Annotated[
    ParticipationState,
    BeforeValidator(_state_named),
    PlainSerializer(lambda state: state.label, return_type=str),
    WithJsonSchema({"type": "string", "enum": STATE_LABELS, "title": "ParticipationState"}),
]


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        # JSON can escape lone surrogates ("\ud800"), which no database can store as text.
        if not _is_valid_text(data):
            raise ValueError("Text must be valid Unicode (no lone surrogates).")
        return data


def _is_valid_text(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_is_valid_text(key) and _is_valid_text(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_is_valid_text(item) for item in value)
    return True


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldProblem(BaseModel):
    """One invalid field, or one charge point that blocks a request."""

    field: str = Field(description="Where the problem is: a field name, or a dotted path into the body.")
    message: str
    charge_point_id: int | None = Field(default=None, description="The charge point the message is about, if any.")


class Problem(BaseModel):
    """An error, as an RFC 9457 problem document (media type application/problem+json)."""

    type: str = Field(description="A URI reference naming the kind of problem; it points into the API docs.")
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] = Field(default_factory=list)


class CsvText(BaseModel):
    """A CSV file (text/csv, header row first): the OpenAPI document describes it as text, not JSON."""


class PageQuery(Query):
    page: int = Field(default=1, ge=1, le=1_000_000)
    page_size: int = Field(
        default=50, ge=1, le=MAX_PAGE_SIZE, description=f"At most {MAX_PAGE_SIZE}; a larger value is refused (422)."
    )


class ChargePointFilter(PageQuery):
    country: str | None = Field(default=None, max_length=2, description="ISO 3166-1 alpha-2 code, e.g. SE.")
    area: str | None = Field(default=None, max_length=3, description="Price area: DK1, DK2, SE1-SE4, GB or IE.")
    state: StateLabel | None = Field(default=None, description="PowerBank participation state.")


class Team(BaseModel):
    id: int
    name: str
    operator_id: int
    operator_name: str


class TeamList(BaseModel):
    """The teams the token can see."""

    items: list[Team]


class PowerBankSummary(BaseModel):
    state: StateLabel
    why: str | None = Field(
        description="What the Charge points tab shows next to the state, e.g. 'Facility ID missing'."
    )


class ChargePoint(BaseModel):
    """A charge point."""

    id: int
    team_id: int
    name: str
    identity: str = Field(description="OCPP identity, unique in the hub.")
    brand: str
    model: str
    firmware: str
    serial: str
    country: str
    price_area: str | None
    facility_id: str | None = Field(description="Swedish Facility ID (GSRN); only for charge points in Sweden.")
    connection_status: ConnectionStatus
    last_seen_at: datetime | None
    created_at: datetime
    updated_at: datetime
    powerbank: PowerBankSummary


class ChargePointPage(BaseModel):
    """One page of a team's charge points, by name."""

    items: list[ChargePoint]
    page: int
    page_size: int
    total: int
    pages: int


class ChargePointChanges(RequestBody):
    """Fields to change; fields left out keep their value, null clears an optional one."""

    name: str | None = Field(default=None, max_length=200)
    identity: str | None = Field(
        default=None,
        max_length=100,
        description="OCPP identity: 1-48 letters, digits and - _ . : unique in the hub. A connected charger "
        "with the old identity is disconnected.",
    )
    brand: str | None = Field(default=None, max_length=200)
    model: str | None = Field(default=None, max_length=200)
    firmware: str | None = Field(default=None, max_length=200)
    serial: str | None = Field(default=None, max_length=200)
    country: str | None = Field(default=None, max_length=100)
    price_area: str | None = Field(default=None, max_length=100)
    facility_id: str | None = Field(default=None, max_length=100)


class ChargePointCreate(RequestBody):
    """A new charge point of the team, checked as the Add charge point form checks it."""

    name: str = Field(max_length=200)
    identity: str = Field(
        max_length=100, description="OCPP identity: 1-48 letters, digits and - _ . : unique in the hub."
    )
    brand: str | None = Field(default=None, max_length=200)
    model: str | None = Field(default=None, max_length=200)
    firmware: str | None = Field(default=None, max_length=200)
    serial: str | None = Field(default=None, max_length=200)
    country: str = Field(max_length=100, description="ISO 3166-1 alpha-2 code, e.g. SE.")
    price_area: str | None = Field(
        default=None,
        max_length=100,
        description="DK1 or DK2 in Denmark, SE1-SE4 in Sweden (GB and IE are set by themselves); none elsewhere.",
    )
    facility_id: str | None = Field(
        default=None, max_length=100, description="Sweden only: the meter's 18-digit Facility ID (GSRN)."
    )


class ChargePointCreated(ChargePoint):
    """The new charge point, with the OCPP password its charger connects with: shown only in this answer."""

    ocpp_password: str = Field(
        description="HTTP Basic password of OCPP security profile 1 (username: identity). PowerBank keeps only "
        "a hash of it: it cannot be shown again, only replaced."
    )
    ocpp_url: str = Field(description="The websocket URL the charger is configured with.")


class DeletedChargePoint(BaseModel):
    """A charge point that was deleted; any PowerBank limit on its charger was released."""

    id: int
    team_id: int
    name: str
    identity: str
    message: str


class ChargePointImport(RequestBody):
    """A CSV file of charge points to add to the team, all or none."""

    csv: str = Field(
        max_length=MAX_IMPORT_BYTES,
        description="The file's text. First line: the columns Name, Identity, Brand, Model, Country, Price area, "
        "Facility ID (Name, Identity and Country are needed, the others may be left out), separated by ; or , "
        f"(or tab). At most {MAX_IMPORT_ROWS:,} charge points.",
    )
    dry_run: bool = Field(
        default=False, description="Only check the file (the preview): answer 200 with its rows, save nothing."
    )


class ImportRowOut(BaseModel):
    """A charge point of an import file, as it would be saved."""

    line: int = Field(description="Its line in the file (the first line names the columns).")
    name: str
    identity: str
    brand: str
    model: str
    country: str
    price_area: str | None
    facility_id: str | None


class ChargePointImportPreview(BaseModel):
    """The file checked and found good: what importing it would add (nothing was saved)."""

    message: str
    rows: int
    items: list[ImportRowOut]


class ImportedChargePoint(BaseModel):
    """A charge point the import added, with its OCPP password: shown only in this answer."""

    line: int
    id: int
    name: str
    identity: str
    ocpp_password: str = Field(description="PowerBank keeps only a hash of it: it cannot be shown again.")
    ocpp_url: str


class ChargePointImportResult(BaseModel):
    """The charge points imported, in the file's order."""

    message: str
    imported: int
    items: list[ImportedChargePoint]


class PowerBankStatus(BaseModel):
    """A charge point's PowerBank participation and whether it may take part."""

    charge_point_id: int
    state: StateLabel
    since: datetime | None = Field(description="When the current state began (null: never signed up).")
    source: str | None = Field(description="How it got there: bulk, single, automatic or API.")
    reason: str | None = Field(description="Why, for a suspension or an automatic change.")
    eligible: bool = Field(description="True when the charge point may take part as stored now.")
    compatibility: str = Field(description="Compatible, Not compatible or Not available in <country>.")
    reasons: list[str] = Field(description="Why it may not take part (empty when eligible).")


class PowerBankSignUp(RequestBody):
    """Sign one charge point up."""

    accept_terms_version: str = Field(max_length=100, description="The version of the current terms, accepted.")
    facility_id: str | None = Field(
        default=None, max_length=100, description="Sweden: the Facility ID, stored only if the sign-up succeeds."
    )


class BulkSignUp(RequestBody):
    """Sign charge points of one team up, all or nothing."""

    accept_terms_version: str = Field(max_length=100, description="The version of the current terms, accepted.")
    charge_point_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None = Field(
        default=None, max_length=MAX_BULK_IDS, description="The charge points to sign up; or use all."
    )
    all: bool = Field(default=False, description="Sign up every eligible charge point of the team.")
    facility_ids: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_BULK_IDS,
        description="Facility IDs for Swedish charge points, by charge point id; stored only if the sign-up succeeds.",
    )

    @model_validator(mode="after")
    def _one_selection(self) -> BulkSignUp:
        if self.all == (self.charge_point_ids is not None):
            raise ValueError('Give either "charge_point_ids" or "all": true.')
        return self


class BulkRow(BaseModel):
    charge_point_id: int
    name: str
    outcome: Literal["signed up", "already signed up"]
    state: StateLabel


class BulkSignUpResult(BaseModel):
    """What the sign-up did, per charge point."""

    message: str
    terms_version: str
    signed_up: int
    results: list[BulkRow]


class Event(BaseModel):
    id: int
    charge_point_id: int
    charge_point_name: str
    at: datetime
    actor: str = Field(description='Who: a user, "API token <name>", or "system".')
    from_state: StateLabel
    to_state: StateLabel
    source: str
    terms_version: str | None
    reason: str


class EventQuery(PageQuery):
    charge_point_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class EventPage(BaseModel):
    """One page of a team's PowerBank history, newest first."""

    items: list[Event]
    page: int
    page_size: int
    total: int
    pages: int


class Terms(BaseModel):
    """The current terms and conditions."""

    version: str
    published_at: datetime
    text: str


# ---- from domain objects ----


def status_out(row: RowStatus) -> PowerBankStatus:
    """Return a charge point's PowerBank status as the API shows it."""
    eligibility = row.eligibility
    reasons = [reason for reason in (eligibility.why_unselectable or eligibility.facility_id_problem,) if reason]
    return PowerBankStatus(
        charge_point_id=row.charge_point.id or 0,
        state=row.state,
        since=row.since,
        source=row.source.label if row.source else None,
        reason=(row.participation.reason or None) if row.participation else None,
        eligible=eligibility.eligible,
        compatibility=eligibility.compatibility,
        reasons=reasons,
    )


def charge_point_out(row: RowStatus) -> ChargePoint:
    """Return a charge point with its PowerBank summary as the API shows it."""
    cp = row.charge_point
    return ChargePoint(
        id=cp.id or 0,
        team_id=cp.team_id,
        name=cp.name,
        identity=cp.identity,
        brand=cp.brand,
        model=cp.model,
        firmware=cp.firmware,
        serial=cp.serial,
        country=cp.country,
        price_area=cp.price_area,
        facility_id=cp.facility_id,
        connection_status=connection_status(cp),  # type: ignore[arg-type]
        last_seen_at=cp.last_seen_at,
        created_at=cp.created_at,
        updated_at=cp.updated_at,
        powerbank=PowerBankSummary(state=row.state, why=row.state_explanation),
    )


def event_out(event: ParticipationEvent) -> Event:
    """Return an entry of the PowerBank history as the API shows it."""
    return Event(
        id=event.id or 0,
        charge_point_id=event.charge_point_id,
        charge_point_name=event.charge_point_name,
        at=event.at,
        actor=event.actor_label,
        from_state=ParticipationState(event.from_state),
        to_state=ParticipationState(event.to_state),
        source=event.source_label,
        terms_version=event.terms_version,
        reason=event.reason,
    )


def pages(total: int, page_size: int) -> int:
    """Return how many pages of ``page_size`` hold ``total`` items (at least one)."""
    return max(1, -(-total // page_size))


class AvailabilityQuery(Query):
    from_: str | None = Field(
        default=None,
        alias="from",
        json_schema_extra={"format": "date-time"},
        description="Start of the range (ISO 8601 with time zone, included); default: 24 hours before to.",
    )
    to: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="End of the range (ISO 8601 with time zone, excluded); default: now. At most 31 days after from.",
    )


class AvailabilityMinute(BaseModel):
    minute: datetime = Field(description="The start of the sampled minute (UTC).")
    available_kw: float = Field(
        description="Sum of the newest measured power of the signed-up chargers online in that minute."
    )
    signed_up: int = Field(description="Signed-up chargers of the area, online or not.")
    online: int = Field(description="Signed-up chargers connected to the hub.")
    reporting: int = Field(description="Of those online, the ones that reported power in the 5 minutes before.")


class AreaAvailabilitySeries(BaseModel):
    price_area: str
    start: datetime = Field(description="The range asked for: from (included)...")
    end: datetime = Field(description="...to (excluded).")
    step_s: int = Field(description="Seconds between minutes (60).")
    minutes: list[AvailabilityMinute] = Field(
        description="Oldest first. A minute missing from the list was not sampled (the hub was down): a gap, not zero."
    )
