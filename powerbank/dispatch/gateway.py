"""The gateway routes and the API use to reach the chargers: start and cancel activations, show live OCPP state.

Routes never touch the connection registry or the activation runner: they ask this, which takes
the hub's OCPP write turn, launches and releases in the same step as the commit, and reads the
frames a charger exchanged. It runs while the app serves (``init_app``); ``gateway()`` returns it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from quart import Quart, current_app
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.dispatch.runner import ActivationRunner
from powerbank.models import Activation, ChargePoint, ClusterNode, Dispatch
from powerbank.ocpp import security
from powerbank.ocpp.frame_sharing import shared_log
from powerbank.ocpp.registry import registry_of
from powerbank.rules.permissions import Principal
from powerbank.services import activations as service
from powerbank.services import delivery
from powerbank.services.activations import ActivationRequest
from powerbank.services.audit import Actor
from powerbank.services.frame_log import Frame

# Where the app holds its gateway while it serves (read through ``gateway`` and ``find_gateway``).
_GATEWAY = "powerbank.dispatch_gateway"


@dataclass(frozen=True)
class LiveFrames:
    """The frames a charge point's page shows, newest first, and where they come from."""

    frames: list[Frame]
    # Another node's, published at that time (None: this node's own).
    node: str | None = None
    published_at: datetime | None = None
    # The node holding the charger, asked for its frames and not answered yet.
    waiting_for: str | None = None


class DispatchGateway:
    """What pages and the API may ask of the chargers' side of the hub."""

    def __init__(self, runner: ActivationRunner) -> None:
        self.runner = runner
        self.deliveries = delivery.DeliveryCache()

    async def delivery(
        self, session: AsyncSession, activation: Activation, dispatches: Sequence[Dispatch] | None = None
    ) -> delivery.Delivery | None:
        """Return what an activation delivered, judged once for all its readers (``delivery.DeliveryCache``)."""

        return await self.deliveries.get(activation, lambda: _judge(session, activation, dispatches))

    @property
    def may_be_active(self) -> bool:
        """Whether an activation may be active now (false only once the scheduler saw none)."""
        return self.runner.may_be_active

    async def start_activation(
        self, session: AsyncSession, principal: Principal, actor: Actor, operator_id: int, request: ActivationRequest
    ) -> Activation:
        """Store a new activation and commit it; one that starts now goes to the chargers in the same step.

        The write takes its turn with the chargers' OCPP writes before the session writes anything:
        under load those follow each other closely, and a request waiting in SQLite's busy handler
        instead could wait seconds for a gap.
        """
        async with self.runner.write_turn:
            activation = await service.create_activation(session, principal, actor, operator_id, request)
            self.runner.launch_on_commit(session, activation)
            await session.commit()
        return activation

    async def cancel_activation(
        self, session: AsyncSession, principal: Principal, actor: Actor, activation: Activation
    ) -> None:
        """Cancel an activation and commit; its chargers are released in the same step as the commit.

        Raises ConflictError (an ended or cancelled activation) before anything changed.
        """
        await service.cancel_activation(session, principal, actor, activation)
        self.runner.release_on_commit(session, activation.id or 0, "cancelled")
        await session.commit()

    def node(self) -> tuple[str, bool, int]:
        """Return this node's name, whether it takes chargers (not shutting down), and how many it holds."""
        registry = self.runner.registry
        return registry.node_name, not registry.closing, len(registry)

    @property
    def leads(self) -> bool:
        """Whether this node runs the activation scheduler (the cluster's leader; a lone node always)."""
        return self.runner.leadership.leading

    def recent_frames(self, identity: str) -> list[Frame]:
        """Return the OCPP frames a charger exchanged with this node lately, newest first."""
        return self.runner.registry.frame_log.recent(identity)

    async def security_step(
        self, charge_point: ChargePoint, step: str, *, profile: int, ca_pem: str | None, csms_url: str
    ) -> security.StepResult:
        """Send a step of a security profile upgrade to the charger, if this node holds its connection."""
        connection = self.runner.registry.get(charge_point.identity)
        if connection is not None and connection.charge_point_id != charge_point.id:
            connection = None
        return await security.run_step(connection, step, profile=profile, ca_pem=ca_pem, csms_url=csms_url)

    async def live_frames(self, session: AsyncSession, charge_point: ChargePoint) -> LiveFrames:
        """Return a charger's recent OCPP frames, newest first, whichever node holds it.

        This node's own when it holds the charger (or is the only node); else those the node
        holding it published (``ocpp/frame_sharing.py``), which it is asked for now; else what
        this node saw of it before, if anything.
        """
        registry = self.runner.registry
        cp_id = charge_point.id or 0
        here = registry.frame_log.recent(charge_point.identity)
        connection = registry.get(charge_point.identity)
        if not registry.bus.shared or (connection is not None and connection.charge_point_id == cp_id):
            return LiveFrames(here)
        holder_id = charge_point.node_id if charge_point.online else None
        holder = await session.get(ClusterNode, holder_id) if holder_id not in (None, registry.node_id) else None
        if holder is not None:
            registry.frame_sharing.ask(cp_id, charge_point.identity)
        shared = await shared_log(session, cp_id, charge_point.identity)
        if shared.published_at is not None and (not here or here[0].at <= shared.published_at):
            return LiveFrames(shared.frames, shared.node, shared.published_at)
        return LiveFrames(here, waiting_for=holder.name if holder is not None else None)


def gateway(app: Quart | None = None) -> DispatchGateway:
    """Return the app's gateway (the current app's by default; it runs while the app serves)."""
    found = find_gateway(app if app is not None else current_app)
    if found is None:
        raise RuntimeError("The dispatch gateway runs only while the app serves")
    return found


async def judged_delivery(
    session: AsyncSession, activation: Activation, dispatches: Sequence[Dispatch] | None = None
) -> delivery.Delivery | None:
    """Return what an activation delivered: judged once for all readers while the app serves (the
    gateway's ``delivery``), judged for this reader alone otherwise (a test client, a script)."""
    found = find_gateway(current_app)
    if found is not None:
        return await found.delivery(session, activation, dispatches)
    return await _judge(session, activation, dispatches)


async def _judge(
    session: AsyncSession, activation: Activation, dispatches: Sequence[Dispatch] | None
) -> delivery.Delivery | None:
    rows = dispatches if dispatches is not None else await service.dispatches_of(session, activation.id or 0)
    return await delivery.record_or_judge(session, activation, rows)


def find_gateway(app: Quart) -> DispatchGateway | None:
    """Return the app's gateway, or None while the app does not serve."""
    found: DispatchGateway | None = app.extensions.get(_GATEWAY)
    return found


def init_app(app: Quart, sessions: Callable[[], async_sessionmaker[AsyncSession]]) -> None:
    """Run the activation runner while the app serves (after the OCPP registry is up), behind the gateway."""

    @app.while_serving
    async def run_activations() -> AsyncGenerator[None, None]:
        runner = ActivationRunner(
            sessions(),
            registry_of(app),
            margin_s=float(app.config.get("ACTIVATION_PROFILE_MARGIN_S", service.PROFILE_MARGIN_S)),
            answer_timeout_s=float(app.config.get("ACTIVATION_ANSWER_TIMEOUT_S", 10.0)),
        )
        app.extensions[_GATEWAY] = DispatchGateway(runner)
        await runner.start()
        yield
        await runner.stop()
        app.extensions.pop(_GATEWAY, None)
