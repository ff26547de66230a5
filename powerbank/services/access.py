"""Who acts on the domain, and the check each change makes before it is done.

A person, or an API token, acts as a ``Principal`` and is held to the role table of
``powerbank.rules.permissions``; the hub itself and the command line act as ``SYSTEM``. Every
service that changes something asks here first, so the pages, the API and the CLI share each
decision. Another tenant's object is NotFoundError, never ForbiddenError: a refusal must not
tell that it exists.
"""

from __future__ import annotations

from powerbank.errors import ForbiddenError, NotFoundError
from powerbank.models import Team
from powerbank.rules.permissions import Permission, Principal, can_on_operator, can_on_team
from powerbank.services.audit import Actor, SystemActor

# Whoever a service acts for: a principal held to the role table, or the system.
Acting = Principal | SystemActor


def actor_of(by: Acting) -> Actor:
    """Return who the audit log and the history name for a change made by ``by``."""
    return by if isinstance(by, SystemActor) else Actor.of(by.user)


def require_on_team(by: Acting, permission: Permission, team: Team, *, not_found: str = "No such team.") -> None:
    """Raise NotFoundError unless ``by`` sees ``team``, ForbiddenError unless it may do ``permission`` in it."""
    if isinstance(by, SystemActor):
        return
    if not can_on_team(by, Permission.VIEW_TEAM, team):
        raise NotFoundError(not_found)
    if not can_on_team(by, permission, team):
        raise ForbiddenError(f"You may not {permission} in this team.")


def require_on_operator(
    by: Acting, permission: Permission, operator_id: int, *, not_found: str = "No such operator."
) -> None:
    """Raise NotFoundError unless ``by`` sees the operator, ForbiddenError unless it may do ``permission`` there."""
    if isinstance(by, SystemActor):
        return
    if operator_id not in by.visible_operator_ids:
        raise NotFoundError(not_found)
    if not can_on_operator(by, permission, operator_id):
        raise ForbiddenError(f"You may not {permission} for this operator.")
