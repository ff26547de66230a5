"""What the API tests share: tokens, their headers, the demo's ids."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import (
    ChargePoint,
    Participation,
    ParticipationState,
    Team,
)
from powerbank.services.api_tokens import create_token_by_names

TERMS = "demo-v1"


async def make_token(
    session: AsyncSession,
    *,
    team: str | None = None,
    access: str = "write",
    creator: str | None = "operator.admin@demo.test",
    name: str = "script",
) -> str:
    _, secret = await create_token_by_names(
        session,
        operator_name="Nordic Charge",
        team_name=team,
        access=access,
        name=name,
        expires_in_days=None,
        created_by_email=creator,
    )
    await session.commit()
    return secret


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def demo_ids(session: AsyncSession) -> dict[str, int]:
    """Return the ids the tests name: teams by short name, charge points by short name."""
    teams = {team.name: team.id or 0 for team in await session.exec(select(Team))}
    cps = {cp.identity: cp.id or 0 for cp in await session.exec(select(ChargePoint))}
    return {
        "sto": teams["Stockholm Offices"],
        "lon": teams["London Depot"],
        "cph": teams["Copenhagen Fleet"],
        "oslo": teams["Oslo Yard"],
        "kista": cps["STO-001"],
        "solna1": cps["STO-003"],
        "solna2": cps["STO-004"],
        "soder": cps["STO-005"],
        "gamla": cps["STO-006"],
        "bay": cps["LON-001"],
        "oslo_cp": cps["OSL-001"],
    }


async def state_of(session: AsyncSession, cp_id: int) -> str:
    row = (
        await session.exec(
            select(Participation)
            .where(Participation.charge_point_id == cp_id)
            .execution_options(populate_existing=True)
        )
    ).first()
    return ParticipationState(row.state).label if row else "Not signed up"
