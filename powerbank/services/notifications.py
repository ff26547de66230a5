"""Notifications: events stored with the change they tell of, and who wants to be told of which.

A service that makes something happen calls one function here in its own transaction (``notify``
and the helpers below): it adds one row to the ``notification`` table, so a rolled-back change tells
nobody, a committed one is never forgotten, and the OCPP hot path or a page pays for one INSERT. The
notification worker (``powerbank.runtime.webhooks``) later turns each event, once, into emails (the
mail outbox) and webhook deliveries (``services.webhooks``).

Events more than one node or look may see happen (an activation's start, a charger offline) carry a
``dedupe_key``: the second insert of the same key does nothing.

Email preferences are per person, per team and per kind of event. Without a stored choice a Team
Owner or Team Admin gets every email of their team, a Team Member and operator-wide roles none (they
turn on what they want on their notifications page).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import after_commit, utcnow
from powerbank.errors import NotFoundError
from powerbank.i18n import gettext as _
from powerbank.models import (
    Activation,
    ChargePoint,
    DeliveryVerdict,
    Notification,
    NotificationPreference,
    Operator,
    OperatorMembership,
    Participation,
    ParticipationState,
    Team,
    TeamMembership,
    TeamRole,
    User,
)
from powerbank.rules.permissions import Principal

ACTIVATION_STARTED = "activation.started"
ACTIVATION_ENDED = "activation.ended"
SIGNED_UP = "charge_point.signed_up"
OPTED_OUT = "charge_point.opted_out"
CHARGER_OFFLINE = "charger.offline"
CHARGER_FLAGGED = "charger.flagged"
CHARGER_SUSPENDED = "charger.suspended"
STATEMENT_READY = "statement.ready"
# Sent to one webhook when a person asks for it; never emailed.
WEBHOOK_TEST = "webhook.test"
# Emailed to the people responsible for a webhook that PowerBank disabled; never a webhook event.
WEBHOOK_DISABLED = "webhook.disabled"


def kind_labels() -> dict[str, str]:
    """Return each kind of event people can choose, in the reader's language, in the order shown."""
    return {
        ACTIVATION_STARTED: _("An activation starts"),
        ACTIVATION_ENDED: _("An activation ends"),
        SIGNED_UP: _("A charge point is signed up"),
        OPTED_OUT: _("A charge point is opted out"),
        CHARGER_OFFLINE: _("A charger is offline for a while"),
        CHARGER_FLAGGED: _("A charger accepts but does not deliver"),
        CHARGER_SUSPENDED: _("A charger is suspended"),
        STATEMENT_READY: _("A monthly statement is ready"),
    }


KINDS: tuple[str, ...] = (
    ACTIVATION_STARTED,
    ACTIVATION_ENDED,
    SIGNED_UP,
    OPTED_OUT,
    CHARGER_OFFLINE,
    CHARGER_FLAGGED,
    CHARGER_SUSPENDED,
    STATEMENT_READY,
)
# At most this many charge points are named in one event (the count is always exact).
NAMED_AT_MOST = 50
# A charger offline for longer than the threshold is told of once per time it went offline, if it
# went offline within this window (so a hub started after a long pause does not tell of old ones).
OFFLINE_LOOKBACK = timedelta(days=1)

_listeners: list[Callable[[], None]] = []


def on_notification(listener: Callable[[], None]) -> Callable[[], None]:
    """Call ``listener`` after every commit that stored an event; return a function that stops it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def _tell_listeners() -> None:
    for listener in list(_listeners):
        listener()


def _insert(session: AsyncSession) -> Any:
    table = Notification.__table__  # type: ignore[attr-defined]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=["dedupe_key"])


async def notify(
    session: AsyncSession,
    kind: str,
    operator_id: int,
    team_id: int | None,
    payload: dict[str, Any],
    *,
    dedupe_key: str | None = None,
    now: datetime | None = None,
) -> None:
    """Store an event in the session's transaction; it is told once the transaction commits.

    ``team_id`` None: an event of the whole operator that the worker tells each team of its own part.
    A second event with the same ``dedupe_key`` is not stored.
    """
    row = {
        "kind": kind,
        "operator_id": operator_id,
        "team_id": team_id,
        "dedupe_key": dedupe_key,
        "payload": json.dumps(payload, default=str, ensure_ascii=False),
        "created_at": now or utcnow(),
    }
    if dedupe_key is None:
        await session.exec(insert(Notification.__table__), params=[row])  # type: ignore[attr-defined]
    else:
        await session.exec(_insert(session), params=[row])
    after_commit(session, _tell_listeners)


# The events, one function per place they happen ------------------------------------------------


async def activation_started(session: AsyncSession, activation: Activation) -> None:
    """Tell of an activation sent to its chargers (each team is told its own part)."""
    await notify(
        session,
        ACTIVATION_STARTED,
        activation.operator_id,
        None,
        {"activation_id": activation.id},
        dedupe_key=f"{ACTIVATION_STARTED}:{activation.id}",
    )


async def activation_ended(session: AsyncSession, activation: Activation) -> None:
    """Tell of an activation that ended or was cancelled (each team is told its own part)."""
    if activation.triggered_at is None:
        return  # never sent to a charger (cancelled while scheduled, or its window passed unseen)
    await notify(
        session,
        ACTIVATION_ENDED,
        activation.operator_id,
        None,
        {"activation_id": activation.id},
        dedupe_key=f"{ACTIVATION_ENDED}:{activation.id}",
    )


_KIND_OF_STATE = {
    ParticipationState.SIGNED_UP: SIGNED_UP,
    ParticipationState.OPTED_OUT: OPTED_OUT,
    ParticipationState.SUSPENDED: CHARGER_SUSPENDED,
}


async def participation_changed(session: AsyncSession, events: Sequence[dict[str, Any]]) -> None:
    """Tell of PowerBank participation changes (rows of the history, R8): one event per team and kind."""
    grouped: dict[tuple[int, int, str], list[dict[str, Any]]] = {}
    for event in events:
        kind = _KIND_OF_STATE.get(ParticipationState(str(event["to_state"])))
        if kind is not None:
            grouped.setdefault((int(event["operator_id"]), int(event["team_id"]), kind), []).append(event)
    for (operator_id, team_id, kind), group in grouped.items():
        first = group[0]
        await notify(
            session,
            kind,
            operator_id,
            team_id,
            {
                "count": len(group),
                "charge_points": [
                    {"id": e["charge_point_id"], "name": e["charge_point_name"], "reason": e["reason"]}
                    for e in group[:NAMED_AT_MOST]
                ],
                "by": first["actor_label"],
                "source": first["source"],
            },
        )


async def note_judged_activations(session: AsyncSession, now: datetime | None = None) -> int:
    """Store an event for each activation whose chargers' verdicts were stored lately; return how many.

    Telling it names the chargers it left flagged ("accepts but does not deliver", services/reliability).
    Once per activation (the key holds its id), whichever node looks first.
    """
    now = now or utcnow()
    judged = (
        select(DeliveryVerdict.activation_id).where(DeliveryVerdict.activation_id == Activation.id).limit(1).exists()
    )
    rows = await session.exec(
        select(Activation.id, Activation.operator_id).where(
            col(Activation.evidence_kept_at) > now - OFFLINE_LOOKBACK, judged
        )
    )
    found = {f"{CHARGER_FLAGGED}:{activation_id}": (activation_id, operator_id) for activation_id, operator_id in rows}
    told = set(
        (await session.exec(select(Notification.dedupe_key).where(col(Notification.dedupe_key).in_(found)))).all()
    )
    values = [
        {
            "kind": CHARGER_FLAGGED,
            "operator_id": operator_id,
            "team_id": None,
            "dedupe_key": f"{CHARGER_FLAGGED}:{activation_id}",
            "payload": json.dumps({"activation_id": activation_id}),
            "created_at": now,
        }
        for key, (activation_id, operator_id) in found.items()
        if key not in told
    ]
    if not values:
        return 0
    await session.exec(_insert(session), params=values)
    after_commit(session, _tell_listeners)
    return len(values)


async def note_offline_chargers(session: AsyncSession, offline_after: timedelta, now: datetime | None = None) -> int:
    """Store an event for each signed-up charger offline for longer than ``offline_after``; return how many.

    Once per time it went offline (the key holds when it was last seen), whichever node looks first.
    """
    now = now or utcnow()
    # Plain SQLAlchemy: sqlmodel's select() is typed for at most four columns.
    offline: Any = (
        core_select(
            col(ChargePoint.id),
            col(ChargePoint.name),
            col(ChargePoint.team_id),
            col(Team.operator_id),
            col(ChargePoint.last_seen_at),
        )
        .join(Team, col(Team.id) == col(ChargePoint.team_id))
        .join(Participation, col(Participation.charge_point_id) == col(ChargePoint.id))
        .where(
            col(ChargePoint.online).is_(False),
            col(ChargePoint.last_seen_at) <= now - offline_after,
            col(ChargePoint.last_seen_at) > now - offline_after - OFFLINE_LOOKBACK,
            col(Participation.state) == ParticipationState.SIGNED_UP,
        )
    )
    rows = await session.exec(offline)
    values = [
        {
            "kind": CHARGER_OFFLINE,
            "operator_id": operator_id,
            "team_id": team_id,
            "dedupe_key": f"{CHARGER_OFFLINE}:{cp_id}:{int(last_seen.timestamp())}",
            "payload": json.dumps(
                {
                    "charge_point": {"id": cp_id, "name": name},
                    "last_seen_at": last_seen.isoformat(),
                    "offline_for_s": int((now - last_seen).total_seconds()),
                }
            ),
            "created_at": now,
        }
        for cp_id, name, team_id, operator_id, last_seen in rows
        if last_seen is not None
    ]
    if not values:
        return 0
    # The rows stored (not those another look stored first); RETURNING counts on every backend.
    table = Notification.__table__  # type: ignore[attr-defined]
    stored = (await session.exec(_insert(session).returning(table.c.id), params=values)).all()
    after_commit(session, _tell_listeners)
    return len(stored)


async def notify_statement_ready(
    session: AsyncSession,
    *,
    operator_id: int,
    team_id: int,
    month: str,
    amount: str | None = None,
    currency: str | None = None,
    url: str | None = None,
) -> None:
    """Tell a team that its monthly statement for ``month`` ("2026-11") is ready; once per team and month.

    ``amount`` (a decimal as text) and ``currency`` are what it pays out, ``url`` where to read it.
    """
    await notify(
        session,
        STATEMENT_READY,
        operator_id,
        team_id,
        {"month": month, "amount": amount, "currency": currency, "url": url},
        dedupe_key=f"{STATEMENT_READY}:{team_id}:{month}",
    )


# Preferences --------------------------------------------------------------------------------------


def default_on(team_role: TeamRole | None) -> bool:
    """Whether a person gets a team's emails before choosing: Team Owners and Team Admins do."""
    return team_role in (TeamRole.OWNER, TeamRole.ADMIN)


@dataclass
class TeamPreferences:
    """A person's email choices for one team they see."""

    team: Team
    operator_name: str
    chosen: dict[str, bool] = field(default_factory=dict)


async def visible_teams(session: AsyncSession, principal: Principal) -> list[tuple[Team, str]]:
    """Return the teams a person sees (their team roles and every team of their operators), with operator names."""
    operator_ids = set(principal.operator_roles)
    team_ids = set(principal.team_grants)
    if not operator_ids and not team_ids:
        return []
    rows = await session.exec(
        select(Team, Operator.name)
        .join(Operator, col(Operator.id) == col(Team.operator_id))
        .where(col(Team.operator_id).in_(operator_ids) | col(Team.id).in_(team_ids))
        .order_by(col(Operator.name), col(Team.name))
    )
    return [(team, name) for team, name in rows]


async def preferences_of(session: AsyncSession, principal: Principal) -> list[TeamPreferences]:
    """Return a person's email choices for every team they see (stored, else their role's default)."""
    user_id = principal.user.id or 0
    stored = {
        (p.team_id, p.kind): p.email
        for p in await session.exec(select(NotificationPreference).where(NotificationPreference.user_id == user_id))
    }
    found: list[TeamPreferences] = []
    for team, operator_name in await visible_teams(session, principal):
        grant = principal.team_grants.get(team.id or 0)
        default = default_on(grant.role if grant else None)
        found.append(
            TeamPreferences(team, operator_name, {kind: stored.get((team.id or 0, kind), default) for kind in KINDS})
        )
    return found


async def save_preferences(session: AsyncSession, principal: Principal, team_id: int, wanted: set[str]) -> None:
    """Store a person's choice for every kind of event of a team they see; the caller commits."""
    if team_id not in {team.id for team, _name in await visible_teams(session, principal)}:
        raise NotFoundError("No such team.")
    user_id = principal.user.id or 0
    existing = {
        p.kind: p
        for p in await session.exec(
            select(NotificationPreference).where(
                NotificationPreference.user_id == user_id, NotificationPreference.team_id == team_id
            )
        )
    }
    for kind in KINDS:
        row = existing.get(kind) or NotificationPreference(user_id=user_id, team_id=team_id, kind=kind)
        row.email = kind in wanted
        session.add(row)


async def recipients(session: AsyncSession, team_id: int, operator_id: int, kind: str) -> list[tuple[str, str | None]]:
    """Return the email address and language of each person who wants ``kind`` of ``team_id``'s events
    (three queries)."""
    team_roles = {
        email: (role, locale)
        for email, role, locale in await session.exec(
            select(User.email, TeamMembership.role, User.locale)
            .join(TeamMembership, col(TeamMembership.user_id) == col(User.id))
            .where(TeamMembership.team_id == team_id)
        )
    }
    operator_people = dict(
        (
            await session.exec(
                select(User.email, User.locale)
                .join(OperatorMembership, col(OperatorMembership.user_id) == col(User.id))
                .where(OperatorMembership.operator_id == operator_id)
            )
        ).all()
    )
    chosen = dict(
        (
            await session.exec(
                select(User.email, NotificationPreference.email)
                .join(NotificationPreference, col(NotificationPreference.user_id) == col(User.id))
                .where(NotificationPreference.team_id == team_id, NotificationPreference.kind == kind)
            )
        ).all()
    )
    languages = {**operator_people, **{email: locale for email, (_role, locale) in team_roles.items()}}
    wanted = []
    for email in sorted(languages):
        role = team_roles[email][0] if email in team_roles else None
        if chosen.get(email, default_on(TeamRole(role) if role else None)):
            wanted.append((email, languages[email]))
    return wanted
