"""`/readyz`: a node is ready when it serves, its database answers and the schema is the code's newest."""

from __future__ import annotations

import pytest
from quart import Quart
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db.schema import code_heads, code_revisions
from powerbank.ocpp.registry import registry_of

pytestmark = pytest.mark.served


@pytest.fixture
def config_overrides() -> dict[str, object]:
    return {"NODE_ID": "node-under-test"}


async def set_revision(session: AsyncSession, revision: str) -> None:
    await session.exec(text("UPDATE alembic_version SET version_num = :revision").bindparams(revision=revision))  # type: ignore[call-overload]
    await session.commit()


async def test_a_serving_node_on_the_newest_schema_is_ready(app: Quart) -> None:
    response = await app.test_client().get("/readyz")
    assert response.status_code == 200
    (head,) = code_heads()
    assert await response.get_json() == {
        "node": "node-under-test",
        "status": "ready",
        "schema": [head],
        "code_schema": [head],
    }
    assert response.headers["Cache-Control"] == "no-store"


async def test_a_database_behind_the_code_is_not_ready(app: Quart, session: AsyncSession) -> None:
    await set_revision(session, code_revisions()[-2])
    response = await app.test_client().get("/readyz")
    assert response.status_code == 503
    body = await response.get_json()
    assert body["status"] == "unavailable"
    assert body["schema"] == [code_revisions()[-2]]
    assert body["problems"] == [f"schema: not migrated to {code_revisions()[-1]} (run powerbank db upgrade)"]
    # Alive all the same: /healthz is for a balancer, and the node does serve.
    assert (await app.test_client().get("/healthz")).status_code == 200


async def test_a_database_newer_than_the_code_is_not_ready(app: Quart, session: AsyncSession) -> None:
    await set_revision(session, "9999_from_the_future")
    response = await app.test_client().get("/readyz")
    assert response.status_code == 503
    assert (await response.get_json())["problems"] == ["schema: newer than this PowerBank (9999_from_the_future)"]


async def test_a_node_shutting_down_is_not_ready(app: Quart) -> None:
    await registry_of(app).close_all(1.0)
    response = await app.test_client().get("/readyz")
    assert response.status_code == 503
    assert (await response.get_json())["problems"] == ["shutting down"]
