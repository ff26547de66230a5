"""A world of two operators with a user in every role, shared by the permission and tenancy tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from powerbank.models import ChargePoint, Operator, Team, User
from tests.conftest import Factory

# Each role of the permission table, as the user made for it holds it.
ROLES: dict[str, dict[str, Any]] = {
    "operator admin": {"operator_role": "admin"},
    "operator manager": {"operator_role": "manager"},
    "team owner": {"team_role": "owner", "can_configure": True},
    "team owner without configure right": {"team_role": "owner", "can_configure": False},
    "team admin with configure right": {"team_role": "admin", "can_configure": True},
    "team admin without configure right": {"team_role": "admin", "can_configure": False},
    "team member": {"team_role": "member", "can_configure": False},
    "another operator's admin": {"other_operator_role": "admin"},
    "anonymous": {},
}


@dataclass
class World:
    """Two operators: ours (a team with a charge point, one user per role) and another one."""

    operator: Operator
    team: Team
    charge_point: ChargePoint
    bystander: User
    other_operator: Operator
    other_team: Team
    other_charge_point: ChargePoint
    users: dict[str, User] = field(default_factory=dict)

    def ids(self) -> dict[str, Any]:
        return {"op": self.operator.id, "team": self.team.id, "cp": self.charge_point.id}


async def build_world(factory: Factory, roles: list[str] | None = None) -> World:
    """Create both operators and one user for each of ``roles`` (default: every role of ROLES)."""
    operator = await factory.operator("Our Operator")
    team = await factory.team(operator, "Our Team")
    other_operator = await factory.operator("Secret Operator")
    other_team = await factory.team(other_operator, "Secret Team")
    world = World(
        operator=operator,
        team=team,
        charge_point=await factory.charge_point(team, name="Our Charger"),
        bystander=await factory.user(email="bystander@example.test"),
        other_operator=other_operator,
        other_team=other_team,
        other_charge_point=await factory.charge_point(other_team, name="Secret Charger", identity="SECRET-1"),
    )
    for role in roles if roles is not None else list(ROLES):
        spec = ROLES[role]
        if not spec:
            continue
        slug = role.replace(" ", "-").replace("'", "")
        if "other_operator_role" in spec:
            user = await factory.user(
                operator=other_operator, operator_role=spec["other_operator_role"], email=f"{slug}@example.test"
            )
        elif "operator_role" in spec:
            user = await factory.user(
                operator=operator, operator_role=spec["operator_role"], email=f"{slug}@example.test"
            )
        else:
            user = await factory.user(
                team=team,
                team_role=spec["team_role"],
                can_configure=spec["can_configure"],
                email=f"{slug}@example.test",
            )
        world.users[role] = user
    return world
