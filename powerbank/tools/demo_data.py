"""Demo data: the operators, teams, users and charge points the README and the tests refer to.

Every demo user's password is DEMO_PASSWORD and every demo charger's OCPP password is
DEMO_CHARGER_PASSWORD. They are published on purpose and only accepted in demo mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import (
    ChargePoint,
    Operator,
    OperatorMembership,
    OperatorRole,
    Team,
    TeamMembership,
    TeamRole,
    Webhook,
)
from powerbank.rules.demo_credentials import DEMO_CHARGER_PASSWORD, DEMO_PASSWORD
from powerbank.rules.gsrn import make_facility_id
from powerbank.services.audit import SYSTEM
from powerbank.services.enrollment import reevaluate
from powerbank.services.passwords import hash_secret
from powerbank.services.teams import create_operator
from powerbank.services.users import create_user
from powerbank.services.webhooks import new_secret


@dataclass(frozen=True)
class DemoChargePoint:
    name: str
    identity: str
    brand: str
    model: str
    country: str
    price_area: str | None
    facility_id: str | None = None


# `make run` simulates every demo charger with the realistic mix (tools/simulator.py), so a Test
# activation of DK2 reaches CPH-001, which delivers the pause, CPH-002, whose car does not resume
# after it, CPH-003, which accepts the pause but ignores it, and CPH-004, which goes offline.
NORDIC_TEAMS: dict[str, list[DemoChargePoint]] = {
    "Copenhagen Fleet": [
        DemoChargePoint("Nørrebro 1", "CPH-001", "Easee", "Home", "DK", "DK2"),
        DemoChargePoint("Nørrebro 2", "CPH-002", "Easee", "Home", "DK", "DK2"),
        DemoChargePoint("Vesterbro 1", "CPH-003", "Zaptec", "Go", "DK", "DK2"),
        DemoChargePoint("Amager Depot", "CPH-004", "Wallbox", "Pulsar Plus", "DK", "DK2"),
        DemoChargePoint("Valby Legacy", "CPH-005", "Tesla", "Wall Connector Gen 2", "DK", "DK2"),
        DemoChargePoint("Aarhus Hub", "AAR-001", "Alfen", "Eve Single Pro-line", "DK", "DK1"),
    ],
    "Stockholm Offices": [
        DemoChargePoint("Kista A", "STO-001", "Zaptec", "Pro", "SE", "SE3", make_facility_id("10000000001")),
        DemoChargePoint("Kista B", "STO-002", "Zaptec", "Pro", "SE", "SE3", make_facility_id("10000000002")),
        DemoChargePoint("Solna 1", "STO-003", "Charge Amps", "Halo", "SE", "SE3"),
        DemoChargePoint("Solna 2", "STO-004", "Charge Amps", "Halo", "SE", "SE3"),
        DemoChargePoint("Södermalm", "STO-005", "Garo", "GLB+", "SE", "SE3"),
        DemoChargePoint("Gamla Stan", "STO-006", "Generic", "Basic 7", "SE", "SE3"),
    ],
    "London Depot": [
        DemoChargePoint("Bay 1", "LON-001", "Wallbox", "Commander 2", "GB", "GB"),
        DemoChargePoint("Bay 2", "LON-002", "Wallbox", "Commander 2", "GB", "GB"),
        DemoChargePoint("Bay 3", "LON-003", "Alfen", "Eve Double Pro-line", "GB", "GB"),
        DemoChargePoint("Bay 4", "LON-004", "Alfen", "Eve Double Pro-line", "GB", "GB"),
    ],
    "Dublin Hub": [
        DemoChargePoint("Docklands 1", "DUB-001", "Easee", "Charge", "IE", "IE"),
        DemoChargePoint("Docklands 2", "DUB-002", "Easee", "Charge", "IE", "IE"),
        DemoChargePoint("Docklands 3", "DUB-003", "KEBA", "KeContact P30", "IE", "IE"),
    ],
    "Berlin Garage": [
        DemoChargePoint("Kreuzberg 1", "BER-001", "Mennekes", "Amtron Professional", "DE", None),
        DemoChargePoint("Kreuzberg 2", "BER-002", "Mennekes", "Amtron Professional", "DE", None),
    ],
}
FJORD_TEAMS: dict[str, list[DemoChargePoint]] = {
    "Oslo Yard": [
        DemoChargePoint("Bjørvika 1", "OSL-001", "Easee", "Home", "NO", None),
        DemoChargePoint("Bjørvika 2", "OSL-002", "Easee", "Home", "NO", None),
    ],
}

# Where the demo's webhook sends to: PowerBank's own receiver in demo mode, at `make run`'s address.
DEMO_WEBHOOK_URL = "http://127.0.0.1:8000/dev/webhooks/receive"

# (email, operator roles, team roles as (team name, role, may configure charge points))
DEMO_USERS: list[tuple[str, str, list[tuple[str, str, bool]]]] = [
    ("operator.admin@demo.test", "Nordic Charge:admin", []),
    ("operator.manager@demo.test", "Nordic Charge:manager", []),
    ("owner@demo.test", "", [("Copenhagen Fleet", TeamRole.OWNER, True), ("Stockholm Offices", TeamRole.OWNER, True)]),
    ("admin@demo.test", "", [(team, TeamRole.ADMIN, True) for team in NORDIC_TEAMS]),
    (
        "readonly.admin@demo.test",
        "",
        [("Copenhagen Fleet", TeamRole.ADMIN, False), ("Stockholm Offices", TeamRole.ADMIN, False)],
    ),
    (
        "member@demo.test",
        "",
        [("Copenhagen Fleet", TeamRole.MEMBER, False), ("Stockholm Offices", TeamRole.MEMBER, False)],
    ),
    ("fjord.admin@demo.test", "Fjord Energy:admin", []),
]
DEMO_LOGINS: list[tuple[str, str]] = [
    ("operator.admin@demo.test", "Operator Admin, Nordic Charge"),
    ("operator.manager@demo.test", "Operator Manager, Nordic Charge"),
    ("owner@demo.test", "Team Owner, Copenhagen Fleet and Stockholm Offices"),
    ("admin@demo.test", "Team Admin with the configure right, all five Nordic Charge teams"),
    ("readonly.admin@demo.test", "Team Admin without the configure right, Copenhagen Fleet and Stockholm Offices"),
    ("member@demo.test", "Team Member, Copenhagen Fleet and Stockholm Offices"),
    ("fjord.admin@demo.test", "Operator Admin, Fjord Energy"),
]


async def database_is_empty(session: AsyncSession) -> bool:
    """Return True when there is no operator yet."""
    return (await session.exec(select(Operator.id).limit(1))).first() is None


async def load_demo_data(session: AsyncSession) -> list[ChargePoint]:
    """Create the demo operators, teams, users and charge points; return the charge points.

    The caller commits.
    """
    charger_hash = hash_secret(DEMO_CHARGER_PASSWORD)
    teams: dict[str, Team] = {}
    operators: dict[str, Operator] = {}
    created: list[ChargePoint] = []
    for operator_name, team_specs in (("Nordic Charge", NORDIC_TEAMS), ("Fjord Energy", FJORD_TEAMS)):
        operator = await create_operator(session, SYSTEM, operator_name)
        operators[operator_name] = operator
        for team_name, charge_points in team_specs.items():
            team = Team(operator_id=operator.id or 0, name=team_name)
            session.add(team)
            await session.flush()
            teams[team_name] = team
            now = utcnow()
            for spec in charge_points:
                charge_point = ChargePoint(
                    team_id=team.id or 0,
                    name=spec.name,
                    identity=spec.identity,
                    brand=spec.brand,
                    model=spec.model,
                    firmware="",
                    serial="",
                    country=spec.country,
                    price_area=spec.price_area,
                    facility_id=spec.facility_id,
                    ocpp_password_hash=charger_hash,
                    created_at=now,
                    updated_at=now,
                )
                session.add(charge_point)
                created.append(charge_point)
    await session.flush()
    for email, operator_role, team_roles in DEMO_USERS:
        user = await create_user(session, SYSTEM, email, DEMO_PASSWORD)
        if operator_role:
            operator_name, role = operator_role.split(":")
            session.add(
                OperatorMembership(
                    operator_id=operators[operator_name].id or 0, user_id=user.id or 0, role=OperatorRole(role)
                )
            )
        for team_name, team_role, may_configure in team_roles:
            session.add(
                TeamMembership(
                    team_id=teams[team_name].id or 0,
                    user_id=user.id or 0,
                    role=team_role,
                    can_configure_charge_points=may_configure,
                )
            )
    # Copenhagen Fleet's events go to the receiver PowerBank holds in demo mode (/dev/webhooks), at the
    # address `make run` serves on.
    session.add(
        Webhook(
            operator_id=teams["Copenhagen Fleet"].operator_id,
            team_id=teams["Copenhagen Fleet"].id,
            url=DEMO_WEBHOOK_URL,
            description="Demo receiver (see /dev/webhooks)",
            secret=new_secret(),
        )
    )
    await session.flush()
    # The same rules as for any new charge point: compatible DK2 ones are signed up automatically.
    await reevaluate(session, created)
    return created
