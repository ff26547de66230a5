"""The dispatch gateway: what pages and the API ask of the chargers' side of the hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

import pytest
from quart import Quart
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank import create_app
from powerbank.dispatch.gateway import DispatchGateway, find_gateway, gateway
from powerbank.errors import ConflictError, ForbiddenError
from powerbank.models import Activation, ActivationState, OperatorRole, TeamRole
from powerbank.ocpp.registry import find_registry, registry_of
from powerbank.rules.permissions import Principal, load_principal
from powerbank.services import activations as service
from powerbank.services.audit import Actor
from powerbank.web import state
from tests.conftest import Factory
from tests.helpers import TEST_CONFIG

PAUSE = {"price_area": "DK2", "action": "pause", "duration_s": 300, "market": "FCR-D up"}


class RecordedTurn:
    """Stands in for the hub's OCPP write lock and notes when the turn is taken and given back."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def __aenter__(self) -> None:
        self.events.append("turn taken")

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.events.append("turn given back")


@pytest.fixture
def events(app: Quart, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the write turn, launches and releases of the app's gateway (no charger is reached)."""
    found: list[str] = []
    runner = gateway(app).runner
    monkeypatch.setattr(registry_of(app), "write_lock", RecordedTurn(found))
    monkeypatch.setattr(runner, "launch", lambda activation: found.append(f"launched #{activation.id}"))
    monkeypatch.setattr(
        runner, "release_soon", lambda activation_id, reason: found.append(f"released #{activation_id}: {reason}")
    )
    return found


@pytest.fixture
def committing(session: AsyncSession, events: list[str], monkeypatch: pytest.MonkeyPatch) -> AsyncSession:
    """The test's session, noting each commit among the events."""
    commit = session.commit

    async def noted_commit() -> None:
        events.append("commit")
        await commit()

    monkeypatch.setattr(session, "commit", noted_commit)
    return session


@pytest.fixture
async def other_session(app: Quart) -> AsyncIterator[AsyncSession]:
    """A session of its own, which sees only what was committed."""
    async with state.sessionmaker(app)() as db:
        yield db


async def principal_with(factory: Factory, session: AsyncSession, role: str) -> tuple[Principal, int]:
    """Return a user of a new operator with ``role`` (an operator or a team role), and the operator."""
    operator = await factory.operator()
    if role in set(OperatorRole):
        user = await factory.user(operator=operator, operator_role=role)
    else:
        user = await factory.user(team=await factory.team(operator), team_role=role)
    return await load_principal(session, user), operator.id or 0


async def test_starting_an_activation_takes_the_write_turn_and_launches_it_with_the_commit(
    app: Quart, factory: Factory, committing: AsyncSession, other_session: AsyncSession, events: list[str]
) -> None:
    me, operator_id = await principal_with(factory, committing, OperatorRole.MANAGER)
    events.clear()
    activation = await gateway(app).start_activation(
        committing, me, Actor.of(me.user), operator_id, service.clean_activation(PAUSE)
    )
    assert events == ["turn taken", "commit", f"launched #{activation.id}", "turn given back"]
    stored = await other_session.get(Activation, activation.id)
    assert stored is not None and stored.state == ActivationState.ACTIVE


async def test_an_activation_refused_is_neither_stored_nor_launched(
    app: Quart, factory: Factory, committing: AsyncSession, other_session: AsyncSession, events: list[str]
) -> None:
    me, operator_id = await principal_with(factory, committing, TeamRole.OWNER)
    events.clear()
    with pytest.raises(ForbiddenError):
        await gateway(app).start_activation(
            committing, me, Actor.of(me.user), operator_id, service.clean_activation(PAUSE)
        )
    assert events == ["turn taken", "turn given back"]
    assert (await other_session.exec(select(func.count()).select_from(Activation))).one() == 0


async def test_cancelling_releases_the_chargers_with_the_commit_and_only_once(
    app: Quart, factory: Factory, committing: AsyncSession, other_session: AsyncSession, events: list[str]
) -> None:
    me, operator_id = await principal_with(factory, committing, OperatorRole.ADMIN)
    hub = gateway(app)
    activation = await hub.start_activation(
        committing, me, Actor.of(me.user), operator_id, service.clean_activation(PAUSE)
    )
    events.clear()
    await hub.cancel_activation(committing, me, Actor.of(me.user), activation)
    assert events == ["commit", f"released #{activation.id}: cancelled"]
    stored = await other_session.get(Activation, activation.id)
    assert stored is not None and stored.state == ActivationState.CANCELLED
    with pytest.raises(ConflictError):
        await hub.cancel_activation(committing, me, Actor.of(me.user), activation)
    assert events == ["commit", f"released #{activation.id}: cancelled"]


async def test_recent_frames_are_those_the_registry_logged_for_the_charger(app: Quart) -> None:
    frame_log = registry_of(app).frame_log
    frame_log.add("CP-GW-1", False, '[2,"1","Heartbeat",{}]')
    frame_log.add("CP-GW-1", True, '[3,"1",{"currentTime":"2030-01-01T00:00:00Z"}]')
    frame_log.add("CP-GW-2", False, '[2,"9","Heartbeat",{}]')
    frames = gateway(app).recent_frames("CP-GW-1")
    assert [(frame.direction, frame.text) for frame in frames] == [
        ("out", '[3,"1",{"currentTime":"2030-01-01T00:00:00Z"}]'),
        ("in", '[2,"1","Heartbeat",{}]'),
    ]
    assert gateway(app).recent_frames("CP-GW-3") == []


async def test_the_gateway_and_the_registry_are_there_only_while_the_app_serves(database_url: str) -> None:
    app = create_app({**TEST_CONFIG, "DATABASE_URL": database_url})
    assert find_gateway(app) is None and find_registry(app) is None
    with pytest.raises(RuntimeError, match="only while the app serves"):
        gateway(app)
    async with app.test_app():
        assert isinstance(find_gateway(app), DispatchGateway)
        assert gateway(app).runner.registry is registry_of(app)
    assert find_gateway(app) is None
