"""API tokens: creating, revoking and checking them, and what a token may do.

A token is ``pb_`` followed by 43 random URL-safe characters. Only its SHA-256 is stored:
the token is high-entropy, so a fast hash is as safe as argon2 here and costs nothing per
request. A token is shown once, when it is made.

What a token may do is a role in the permission table (powerbank.permissions), chosen
here once for every scope, so the API asks the same questions as the pages:

| scope             | read token                           | write token                                  |
| ----------------- | ------------------------------------ | -------------------------------------------- |
| whole operator    | Team Member of every operator team   | Operator Manager of the operator             |
| one team          | Team Member of that team             | Team Admin with the right to configure       |

So a write token can configure charge points and sign them up for PowerBank, as an Operator
Admin or a Team Owner could, but it never manages teams, members, the catalogue or tokens;
a read token can only read. A token never sees anything outside its operator or team.

A token made by a person never holds more than that person may do now: its roles are capped by
its creator's, read on every request. A Team Owner whose "configure charge points" right is off
gets a write token that can only read; turning the right off later takes it from their tokens at
once; a token whose creator no longer holds any role in its operator or team stops working; and an
operator-wide token sees the operator's activations only while its creator holds an operator role there.
A token made by the command line without a creator (``created_by_user_id`` None) is the
operator's own decision and keeps the table's roles.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.errors import ForbiddenError, FormErrors, NotFoundError
from powerbank.i18n import gettext as _
from powerbank.models import ApiToken, Operator, OperatorRole, Team, TeamRole, TokenAccess, User
from powerbank.rules.permissions import Permission, Principal, TeamGrant, can_on_operator, can_on_team, load_principal
from powerbank.rules.validators import ValidationError, clean_name
from powerbank.services.access import Acting, actor_of, require_on_operator, require_on_team
from powerbank.services.audit import Actor, SystemActor, record

TOKEN_PREFIX = "pb_"
# Characters of the token kept in clear, to tell tokens apart in lists.
DISPLAY_PREFIX_LENGTH = len(TOKEN_PREFIX) + 6
MAX_EXPIRY_DAYS = 3650
OPERATOR_SCOPE = "operator"
# What an operator role (or the command line) may do in each team of the operator, as a team role.
FULL_TEAM_GRANT = TeamGrant(TeamRole.ADMIN, True)


class InvalidTokenError(Exception):
    """The request's token is missing, unknown, revoked or expired; the message says which."""


@dataclass(frozen=True)
class TokenRequest:
    """A validated request for a new token."""

    name: str
    access: TokenAccess
    team_id: int | None
    expires_in_days: int | None


@dataclass
class TokenPrincipal(Principal):
    """The principal an API token acts as; ``user`` carries the token's actor label."""

    token: ApiToken | None = None
    # Whether the token sees its operator's activations: an operator-wide token whose creator (if any)
    # holds an operator role there now. Read tokens hold no operator role, so the role table cannot say.
    sees_activations: bool = False


def hash_token(secret: str) -> str:
    """Return the stored form of a token."""
    return hashlib.sha256(secret.encode()).hexdigest()


def actor_label(token: ApiToken) -> str:
    """Return how the audit log and the PowerBank history name changes made with ``token``."""
    return f"API token {token.name}"


def actor_for_token(token: ApiToken) -> Actor:
    """Return the actor of changes made with ``token``, linked to the user who created it."""
    return Actor(token.created_by_user_id, actor_label(token))


def token_status(token: ApiToken, now: datetime | None = None) -> str:
    """Return Active, Revoked or Expired."""
    if token.revoked_at is not None:
        return "Revoked"
    if token.expires_at is not None and token.expires_at <= (now or utcnow()):
        return "Expired"
    return "Active"


def _is_number(text: str) -> bool:
    # isdigit() alone accepts characters like "²" that int() refuses.
    return text.isascii() and text.isdecimal() and len(text) <= 18


def clean_token_form(form: dict[str, str], *, team_ids: set[int], operator_scope_allowed: bool) -> TokenRequest:
    """Validate the new-token form: name, scope ("operator" or a team id), access, expiry in days."""
    errors: dict[str, str] = {}
    name = ""
    try:
        name = clean_name(form.get("name"), label="Name", max_length=80)
    except ValidationError as exc:
        errors["name"] = str(exc)
    scope = (form.get("scope") or "").strip()
    team_id: int | None = None
    if scope == OPERATOR_SCOPE and operator_scope_allowed:
        team_id = None
    elif _is_number(scope) and int(scope) in team_ids:
        team_id = int(scope)
    else:
        errors["scope"] = _("Choose what the token may reach.")
    access = TokenAccess.READ
    try:
        access = TokenAccess((form.get("access") or "").strip())
    except ValueError:
        errors["access"] = _("Choose read or write.")
    expires_in_days: int | None = None
    expires_raw = (form.get("expires_in_days") or "").strip()
    if expires_raw:
        if not _is_number(expires_raw) or not 1 <= int(expires_raw) <= MAX_EXPIRY_DAYS:
            errors["expires_in_days"] = _(
                "Enter a number of days from 1 to %(max)s, or leave it empty.", max=MAX_EXPIRY_DAYS
            )
        else:
            expires_in_days = int(expires_raw)
    if errors:
        raise FormErrors(errors)
    return TokenRequest(name=name, access=access, team_id=team_id, expires_in_days=expires_in_days)


async def _require_manage(session: AsyncSession, by: Acting, operator_id: int, team_id: int | None) -> None:
    """Refuse ``by`` unless it may manage the tokens of the operator, or of its team ``team_id``."""
    if team_id is None:
        require_on_operator(by, Permission.MANAGE_API_TOKENS, operator_id)
        return
    team = await session.get(Team, team_id)
    if team is None or team.operator_id != operator_id:
        raise NotFoundError(_("No such team."))
    require_on_team(by, Permission.MANAGE_API_TOKENS, team)


async def create_token(
    session: AsyncSession, by: Acting, operator_id: int, request: TokenRequest
) -> tuple[ApiToken, str]:
    """Create a token; return it with its secret, which is shown once and never stored."""
    await _require_manage(session, by, operator_id, request.team_id)
    actor = actor_of(by)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    token = ApiToken(
        operator_id=operator_id,
        team_id=request.team_id,
        name=request.name,
        access=request.access,
        token_hash=hash_token(secret),
        prefix=secret[:DISPLAY_PREFIX_LENGTH],
        created_at=now,
        created_by_user_id=actor.user_id,
        expires_at=now + timedelta(days=request.expires_in_days) if request.expires_in_days else None,
    )
    session.add(token)
    await session.flush()
    record(
        session,
        actor,
        "api_token.create",
        token,
        operator_id=operator_id,
        after={
            "name": token.name,
            "team_id": token.team_id,
            "access": token.access,
            "prefix": token.prefix,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        },
    )
    return token, secret


async def create_token_by_names(
    session: AsyncSession,
    *,
    operator_name: str,
    team_name: str | None,
    access: str,
    name: str,
    expires_in_days: int | None,
    created_by_email: str | None,
) -> tuple[ApiToken, str]:
    """Create a token from the command line, naming the operator, team and creating user.

    The creating user, when given, must be allowed to manage the tokens of that scope; a token
    made without one works, but cannot accept terms and conditions (an acceptance names a person).
    """
    operator = (await session.exec(select(Operator).where(Operator.name == operator_name))).first()
    if operator is None:
        raise NotFoundError(f"No operator named {operator_name!r}.")
    team: Team | None = None
    if team_name:
        team = (await session.exec(select(Team).where(Team.operator_id == operator.id, Team.name == team_name))).first()
        if team is None:
            raise NotFoundError(f"{operator.name} has no team named {team_name!r}.")
    by: Acting = SystemActor(None, "powerbank command")
    if created_by_email:
        user = (await session.exec(select(User).where(User.email == created_by_email.strip().lower()))).first()
        if user is None:
            raise NotFoundError(f"No user with the email {created_by_email!r}.")
        creator = await load_principal(session, user)
        allowed = (
            can_on_team(creator, Permission.MANAGE_API_TOKENS, team)
            if team is not None
            else can_on_operator(creator, Permission.MANAGE_API_TOKENS, operator.id or 0)
        )
        if not allowed:
            raise ForbiddenError(
                f"{user.email} may not manage the API tokens of {team.name if team else operator.name}."
            )
        by = creator
    form = {
        "name": name,
        "access": access,
        "scope": str(team.id) if team else OPERATOR_SCOPE,
        "expires_in_days": str(expires_in_days) if expires_in_days is not None else "",
    }
    request = clean_token_form(form, team_ids={team.id or 0} if team else set(), operator_scope_allowed=team is None)
    return await create_token(session, by, operator.id or 0, request)


async def list_tokens(
    session: AsyncSession, operator_id: int, team_id: int | None = None
) -> list[tuple[ApiToken, str | None]]:
    """Return an operator's tokens, or only those of one team, newest first, with their creator's email."""
    query = (
        select(ApiToken, User.email)
        .outerjoin(User, col(User.id) == col(ApiToken.created_by_user_id))
        .where(ApiToken.operator_id == operator_id)
    )
    if team_id is not None:
        query = query.where(ApiToken.team_id == team_id)
    rows = await session.exec(query.order_by(col(ApiToken.created_at).desc(), col(ApiToken.id).desc()))
    return [(token, email) for token, email in rows]


async def get_token_or_404(session: AsyncSession, by: Acting, token_id: int) -> ApiToken:
    """Return a token whose operator's or team's tokens ``by`` may manage; one it cannot see is NotFoundError."""
    token = await session.get(ApiToken, token_id)
    if token is None:
        raise NotFoundError(_("No such API token."))
    await _require_manage(session, by, token.operator_id, token.team_id)
    return token


async def revoke_token(session: AsyncSession, by: Acting, token: ApiToken) -> None:
    """Revoke a token at once; revoking a revoked token changes nothing."""
    await _require_manage(session, by, token.operator_id, token.team_id)
    if token.revoked_at is not None:
        return
    token.revoked_at = utcnow()
    session.add(token)
    record(
        session,
        actor_of(by),
        "api_token.revoke",
        token,
        operator_id=token.operator_id,
        after={"revoked_at": token.revoked_at.isoformat()},
    )


async def authenticate(session: AsyncSession, secret: str | None, now: datetime | None = None) -> ApiToken:
    """Return the token for a presented secret, or raise InvalidTokenError saying what is wrong."""
    if not secret:
        raise InvalidTokenError("Send an API token in the Authorization header: Bearer <token>.")
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        raise InvalidTokenError("The API token is not valid.")
    token = (await session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))).first()
    if token is None:
        raise InvalidTokenError("The API token is not valid.")
    status = token_status(token, now)
    if status == "Revoked":
        raise InvalidTokenError("The API token has been revoked.")
    if status == "Expired":
        assert token.expires_at is not None
        raise InvalidTokenError(f"The API token expired at {token.expires_at.isoformat()}.")
    return token


async def note_use(session: AsyncSession, token: ApiToken, interval_s: float, now: datetime | None = None) -> None:
    """Record when the token was last used, writing at most once per ``interval_s`` per token."""
    now = now or utcnow()
    if token.last_used_at is not None and (now - token.last_used_at).total_seconds() < interval_s:
        return
    await session.exec(update(ApiToken).where(col(ApiToken.id) == token.id).values(last_used_at=now))
    await session.commit()
    token.last_used_at = now


async def principal_for_token(session: AsyncSession, token: ApiToken) -> TokenPrincipal:
    """Return the principal ``token`` acts as (see the table in this module's docstring).

    Raise InvalidTokenError when the token's creator no longer holds a role in its operator or team.
    """
    # Never added to the session: it only names the token in audit entries and events.
    user = User(
        id=token.created_by_user_id, email=actor_label(token), display_name=actor_label(token), password_hash=""
    )
    principal = TokenPrincipal(user=user, token=token)
    write = token.access == TokenAccess.WRITE
    creator: Principal | None = None
    if token.created_by_user_id is not None:
        # The creator's roles as they are now (load_principal reads only the user's id).
        creator = await load_principal(session, user)
        reaches = (
            token.operator_id in creator.visible_operator_ids
            if token.team_id is None
            else token.operator_id in creator.operator_roles or token.team_id in creator.team_grants
        )
        if not reaches:
            raise InvalidTokenError(
                "The API token no longer works: the person who created it no longer has a role where it reaches."
            )
    # Operator roles (and the command line) may configure every team of the operator.
    operator_wide = creator is None or token.operator_id in creator.operator_roles
    principal.sees_activations = token.team_id is None and operator_wide
    if token.team_id is not None:
        held = FULL_TEAM_GRANT if operator_wide or creator is None else creator.team_grants[token.team_id]
        principal.team_grants[token.team_id] = _capped_grant(held, write)
        principal.team_operators[token.team_id] = token.operator_id
    elif operator_wide or creator is None:
        if write:
            principal.operator_roles[token.operator_id] = OperatorRole.MANAGER
        else:
            team_ids = await session.exec(select(Team.id).where(Team.operator_id == token.operator_id))
            for team_id in team_ids:
                principal.team_grants[team_id or 0] = TeamGrant(TeamRole.MEMBER, False)
                principal.team_operators[team_id or 0] = token.operator_id
    else:
        # An operator token whose creator lost the operator role reaches only the teams they still hold there.
        for team_id, operator_id in creator.team_operators.items():
            if operator_id == token.operator_id:
                principal.team_grants[team_id] = _capped_grant(creator.team_grants[team_id], write)
                principal.team_operators[team_id] = operator_id
    return principal


def _capped_grant(held: TeamGrant, write: bool) -> TeamGrant:
    """Return the role a token gives in a team: the table's, never more than the ``held`` role of its creator."""
    if not write or held.role is TeamRole.MEMBER:
        return TeamGrant(TeamRole.MEMBER, False)
    return TeamGrant(TeamRole.ADMIN, held.can_configure_charge_points)


class TokenRateLimiter:
    """Allow each token ``limit`` requests per ``window_s`` seconds (a token bucket, one process)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.capacity = float(limit)
        self.refill_per_s = limit / window_s
        self._buckets: dict[int, tuple[float, float]] = {}

    async def spend(self, token_id: int) -> int:
        """Spend one request of the token; return 0 if allowed, else seconds to wait (``take``)."""
        return self.take(token_id)

    def take(self, token_id: int) -> int:
        """Spend one request of the token; return 0 if allowed, else seconds to wait."""
        now = time.monotonic()
        level, stamp = self._buckets.get(token_id, (self.capacity, now))
        level = min(self.capacity, level + (now - stamp) * self.refill_per_s)
        if level >= 1:
            self._buckets[token_id] = (level - 1, now)
            return 0
        self._buckets[token_id] = (level, now)
        return max(1, math.ceil((1 - level) / self.refill_per_s))
