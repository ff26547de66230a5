"""Finished activations whose chargers' meters show a given behaviour, with their evidence kept."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import Activation, ChargePoint, Dispatch, DispatchStatus, MeterSample
from powerbank.services import delivery

WINDOW_S = 120
DRAW_W = 11_000.0

# What a charger does in an activation: its dispatch status and its power after the trigger.
DELIVERS = "delivers"
IGNORES = "ignores"  # accepts, keeps drawing
OFFLINE = "offline"
IDLE = "idle"  # draws next to nothing: nothing to reduce


async def judged_activation(
    session: AsyncSession,
    operator_id: int,
    behaviours: list[tuple[ChargePoint, str]],
    hours_ago: float,
    *,
    cancelled_after_s: float | None = None,
) -> Activation:
    """Create an activation that ended ``hours_ago`` (``cancelled_after_s`` the trigger, if given),
    its chargers' samples, and keep its evidence."""
    trigger = utcnow() - timedelta(hours=hours_ago)
    end = trigger + timedelta(seconds=WINDOW_S if cancelled_after_s is None else cancelled_after_s)
    window_end = trigger + timedelta(seconds=WINDOW_S)
    activation = Activation(
        operator_id=operator_id,
        price_area="DK1",
        market="Test",
        action="pause",
        start_at=trigger,
        duration_s=WINDOW_S,
        end_at=window_end,
        state="ended" if cancelled_after_s is None else "cancelled",
        created_by="grid@example.test",
        triggered_at=trigger,
        last_sent_at=trigger,
        ended_at=end,
    )
    session.add(activation)
    await session.flush()
    for cp, behaviour in behaviours:
        status = DispatchStatus.OFFLINE if behaviour == OFFLINE else DispatchStatus.ACCEPTED
        session.add(
            Dispatch(
                activation_id=activation.id or 0,
                charge_point_id=cp.id,
                identity=cp.identity,
                status=status,
                limit_w=0.0,
                sent_at=trigger,
            )
        )
        for offset in range(-50, WINDOW_S + 61, 10):
            session.add(_sample(cp, trigger + timedelta(seconds=offset), _power(behaviour, offset)))
    await session.flush()
    assert await delivery.keep_evidence(session, activation, end + timedelta(seconds=61))
    await delivery.keep_verdicts(session, activation, end + timedelta(seconds=61))
    await session.commit()
    return activation


def _power(behaviour: str, offset: int) -> float:
    if behaviour == IDLE:
        return 20.0
    if offset < 0 or behaviour in (IGNORES, OFFLINE) or offset > WINDOW_S:
        return DRAW_W
    return 0.0


def _sample(cp: ChargePoint, at: datetime, power_w: float) -> MeterSample:
    return MeterSample(charge_point_id=cp.id or 0, measured_at=at, received_at=at, power_w=power_w)
