"""Fine metering during activations: chargers report power as often as they allow, then as before.

Proof of delivery (services/delivery.py) is only as fine as the chargers' reports, and a TSO wants
the response logged at 1 s. When a node sends an activation's limit to the chargers it holds, it
then asks each to report power more often: the finest interval of FINE_INTERVALS_S finer than its
own (1.6 ChangeConfiguration of MeterValueSampleInterval, 2.0.1 SetVariables of the sampled-data
controller's TxUpdatedInterval), trying the next when one is rejected; one that takes none (or whose
interval is unknown) is asked for one report at once (TriggerMessage MeterValues). A minute after
the window the node sets the interval it changed back to what the capability probe read. Every
step is one frame per kind of charger for all (``fanout.broadcast``), after the limit frames, so
it never delays a limit; what each charger took is noted on its dispatch row (``metering``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.dispatch import fanout
from powerbank.ocpp.registry import Registry
from powerbank.services import activations as service
from powerbank.services import delivery
from powerbank.services.activations import Target

logger = logging.getLogger("powerbank.activations")

# Intervals asked for, finest first; only those finer than a charger's own.
FINE_INTERVALS_S = (1, 5, 10, 15, 30)


def interval_payload(seconds: int) -> Callable[[fanout.Group], tuple[str, dict[str, Any]]]:
    """Return the frame that sets a charger's meter reporting interval (seconds)."""

    def payload(group: fanout.Group) -> tuple[str, dict[str, Any]]:
        if group[0] == fanout.OCPP16:
            return "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": str(seconds)}
        return "SetVariables", {
            "setVariableData": [
                {
                    "attributeValue": str(seconds),
                    "component": {"name": "SampledDataCtrlr"},
                    "variable": {"name": "TxUpdatedInterval"},
                }
            ]
        }

    return payload


def report_now_payload(_group: fanout.Group) -> tuple[str, dict[str, Any]]:
    """Return TriggerMessage MeterValues (one report at once, for the whole charger: no connector named)."""
    return "TriggerMessage", {"requestedMessage": "MeterValues"}


class FineMetering:
    """One node's fine metering: set at a trigger, restored a minute after the window."""

    def __init__(
        self,
        registry: Registry,
        sessionmaker: async_sessionmaker[AsyncSession],
        spawn: Callable[[Any], asyncio.Task[Any]],
        answer_timeout_s: float,
    ) -> None:
        self.registry = registry
        self.sessionmaker = sessionmaker
        self.spawn = spawn
        self.answer_timeout_s = answer_timeout_s
        # Charger → (the interval to set back, the activation whose window it follows, its identity).
        self._changed: dict[int, tuple[int, int, str]] = {}

    def start(self, activation_id: int, end_at: datetime, targets: Sequence[Target]) -> None:
        """Refine the reports of these chargers (limits just sent to them), in the background."""
        if targets:
            self.spawn(self._refine(activation_id, end_at, list(targets)))

    async def _refine(self, activation_id: int, end_at: datetime, targets: list[Target]) -> None:
        ids = [t.charge_point_id for t in targets]
        async with self.sessionmaker() as session:
            current = await service.meter_intervals(session, ids)
        notes: dict[int, str] = {}
        trying = [t for t in targets if current.get(t.charge_point_id) is not None]
        for seconds in FINE_INTERVALS_S:
            trying = [t for t in trying if (current.get(t.charge_point_id) or 0) > seconds]
            if not trying:
                break
            answers = await self._ask(trying, interval_payload(seconds))
            for cp_id, status, _detail, _at in answers:
                original = current.get(cp_id) or 0
                if status in ("Accepted", "RebootRequired"):
                    notes[cp_id] = f"every {seconds} s (was {original} s)"
                    previous = self._changed.get(cp_id)
                    identity = next(t.identity for t in trying if t.charge_point_id == cp_id)
                    self._changed[cp_id] = (previous[0] if previous else original, activation_id, identity)
                elif status != "Rejected":
                    notes[cp_id] = f"interval not set ({status})"
            trying = [t for t in trying if t.charge_point_id not in notes]
        rest = [t for t in targets if not notes.get(t.charge_point_id, "").startswith("every")]
        for cp_id, status, _detail, _at in await self._ask(rest, report_now_payload):
            before = notes.get(cp_id) or (
                "interval unknown" if current.get(cp_id) is None else "no finer interval taken"
            )
            notes[cp_id] = f"{before}; one report asked: {status}"
        await self._note(activation_id, notes)
        # A minute after the window: the evidence's last samples are in; the intervals go back.
        wait_s = (end_at - utcnow()).total_seconds() + delivery.CONTEXT_S
        if any(changed[1] == activation_id for changed in self._changed.values()):
            await asyncio.sleep(max(0.0, wait_s))
            await self.restore(activation_id)

    async def restore(self, activation_id: int) -> None:
        """Set back the intervals changed for an activation (chargers still connected here)."""
        mine = {cp_id: changed for cp_id, changed in self._changed.items() if changed[1] == activation_id}
        for cp_id in mine:
            del self._changed[cp_id]
        by_interval: dict[int, list[Target]] = {}
        for cp_id, (original, _activation_id, identity) in mine.items():
            connection = self.registry.get(identity)
            if connection is not None and connection.charge_point_id == cp_id:
                by_interval.setdefault(original, []).append(Target(cp_id, identity, None, None))
        notes: dict[int, str] = {}
        for seconds, targets in by_interval.items():
            for cp_id, status, _detail, _at in await self._ask(targets, interval_payload(seconds)):
                notes[cp_id] = f"set back to {seconds} s: {status}"
        await self._note(activation_id, notes, append=True)

    async def _ask(
        self, targets: list[Target], payload: Callable[[fanout.Group], tuple[str, dict[str, Any]]]
    ) -> list[fanout.Answer]:
        if not targets:
            return []
        sent = fanout.broadcast(self.registry, targets, payload)

        async def ignore(_batch: list[fanout.Answer]) -> None:
            return None

        return await fanout.collect(self.registry, sent, ignore, timeout_s=self.answer_timeout_s)

    async def _note(self, activation_id: int, notes: dict[int, str], append: bool = False) -> None:
        if not notes:
            return
        async with self.registry.writing() as session:
            await service.record_metering(session, activation_id, notes, append=append)
            await session.commit()
