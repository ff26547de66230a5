"""The activation runner: starts activations on time, sends their limits, releases them.

It glues the activation rules (``powerbank.services.activations``) to the chargers
(``powerbank.dispatch.fanout`` through the connection registry) and runs while the app serves
(``powerbank.dispatch.gateway`` runs it, and is what routes call):

- ``trigger`` sends an active activation's limit to every signed-up, connected charger of its
  area at once and records the answers in bulk as they come (the hot path; the benchmark calls it).
- at the end of a window, or on cancel, ``release`` clears the PowerBank profile, unless another
  activation of the area still limits the charger, in which case its limit is sent instead. It
  runs in a task of its own, so waiting for its answers never delays a start.
- S2: the enrollment release hook (opt-out, suspension) and charge point deletion or moves
  release a charger as soon as the change is committed.
- S4: on start, activations whose window passed while the hub was down are ended, scheduled ones
  whose start passed are started if their window is still open; a charger that boots, or that
  reconnects without booting (the usual case after a hub restart), gets the limit of the active
  activations of its area, or a release of a limit it may still carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import after_commit, utcnow
from powerbank.db.leadership import Leadership
from powerbank.dispatch import fanout
from powerbank.dispatch.metering import FineMetering
from powerbank.models import Activation, ActivationState, Dispatch
from powerbank.ocpp.connection import HubConnection
from powerbank.ocpp.registry import Registry
from powerbank.services import activations as service
from powerbank.services import delivery, enrollment
from powerbank.services.activations import Target
from powerbank.tasks import BackgroundTasks

logger = logging.getLogger("powerbank.activations")

# The longest the scheduler sleeps without looking at the clock (it is also woken on changes).
IDLE_WAKE_S = 30.0
# After a failed look (the database away), the scheduler looks again this soon.
RETRY_AFTER_S = 1.0
# At shutdown, how long work in flight may take to store what it has before it is cancelled.
STOP_GRACE_S = 5.0
# Chargers that booted looked up together at most (a few queries for all of them).
BOOT_BATCH = 1000
# While chargers go on booting, how long those that booted meanwhile gather before they are looked up.
BOOT_GATHER_S = 0.25

# Messages between the nodes of a cluster (db/bus.py): an activation was claimed and is to be sent by
# every node to the chargers it holds; an activation ended or was cancelled and every node releases
# its chargers; chargers were withdrawn (S2) and whichever node holds them releases them; the
# schedule changed and the leader looks at it again.
TRIGGERED = "activation.triggered"
RELEASED = "activation.released"
WITHDRAWN = "chargers.withdrawn"
RESCHEDULED = "activation.rescheduled"
# Activations a node remembers having sent to its chargers (far more than are ever active at once).
SENT_HERE_KEPT = 10_000


@dataclass(frozen=True)
class TriggerReport:
    """How a fan-out went, in seconds from the trigger (for the page and the benchmark)."""

    activation_id: int
    targets: int
    sent: int
    offline: int
    last_send_s: float
    answered: int


@dataclass(eq=False)
class _Unrecorded:
    """Limits on their way whose dispatch rows are not stored yet, and the releases asked for meanwhile.

    Opened before the chargers and activations are read, closed once the rows are stored. A release
    committed in that time may come too late for the reads and too early to find the rows, so it
    leaves a note here instead. A charger noted before the frames go out is left out of them (its
    own release may have gone out already, and must stay the last word); one noted after is
    released once the rows are stored, so its release follows the limit.
    """

    # The trigger's activation (its release waits for the trigger); None for a limit sent again to
    # chargers that connected, which may be any active activation's.
    activation_id: int | None
    # Chargers sent to; None until the frames are out (a charger released meanwhile is noted anyway).
    sent_to: set[int] | None = None
    # Their identities: a charger deleted meanwhile has its row stored without its charge point.
    identities: dict[int, str] = field(default_factory=dict)
    # Releases sent at once to chargers withdrawn after the frames went out (before a deleted one is
    # disconnected); their answers are recorded once the rows are stored.
    early: dict[int, fanout.Broadcast] = field(default_factory=dict)
    # Activations released meanwhile (cancelled, ended), with the reason.
    released: dict[int, str] = field(default_factory=dict)
    # Chargers released meanwhile (opt-out, suspension, deletion, move), with the reason.
    withdrawn: dict[int, str] = field(default_factory=dict)
    # Activations among ``released`` that another node ended and told of: this node releases only its chargers.
    finished_elsewhere: set[int] = field(default_factory=set)

    def release(self, activation_id: int, reason: str, here_only: bool) -> None:
        """Note an activation released meanwhile (the first reason wins; any local release ends it here)."""
        if activation_id not in self.released:
            self.released[activation_id] = reason
            if here_only:
                self.finished_elsewhere.add(activation_id)
        elif not here_only:
            self.finished_elsewhere.discard(activation_id)

    def withdraw(self, charge_point_ids: Iterable[int], reason: str) -> None:
        """Note chargers released meanwhile (those it may have sent to)."""
        for charge_point_id in charge_point_ids:
            if self.sent_to is None or charge_point_id in self.sent_to:
                self.withdrawn.setdefault(charge_point_id, reason)

    def left_in(self, targets: Iterable[Target]) -> list[Target]:
        """Return the targets not released since this was opened."""
        return [target for target in targets if target.charge_point_id not in self.withdrawn]

    def withdrawn_sent(self) -> dict[str, dict[int, str]]:
        """Return the chargers released meanwhile that were sent a limit (with their identities), by reason."""
        by_reason: dict[str, dict[int, str]] = {}
        for charge_point_id, reason in self.withdrawn.items():
            if self.sent_to is not None and charge_point_id in self.sent_to:
                by_reason.setdefault(reason, {})[charge_point_id] = self.identities.get(charge_point_id, "")
        return by_reason


class _Resent(NamedTuple):
    """A limit sent again to chargers of one area that connected."""

    active: list[Activation]
    targets: list[Target]  # those it reached
    sent: fanout.Broadcast
    limit_w: float


class _BootBatch(NamedTuple):
    """A batch of chargers that booted, looked up, sent what they must carry: to be stored."""

    connections: Sequence[HubConnection]
    unrecorded: _Unrecorded
    limited: list[_Resent]
    replaced: list[Dispatch]
    now: datetime


class ActivationRunner:
    """Run activations against the chargers connected to this process.

    On PostgreSQL the process may be one node of several (``clustered``): an activation is claimed
    once (a conditional update) and its NOTIFY, sent in the same transaction, has every node send the
    limit to the chargers it holds; releases and withdrawals go to every node the same way; the
    scheduler runs on the node that holds the leader lock (``db/leadership.py``).
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        registry: Registry,
        *,
        margin_s: float = service.PROFILE_MARGIN_S,
        answer_timeout_s: float = 10.0,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.registry = registry
        self.margin_s = margin_s
        self.answer_timeout_s = answer_timeout_s
        self._wake = asyncio.Event()
        # Set when the app shuts down: waits for answers end early and store what they have.
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._background = BackgroundTasks(logger, "activation work")
        # Chargers report power more often during an activation (the proof of delivery needs it).
        self.metering = FineMetering(registry, sessionmaker, self.spawn, answer_timeout_s)
        # One change at a time per (operator, area): a trigger and a release of overlapping
        # activations must not interleave their frames.
        self._area_locks: dict[tuple[int, str], asyncio.Lock] = {}
        # Whether an activation may be active: when not, a charger's boot looks up no limit for
        # it. Set before any activation becomes active; cleared only by the scheduler's full look.
        self._any_active = True
        self._launches = 0
        # Activations whose trigger is running (each is sent once, however it is asked for).
        self._triggering: set[int] = set()
        # Limits on their way but not yet recorded (fan-outs, limits sent again after a charger
        # connected): a release in that gap finds no dispatch row, so it leaves a note there.
        self._unrecorded: list[_Unrecorded] = []
        # Dispatch rows whose release is sent and not yet answered, with their charger: a charger
        # released twice over (its opt-out, and a fan-out that noted it) is sent one
        # ClearChargingProfile. A limit sent to the charger since makes that release not count.
        self._clearing: dict[int, int] = {}
        # In a cluster: activations this node sent to its chargers (each is, once), oldest first.
        self._sent_here: dict[int, None] = {}
        # Chargers that booted and wait to be looked up, and the task that looks them up.
        self._booted: list[HubConnection] = []
        self._boot_worker: asyncio.Task[None] | None = None
        # Batches of those whose limits sent again wait to be stored, and the task that stores them.
        self._boots_to_record: list[_BootBatch] = []
        self._boot_recorder: asyncio.Task[None] | None = None
        # The other nodes sharing the database, if any: they hear of what this one does, and it of theirs.
        self.bus = registry.bus
        self.clustered = self.bus.shared
        bind = sessionmaker.kw.get("bind")
        self.leadership = Leadership(
            bind.url.render_as_string(hide_password=False) if bind is not None else "sqlite://", self.bus.node_name
        )
        self.bus.subscribe(TRIGGERED, self._triggered_elsewhere)
        self.bus.subscribe(RELEASED, self._released_elsewhere)
        self.bus.subscribe(WITHDRAWN, self._withdrawn_elsewhere)
        self.bus.subscribe(RESCHEDULED, self._rescheduled_elsewhere)
        self.bus.reconnect_listeners.append(self._bus_reconnected)

    # Lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Reconcile after a restart (S4), then run the scheduler."""
        enrollment.register_release_hook(self.release_charge_points)
        self.registry.boot_listeners.append(self.charger_booted)
        self.registry.reconnect_listeners.append(self.charger_booted)
        await self.reconcile()
        await self.leadership.start()
        self._loop_task = asyncio.create_task(self._run(), name="activation scheduler")

    async def stop(self) -> None:
        """Stop the scheduler and let the work in flight store what it has.

        Work is not cancelled in the middle of a database write (that could leave a SQLite
        write lock behind): waits for answers end early instead, and only stragglers are cancelled.
        """
        enrollment.unregister_release_hook(self.release_charge_points)
        with contextlib.suppress(ValueError):
            self.registry.boot_listeners.remove(self.charger_booted)
        with contextlib.suppress(ValueError):
            self.registry.reconnect_listeners.remove(self.charger_booted)
        self._stopping.set()
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE_S
        scheduler = [self._loop_task] if self._loop_task is not None else []

        def in_flight() -> list[asyncio.Task[Any]]:
            return [task for task in [*scheduler, *self._background.running] if not task.done()]

        # Work in flight spawns more (the scheduler's last look its releases, a fan-out the release
        # asked for while it was being recorded): that is waited for too, within the same grace.
        while (work := in_flight()) and loop.time() < deadline:
            await asyncio.wait(work, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED)
        stragglers = in_flight()
        for task in stragglers:
            task.cancel()
        await asyncio.gather(*stragglers, return_exceptions=True)
        await self.leadership.stop()

    @property
    def may_be_active(self) -> bool:
        """Whether an activation may be active now (false only once the scheduler saw none)."""
        return self._any_active

    @property
    def write_turn(self) -> contextlib.AbstractAsyncContextManager[object]:
        """The hub's OCPP write lock: a new activation takes its turn with the chargers' batches.

        Under load those batches follow each other closely; a request waiting in SQLite's busy
        handler instead could wait seconds for a gap. Take it before the session writes anything.
        """
        return self.registry.write_lock

    def wake(self) -> None:
        """Look at the schedule again now (an activation was created or cancelled), on the leader too."""
        self._wake.set()
        if self.clustered and not self.leadership.leading:
            self.bus.send(RESCHEDULED)

    def launch(self, activation: Activation) -> None:
        """Send a new activation that starts now at once; a scheduled one waits for its start."""
        if activation.state == ActivationState.ACTIVE and activation.id is not None:
            self._any_active = True
            self._launches += 1
            self._trigger_soon(activation.id)
        self.wake()

    def launch_on_commit(self, session: AsyncSession, activation: Activation) -> None:
        """Launch a new activation in the same step as the commit that stores it.

        A request cancelled just after its commit (the client went away) cannot leave the
        activation stored as active but unsent; the scheduler also sends any it finds so.
        """
        after_commit(session, lambda: self.launch(activation))

    def _trigger_soon(self, activation_id: int, here_only: bool = False) -> None:
        """Trigger an activation in a task of its own, unless its trigger is running already."""
        if activation_id in self._triggering:
            return
        self._triggering.add(activation_id)
        task = self.spawn(self.trigger(activation_id, here_only=here_only))
        task.add_done_callback(lambda _task: self._triggering.discard(activation_id))

    def release_soon(self, activation_id: int, reason: str) -> None:
        """Release a cancelled activation's chargers at once, without making the caller wait for answers."""
        self.spawn(self.release(activation_id, reason))
        self.wake()

    def release_on_commit(self, session: AsyncSession, activation_id: int, reason: str) -> None:
        """Release a cancelled activation's chargers in the same step as the commit that cancels it."""
        after_commit(session, lambda: self.release_soon(activation_id, reason))

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run work in a task that the runner awaits when it stops."""
        return self._background.spawn(coroutine)

    def _lock(self, activation: Activation) -> asyncio.Lock:
        return self._area_locks.setdefault((activation.operator_id, activation.price_area), asyncio.Lock())

    # Scheduling ------------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """S4: end the activations whose window passed while the hub was down."""
        now = utcnow()
        async with self.sessionmaker() as session:
            for activation in await service.active_activations(session):
                if activation.end_at <= now:
                    await service.finish(session, activation, now)
            await session.commit()
        # Scheduled activations whose start passed are the scheduler's first tick; chargers that
        # connect get what is active, or a release of what ended (``charger_booted``).

    def _start_or_skip(self, activation: Activation, now: datetime) -> bool:
        """Make a due scheduled activation active, or end it if its whole window has passed."""
        if activation.end_at <= now:
            activation.state = ActivationState.ENDED
            activation.ended_at = now
            return False
        activation.state = ActivationState.ACTIVE
        return True

    async def _until_leading(self) -> bool:
        """Wait until this node leads (at once when alone); False if the runner stops first."""
        if self.leadership.leading:
            return True
        leading = asyncio.ensure_future(self.leadership.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait([leading, stopping], return_when=asyncio.FIRST_COMPLETED)
        for waiter in (leading, stopping):
            waiter.cancel()
        return self.leadership.leading and not self._stopping.is_set()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            if not await self._until_leading():
                break
            upcoming: datetime | None = None
            try:
                await self.tick()
                async with self.sessionmaker() as session:
                    upcoming = await service.next_change_at(session)
            except Exception:
                # The database may be away: look again soon (a due start or window end is not lost).
                logger.exception("the activation scheduler failed; trying again")
                upcoming = utcnow() + timedelta(seconds=RETRY_AFTER_S)
            wait = IDLE_WAKE_S if upcoming is None else (upcoming - utcnow()).total_seconds()
            if not self._stopping.is_set():
                self._wake.clear()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(wait, IDLE_WAKE_S))

    async def tick(self) -> None:
        """Start the activations whose time has come and release the ones whose window ended."""
        now = utcnow()
        started: list[int] = []
        unsent: list[int] = []
        over: list[int] = []
        launches = self._launches
        async with self.sessionmaker() as session:
            for activation in await service.due_to_start(session, now):
                if self._start_or_skip(activation, now):
                    started.append(activation.id or 0)
                    self._any_active = True
            active = await service.active_activations(session)
            for activation in active:
                if activation.end_at <= now:
                    over.append(activation.id or 0)
                elif activation.triggered_at is None:
                    # Active and never sent: its launch was lost (or is running; see _trigger_soon).
                    unsent.append(activation.id or 0)
            # Ended here, as a cancel is before its release: the next look sees the next change,
            # and only the look that ended an activation releases it.
            ended = await service.end_windows(session, over, now)
            await session.commit()
        if not started and len(active) == len(over) and launches == self._launches:
            # None is active now, and none was launched while this looked.
            self._any_active = False
        for activation_id in dict.fromkeys([*started, *unsent]):
            self._trigger_soon(activation_id)
        # Each release waits for its chargers' answers in a task of its own: a start due
        # meanwhile (FCR-D: 5 s) never waits for another activation's chargers to answer.
        for activation_id in ended:
            self.spawn(self.release(activation_id, "ended"))
        await self.keep_evidence(now)

    async def keep_evidence(self, now: datetime) -> asyncio.Task[None] | None:
        """Copy the meter samples of activations over for a minute, as evidence of what was delivered;
        then judge their chargers in a task of its own (returned), as the scheduler goes on.

        The samples are copied EVIDENCE_CHUNK chargers at a time, each its own short write, so the
        chargers' meter values are stored in between; the activation is noted as kept once all are.
        """
        async with self.sessionmaker() as session:
            due = [(a, await delivery.evidence_chargers(session, a)) for a in await delivery.evidence_due(session, now)]
        kept = []
        for activation, charge_point_ids in due:
            for first in range(0, len(charge_point_ids), delivery.EVIDENCE_CHUNK):
                async with self.registry.writing() as session:
                    chunk = charge_point_ids[first : first + delivery.EVIDENCE_CHUNK]
                    await delivery.copy_evidence(session, activation, chunk)
                    await session.commit()
            async with self.registry.writing() as session:
                if await delivery.note_evidence_kept(session, activation, now):
                    # Read in another session: judged from the evidence from now on.
                    activation.evidence_kept_at = now
                    kept.append(activation)
                await session.commit()
        if not kept:
            return None
        logger.info("kept the meter samples of activation(s) %s as evidence of delivery", [a.id for a in kept])
        return self.spawn(self._keep_verdicts(kept, now))

    async def _keep_verdicts(self, activations: list[Activation], now: datetime) -> None:
        """Store each charger's verdict and the activation's record: judged in a reading session
        (seconds for thousands of chargers, in chunks that let the loop go on), then written at once
        under the write lock."""
        for activation in activations:
            async with self.sessionmaker() as session:
                judged = await delivery.judge_for_keeping(session, activation, now)
            if judged is None:
                continue
            async with self.registry.writing() as session:
                await delivery.store_verdicts(session, delivery.verdict_rows(activation, judged, now))
                await delivery.store_record(session, activation, judged, now)
                await session.commit()

    # The hot path ----------------------------------------------------------------------------

    async def trigger(self, activation_id: int, *, here_only: bool = False) -> TriggerReport | None:
        """Send an active activation's limit to its area's chargers at once; record the answers.

        Three queries before the first frame (the activation, the area's active activations,
        the signed-up chargers), none per charger; answers are stored in batches. In a cluster
        the activation is first claimed, and every node hears of it in the same commit; the claimer
        records the chargers no node holds as offline. ``here_only``: another node claimed it, and
        this one sends the limit to the chargers it holds.
        """
        triggered_at = utcnow()
        # Open before anything is read: an opt-out committed after the area's chargers are read
        # (or a cancel, a window end) finds no row until they are stored, and is noted here.
        unrecorded = self._open_unrecorded(activation_id)
        try:
            if self.clustered and not here_only:
                async with self.sessionmaker() as session:
                    claimed = await service.claim_trigger(session, activation_id, triggered_at)
                    if claimed:
                        await self.bus.send_on_commit(session, TRIGGERED, "activations", [activation_id])
                        await session.commit()
                # Claimed by another node meanwhile (the leader's look, a second launch): its message
                # may have come while this ran and been passed over, so this node sends to its chargers now.
                here_only = not claimed
            async with self.sessionmaker() as session:
                activation = await session.get(Activation, activation_id)
                if (
                    activation is None
                    or activation.state != ActivationState.ACTIVE
                    or (activation.triggered_at is not None and not self.clustered)
                ):
                    return None  # ended, cancelled, or sent already (by a trigger that ran just before)
                if here_only and activation_id in self._sent_here:
                    return None  # this node sent it to its chargers already
                async with self._lock(activation):
                    active = await service.active_in_area(
                        session, activation.operator_id, activation.price_area, triggered_at
                    )
                    steps = service.envelope(active, triggered_at)
                    if not steps or all(a.id != activation_id for a in active):
                        return None
                    if self.clustered:
                        # Each node reads and records its share of the area: the chargers it holds
                        # (or the database says it holds); the claimer also those no live node holds.
                        found = await service.targets_held(
                            session,
                            activation.operator_id,
                            activation.price_area,
                            [c.charge_point_id for c in self.registry.connections() if c.charge_point_id is not None],
                            self.registry.node_id,
                            None if here_only else triggered_at - self.registry.lease,
                        )
                    else:
                        found = await service.targets_in_area(session, activation.operator_id, activation.price_area)
                    targets = unrecorded.left_in(found)
                    if self.clustered:
                        self._note_sent_here(activation_id)
                    sent = fanout.broadcast(
                        self.registry,
                        targets,
                        lambda group: fanout.set_limit_payload(group, steps, triggered_at, self.margin_s),
                        triggered_at,
                    )
                    self._limit_sent(unrecorded, sent.identities)
                    self.registry.keep_samples(sent.futures, delivery.keep_for_s(activation, triggered_at))
                if not here_only:
                    activation.triggered_at = triggered_at
                    activation.last_sent_at = sent.sent_at
                    session.add(activation)
                async with self.registry.write_lock:
                    await service.record_sent(session, activation, sent.sent, sent.offline, targets, steps[0].limit_w)
                    await session.commit()
                # Once their rows are stored (what each takes is noted there).
                self.metering.start(
                    activation_id, activation.end_at, [t for t in targets if t.charge_point_id in sent.futures]
                )
        finally:
            self._close_unrecorded(unrecorded)
        logger.info(
            "activation %s: %d frames to %d chargers (%d offline) in %.3f s",
            activation_id,
            sent.frames,
            len(targets),
            len(sent.offline),
            (sent.sent_at - triggered_at).total_seconds(),
        )

        async def store(batch: list[fanout.Answer]) -> None:
            async with self.registry.writing() as session:
                await service.record_answers(session, [activation_id], batch)
                await session.commit()

        answers = await fanout.collect(
            self.registry,
            sent,
            store,
            timeout_s=self.answer_timeout_s,
            stop=self._stopping,
            activation=str(activation_id),
        )
        if self.clustered and not here_only:
            self.spawn(self._record_unsent(activation_id, steps[0].limit_w, triggered_at))
        return TriggerReport(
            activation_id,
            len(targets),
            len(sent.futures),
            len(sent.offline),
            (sent.sent_at - triggered_at).total_seconds(),
            len(answers),
        )

    async def _record_unsent(self, activation_id: int, limit_w: float, triggered_at: datetime) -> None:
        """Once every node has had the answer timeout to record the chargers it holds, record as
        offline the signed-up chargers of the area that none did (the claimer's look, in a cluster)."""
        wait = (triggered_at - utcnow()).total_seconds() + self.answer_timeout_s
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
        try:
            async with self.registry.writing() as session:
                activation = await session.get(Activation, activation_id)
                if activation is None:
                    return
                unsent = await service.record_unsent(session, activation, limit_w)
                await session.commit()
        except Exception:
            logger.exception("activation %s: could not record the chargers no node sent the limit to", activation_id)
            return
        if unsent:
            logger.warning(
                "activation %s: no node sent the limit to %d signed-up charger(s); recorded as offline",
                activation_id,
                unsent,
            )

    # Releasing -------------------------------------------------------------------------------

    async def release(self, activation_id: int, reason: str, *, here_only: bool = False) -> None:
        """End an activation's limit on its chargers, unless another activation of the area needs it.

        In a cluster every node hears of it in the commit that ends it, and releases the chargers it
        holds. ``here_only``: another node ended it, and this one releases the chargers it holds.
        """
        for unrecorded in self._unrecorded:
            if unrecorded.activation_id in (None, activation_id):
                unrecorded.release(activation_id, reason, here_only)
        if any(unrecorded.activation_id == activation_id for unrecorded in self._unrecorded):
            # Its trigger is running and its rows are not stored yet (a release now could find none):
            # the trigger releases it once they are.
            return
        now = utcnow()
        # Open before the area's chargers are read: one withdrawn after that read (and released at
        # once, as it has its rows) is not sent the limit that continues.
        unrecorded = self._open_unrecorded(None)
        try:
            async with self.sessionmaker() as session:
                activation = await session.get(Activation, activation_id)
                if activation is None:
                    return
                async with self._lock(activation):
                    if not here_only:
                        await service.finish(session, activation, now)
                        if self.clustered:
                            await self.bus.send_on_commit(
                                session, RELEASED, "activations", [activation_id], reason=reason
                            )
                    remaining = [
                        a
                        for a in await service.active_in_area(
                            session, activation.operator_id, activation.price_area, now
                        )
                        if a.id != activation_id
                    ]
                    # In a cluster each node reads the rows of the chargers it holds: those no node holds
                    # stay unreleased until they reconnect (S4), wherever that is.
                    held = (
                        [c.charge_point_id for c in self.registry.connections() if c.charge_point_id is not None]
                        if self.clustered
                        else None
                    )
                    dispatches = [
                        d
                        for d in await service.unreleased(session, activation_id=activation_id, charge_point_ids=held)
                        if d.charge_point_id is not None
                    ]
                    await session.commit()
                    if not dispatches:
                        logger.info("activation %s %s: released 0 charger(s), none here", activation_id, reason)
                        return
                    if not remaining:
                        sent = fanout.broadcast(self.registry, _clear_targets(dispatches), fanout.clear_payload)
                        releases = [(sent, "")]
                    else:
                        chargers = {d.charge_point_id for d in dispatches if d.charge_point_id is not None}
                        # The limit that continues goes only where a row of a continuing activation
                        # says it is on; the others are cleared. No release could find one handed on
                        # without such a row (a charger signed up after that activation was sent),
                        # not even its opt-out's.
                        remaining_ids = {a.id for a in remaining}
                        continuing = {
                            d.charge_point_id
                            for d in await service.unreleased(session, charge_point_ids=list(chargers))
                            if d.activation_id in remaining_ids
                        }
                        signed_up = [
                            t
                            for t in await service.targets_in_area(
                                session, activation.operator_id, activation.price_area
                            )
                            if t.charge_point_id in chargers
                        ]
                        steps = service.envelope(remaining, now)
                        limited = fanout.broadcast(
                            self.registry,
                            unrecorded.left_in(t for t in signed_up if t.charge_point_id in continuing),
                            lambda group: fanout.set_limit_payload(group, steps, now, self.margin_s),
                        )
                        self._limit_sent(unrecorded, limited.identities)
                        cleared = fanout.broadcast(
                            self.registry,
                            [t for t in signed_up if t.charge_point_id not in continuing],
                            fanout.clear_payload,
                        )
                        note = f"limit of #{', #'.join(str(a.id) for a in remaining)} continues"
                        releases = [(limited, note), (cleared, "")]
        finally:
            self._close_unrecorded(unrecorded)
        logger.info(
            "activation %s %s: released %d charger(s), %d not connected here",
            activation_id,
            reason,
            sum(len(sent.futures) for sent, _note in releases),
            sum(len(sent.offline) for sent, _note in releases),
        )
        await asyncio.gather(*(self._record_release(dispatches, sent, reason, note) for sent, note in releases))

    async def _record_release(
        self, dispatches: Sequence[Dispatch], sent: fanout.Broadcast, reason: str, note: str = ""
    ) -> None:
        """Wait for the chargers' answers to a release and store them (offline ones stay unreleased)."""
        by_charger: dict[int, list[int]] = {}
        for dispatch in dispatches:
            if dispatch.charge_point_id is not None and dispatch.id is not None:
                by_charger.setdefault(dispatch.charge_point_id, []).append(dispatch.id)

        async def store(batch: list[fanout.Answer]) -> None:
            releases = [
                (d_id, reason, f"{status} ({note})" if note else status, at)
                for cp_id, status, _detail, at in batch
                if status != "offline"
                for d_id in by_charger.get(cp_id, [])
            ]
            async with self.registry.writing() as session:
                await service.record_released(session, releases)
                await session.commit()

        await fanout.collect(self.registry, sent, store, timeout_s=self.answer_timeout_s, stop=self._stopping)

    async def release_charge_points(
        self, session: AsyncSession | None, charge_point_ids: list[int], reason: str
    ) -> None:
        """S2: lift any PowerBank limit from these chargers (opt-out, suspension, deletion, move).

        Called inside the caller's transaction, before a deletion is flushed: their dispatch rows are
        looked up there, but nothing is sent before the change is committed (nor at all if it rolls
        back). Until then a fan-out reading the area still finds them signed up. One that read it
        before the commit is told at the commit: it leaves them out if its frames are not out yet,
        or releases them once its rows are stored. Without a session they are released at once.
        """
        if session is None:
            if self.clustered:
                self.bus.send_all(WITHDRAWN, "chargers", [[cp_id, []] for cp_id in charge_point_ids], reason=reason)
            await self._clear_charge_points(charge_point_ids, reason)
            return
        found = await service.unreleased(session, charge_point_ids=charge_point_ids)
        if self.clustered:
            # Whichever node holds them releases them, once the change is committed (never if it rolls back).
            rows: dict[int, list[Any]] = {cp_id: [] for cp_id in charge_point_ids}
            for dispatch in found:
                if dispatch.charge_point_id in rows and dispatch.id is not None:
                    rows[dispatch.charge_point_id].append([dispatch.id, dispatch.identity])
            await self.bus.send_on_commit(
                session, WITHDRAWN, "chargers", [[cp_id, held] for cp_id, held in rows.items()], reason=reason
            )
        after_commit(session, lambda: self._withdraw(charge_point_ids, found, reason))

    def _withdraw(self, charge_point_ids: list[int], found: Sequence[Dispatch], reason: str) -> None:
        """Release chargers whose withdrawal was just committed (runs in the commit, before any other task)."""
        released_early: dict[int, fanout.Broadcast] = {}
        for unrecorded in self._unrecorded:
            unrecorded.withdraw(charge_point_ids, reason)
            # A limit on its way whose row is not stored yet is lifted now too, before a deleted
            # charger is disconnected; the answer is recorded once the row is stored.
            pending = [
                Target(cp_id, unrecorded.identities[cp_id], None, None)
                for cp_id in charge_point_ids
                if cp_id in unrecorded.identities and cp_id not in unrecorded.early
            ]
            if pending:
                early = fanout.broadcast(self.registry, pending, fanout.clear_payload)
                unrecorded.early.update(dict.fromkeys((t.charge_point_id for t in pending), early))
            released_early.update(unrecorded.early)
        # What was found is sent now, before a deleted charger is disconnected; rows stored since
        # the lookup (a fan-out that recorded meanwhile) are looked up again (and those released
        # early just above are not sent another release).
        self._clear([d for d in found if (d.charge_point_id or 0) not in released_early], reason)
        # A row stored after the lookup is found only now (a deleted charger's by its identity, its
        # charge point gone): the charger, disconnected in the same commit, is kept open until its
        # release is sent and answered.
        wanted = set(charge_point_ids)
        held_here = {
            connection.charge_point_id: connection.id
            for connection in self.registry.connections()
            if connection.charge_point_id in wanted
        }
        looking_up = self.spawn(
            self._clear_charge_points(charge_point_ids, reason, identities=held_here, early=released_early)
        )
        self.registry.hold_open(charge_point_ids, looking_up)

    async def _clear_charge_points(
        self,
        charge_point_ids: list[int],
        reason: str,
        identities: Mapping[int, str] | None = None,
        early: Mapping[int, fanout.Broadcast] | None = None,
    ) -> None:
        """Release these chargers' dispatch rows as they are stored now.

        With ``identities``: a charger deleted after its limit was sent, before its row was stored,
        has a row without its charge point; it is found by its identity, and released all the same.
        With ``early``: chargers sent their release already, whose answers are recorded on the rows.
        """
        async with self.sessionmaker() as session:
            dispatches = await service.unreleased(session, charge_point_ids=charge_point_ids)
            missing = {identities[cp_id]: cp_id for cp_id in charge_point_ids if identities and identities.get(cp_id)}
            for dispatch in dispatches:
                missing.pop(dispatch.identity, None)
            if missing:
                for dispatch in await service.unreleased(session, identities=list(missing), without_charge_point=True):
                    # Sent to its charge point's connection (still open until it answers), recorded on its row.
                    session.expunge(dispatch)
                    dispatch.charge_point_id = missing[dispatch.identity]
                    dispatches.append(dispatch)
        answered: dict[int, tuple[fanout.Broadcast, list[Dispatch]]] = {}
        for dispatch in dispatches:
            sent = (early or {}).get(dispatch.charge_point_id or 0)
            if sent is not None:
                answered.setdefault(id(sent), (sent, []))[1].append(dispatch)
        for sent, rows in answered.values():
            self.spawn(self._record_release(rows, sent, reason))
        self._clear([d for d in dispatches if (d.charge_point_id or 0) not in (early or {})], reason)

    def _clear(self, dispatches: Sequence[Dispatch], reason: str) -> None:
        """Send ClearChargingProfile for dispatch rows not being released already; record the answers."""
        fresh = [d for d in dispatches if d.id is not None and d.id not in self._clearing]
        if not fresh:
            return
        sent = fanout.broadcast(self.registry, _clear_targets(fresh), fanout.clear_payload)
        logger.info("released %d charger(s): %s", len(sent.futures), reason)
        clearing = {d.id: d.charge_point_id for d in fresh if d.id is not None and d.charge_point_id is not None}
        self._clearing.update(clearing)
        task = self.spawn(self._record_release(fresh, sent, reason))
        task.add_done_callback(lambda _task: self._cleared(clearing))

    def _cleared(self, clearing: dict[int, int]) -> None:
        """Forget releases whose answers are stored (or given up on)."""
        for dispatch_id in clearing:
            self._clearing.pop(dispatch_id, None)

    def _limit_sent(self, unrecorded: _Unrecorded, identities: Mapping[int, str]) -> None:
        """Note the chargers a limit just went to (charge point → identity): releases noted from now on follow it."""
        unrecorded.sent_to = set(identities)
        unrecorded.identities = dict(identities)
        if self._clearing:
            # A release sent to them before this limit no longer lifts it.
            for dispatch_id, charge_point_id in list(self._clearing.items()):
                if charge_point_id in unrecorded.sent_to:
                    del self._clearing[dispatch_id]

    def _open_unrecorded(self, activation_id: int | None) -> _Unrecorded:
        """Start noting the releases asked for until limits about to be sent are recorded."""
        unrecorded = _Unrecorded(activation_id)
        self._unrecorded.append(unrecorded)
        return unrecorded

    def _close_unrecorded(self, unrecorded: _Unrecorded) -> None:
        """Stop noting releases for limits now recorded; release what was noted meanwhile."""
        self._unrecorded.remove(unrecorded)
        withdrawn = unrecorded.withdrawn_sent()
        released = unrecorded.released.get(unrecorded.activation_id or 0)
        if withdrawn or released is not None:
            here_only = (unrecorded.activation_id or 0) in unrecorded.finished_elsewhere
            self.spawn(
                self._release_unrecorded(
                    unrecorded.activation_id or 0, withdrawn, released, here_only, dict(unrecorded.early)
                )
            )

    async def _release_unrecorded(
        self,
        activation_id: int,
        withdrawn: dict[str, dict[int, str]],
        released: str | None,
        here_only: bool = False,
        early: Mapping[int, fanout.Broadcast] | None = None,
    ) -> None:
        """Release what was cancelled, ended or opted out while a fan-out's rows were being stored."""
        # Chargers first, with their own reason: when another activation of the area continues, the
        # activation's release passes over chargers no longer signed up.
        for reason, identities in withdrawn.items():
            await self._clear_charge_points(list(identities), reason, identities, early)
        if released is not None:
            await self.release(activation_id, released, here_only=here_only)

    # Other nodes ---------------------------------------------------------------------------

    def _note_sent_here(self, activation_id: int) -> None:
        """Note an activation sent to this node's chargers; the oldest notes go past a bound."""
        self._sent_here[activation_id] = None
        while len(self._sent_here) > SENT_HERE_KEPT:
            del self._sent_here[next(iter(self._sent_here))]

    def _triggered_elsewhere(self, message: dict[str, Any]) -> None:
        """Another node claimed activations: send their limit to the chargers this node holds."""
        if message.get("from") == self.bus.node_name:
            return
        for activation_id in _ids(message.get("activations")):
            self._any_active = True
            self._launches += 1
            self._trigger_soon(activation_id, here_only=True)

    def _released_elsewhere(self, message: dict[str, Any]) -> None:
        """Another node ended or cancelled activations: release the chargers this node holds."""
        if message.get("from") == self.bus.node_name:
            return
        reason = str(message.get("reason") or "released")[:60]
        for activation_id in _ids(message.get("activations")):
            self.spawn(self.release(activation_id, reason, here_only=True))

    def _withdrawn_elsewhere(self, message: dict[str, Any]) -> None:
        """Another node withdrew chargers (S2): release those this node holds, as ``_withdraw`` does there."""
        if message.get("from") == self.bus.node_name:
            return
        reason = str(message.get("reason") or "released")[:60]
        charge_point_ids: list[int] = []
        found: list[Dispatch] = []
        for item in message.get("chargers") or []:
            if not (isinstance(item, list) and len(item) == 2 and type(item[0]) is int and isinstance(item[1], list)):
                continue
            charge_point_ids.append(item[0])
            for row in item[1]:
                if isinstance(row, list) and len(row) == 2 and type(row[0]) is int and isinstance(row[1], str):
                    found.append(Dispatch(id=row[0], activation_id=0, charge_point_id=item[0], identity=row[1]))
        if charge_point_ids:
            self._withdraw(charge_point_ids, found, reason)

    def _rescheduled_elsewhere(self, message: dict[str, Any]) -> None:
        """Another node changed the schedule: the leader looks at it again."""
        if message.get("from") != self.bus.node_name:
            self._wake.set()

    def _bus_reconnected(self) -> None:
        """Messages from other nodes may have been lost: look up again what each held charger must carry."""
        for connection in self.registry.connections():
            self._look_up_after_boot(connection)

    # Chargers that (re)connect ---------------------------------------------------------------

    async def charger_booted(self, connection: HubConnection) -> None:
        """S4: give a charger that booted (or reconnected without booting) the limit in force for it,
        or release a leftover one.

        Chargers that boot together (thousands after a restart) are looked up together, a few
        queries a batch. The work runs in the runner's tasks, so the runner awaits it when it stops.
        """
        self._look_up_after_boot(connection)

    @property
    def boots_settled(self) -> bool:
        """Whether every charger that booted so far has been looked up (its limit sent and stored, or released)."""
        return (
            not self._booted
            and (self._boot_worker is None or self._boot_worker.done())
            and not self._boots_to_record
            and (self._boot_recorder is None or self._boot_recorder.done())
        )

    def _look_up_after_boot(self, connection: HubConnection) -> None:
        self._booted.append(connection)
        if self._boot_worker is None or self._boot_worker.done():
            self._boot_worker = self.spawn(self._after_boots())

    async def _after_boots(self) -> None:
        looked_up = False
        while self._booted:
            if looked_up and len(self._booted) < BOOT_BATCH:
                # Chargers go on booting (a reconnect storm): let them gather, a few queries for many.
                await asyncio.sleep(BOOT_GATHER_S)
            looked_up = True
            batch, self._booted = self._booted[:BOOT_BATCH], self._booted[BOOT_BATCH:]
            try:
                await self._after_boot(batch)
            except Exception:
                logger.exception("could not look up the limits of %d charger(s) that booted", len(batch))

    async def _after_boot(self, connections: Sequence[HubConnection]) -> None:
        now = utcnow()
        ids = list(dict.fromkeys(connection.charge_point_id for connection in connections))
        # Open before anything is read, as a trigger does: a cancel, window end or opt-out committed
        # after the reads finds no row of the limit sent again until it is stored, and is noted here.
        unrecorded = self._open_unrecorded(None)
        limited: list[_Resent] = []
        try:
            async with self.sessionmaker() as session:
                found = await service.targets_for(session, ids) if self._any_active else {}
                in_force = {
                    area: await service.active_in_area(session, area[0], area[1], now)
                    for area in {(operator_id, area) for _target, operator_id, area in found.values()}
                }
                # Every limit it may still carry, an active activation's too: one of a charger that
                # opted out while it was away (its release found it gone) must come off now.
                leftovers: dict[int, list[Dispatch]] = {}
                for dispatch in await service.unreleased(session, charge_point_ids=ids):
                    leftovers.setdefault(dispatch.charge_point_id or 0, []).append(dispatch)
            to_clear: list[Dispatch] = []
            to_limit: dict[tuple[int, str], list[Target]] = {}
            for cp_id in ids:
                target, operator_id, area = found.get(cp_id) or (None, 0, "")
                if target is not None and in_force.get((operator_id, area)):
                    to_limit.setdefault((operator_id, area), []).append(target)
                else:
                    to_clear.extend(leftovers.get(cp_id, []))
            # Every frame goes out before anything awaits, so what was sent is known at once.
            replaced: list[Dispatch] = []
            for operator_area, targets in to_limit.items():
                active = in_force[operator_area]
                steps = service.envelope(active, now)
                sent = fanout.broadcast(
                    self.registry,
                    unrecorded.left_in(targets),
                    functools.partial(fanout.set_limit_payload, steps=steps, start=now, margin_s=self.margin_s),
                )
                reached = [t for t in targets if t.charge_point_id in sent.futures]
                limited.append(_Resent(active, reached, sent, steps[0].limit_w))
                self.registry.keep_samples(sent.futures, max(delivery.keep_for_s(a, now) for a in active))
                # The rows of the activations sent again are updated; the others' limit is replaced.
                in_force_ids = {a.id for a in active}
                replaced.extend(
                    d
                    for target in reached
                    for d in leftovers.get(target.charge_point_id, [])
                    if d.activation_id not in in_force_ids
                )
            self._limit_sent(
                unrecorded, {target.charge_point_id: target.identity for resent in limited for target in resent.targets}
            )
            self._clear(to_clear, "released after reconnect")
        except BaseException:
            self._close_unrecorded(unrecorded)
            raise
        # Stored by one writer, the batches looked up meanwhile together, while the next chargers that
        # booted are looked up: in a reconnect storm their limits do not wait for this batch's write.
        self._boots_to_record.append(_BootBatch(connections, unrecorded, limited, replaced, now))
        if self._boot_recorder is None or self._boot_recorder.done():
            self._boot_recorder = self.spawn(self._record_boots())

    async def _record_boots(self) -> None:
        while self._boots_to_record:
            batches, self._boots_to_record = self._boots_to_record, []
            try:
                await self._record_resent(
                    [resent for batch in batches if batch.unrecorded.sent_to for resent in batch.limited],
                    [(d, batch.now) for batch in batches if batch.unrecorded.sent_to for d in batch.replaced],
                )
            except Exception:
                count = sum(len(batch.connections) for batch in batches)
                logger.exception("could not record the limits sent again to %d charger(s) that booted", count)
                for batch in batches:
                    self._close_unrecorded(batch.unrecorded)
                continue
            except BaseException:
                # Stopped: what was noted meanwhile is released all the same, the batches waiting too.
                for batch in [*batches, *self._boots_to_record]:
                    self._close_unrecorded(batch.unrecorded)
                self._boots_to_record = []
                raise
            for batch in batches:
                self._after_recorded(batch)

    def _after_recorded(self, batch: _BootBatch) -> None:
        """Once a batch's limits sent again are stored: fine metering, their answers stored, and the
        chargers whose activation ended meanwhile looked at again."""
        connections, unrecorded, limited = batch.connections, batch.unrecorded, batch.limited
        try:
            if unrecorded.sent_to:
                for resent in limited:
                    newest = max(resent.active, key=lambda a: a.end_at)
                    self.metering.start(newest.id or 0, newest.end_at, resent.targets)
        finally:
            self._close_unrecorded(unrecorded)
        for resent in limited:
            if resent.targets:
                self.spawn(self._record_answers([a.id or 0 for a in resent.active], resent.sent))
        # An activation cancelled or ended while its limit was sent again: look at those chargers
        # again, now that the change is committed (its limit cleared, or another one's sent).
        again = {
            target.charge_point_id
            for resent in limited
            if any(a.id in unrecorded.released for a in resent.active)
            for target in resent.targets
        }
        for connection in connections:
            if connection.charge_point_id in again:
                self._look_up_after_boot(connection)

    async def _record_resent(self, limited: Sequence[_Resent], replaced: Sequence[tuple[Dispatch, datetime]]) -> None:
        """Store the limits sent again to chargers that connected, and the leftover rows they replace
        (each with when it was replaced)."""
        if not limited and not replaced:
            return
        async with self.registry.writing() as session:
            for resent in limited:
                if resent.targets:
                    await service.record_resent(
                        session, resent.active, resent.targets, resent.sent.sent_at, resent.limit_w
                    )
            await service.record_released(
                session, [(d.id or 0, "ended", "replaced after reconnect", at) for d, at in replaced]
            )
            await session.commit()

    async def _record_answers(self, activation_ids: list[int], sent: fanout.Broadcast) -> None:
        """Wait for the chargers' answers to a limit and store them."""

        async def store(batch: list[fanout.Answer]) -> None:
            async with self.registry.writing() as session:
                await service.record_answers(session, activation_ids, batch)
                await session.commit()

        await fanout.collect(self.registry, sent, store, timeout_s=self.answer_timeout_s, stop=self._stopping)


def _ids(value: object) -> list[int]:
    """Return the ids of a message's list, leaving out anything that is not one."""
    return [item for item in value if type(item) is int and item > 0] if isinstance(value, list) else []


def _clear_targets(dispatches: Sequence[Dispatch]) -> list[Target]:
    """Return one target per charger of the dispatch rows (a release needs no rate unit)."""
    seen: dict[int, Target] = {}
    for dispatch in dispatches:
        if dispatch.charge_point_id is not None:
            seen.setdefault(dispatch.charge_point_id, Target(dispatch.charge_point_id, dispatch.identity, None, None))
    return list(seen.values())
