"""The grid fan-out: one charging-profile frame per kind of charger, written to all at once.

The hot path of an activation. Chargers are grouped by what their frame must say (protocol,
rate unit, stack level); each group's payload is built and serialised once, then queued on every
connection of the group without awaiting any charger (``Registry.broadcast``). Answers arrive
as futures matched by (charger, message id) and are handed over in batches, so the caller
records them in bulk. Outgoing frames skip the ``ocpp`` library's schema validation: the
payloads are built here, and a test validates each kind against the official schemas.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from powerbank.db import utcnow
from powerbank.ocpp.connection import CallErrorReceived, ConnectionLost
from powerbank.ocpp.registry import Registry
from powerbank.ocpp.stats import STATS
from powerbank.services.activations import Step, Target

logger = logging.getLogger("powerbank.ocpp")

# The PowerBank profile: one id on every charger, so it can be replaced and cleared by id,
# at a stack level reserved for PowerBank (a charger reporting a lower maximum gets its maximum).
PROFILE_ID = 7_301_001
STACK_LEVEL = 8
VOLTAGE_V = 230.0
# Without knowing a charger's phases, assume three: for a one-phase charger the same current
# is a third of the power, which errs on the side of delivering more flexibility, not less.
ASSUMED_PHASES = 3
OCPP16 = "ocpp1.6"

# (charge point id, status, detail, when answered)
Answer = tuple[int, str, str, datetime]
Group = tuple[str, str, int]  # (protocol, rate unit "W" or "A", stack level)


def rate_unit(rate_units: str | None) -> str:
    """Return "W" when the charger takes power limits, else "A" (every smart charger takes current)."""
    units = {unit.strip() for unit in (rate_units or "").split(",")}
    return "W" if units & {"Power", "W"} else "A"


def stack_level(max_stack_level: int | None) -> int:
    return STACK_LEVEL if max_stack_level is None else max(0, min(STACK_LEVEL, max_stack_level))


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _limit(limit_w: float, unit: str) -> float:
    if unit == "W":
        return float(math.floor(limit_w))
    # Rounded down to 0.1 A (OCPP 1.6's multipleOf), so the charger never exceeds the limit.
    return math.floor(limit_w / (VOLTAGE_V * ASSUMED_PHASES) * 10) / 10


def set_limit_payload(
    group: Group, steps: Sequence[Step], start: datetime, margin_s: float
) -> tuple[str, dict[str, Any]]:
    """Return SetChargingProfile for the station maximum that follows ``steps`` and then ends (S1)."""
    protocol, unit, level = group
    end = steps[-1].until + timedelta(seconds=margin_s)
    periods: list[dict[str, Any]] = []
    offset = 0
    for step in steps:
        periods.append({"startPeriod": offset, "limit": _limit(step.limit_w, unit)})
        offset = max(offset + 1, math.ceil((step.until - start).total_seconds()))
    duration = max(1, math.ceil((end - start).total_seconds()))
    schedule: dict[str, Any] = {
        "startSchedule": _timestamp(start),
        "duration": duration,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": periods,
    }
    profile: dict[str, Any] = {
        "stackLevel": level,
        "chargingProfileKind": "Absolute",
        "validFrom": _timestamp(start),
        "validTo": _timestamp(end),
    }
    if protocol == OCPP16:
        profile.update(
            chargingProfileId=PROFILE_ID, chargingProfilePurpose="ChargePointMaxProfile", chargingSchedule=schedule
        )
        return "SetChargingProfile", {"connectorId": 0, "csChargingProfiles": profile}
    profile.update(
        id=PROFILE_ID, chargingProfilePurpose="ChargingStationMaxProfile", chargingSchedule=[{"id": 1, **schedule}]
    )
    return "SetChargingProfile", {"evseId": 0, "chargingProfile": profile}


def clear_payload(group: Group) -> tuple[str, dict[str, Any]]:
    """Return ClearChargingProfile of the PowerBank profile."""
    if group[0] == OCPP16:
        return "ClearChargingProfile", {"id": PROFILE_ID}
    return "ClearChargingProfile", {"chargingProfileId": PROFILE_ID}


@dataclass
class Broadcast:
    """Frames queued to chargers and the futures of their answers."""

    triggered_at: datetime
    sent_at: datetime
    futures: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    message_ids: dict[int, str] = field(default_factory=dict)
    identities: dict[int, str] = field(default_factory=dict)
    offline: list[Target] = field(default_factory=list)
    frames: int = 0
    # When each answer arrived (taken as it arrives, not when someone next looks).
    answered_at: dict[int, datetime] = field(default_factory=dict)

    def _arrived(self, charge_point_id: int, _future: asyncio.Future[Any]) -> None:
        self.answered_at.setdefault(charge_point_id, utcnow())

    @property
    def sent(self) -> dict[int, datetime]:
        return {cp_id: self.sent_at for cp_id in self.futures}


def broadcast(
    registry: Registry,
    targets: Iterable[Target],
    payload_for: Callable[[Group], tuple[str, dict[str, Any]]],
    triggered_at: datetime | None = None,
) -> Broadcast:
    """Queue each group's frame, serialised once, to every connected target; await nobody."""
    triggered_at = triggered_at or utcnow()
    groups: dict[Group, list[Target]] = {}
    offline: list[Target] = []
    for target in targets:
        connection = registry.get(target.identity)
        if connection is None or connection.closed:
            offline.append(target)
            continue
        group = (connection.protocol, rate_unit(target.rate_units), stack_level(target.max_stack_level))
        groups.setdefault(group, []).append(target)
    result = Broadcast(triggered_at=triggered_at, sent_at=triggered_at, offline=offline)
    for group, members in groups.items():
        action, payload = payload_for(group)
        message_id = str(uuid.uuid4())
        frame = json.dumps([2, message_id, action, payload], separators=(",", ":"))
        futures = registry.broadcast(frame, message_id, [target.identity for target in members])
        result.frames += len(futures)
        STATS.messages["out", "call", action] += len(futures)
        for target in members:
            future = futures.get(target.identity)
            if future is None:
                result.offline.append(target)
                continue
            result.futures[target.charge_point_id] = future
            future.add_done_callback(functools.partial(result._arrived, target.charge_point_id))
            result.message_ids[target.charge_point_id] = message_id
            result.identities[target.charge_point_id] = target.identity
    result.sent_at = utcnow()
    return result


def _answer(charge_point_id: int, future: asyncio.Future[Any], at: datetime) -> Answer:
    """Turn a finished future into (charge point, status, detail, when)."""
    error = future.exception()
    if isinstance(error, CallErrorReceived):
        return charge_point_id, "error", f"{error.code}: {error.description}", at
    if isinstance(error, ConnectionLost):
        return charge_point_id, "offline", "disconnected before answering", at
    if error is not None:
        return charge_point_id, "error", repr(error), at
    payload = future.result() or {}
    status = str(payload.get("status", "error"))
    info = payload.get("statusInfo") or {}
    results = payload.get("setVariableResult")
    if isinstance(results, list) and results and isinstance(results[0], dict):
        # SetVariables answers per variable; the hub sets one at a time.
        status = str(results[0].get("attributeStatus", "error"))
        info = results[0].get("attributeStatusInfo") or {}
    if not isinstance(info, dict):
        info = {}
    detail = " ".join(str(part) for part in (info.get("reasonCode"), info.get("additionalInfo")) if part)
    return charge_point_id, status, detail, at


async def collect(
    registry: Registry,
    sent: Broadcast,
    on_answers: Callable[[list[Answer]], Awaitable[None]],
    *,
    timeout_s: float,
    flush_s: float = 0.25,
    stop: asyncio.Event | None = None,
    activation: str | None = None,
) -> list[Answer]:
    """Hand answers to ``on_answers`` in batches as they come; after ``timeout_s`` the rest time out.

    Nothing is retried: a charger that rejects or stays silent is recorded as such. Setting
    ``stop`` (the hub is shutting down) ends the wait early, so the batches are still stored.
    With ``activation`` (its id), the fan-out's answer times are kept for ``/metrics`` under it.
    """
    loop = asyncio.get_running_loop()
    ready: list[Answer] = []
    everything: list[Answer] = []
    all_in = asyncio.Event()
    waiting = set(sent.futures)

    def arrived(charge_point_id: int, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or charge_point_id not in waiting:
            return
        waiting.discard(charge_point_id)
        ready.append(_answer(charge_point_id, future, sent.answered_at.get(charge_point_id) or utcnow()))
        if not waiting:
            all_in.set()

    for cp_id, future in sent.futures.items():
        if future.done():
            arrived(cp_id, future)
        else:
            future.add_done_callback(functools.partial(arrived, cp_id))
    if not waiting:
        all_in.set()
    deadline = loop.time() + timeout_s
    while True:
        left = deadline - loop.time()
        if all_in.is_set() or left <= 0 or (stop is not None and stop.is_set()):
            break
        try:
            await asyncio.wait_for(all_in.wait(), min(flush_s, left))
        except TimeoutError:
            pass
        if ready:
            batch = ready.copy()
            ready.clear()
            everything.extend(batch)
            await on_answers(batch)
    now = utcnow()
    stopped = stop is not None and stop.is_set()
    for cp_id in list(waiting):
        waiting.discard(cp_id)
        detail = "the hub stopped before the answer" if stopped else f"no answer within {timeout_s:g} s"
        ready.append((cp_id, "timeout", detail, now))
        connection = registry.get(sent.identities[cp_id])
        if connection is not None:
            connection.forget(sent.message_ids[cp_id])
    if ready:
        everything.extend(ready)
        await on_answers(ready)
    _count(sent, everything, activation)
    return everything


def _count(sent: Broadcast, answers: list[Answer], activation: str | None) -> None:
    """Add a fan-out's answers to the process's statistics (once per fan-out, not per message)."""
    delays: list[float] = []
    for _cp_id, status, _detail, at in answers:
        STATS.dispatch_statuses[status] += 1
        if status not in ("timeout", "offline"):
            delay = (at - sent.triggered_at).total_seconds()
            delays.append(delay)
            STATS.fanout_answer_seconds.observe(delay)
    if activation is not None:
        STATS.fanout_done(activation, (sent.sent_at - sent.triggered_at).total_seconds(), delays)
