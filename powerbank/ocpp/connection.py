"""One charger's live OCPP-J connection: framing, errors, outgoing calls and answers.

The ``ocpp`` library's ChargePoint routes incoming calls to ``@on``/``@after`` handlers and
validates payloads; this layer replaces its framing and its call machinery so that answers are
matched by message id, a pending call fails at once when the charger goes, and one serialised
frame can be written to many chargers without awaiting each (the grid fan-out).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, ClassVar, Protocol

from ocpp.charge_point import _raise_key_error, remove_nones, serialize_as_dict
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, CallResult, MessageType
from ocpp.routing import after, create_route_map
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.ocpp.case import camel_to_snake_case, snake_to_camel_case
from powerbank.ocpp.log_context import charger_identity
from powerbank.ocpp.meter import now_text, readings_from
from powerbank.ocpp.reports import GroupCommit, Report
from powerbank.ocpp.stats import STATS
from powerbank.ocpp.validation import validate
from powerbank.rules.validators import holds_nul
from powerbank.services import chargers
from powerbank.services.chargers import Capability, StatusReport
from powerbank.services.frame_log import FrameLog
from powerbank.tasks import BackgroundTasks

logger = logging.getLogger("powerbank.ocpp")

# Incoming call ids remembered per connection to refuse a reused one (OCPP-J: ids are unique).
REMEMBERED_CALL_IDS = 16
# Seconds a closed connection waits for the charger's close frame before it is dropped.
CLOSE_GRACE_S = 5.0
# Frames queued for a charger that does not read them; beyond this it is disconnected.
OUTBOX_LIMIT = 1000
# Nesting of arrays and objects in a frame. The deepest OCPP message (a 2.0.1 charging profile with
# custom data) nests about ten levels; a frame nested thousands deep would exhaust the stack of the
# JSON parser, or of the recursive code that handles the payload after it.
MAX_FRAME_DEPTH = 32


class ConnectionLost(ConnectionError):
    """The charger disconnected before it answered."""


class Disconnected(ConnectionError):
    """The charger's socket is gone (raised by ``ChargerSocket.receive``)."""


class ChargerSocket(Protocol):
    """A charger's accepted websocket (``powerbank.ocpp.endpoint.OcppSocket``)."""

    async def receive(self) -> str | bytes:
        """Return the next frame; raise Disconnected once the charger is gone."""
        ...

    async def send(self, frame: str) -> None:
        """Write one text frame."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame."""
        ...


class CallErrorReceived(Exception):
    """The charger answered a call with a CALLERROR."""

    def __init__(self, code: str, description: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details or {}


class FrameError(Exception):
    """A frame is not valid OCPP-J; answered with a CALLERROR of ``code`` (2.0.1 spelling)."""

    def __init__(self, message_id: str, code: str, description: str) -> None:
        super().__init__(description)
        self.message_id = message_id
        self.code = code
        self.description = description


def _depth(value: Any) -> int:
    """Return how deep arrays and objects nest in a parsed JSON value (without recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_FRAME_DEPTH:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def parse_frame(text: str) -> Call | CallResult | CallError:
    """Parse one OCPP-J frame strictly (the library's parser lets odd shapes through)."""
    try:
        data = json.loads(text)
    except ValueError:
        raise FrameError("-1", "RpcFrameworkError", "The message is not valid JSON") from None
    except RecursionError:
        raise FrameError("-1", "RpcFrameworkError", f"The message nests deeper than {MAX_FRAME_DEPTH} levels") from None
    if not isinstance(data, list) or len(data) < 2 or type(data[0]) is not int:
        raise FrameError("-1", "RpcFrameworkError", "The message is not an OCPP-J array")
    message_type, message_id = data[0], data[1]
    if not isinstance(message_id, str) or not message_id or len(message_id) > 36:
        raise FrameError("-1", "RpcFrameworkError", "The message id is not a string of 1 to 36 characters")
    # Counting brackets runs in C; only a frame with more of them than the limit is walked.
    if text.count("[") + text.count("{") > MAX_FRAME_DEPTH and _depth(data) > MAX_FRAME_DEPTH:
        raise FrameError(message_id, "FormatViolation", f"The message nests deeper than {MAX_FRAME_DEPTH} levels")
    # No text a charger sends is stored with a NUL (PostgreSQL refuses it in text); JSON can only
    # carry one escaped, so only a frame with the escape is walked.
    if "\\u0000" in text and holds_nul(data):
        raise FrameError(message_id, "FormatViolation", "The message holds a NUL character")
    if message_type == MessageType.Call:
        if len(data) != 4 or not isinstance(data[2], str) or not isinstance(data[3], dict):
            raise FrameError(message_id, "RpcFrameworkError", "A CALL is [2, id, action, payload object]")
        return Call(message_id, data[2], data[3])
    if message_type == MessageType.CallResult:
        if len(data) != 3 or not isinstance(data[2], dict):
            raise FrameError(message_id, "RpcFrameworkError", "A CALLRESULT is [3, id, payload object]")
        return CallResult(message_id, data[2])
    if message_type == MessageType.CallError:
        if len(data) != 5 or not isinstance(data[2], str) or not isinstance(data[3], str):
            raise FrameError(message_id, "RpcFrameworkError", "A CALLERROR is [4, id, code, description, details]")
        return CallError(message_id, data[2], data[3], data[4] if isinstance(data[4], dict) else {})
    raise FrameError(message_id, "MessageTypeNotSupported", f"Message type {message_type} is not supported")


class ConnectionRegistry(Protocol):
    """What a connection needs of the registry that holds it (``powerbank.ocpp.registry.Registry``)."""

    call_timeout: float
    heartbeat_interval: int
    message_rate: float
    message_burst: int
    prune_every: int
    frame_log: FrameLog
    reports: GroupCommit[Report]
    boots: GroupCommit[tuple[int, chargers.BootInfo]]
    capabilities: GroupCommit[tuple[int, Capability]]
    boot_listeners: list[Callable[[HubConnection], Coroutine[Any, Any, None]]]

    def keeps_samples(self, charge_point_id: int) -> bool:
        """Whether this charger's meter samples are kept (not pruned) now: evidence of delivery."""
        ...

    def seen(self, charge_point_id: int) -> None:
        """Note that a charger was heard from now."""
        ...

    def writing(self) -> AbstractAsyncContextManager[AsyncSession]:
        """Open a short session for a write, taking its turn with the hub's other OCPP writes."""
        ...


def _consume_exception(future: asyncio.Future[Any]) -> None:
    # A fan-out answer nobody waits for any more must not be reported as "never retrieved".
    if not future.cancelled():
        future.exception()


class HubConnection:
    """Mixin over the library's ChargePoint (1.6 or 2.0.1) for one connected charger.

    Public API for the rest of the hub (through ``Registry.get(identity)``):
    - ``await call(payload, timeout=...)``: send a typed request (``ocpp.v16.call.X`` or
      ``ocpp.v201.call.X``) and return the typed answer; raises CallErrorReceived,
      ConnectionLost (at once on disconnect) or TimeoutError. One call at a time per charger.
    - ``expect(message_id)`` then ``send_raw(frame)``: register for the answer to a frame you
      serialised yourself (same frame for many chargers) and queue it without awaiting; the
      future gives the CALLRESULT payload (dict) or raises CallErrorReceived/ConnectionLost.
    """

    protocol: ClassVar[str]
    # How this OCPP version spells the error codes of the 2.0.1 names used internally.
    error_codes: ClassVar[dict[str, str]] = {}
    _ocpp_version: str
    _call_result: Any
    _call_lock: asyncio.Lock
    _response_timeout: float
    _routes: ClassVar[dict[str, dict[str, Any]]]
    id: str

    def __init__(
        self, identity: str, websocket: ChargerSocket, registry: ConnectionRegistry, charge_point_id: int
    ) -> None:
        # Not the library's __init__: it builds a route map of bound methods and a queue for its
        # own call machinery on every connection; the routes here are the class's (``routes``).
        self.id = identity
        self._response_timeout = registry.call_timeout
        self._call_lock = asyncio.Lock()
        self.websocket = websocket
        self.registry = registry
        self.charge_point_id = charge_point_id
        self.closed = False
        # Off once the charge point is deleted or renamed: its identity may pass to someone else.
        self.logs_frames = True
        # Whether it sent a BootNotification on this connection (a reconnect need not).
        self.has_booted = False
        self._pending: dict[str, asyncio.Future[Any]] = {}
        # Frames waiting to be written, and the task writing them while there are any (an idle
        # charger holds no writer task).
        self._outbox: list[str] = []
        self._writer: asyncio.Task[None] | None = None
        self._write_failed = False
        # Lists, not deques: a deque takes 600 bytes before it holds anything, per charger.
        self._recent_call_ids: list[str] = []
        self._background = BackgroundTasks(logger, f"{self.id}: background work")
        self._handler_task: asyncio.Task[Any] | None = None
        # Incoming calls are handled one at a time, in order (OCPP-J: one call in flight per side).
        self._incoming_lock = asyncio.Lock()
        self._tokens = float(registry.message_burst)
        self._tokens_at = time.monotonic()
        self.meter_messages = 0

    @classmethod
    def routes(cls) -> dict[str, dict[str, Any]]:
        """Return the class's ``@on``/``@after`` handlers by action (functions, found once per class)."""
        routes: dict[str, dict[str, Any]] | None = cls.__dict__.get("_routes")
        if routes is None:
            routes = create_route_map(cls)
            cls._routes = routes
        return routes

    @property
    def serving_task(self) -> asyncio.Task[Any] | None:
        """The task serving this connection's socket (None before it starts serving)."""
        return self._handler_task

    @property
    def serving_done(self) -> bool:
        """Whether this connection has stopped serving its socket (it is closed and cleaned up)."""
        return self._handler_task is not None and self._handler_task.done()

    # Receiving -------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Read and handle frames until the charger goes; then fail what waits for it."""
        self._handler_task = asyncio.current_task()
        # Every log line of this connection, and of the tasks it starts, names the charger.
        charger_identity.set(self.id)
        if self.closed and self._handler_task is not None:
            # Closed before it was served (refused by the registry): as ``close`` does, a charger
            # that never answers the close frame is dropped after a grace period.
            asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self._handler_task.cancel)
        try:
            while True:
                try:
                    message = await self.websocket.receive()
                except Disconnected:
                    return
                if self.closed:
                    # Closing: read on (and drop) until the charger answers the close frame,
                    # or Hypercorn stops reading its socket and the connection lingers.
                    continue
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                if not self._take_token():
                    logger.warning("%s sends too many messages; disconnecting it", self.id)
                    await self.close(1008, "Too many messages")
                    continue
                self.route_frame(text)
        finally:
            self.closed = True
            if self._writer is not None:
                self._writer.cancel()
            # Background work is not cancelled for the same reason; its calls to this charger
            # fail at once below, so it ends by itself.
            self._fail_pending()

    def _fail_pending(self) -> None:
        """Fail every call waiting for this charger's answer, at once."""
        lost = ConnectionLost(f"{self.id} disconnected")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(lost)
        self._pending.clear()

    def _take_token(self) -> bool:
        """Spend one message of the charger's allowance (a token bucket); False when flooding."""
        now = time.monotonic()
        rate, burst = self.registry.message_rate, self.registry.message_burst
        self._tokens = min(burst, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def route_message(self, raw_msg: str) -> None:
        """Handle one frame (the library's entry point; ``serve`` calls ``route_frame``)."""
        self.route_frame(raw_msg)

    def route_frame(self, raw_msg: str) -> None:
        """Handle one frame: calls go to their handler's task, answers to whoever waits for them.

        Nothing here waits. A handler runs in a task of its own that a disconnect does not
        cancel: it must not stop in the middle of its database transaction (a cancelled SQLite
        write can leave the database locked).
        """
        if self.logs_frames:
            self.registry.frame_log.add(self.id, False, raw_msg, self.charge_point_id)
        self.registry.seen(self.charge_point_id)
        try:
            message = parse_frame(raw_msg)
        except FrameError as error:
            logger.info("%s sent a malformed frame: %s", self.id, error.description)
            self._reply_error(error.message_id, error.code, error.description)
            return
        if isinstance(message, Call):
            self._take_call(message)
        elif isinstance(message, CallResult):
            self._resolve(message.unique_id, message.payload, None)
        else:
            self._resolve(
                message.unique_id,
                None,
                CallErrorReceived(message.error_code, message.error_description, message.error_details),
            )

    def _take_call(self, message: Call) -> None:
        """Handle an incoming call in a task of its own, in arrival order.

        The reader goes on at once, so an answer to one of the hub's calls is never stuck behind
        a charger's call whose handler waits for the database.
        """
        if message.unique_id in self._recent_call_ids:
            logger.info("%s reused call id %s", self.id, message.unique_id)
            self._reply_error(message.unique_id, "ProtocolError", "This message id was already used")
            return
        self._recent_call_ids.append(message.unique_id)
        if len(self._recent_call_ids) > REMEMBERED_CALL_IDS:
            del self._recent_call_ids[0]
        STATS.messages["in", "call", message.action] += 1
        self.spawn(self._handle_incoming_call(message, time.perf_counter()))

    async def _handle_incoming_call(self, message: Call, received_at: float) -> None:
        async with self._incoming_lock:
            await self._handle_incoming_call_now(message)
        # As the charger sees it: waiting behind its previous call included.
        STATS.reply_seconds[message.action].observe(time.perf_counter() - received_at)

    async def _handle_incoming_call_now(self, message: Call) -> None:
        try:
            await self._handle_call(message)
        except OCPPError as error:
            logger.info("%s: %s refused: %s %s", self.id, message.action, error.code, error.details)
            self._reply_error(message.unique_id, error.code, error.description, error.details)
        except Exception as error:
            if isinstance(error, IntegrityError) and not self.logs_frames:
                # Deleted, and kept open only for its last answers: what it reports has no charge point to go to.
                logger.info("%s: %s not stored: the charge point was deleted", self.id, message.action)
                self._reply_error(message.unique_id, "InternalError", "This charge point no longer exists")
                return
            logger.exception("%s: handling %s failed", self.id, message.action)
            self._reply_error(message.unique_id, "InternalError", "An unexpected error occurred")

    async def _handle_call(self, message: Call) -> None:
        """Answer one incoming call: validate it, run its ``@on`` handler, send the answer, run ``@after``.

        The library's own version also validates the answers the hub builds from the library's
        typed dataclasses, which costs as much again per message for nothing the charger sends;
        the interop tests check those answers against the schemas with a strict client instead.
        An error raised here is answered as a CALLERROR by ``_handle_incoming_call_now``.
        """
        handlers = self.routes().get(message.action)
        if handlers is None or "_on_action" not in handlers:
            _raise_key_error(message.action, self._ocpp_version)
            return
        if not handlers.get("_skip_schema_validation", False):
            await validate(message, self._ocpp_version)
        arguments = camel_to_snake_case(message.payload)
        response = handlers["_on_action"](self, **arguments)
        if inspect.isawaitable(response):
            response = await response
        answer = message.create_call_result(snake_to_camel_case(remove_nones(serialize_as_dict(response))))
        self.send_raw(answer.to_json())
        STATS.messages["out", "result", message.action] += 1
        after = handlers.get("_after_action")
        if after is not None:
            outcome = after(self, **arguments)
            if inspect.iscoroutine(outcome):
                self.spawn(outcome)

    def _reply_error(self, message_id: str, code: str, description: str, details: dict[str, Any] | None = None) -> None:
        code = self.error_codes.get(code, code)
        STATS.messages["out", "error", ""] += 1
        self.send_raw(CallError(message_id, code, description, details or {}).to_json())

    def _resolve(self, message_id: str, payload: dict[str, Any] | None, error: CallErrorReceived | None) -> None:
        STATS.messages["in", "result" if error is None else "error", ""] += 1
        future = self._pending.pop(message_id, None)
        if future is None or future.done():
            logger.info("%s answered unknown or expired message id %s", self.id, message_id)
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(payload)

    # Sending ---------------------------------------------------------------------------------

    async def _send(self, message: str) -> None:
        """Queue a frame (the library answers incoming calls through this)."""
        self.send_raw(message)

    def send_raw(self, frame: str) -> None:
        """Queue one already serialised frame for this charger without waiting for the write."""
        if self.closed or self._write_failed:
            return
        if len(self._outbox) >= OUTBOX_LIMIT:
            logger.warning("%s does not read its frames; disconnecting it", self.id)
            self.spawn(self.close(1008, "Not reading"))
            return
        if self.logs_frames:
            self.registry.frame_log.add(self.id, True, frame, self.charge_point_id)
        self._outbox.append(frame)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_frames())

    async def _write_frames(self) -> None:
        """Write the queued frames in order, then end (``send_raw`` starts it again)."""
        try:
            while self._outbox:
                frame = self._outbox.pop(0)
                try:
                    await self.websocket.send(frame)
                except Exception:
                    logger.info("%s: cannot write to the socket any more", self.id, exc_info=True)
                    # Nothing written after this frame could reach the charger either.
                    self._write_failed = True
                    self._outbox.clear()
                    return
        finally:
            self._writer = None

    def expect(self, message_id: str) -> asyncio.Future[Any]:
        """Return a future for the answer to the frame with ``message_id`` (register before sending)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume_exception)
        if self.closed:
            future.set_exception(ConnectionLost(f"{self.id} is not connected"))
            return future
        self._pending[message_id] = future
        return future

    def forget(self, message_id: str) -> None:
        """Stop waiting for the answer to ``message_id`` (the caller gave up)."""
        future = self._pending.pop(message_id, None)
        if future is not None and not future.done():
            future.cancel()

    async def call(
        self,
        payload: Any,
        *,
        timeout: float | None = None,
        unique_id: str | None = None,
        skip_schema_validation: bool = False,
    ) -> Any:
        """Send a typed request to the charger and return its typed answer."""
        action = type(payload).__name__
        request = remove_nones(snake_to_camel_case(serialize_as_dict(payload)))
        unique_id = unique_id or str(uuid.uuid4())
        if not skip_schema_validation:
            await validate(Call(unique_id, action, request), self._ocpp_version)
        answer = await self.call_raw(
            action, request, timeout=timeout, unique_id=unique_id, validate_answer=not skip_schema_validation
        )
        return getattr(self._call_result, action)(**camel_to_snake_case(answer))

    async def call_raw(
        self,
        action: str,
        request: dict[str, Any],
        *,
        timeout: float | None = None,
        unique_id: str | None = None,
        validate_answer: bool = True,
    ) -> dict[str, Any]:
        """Send a request spelt as OCPP-J spells it (the hub's own, not validated again) and return the
        answer's payload as the charger sent it, validated against the schema: what a hot path reads
        without the library's typed objects (the capability probe of every charger that boots)."""
        unique_id = unique_id or str(uuid.uuid4())
        async with self._call_lock:
            future = self.expect(unique_id)
            self.send_raw(json.dumps([MessageType.Call, unique_id, action, request], separators=(",", ":")))
            STATS.messages["out", "call", action] += 1
            try:
                async with asyncio.timeout(timeout if timeout is not None else self._response_timeout):
                    answer: dict[str, Any] = await future
            finally:
                self.forget(unique_id)
        if validate_answer:
            result = CallResult(unique_id, answer)
            result.action = action
            await validate(result, self._ocpp_version)
        return answer

    # Storing what it reports ------------------------------------------------------------------

    async def store_meter(
        self, connector_id: int, meter_value: list[dict[str, Any]] | None, transaction_id: str | None
    ) -> None:
        """Store sampled meter values (in the batch of every charger's reports; see ``reports``)."""
        self.meter_messages += 1
        rows = chargers.meter_rows(self.charge_point_id, connector_id, readings_from(meter_value), transaction_id)
        # Not while an activation needs them as evidence of delivery.
        prune = self.meter_messages % self.registry.prune_every == 0 and not self.registry.keeps_samples(
            self.charge_point_id
        )
        if rows or prune:
            await self._submit_report(Report(meter_rows=rows, prune=self.charge_point_id if prune else None))

    async def store_status(
        self, connector_id: int, status: str, error_code: str | None, reported_at: datetime | None
    ) -> None:
        """Store a connector's status (in the batch of every charger's reports)."""
        await self._submit_report(
            Report(status=StatusReport(self.charge_point_id, connector_id, status, error_code, reported_at))
        )

    async def _submit_report(self, report: Report) -> None:
        try:
            await self.registry.reports.submit(report)
        except IntegrityError:
            if self.logs_frames:
                raise
            # Deleted, and kept open only for its last answers (its release): what it reports has no
            # charge point to go to. It is answered as usual, so it stays connected for the release
            # (a charger may drop the link on an error answer, and keep its limit).
            logger.info("%s: report not stored: the charge point was deleted", self.id)

    async def accept_boot(self, boot: chargers.BootInfo) -> Any:
        """Store what the charger reported at boot (in the batch of every charger's boots); accept it."""
        self.has_booted = True
        await self.registry.boots.submit((self.charge_point_id, boot))
        return self._call_result.BootNotification(
            current_time=now_text(), interval=self.registry.heartbeat_interval, status="Accepted"
        )

    @after("BootNotification")
    def after_boot_notification(self, **_: Any) -> None:
        """After the boot is answered: probe the capability, then tell the boot listeners."""
        self.spawn(self.booted())

    async def ask_capability(self) -> Capability:
        """Ask the charger what it can do (smart charging); each OCPP version asks its own way."""
        raise NotImplementedError

    async def booted(self) -> None:
        """After a boot: probe the capability, then tell the hub's boot listeners (activations).

        The listeners (S4: the limit in force goes out again) are told once the charger answered,
        not once its answer is stored: OCPP-J lets one call at a time be in flight. Should the
        stored answer change its participation, the registry tells them again.
        """
        await self.probe()
        for listener in list(self.registry.boot_listeners):
            try:
                await listener(self)
            except ConnectionLost:
                return
            except Exception:
                logger.exception("%s: a boot listener failed", self.id)

    async def probe(self) -> None:
        """Probe the charger's capability and store it; its answer decides compatibility (R2)."""
        try:
            capability = await self.ask_capability()
        except ConnectionLost:
            return
        except (CallErrorReceived, OCPPError, TimeoutError) as error:
            logger.info("%s did not answer the capability probe: %r", self.id, error)
            return
        # Stored in the background, in the batch of every charger's answers.
        self.spawn(self.registry.capabilities.submit((self.charge_point_id, capability)))
        logger.info("%s: smart charging %s", self.id, capability.smart_charging)

    # Lifecycle -------------------------------------------------------------------------------

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run work for this charger in a task of its own (never inside @on)."""
        return self._background.spawn(coroutine)

    async def close_after_answers(self, code: int, reason: str, after: Iterable[asyncio.Future[Any]] = ()) -> None:
        """Close once the calls already sent to this charger are answered or have timed out.

        A release sent just before (a deletion's ClearChargingProfile) still gets its answer
        recorded; one still being looked up (``after``) is waited for, then sent, then answered.
        """
        held = [future for future in after if not future.done()]
        if held:
            await asyncio.wait(held, timeout=self._response_timeout)
        waiting = [future for future in self._pending.values() if not future.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=self._response_timeout)
        await self.close(code, reason)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket and stop serving this connection."""
        if self.closed:
            return
        self.closed = True
        self._fail_pending()
        try:
            await self.websocket.close(code, reason)
        except RuntimeError:
            pass  # Quart refuses a second close; the socket is closing already.
        task = self._handler_task
        if task is not None:
            # A charger that never answers the close frame is dropped after a grace period.
            asyncio.get_running_loop().call_later(CLOSE_GRACE_S, task.cancel)
