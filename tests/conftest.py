"""Shared fixtures: a migrated database per test, the app, a logged-in client, factories."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from quart import Quart
from quart.testing import QuartClient
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank import create_app
from powerbank.db.migrate import upgrade
from powerbank.models import ChargePoint, Operator, OperatorMembership, Team, TeamMembership, User
from powerbank.services import passwords
from powerbank.services.audit import SYSTEM
from powerbank.services.teams import create_operator
from powerbank.tools.demo_data import DEMO_PASSWORD, load_demo_data
from powerbank.web import state
from tests import postgres
from tests.helpers import SERVED_CONFIG, TEST_CONFIG, served

TEST_PASSWORD = "correct horse battery"
# argon2 at full cost makes hundreds of test logins slow: tests hash once, with cheap parameters
# (verification follows the parameters stored in the hash), and reuse it.
_CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
_PASSWORD_HASH = _CHEAP_HASHER.hash(TEST_PASSWORD)


@pytest.fixture
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash new passwords (demo data, created users, OCPP passwords) with cheap argon2 parameters."""
    monkeypatch.setattr(passwords, "_hasher", _CHEAP_HASHER)
    monkeypatch.setattr(passwords, "_DUMMY_HASH", _CHEAP_HASHER.hash("not a real password"))


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate an empty SQLite database once; each test gets a copy of it."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """Migrate a PostgreSQL template database once (``make test-pg``); each test gets a copy of it."""
    assert postgres.ADMIN_URL, "only under make test-pg"
    name = postgres.fresh_name("template")
    postgres.create_database(name)
    upgrade(postgres.url_of(name))
    yield name
    postgres.drop_database(name)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of the test's own: SQLite, or PostgreSQL under ``make test-pg``."""
    if postgres.ADMIN_URL:
        name = postgres.fresh_name("test")
        postgres.create_database(name, template=request.getfixturevalue("postgres_template"))
        yield postgres.url_of(name)
        postgres.drop_database(name)
        return
    path = tmp_path / "test.db"
    shutil.copy(request.getfixturevalue("migrated_template"), path)
    yield f"sqlite+aiosqlite:///{path}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "served: the `app` fixture is the hub served by Hypercorn on a real socket (chargers connect)"
    )
    config.addinivalue_line(
        "markers", "sqlite_only: tests SQLite's own code path (run by make test; skipped under make test-pg)"
    )
    config.addinivalue_line(
        "markers", "postgres_only: several nodes on one database, which needs PostgreSQL (run by make test-pg)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    other, reason = ("sqlite_only", "SQLite's own code path: make test runs it")
    if not postgres.ADMIN_URL:
        other, reason = ("postgres_only", "several nodes share PostgreSQL: make test-pg runs it")
    for item in items:
        if item.get_closest_marker(other) is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    """Extra app config for a test module (override this fixture)."""
    return {}


@pytest.fixture
def hypercorn_overrides() -> dict[str, Any]:
    """Hypercorn settings a test of the served hub changes (override this fixture)."""
    return {}


@pytest.fixture
async def app(
    request: pytest.FixtureRequest,
    database_url: str,
    config_overrides: dict[str, Any],
    hypercorn_overrides: dict[str, Any],
) -> AsyncIterator[Quart]:
    """The app on a fresh database: in-process, or served over a socket for tests marked ``served``."""
    config = {**TEST_CONFIG, "DATABASE_URL": database_url}
    if request.node.get_closest_marker("served") is not None:
        hub_config = {**config, **SERVED_CONFIG, **config_overrides}
        async with served(hub_config, hypercorn_settings=hypercorn_overrides) as hub:
            yield hub
        return
    app = create_app({**config, **config_overrides})
    async with app.test_app():
        yield app


@pytest.fixture
async def session(app: Quart) -> AsyncIterator[AsyncSession]:
    async with state.sessionmaker(app)() as db:
        yield db


@pytest.fixture
def client(app: Quart) -> QuartClient:
    return app.test_client()


class Factory:
    """Create operators, teams, users with roles, and charge points, committed at once."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._n = 0

    def _next(self) -> int:
        self._n += 1
        return self._n

    async def operator(self, name: str | None = None) -> Operator:
        operator = await create_operator(self.session, SYSTEM, name or f"Operator {self._next()}")
        await self.session.commit()
        return operator

    async def team(self, operator: Operator | None = None, name: str | None = None) -> Team:
        operator = operator or await self.operator()
        team = Team(operator_id=operator.id or 0, name=name or f"Team {self._next()}")
        self.session.add(team)
        await self.session.commit()
        return team

    async def user(
        self,
        *,
        operator: Operator | None = None,
        operator_role: str | None = None,
        team: Team | None = None,
        team_role: str | None = None,
        can_configure: bool = True,
        email: str | None = None,
    ) -> User:
        user = User(email=email or f"user{self._next()}@example.test", password_hash=_PASSWORD_HASH)
        self.session.add(user)
        await self.session.flush()
        if operator_role:
            assert operator is not None
            self.session.add(OperatorMembership(operator_id=operator.id or 0, user_id=user.id or 0, role=operator_role))
        if team_role:
            assert team is not None
            self.session.add(
                TeamMembership(
                    team_id=team.id or 0,
                    user_id=user.id or 0,
                    role=team_role,
                    can_configure_charge_points=can_configure,
                )
            )
        await self.session.commit()
        return user

    async def charge_point(self, team: Team, **fields: Any) -> ChargePoint:
        n = self._next()
        values: dict[str, Any] = {
            "name": f"Charger {n}",
            "identity": f"CP-{n:05d}",
            "brand": "Easee",
            "model": "Home",
            "country": "DK",
            "price_area": "DK1",
            "ocpp_password_hash": _PASSWORD_HASH,
        }
        values.update(fields)
        charge_point = ChargePoint(team_id=team.id or 0, **values)
        self.session.add(charge_point)
        await self.session.commit()
        return charge_point


@pytest.fixture
def factory(session: AsyncSession) -> Factory:
    return Factory(session)


@pytest.fixture
async def demo(session: AsyncSession) -> list[ChargePoint]:
    """Load the demo data into the test database."""
    charge_points = await load_demo_data(session)
    await session.commit()
    return charge_points


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


async def csrf_of(client: QuartClient, path: str = "/login") -> str:
    """Return the client session's CSRF token, read from a page as a browser would."""
    response = await client.get(path)
    match = CSRF_RE.search(await response.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


LoginAs = Callable[..., Awaitable[QuartClient]]


@pytest.fixture
def login_as(app: Quart) -> LoginAs:
    """Return a helper that logs a user in through the log-in form and returns their client."""

    async def _login(user: User | str, password: str | None = None) -> QuartClient:
        email = user if isinstance(user, str) else user.email
        if password is None:
            password = DEMO_PASSWORD if email.endswith("@demo.test") else TEST_PASSWORD
        client = app.test_client()
        token = await csrf_of(client)
        response = await client.post("/login", form={"email": email, "password": password, "csrf_token": token})
        assert response.status_code == 303, await response.get_data(as_text=True)
        # The log-in gives the session a new CSRF token; read it as the next page would.
        client.csrf_token = await csrf_of(client, "/")  # type: ignore[attr-defined]
        return client

    return _login


async def post_form(client: QuartClient, path: str, form: dict[str, str] | None = None, **kwargs: Any) -> Any:
    """POST a form with the client's CSRF token, as a page's form would."""
    data = {"csrf_token": client.csrf_token, **(form or {})}  # type: ignore[attr-defined]
    return await client.post(path, form=data, **kwargs)


def htmx_headers(client: QuartClient) -> dict[str, str]:
    """Return the headers htmx sends: HX-Request and the CSRF token set on <body>."""
    return {"HX-Request": "true", "X-CSRF-Token": client.csrf_token}  # type: ignore[attr-defined]
