"""PowerBank enrollment: rules R1-R8 applied, shared by pages, API, OCPP handlers and CLI.

Who may take part (countries, compatibility, Sweden's Facility ID: decided in
``powerbank.rules.eligibility``), signing up in bulk or one at a time after accepting the current
terms, opting out, DK2's automatic sign-up, suspension when a signed-up charge point stops being
eligible, and the append-only history.

Every entry point that acts for a person checks that person's permission itself, so a forged
request changes nothing. Every change goes through ``_apply`` which writes with optimistic
concurrency (``UPDATE ... WHERE version = <read version>``): two people saving at once cannot
both win, and the loser's transaction is refused whole (ConflictError).
"""

from __future__ import annotations

import csv
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.selectable import ScalarSelect
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.errors import ConflictError, ForbiddenError, FormErrors, NotFoundError
from powerbank.i18n import gettext as _
from powerbank.i18n import ngettext
from powerbank.models import (
    ChargePoint,
    CompatibleModel,
    Participation,
    ParticipationEvent,
    ParticipationSource,
    ParticipationState,
    Team,
    TermsAcceptance,
    TermsVersion,
)
from powerbank.rules.countries import country_name
from powerbank.rules.eligibility import (
    CatalogueKey,
    Eligibility,
    automatic_change,
    automatic_sign_up_reason,
    judge,
    suspended_by_person,
)
from powerbank.rules.gsrn import clean_facility_id
from powerbank.rules.permissions import Permission, Principal, can_on_team, denial_reason
from powerbank.rules.validators import ValidationError
from powerbank.services import notifications
from powerbank.services.access import require_on_team
from powerbank.services.audit import SYSTEM, Actor, record

PARTICIPATION = Participation.__table__  # type: ignore[attr-defined]
EVENTS = ParticipationEvent.__table__  # type: ignore[attr-defined]
CHARGE_POINTS = ChargePoint.__table__  # type: ignore[attr-defined]

ReleaseHook = Callable[[AsyncSession | None, list[int], str], Awaitable[None]]
_release_hooks: list[ReleaseHook] = []


def register_release_hook(hook: ReleaseHook) -> None:
    """Call ``hook(session, charge_point_ids, reason)`` whenever charge points stop participating (S2).

    It is called inside the transaction that stops them: a hook that reaches chargers waits for the
    commit (``after_commit``), so nothing reads them as signed up after they were released.
    """
    _release_hooks.append(hook)


def unregister_release_hook(hook: ReleaseHook) -> None:
    """Stop calling a hook registered with ``register_release_hook``."""
    _release_hooks.remove(hook)


async def _release(session: AsyncSession, charge_point_ids: list[int], reason: str) -> None:
    for hook in list(_release_hooks):
        await hook(session, charge_point_ids, reason)


async def release_charge_points(session: AsyncSession, charge_point_ids: list[int], reason: str) -> None:
    """Run the release hooks for charge points deleted or moved to another area (S2)."""
    await _release(session, charge_point_ids, reason)


class SignUpError(FormErrors):
    """Nothing was saved; ``errors`` holds form messages and ``row_errors`` one message per charge point."""

    def __init__(self, errors: dict[str, str], row_errors: dict[int, str] | None = None) -> None:
        self.row_errors = row_errors or {}
        super().__init__(errors or {"form": _("Nothing was saved.")})


@dataclass(frozen=True)
class RowStatus:
    """What PowerBank says about one charge point: its state, and whether (and why not) it can take part."""

    charge_point: ChargePoint
    participation: Participation | None
    eligibility: Eligibility

    @property
    def state(self) -> ParticipationState:
        if self.participation is None:
            return ParticipationState.NOT_SIGNED_UP
        return ParticipationState(self.participation.state)

    @property
    def source(self) -> ParticipationSource | None:
        return ParticipationSource(self.participation.source) if self.participation else None

    @property
    def since(self) -> datetime | None:
        return self.participation.since if self.participation else None

    @property
    def suspended_by_person(self) -> bool:
        """Return True when an operator admin suspended it: only a person ends that, never automation."""
        return suspended_by_person(self.state, self.source)

    @property
    def state_explanation(self) -> str | None:
        """Return the few words the Charge points tab shows next to the state, or None."""
        state = self.state
        if state is ParticipationState.SIGNED_UP and self.source == ParticipationSource.AUTOMATIC:
            return automatic_sign_up_reason(self.charge_point.price_area)
        if state is ParticipationState.SUSPENDED and self.participation is not None:
            return self.participation.reason
        if state is ParticipationState.NOT_SIGNED_UP:
            return self.eligibility.why_ineligible
        return None


@dataclass
class BulkResult:
    """What a sign-up saved."""

    signed_up: list[int]
    already_signed_up: list[int]
    terms_version: str

    @property
    def message(self) -> str:
        text = ngettext("%(num)s charge point signed up", "%(num)s charge points signed up", len(self.signed_up))
        if self.already_signed_up:
            text += ngettext(
                "; %(num)s was already signed up", "; %(num)s were already signed up", len(self.already_signed_up)
            )
        return text + "."


@dataclass
class EventPage:
    items: list[ParticipationEvent]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


@dataclass
class _Change:
    row: RowStatus
    to_state: ParticipationState
    reason: str = ""


@dataclass
class _Context:
    """Everything ``_apply`` writes with, besides the changes themselves."""

    actor: Actor
    source: ParticipationSource
    terms_version: str | None


async def catalogue_keys(session: AsyncSession, operator_id: int) -> set[CatalogueKey]:
    """Return the keys of every catalogued brand/model of an operator (one query)."""
    rows = await session.exec(
        select(CompatibleModel.brand_key, CompatibleModel.model_key).where(CompatibleModel.operator_id == operator_id)
    )
    return {(brand, model) for brand, model in rows}


def row_status(charge_point: ChargePoint, participation: Participation | None, keys: set[CatalogueKey]) -> RowStatus:
    """Return a charge point's PowerBank status from already loaded data (no query)."""
    return RowStatus(charge_point, participation, judge(charge_point, keys))


def _require_sign_up(principal: Principal, team: Team) -> None:
    if not can_on_team(principal, Permission.VIEW_TEAM, team):
        raise NotFoundError("No such team.")
    reason = denial_reason(principal, Permission.SIGN_UP_POWERBANK, team)
    if reason is not None:
        raise ForbiddenError(reason)


async def _participations(session: AsyncSession, charge_point_ids: Iterable[int]) -> dict[int, Participation]:
    ids = list(charge_point_ids)
    if not ids:
        return {}
    # populate_existing: rows changed by a bulk UPDATE earlier in this session must not come back stale.
    rows = await session.exec(
        select(Participation)
        .where(col(Participation.charge_point_id).in_(ids))
        .execution_options(populate_existing=True)
    )
    return {row.charge_point_id: row for row in rows}


async def current_terms(session: AsyncSession) -> TermsVersion:
    """Return the current terms and conditions: the newest published version."""
    terms = (
        await session.exec(
            select(TermsVersion)
            .where(TermsVersion.published_at <= utcnow())
            .order_by(col(TermsVersion.published_at).desc(), col(TermsVersion.id).desc())
            .limit(1)
        )
    ).first()
    if terms is None:
        raise ConflictError(_("No terms and conditions are published; PowerBank sign-up is not possible yet."))
    return terms


def _operator_of_team(team_id: int) -> ScalarSelect[int]:
    return select(Team.operator_id).where(Team.id == team_id).scalar_subquery()


async def has_accepted_terms(session: AsyncSession, user_id: int, team_id: int, version: str) -> bool:
    """Return True when the user has accepted this terms version for this team."""
    found = await session.exec(
        select(TermsAcceptance.id)
        .where(
            TermsAcceptance.user_id == user_id,
            TermsAcceptance.team_id == team_id,
            # Acceptances outlive their team: one of another operator's team with this id is not this team's.
            TermsAcceptance.operator_id == _operator_of_team(team_id),
            TermsAcceptance.version == version,
        )
        .limit(1)
    )
    return found.first() is not None


def _check_terms(accepted_version: str | None, terms: TermsVersion) -> None:
    if not accepted_version:
        raise SignUpError({"terms": _("Accept the terms and conditions to sign up.")})
    if accepted_version != terms.version:
        raise SignUpError(
            {
                "terms": _(
                    "The terms and conditions have changed. Read version %(version)s and accept it.",
                    version=terms.version,
                )
            }
        )


async def eligibility_for_team(session: AsyncSession, team: Team) -> list[RowStatus]:
    """Return every charge point of a team with its PowerBank status, by name (three queries)."""
    charge_points = list(
        await session.exec(
            select(ChargePoint)
            .where(ChargePoint.team_id == team.id)
            .order_by(col(ChargePoint.name), col(ChargePoint.id))
            .execution_options(populate_existing=True)
        )
    )
    participations = await _participations(session, [cp.id for cp in charge_points if cp.id is not None])
    keys = await catalogue_keys(session, team.operator_id)
    return [row_status(cp, participations.get(cp.id or 0), keys) for cp in charge_points]


async def statuses_for(session: AsyncSession, team: Team, charge_points: Sequence[ChargePoint]) -> dict[int, RowStatus]:
    """Return the PowerBank status of some charge points of one team, by id (two queries)."""
    participations = await _participations(session, [cp.id for cp in charge_points if cp.id is not None])
    keys = await catalogue_keys(session, team.operator_id)
    return {cp.id or 0: row_status(cp, participations.get(cp.id or 0), keys) for cp in charge_points}


async def get_participation(session: AsyncSession, charge_point: ChargePoint) -> RowStatus:
    """Return one charge point's PowerBank status."""
    team = await session.get(Team, charge_point.team_id)
    if team is None:
        raise NotFoundError("No such team.")
    return (await statuses_for(session, team, [charge_point]))[charge_point.id or 0]


async def _apply(session: AsyncSession, changes: list[_Change], context: _Context) -> None:
    """Write state changes and their events; refuse the whole change if any row changed meanwhile."""
    if not changes:
        return
    team_ids = {change.row.charge_point.team_id for change in changes}
    operator_of_team = dict(
        (await session.exec(select(Team.id, Team.operator_id).where(col(Team.id).in_(team_ids)))).all()
    )
    now = utcnow()
    inserts: list[dict[str, object]] = []
    updates: list[dict[str, object]] = []
    events: list[dict[str, object]] = []
    for change in changes:
        charge_point = change.row.charge_point
        values = {"state": str(change.to_state), "since": now, "source": context.source, "reason": change.reason}
        previous = change.row.participation
        if previous is None:
            inserts.append({"charge_point_id": charge_point.id, "version": 1, **values})
        else:
            updates.append(
                {
                    "b_charge_point_id": charge_point.id,
                    "b_version": previous.version,
                    "version": previous.version + 1,
                    **values,
                }
            )
        events.append(
            {
                "charge_point_id": charge_point.id,
                "team_id": charge_point.team_id,
                "operator_id": operator_of_team[charge_point.team_id],
                "charge_point_name": charge_point.name,
                "actor_user_id": context.actor.user_id,
                "actor_label": context.actor.label,
                "at": now,
                "from_state": str(change.row.state),
                "to_state": str(change.to_state),
                "source": context.source,
                "terms_version": context.terms_version,
                "reason": change.reason,
            }
        )
    stale = ConflictError(
        _(
            "Someone else changed the PowerBank participation of these charge points at the same time. "
            "Nothing was saved; look at the current state and try again."
        )
    )
    if inserts:
        try:
            await session.exec(insert(PARTICIPATION), params=inserts)
        except IntegrityError as exc:
            raise stale from exc
    if updates:
        # Each row is updated only at the version it was read at. SQLite counts the rows an
        # executemany changed; asyncpg does not, so on PostgreSQL the rows are locked and their
        # versions checked first (one query), and no one can change them until this commits.
        counts_rows = session.get_bind().dialect.supports_sane_multi_rowcount
        if not counts_rows:
            locked = dict(
                (
                    await session.exec(
                        select(PARTICIPATION.c.charge_point_id, PARTICIPATION.c.version)
                        .where(PARTICIPATION.c.charge_point_id.in_([row["b_charge_point_id"] for row in updates]))
                        .with_for_update()
                    )
                ).all()
            )
            if any(locked.get(row["b_charge_point_id"]) != row["b_version"] for row in updates):
                raise stale
        result = await session.exec(
            update(PARTICIPATION).where(
                PARTICIPATION.c.charge_point_id == bindparam("b_charge_point_id"),
                PARTICIPATION.c.version == bindparam("b_version"),
            ),
            params=updates,
        )
        if counts_rows and result.rowcount != len(updates):
            raise stale
    await session.exec(insert(EVENTS), params=events)
    await notifications.participation_changed(session, events)
    released: dict[str, list[int]] = {}
    for change in changes:
        if change.to_state in (ParticipationState.OPTED_OUT, ParticipationState.SUSPENDED):
            released.setdefault(change.reason, []).append(change.row.charge_point.id or 0)
    for reason, charge_point_ids in released.items():
        await _release(session, charge_point_ids, reason)


async def _store_facility_ids(session: AsyncSession, facility_ids: dict[int, str]) -> None:
    if facility_ids:
        await session.exec(
            update(CHARGE_POINTS).where(CHARGE_POINTS.c.id == bindparam("b_id")),
            params=[
                {"b_id": cp_id, "facility_id": value, "updated_at": utcnow()} for cp_id, value in facility_ids.items()
            ],
        )


def _facility_id_to_store(row: RowStatus, typed: str | None) -> tuple[str | None, str | None]:
    """Return (clean typed Facility ID to store, problem) for a row about to be signed up (R5)."""
    if not row.eligibility.facility_id_needed:
        return None, None
    if typed and typed.strip():
        try:
            return clean_facility_id(typed), None
        except ValidationError as exc:
            return None, str(exc)
    return None, row.eligibility.facility_id_problem


async def bulk_sign_up(
    session: AsyncSession,
    principal: Principal,
    team: Team,
    *,
    accept_terms_version: str | None,
    charge_point_ids: list[int] | None,
    sign_up_all: bool,
    facility_ids: dict[int, str],
    source: ParticipationSource = ParticipationSource.BULK,
) -> BulkResult:
    """Sign up charge points of one team (R3), all or nothing; raise SignUpError saying what blocks it.

    With ``sign_up_all`` every eligible charge point of the team is signed up, opted-out ones
    included (the user asked for all); otherwise the ``charge_point_ids`` given. A Swedish one
    needs a valid Facility ID, stored or typed in ``facility_ids`` (stored only if the save succeeds).
    A bounded number of queries, whatever the number of charge points.
    """
    _require_sign_up(principal, team)
    terms = await current_terms(session)
    _check_terms(accept_terms_version, terms)
    rows = {row.charge_point.id or 0: row for row in await eligibility_for_team(session, team)}
    named = set(charge_point_ids or []) | set(facility_ids)
    if named - set(rows):
        raise NotFoundError("No such charge point in this team.")
    if sign_up_all:
        targets = [row for row in rows.values() if row.eligibility.selectable]
    else:
        targets = [rows[cp_id] for cp_id in dict.fromkeys(charge_point_ids or [])]
        if not targets:
            raise SignUpError({"form": _("Tick the charge points to sign up, or use Sign up all charge points.")})
    row_errors: dict[int, str] = {}
    new_facility_ids: dict[int, str] = {}
    for row in targets:
        cp_id = row.charge_point.id or 0
        if row.eligibility.why_unselectable:
            row_errors[cp_id] = row.eligibility.why_unselectable
            continue
        clean, problem = _facility_id_to_store(row, facility_ids.get(cp_id))
        if problem:
            row_errors[cp_id] = problem
        elif clean and clean != row.charge_point.facility_id:
            new_facility_ids[cp_id] = clean
    if row_errors:
        count = len(row_errors)
        raise SignUpError(
            {
                "form": ngettext(
                    "Nothing was saved: %(num)s charge point cannot be signed up yet (see the messages in the table).",
                    "Nothing was saved: %(num)s charge points cannot be signed up yet (see the messages in the table).",
                    count,
                )
            },
            row_errors,
        )
    already = [row.charge_point.id or 0 for row in targets if row.state is ParticipationState.SIGNED_UP]
    changes = [
        _Change(row, ParticipationState.SIGNED_UP) for row in targets if row.state is not ParticipationState.SIGNED_UP
    ]
    actor = Actor.of(principal.user)
    await _store_facility_ids(session, new_facility_ids)
    await _apply(session, changes, _Context(actor, source, terms.version))
    signed_up = [change.row.charge_point.id or 0 for change in changes]
    session.add(
        TermsAcceptance(
            user_id=principal.user.id or 0,
            team_id=team.id or 0,
            operator_id=team.operator_id,
            version=terms.version,
            charge_point_ids=signed_up,
        )
    )
    record(
        session,
        actor,
        "powerbank.sign_up",
        team,
        operator_id=team.operator_id,
        after={
            "charge_point_ids": signed_up,
            "terms_version": terms.version,
            "source": source.label,
            "facility_ids_set": sorted(new_facility_ids),
        },
    )
    await session.flush()
    return BulkResult(signed_up, already, terms.version)


async def _team_of(session: AsyncSession, principal: Principal, charge_point: ChargePoint) -> Team:
    team = await session.get(Team, charge_point.team_id)
    if team is None or not can_on_team(principal, Permission.VIEW_TEAM, team):
        raise NotFoundError("No such charge point.")
    return team


async def sign_up_one(
    session: AsyncSession,
    principal: Principal,
    charge_point: ChargePoint,
    *,
    accept_terms_version: str | None,
    facility_id: str | None,
    source: ParticipationSource = ParticipationSource.SINGLE,
) -> RowStatus:
    """Sign one charge point up (the toggle); terms may be omitted once this user accepted them for the team."""
    team = await _team_of(session, principal, charge_point)
    _require_sign_up(principal, team)
    terms = await current_terms(session)
    if accept_terms_version or not await has_accepted_terms(
        session, principal.user.id or 0, team.id or 0, terms.version
    ):
        _check_terms(accept_terms_version, terms)
    row = await get_participation(session, charge_point)
    if row.eligibility.why_unselectable:
        raise SignUpError({"form": row.eligibility.why_unselectable})
    clean, problem = _facility_id_to_store(row, facility_id)
    if problem:
        raise SignUpError({"facility_id": problem}, {charge_point.id or 0: problem})
    if row.state is ParticipationState.SIGNED_UP:
        return row
    actor = Actor.of(principal.user)
    if clean and clean != charge_point.facility_id:
        await _store_facility_ids(session, {charge_point.id or 0: clean})
    await _apply(session, [_Change(row, ParticipationState.SIGNED_UP)], _Context(actor, source, terms.version))
    if accept_terms_version:
        session.add(
            TermsAcceptance(
                user_id=principal.user.id or 0,
                team_id=team.id or 0,
                operator_id=team.operator_id,
                version=terms.version,
                charge_point_ids=[charge_point.id or 0],
            )
        )
    record(
        session,
        actor,
        "powerbank.sign_up",
        charge_point,
        operator_id=team.operator_id,
        after={"terms_version": terms.version, "source": source.label},
    )
    await session.flush()
    return await _refreshed(session, charge_point)


async def _refreshed(session: AsyncSession, charge_point: ChargePoint) -> RowStatus:
    await session.refresh(charge_point)
    return await get_participation(session, charge_point)


async def opt_out(
    session: AsyncSession,
    principal: Principal,
    charge_point: ChargePoint,
    *,
    source: ParticipationSource = ParticipationSource.SINGLE,
) -> RowStatus:
    """Stop a charge point's participation at once (R7), releasing any active limit (S2)."""
    team = await _team_of(session, principal, charge_point)
    _require_sign_up(principal, team)
    row = await get_participation(session, charge_point)
    if row.state is ParticipationState.OPTED_OUT:
        return row
    actor = Actor.of(principal.user)
    await _apply(
        session,
        [_Change(row, ParticipationState.OPTED_OUT, f"Opted out by {actor.label}")],
        _Context(actor, source, None),
    )
    record(
        session,
        actor,
        "powerbank.opt_out",
        charge_point,
        operator_id=team.operator_id,
        before={"state": row.state.label},
        after={"state": ParticipationState.OPTED_OUT.label, "source": source.label},
    )
    await session.flush()
    return await get_participation(session, charge_point)


# What an operator admin types as the reason for a suspension (the stored reason also names them).
SUSPENSION_REASON_MAX = 150
REASON_MAX = 200


async def suspend(
    session: AsyncSession,
    principal: Principal,
    charge_point: ChargePoint,
    reason: str,
    *,
    source: ParticipationSource = ParticipationSource.SINGLE,
) -> RowStatus:
    """Suspend a charge point from PowerBank by an operator admin's decision, releasing any limit at once (S2).

    The history (R8) records who and why. Automation never lifts it (``rules.eligibility.automatic_change``):
    a person signing it up again, or ``lift_suspension``, ends it. Raise FormErrors without a reason,
    ConflictError when the charge point does not take part.
    """
    team = await _team_of(session, principal, charge_point)
    require_on_team(principal, Permission.SUSPEND_POWERBANK, team, not_found="No such charge point.")
    typed = " ".join(reason.split())
    if not typed:
        raise FormErrors({"reason": _("Say why it is suspended: the history and the team see it.")})
    if len(typed) > SUSPENSION_REASON_MAX:
        raise FormErrors({"reason": _("At most %(count)s characters.", count=SUSPENSION_REASON_MAX)})
    row = await get_participation(session, charge_point)
    if row.state not in (ParticipationState.SIGNED_UP, ParticipationState.SUSPENDED):
        raise ConflictError(
            f"{charge_point.name} does not take part in PowerBank ({row.state.label}): nothing to suspend."
        )
    if row.suspended_by_person:
        raise ConflictError(
            f"{charge_point.name} is suspended already: {row.participation.reason if row.participation else ''}"
        )
    actor = Actor.of(principal.user)
    stored = f"Suspended by {actor.label}: {typed}"
    if len(stored) > REASON_MAX:
        stored = stored[: REASON_MAX - 1] + "…"
    await _apply(session, [_Change(row, ParticipationState.SUSPENDED, stored)], _Context(actor, source, None))
    record(
        session,
        actor,
        "powerbank.suspend",
        charge_point,
        operator_id=team.operator_id,
        before={"state": row.state.label},
        after={"state": ParticipationState.SUSPENDED.label, "reason": typed, "source": source.label},
    )
    await session.flush()
    return await get_participation(session, charge_point)


async def lift_suspension(
    session: AsyncSession,
    principal: Principal,
    charge_point: ChargePoint,
    *,
    source: ParticipationSource = ParticipationSource.SINGLE,
) -> RowStatus:
    """End an operator admin's suspension: the charge point is signed up again under the current terms.

    If it is not eligible meanwhile, the hub suspends it by itself at once (and lifts that once it is).
    """
    team = await _team_of(session, principal, charge_point)
    require_on_team(principal, Permission.SUSPEND_POWERBANK, team, not_found="No such charge point.")
    row = await get_participation(session, charge_point)
    if not row.suspended_by_person:
        raise ConflictError(f"{charge_point.name} is not suspended by an admin ({row.state.label}).")
    terms = await current_terms(session)
    actor = Actor.of(principal.user)
    await _apply(
        session,
        [_Change(row, ParticipationState.SIGNED_UP, f"Suspension lifted by {actor.label}"[:REASON_MAX])],
        _Context(actor, source, terms.version),
    )
    record(
        session,
        actor,
        "powerbank.lift_suspension",
        charge_point,
        operator_id=team.operator_id,
        before={"state": row.state.label, "reason": row.participation.reason if row.participation else ""},
        after={"state": ParticipationState.SIGNED_UP.label, "source": source.label},
    )
    await reevaluate(session, [charge_point])
    await session.flush()
    return await _refreshed(session, charge_point)


async def reevaluate(session: AsyncSession, charge_points: Iterable[ChargePoint | int]) -> list[tuple[int, str]]:
    """Apply what the system does by itself after a change; return (charge point id, new state) pairs.

    DK2 automatic sign-up (R6, never after an opt-out), suspension of a signed-up charge point
    that stopped being eligible, and its return once eligible again. Call it after creating or
    editing charge points, after catalogue changes and once a charger reports what it is.
    """
    wanted = [cp_id for item in charge_points if (cp_id := item if isinstance(item, int) else item.id) is not None]
    if not wanted:
        return []
    # Pending edits of the caller (a new Facility ID, another country) must be what is judged.
    await session.flush()
    pairs = list(
        await session.exec(
            select(ChargePoint, Team.operator_id)
            .join(Team, col(Team.id) == ChargePoint.team_id)
            .where(col(ChargePoint.id).in_(wanted))
            .execution_options(populate_existing=True)
        )
    )
    participations = await _participations(session, wanted)
    keys_by_operator = {
        operator_id: await catalogue_keys(session, operator_id)
        for operator_id in {operator_id for _, operator_id in pairs}
    }
    changes_by_operator: dict[int, list[_Change]] = {}
    for charge_point, operator_id in pairs:
        row = row_status(charge_point, participations.get(charge_point.id or 0), keys_by_operator[operator_id])
        decided = automatic_change(row.state, row.eligibility, charge_point.price_area, row.source)
        if decided is not None:
            changes_by_operator.setdefault(operator_id, []).append(_Change(row, *decided))
    changes = [change for group in changes_by_operator.values() for change in group]
    if not changes:
        return []
    terms = await current_terms(session)
    await _apply(session, changes, _Context(SYSTEM, ParticipationSource.AUTOMATIC, terms.version))
    for operator_id, group in changes_by_operator.items():
        record(
            session,
            SYSTEM,
            "powerbank.reevaluate",
            group[0].row.charge_point,
            operator_id=operator_id,
            label=f"{len(group)} charge point{'' if len(group) == 1 else 's'}",
            after={c.row.charge_point.identity: f"{c.to_state.label} ({c.reason})" for c in group},
        )
    return [(change.row.charge_point.id or 0, str(change.to_state)) for change in changes]


async def reevaluate_operator(session: AsyncSession, operator_id: int) -> list[tuple[int, str]]:
    """Re-evaluate every charge point of an operator (after a catalogue change)."""
    ids = await session.exec(
        select(ChargePoint.id).join(Team, col(Team.id) == ChargePoint.team_id).where(Team.operator_id == operator_id)
    )
    return await reevaluate(session, [cp_id for cp_id in ids if cp_id is not None])


async def list_events(
    session: AsyncSession, team_id: int, *, charge_point_id: int | None = None, page: int = 1, page_size: int = 50
) -> EventPage:
    """Return one page of a team's PowerBank history, newest first, optionally of one charge point."""
    # History outlives its team: events of another operator's team with this id are not this team's.
    conditions = [ParticipationEvent.team_id == team_id, ParticipationEvent.operator_id == _operator_of_team(team_id)]
    if charge_point_id is not None:
        conditions.append(ParticipationEvent.charge_point_id == charge_point_id)
    total = (await session.exec(select(func.count()).select_from(ParticipationEvent).where(*conditions))).one()
    items = await session.exec(
        select(ParticipationEvent)
        .where(*conditions)
        .order_by(col(ParticipationEvent.at).desc(), col(ParticipationEvent.id).desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    )
    return EventPage(list(items), total, page, page_size)


CSV_COLUMNS = ("Charge point", "Identity", "Country", "Area", "State", "Since", "Source", "Facility ID")


# A cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value: str) -> str:
    """Return ``value`` so a spreadsheet shows it as text: a leading apostrophe before a formula's first sign."""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def participation_csv_rows(rows: Iterable[RowStatus]) -> list[list[str]]:
    """Return the CSV export of a team's current participation, header first; no cell is a formula."""
    lines = [list(CSV_COLUMNS)]
    for row in rows:
        cp = row.charge_point
        lines.append(
            [
                cp.name,
                cp.identity,
                country_name(cp.country),
                cp.price_area or "",
                row.state.label,
                row.since.isoformat() if row.since else "",
                row.source.label if row.source else "",
                cp.facility_id or "",
            ]
        )
    return [[spreadsheet_text(cell) for cell in line] for line in lines]


# Facility IDs in bulk (R5): "identity or name; Facility ID" lines pasted or uploaded into the sign-up flow.
MAX_PASTE_LINES = 10_000
# Half the request limit (1 MiB): pasted text travels URL-encoded, which makes it longer.
MAX_PASTE_BYTES = 512 * 1024
# Tried in this order on the first line: a name may hold a comma, hardly a semicolon or a tab.
PASTE_SEPARATORS = ("\t", ";", ",")
PASTE_FIELD = "pasted_facility_ids"
# How much of a line a problem quotes back (a line is the sender's text, of any length).
QUOTED_LENGTH = 80


@dataclass(frozen=True)
class PastedLineProblem:
    """A pasted line that filled in nothing, and why."""

    line: int
    text: str
    reason: str


@dataclass
class FacilityIdPaste:
    """Facility IDs matched from pasted lines, by charge point id; nothing is stored."""

    facility_ids: dict[int, str]
    line_of: dict[int, int]
    problems: list[PastedLineProblem]

    @property
    def message(self) -> str:
        count = len(self.facility_ids)
        if self.problems:
            unused = len(self.problems)
            text = ngettext(
                "Filled in %(num)s Facility ID from your list",
                "Filled in %(num)s Facility IDs from your list",
                count,
            ) + ngettext(
                "; %(num)s line could not be used (listed below)",
                "; %(num)s lines could not be used (listed below)",
                unused,
            )
        else:
            text = ngettext(
                "Filled in %(num)s Facility ID from your list",
                "Filled in %(num)s Facility IDs from your list",
                count,
            )
        return text + _(". Nothing is saved until you click Save.")


def decode_facility_ids_file(data: bytes) -> str:
    """Return an uploaded list as text: UTF-8 with or without a BOM, else Windows-1252 (spreadsheets' export)."""
    if len(data) > MAX_PASTE_BYTES:
        raise SignUpError({PASTE_FIELD: _too_large()})
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            raise SignUpError({PASTE_FIELD: _("The file is not text in UTF-8 or Windows-1252.")}) from None
    if "\x00" in text:
        # UTF-16 (a spreadsheet's "Unicode text") and binary files decode, but with NULs.
        raise SignUpError({PASTE_FIELD: _("The file is not text in UTF-8 or Windows-1252.")})
    return text


def facility_id_list(pasted: str | None, uploaded: bytes | None) -> str:
    """Return the text of a Facility ID list: an uploaded file's, else the pasted lines."""
    if uploaded:
        return decode_facility_ids_file(uploaded)
    return pasted or ""


def _too_large() -> str:
    return _(
        "The list is too long: at most %(lines)s lines and %(kib)s KiB.",
        lines=f"{MAX_PASTE_LINES:,}",
        kib=MAX_PASTE_BYTES // 1024,
    )


def _cells(line: str, separator: str) -> list[str] | None:
    try:
        cells = next(csv.reader([line], delimiter=separator, skipinitialspace=True))
    except csv.Error:
        return None
    cells = [cell.strip() for cell in cells]
    # Spreadsheets export empty trailing columns ("STO-1;7359...;;").
    while cells and not cells[-1]:
        cells.pop()
    return cells


def match_pasted_facility_ids(rows: Sequence[RowStatus], text: str) -> FacilityIdPaste:
    """Match "identity or name; Facility ID" lines to a team's charge points (no query).

    The separator is a tab, ``;`` or ``,`` (the first of them on the first line); a first line
    without digits in its second column is a header. Each line names a charge point by identity,
    else by name (case and spacing ignored), and gives a valid Facility ID for a charge point that
    needs one; any other line is listed with its reason. Raise SignUpError when the list as a
    whole cannot be read (too long, empty).
    """
    text = text.removeprefix("\ufeff")
    if len(text.encode()) > MAX_PASTE_BYTES:
        raise SignUpError({PASTE_FIELD: _too_large()})
    lines = text.splitlines()
    if len(lines) > MAX_PASTE_LINES:
        raise SignUpError({PASTE_FIELD: _too_large()})
    numbered = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise SignUpError({PASTE_FIELD: _("Paste lines of identity or name and Facility ID, or choose a file.")})
    first = numbered[0][1]
    separator = next((candidate for candidate in PASTE_SEPARATORS if candidate in first), ";")
    by_identity = {row.charge_point.identity: row for row in rows}
    by_name: dict[str, list[RowStatus]] = {}
    for row in rows:
        by_name.setdefault(_name_key(row.charge_point.name), []).append(row)
    result = FacilityIdPaste({}, {}, [])
    for number, line in numbered:
        cells = _cells(line, separator)
        if cells is not None and number == numbered[0][0] and len(cells) == 2 and not any(map(str.isdigit, cells[1])):
            continue
        problem, matched, facility_id = _judge_line(cells, by_identity, by_name)
        if problem is None and matched is not None and facility_id is not None:
            cp_id = matched.charge_point.id or 0
            earlier = result.line_of.get(cp_id)
            if earlier is not None and result.facility_ids[cp_id] != facility_id:
                problem = f"{matched.charge_point.name} has another Facility ID on line {earlier}."
            else:
                result.facility_ids[cp_id] = facility_id
                result.line_of.setdefault(cp_id, number)
        if problem is not None:
            result.problems.append(PastedLineProblem(number, _quoted(line), problem))
    return result


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _quoted(text: str) -> str:
    text = text.strip()
    return text if len(text) <= QUOTED_LENGTH else text[: QUOTED_LENGTH - 1] + "…"


def _judge_line(
    cells: list[str] | None, by_identity: dict[str, RowStatus], by_name: dict[str, list[RowStatus]]
) -> tuple[str | None, RowStatus | None, str | None]:
    """Return (problem, matched row, clean Facility ID) for one line's cells."""
    if cells is None or len(cells) != 2:
        if cells is None:
            problem = _(
                "Expected two columns, identity or name and Facility ID, separated by ; , or a tab; "
                "this cannot be read."
            )
        else:
            problem = ngettext(
                "Expected two columns, identity or name and Facility ID, separated by ; , or a tab; "
                "this has %(num)s column.",
                "Expected two columns, identity or name and Facility ID, separated by ; , or a tab; "
                "this has %(num)s columns.",
                len(cells),
            )
        return problem, None, None
    key, raw_id = cells
    row = by_identity.get(key)
    if row is None:
        named = by_name.get(_name_key(key), [])
        if len(named) > 1:
            return (
                _(
                    "%(count)s charge points of this team are called “%(name)s”: use the identity.",
                    count=len(named),
                    name=_quoted(key),
                ),
                None,
                None,
            )
        if not named:
            return _("No charge point of this team has the identity or name “%(name)s”.", name=_quoted(key)), None, None
        row = named[0]
    if not row.eligibility.facility_id_needed:
        return _("%(name)s is not in Sweden: it needs no Facility ID.", name=row.charge_point.name), None, None
    try:
        return None, row, clean_facility_id(raw_id)
    except ValidationError as exc:
        return str(exc), None, None
