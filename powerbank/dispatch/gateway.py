"""The gateway routes and the API use to reach the chargers: start and cancel activations, show live OCPP state.

Routes never touch the connection registry or the activation runner: they ask this, which takes
the hub's OCPP write turn, launches and releases in the same step as the commit, and reads the
frames a charger exchanged. It runs while the app serves (``init_app``); ``gateway()`` returns it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

from quart import Quart, current_app
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.dispatch.runner import ActivationRunner
from powerbank.models import Activation
from powerbank.ocpp.registry import registry_of
from powerbank.rules.permissions import Principal
from powerbank.services import activations as service
from powerbank.services.activations import ActivationRequest
from powerbank.services.audit import Actor
from powerbank.services.frame_log import Frame

# Where the app holds its gateway while it serves (read through ``gateway`` and ``find_gateway``).
_GATEWAY = "powerbank.dispatch_gateway"


class DispatchGateway:
    """What pages and the API may ask of the chargers' side of the hub."""

    def __init__(self, runner: ActivationRunner) -> None:
        self.runner = runner

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
        """Return the OCPP frames a charger exchanged with the hub lately, newest first."""
        return self.runner.registry.frame_log.recent(identity)


def gateway(app: Quart | None = None) -> DispatchGateway:
    """Return the app's gateway (the current app's by default; it runs while the app serves)."""
    found = find_gateway(app if app is not None else current_app)
    if found is None:
        raise RuntimeError("The dispatch gateway runs only while the app serves")
    return found


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
