"""GET /api/v1/areas/{area}/availability: one operator's sampled minutes, for operator-wide tokens only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from quart.testing import QuartClient
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import AreaAvailability, Operator, TokenAccess
from powerbank.services import api_tokens
from powerbank.services.audit import SYSTEM
from tests.conftest import Factory
from tests.routes.api.support import bearer

PROBLEM = "application/problem+json"


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    # The minutes are written by the tests; the sampler would add the current one.
    return {"AVAILABILITY_SAMPLING": False}


async def token_of(session: AsyncSession, operator: Operator, access: TokenAccess, team_id: int | None = None) -> str:
    _, secret = await api_tokens.create_token(
        session, SYSTEM, operator.id or 0, api_tokens.TokenRequest(f"{access} {team_id}", access, team_id, None)
    )
    await session.commit()
    return secret


async def minutes(session: AsyncSession, operator: Operator, area: str, start: datetime, kw: list[float]) -> None:
    """Store one minute per value from ``start`` (a value of None: a minute not sampled)."""
    for n, value in enumerate(kw):
        session.add(
            AreaAvailability(
                operator_id=operator.id or 0,
                price_area=area,
                minute=start + timedelta(minutes=n),
                power_w=value * 1000,
                signed_up=10,
                online=8,
                reporting=7,
            )
        )
    await session.commit()


def this_minute() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0)


async def get(client: QuartClient, path: str, secret: str) -> tuple[int, Any, str]:
    response = await client.get(path, headers=bearer(secret))
    return response.status_code, await response.get_json(force=True), response.mimetype


async def test_the_last_24_hours_of_the_tokens_operator_and_area_by_default(
    client: QuartClient, session: AsyncSession, factory: Factory
) -> None:
    ours, theirs = await factory.operator("Ours"), await factory.operator("Theirs")
    now = this_minute()
    await minutes(session, ours, "DK1", now - timedelta(hours=25), [99.0])  # older than the default range
    await minutes(session, ours, "DK1", now - timedelta(minutes=3), [1.5, 2.5, 3.5])
    await minutes(session, ours, "SE3", now - timedelta(minutes=3), [50.0])
    await minutes(session, theirs, "DK1", now - timedelta(minutes=3), [70.0, 80.0, 90.0])
    secret = await token_of(session, ours, TokenAccess.READ)

    status, body, _ = await get(client, "/api/v1/areas/DK1/availability", secret)

    assert status == 200, body
    assert body["price_area"] == "DK1"
    assert body["step_s"] == 60
    end = datetime.fromisoformat(body["end"])
    assert end - datetime.fromisoformat(body["start"]) == timedelta(hours=24)
    assert [(m["available_kw"], m["signed_up"], m["online"], m["reporting"]) for m in body["minutes"]] == [
        (1.5, 10, 8, 7),
        (2.5, 10, 8, 7),
        (3.5, 10, 8, 7),
    ]
    assert [datetime.fromisoformat(m["minute"]) for m in body["minutes"]] == [
        now - timedelta(minutes=n) for n in (3, 2, 1)
    ]


async def test_a_range_is_from_included_to_excluded_and_gaps_stay_gaps(
    client: QuartClient, session: AsyncSession, factory: Factory
) -> None:
    operator = await factory.operator()
    start = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    await minutes(session, operator, "GB", start, [1.0, 2.0])
    await minutes(session, operator, "GB", start + timedelta(minutes=5), [6.0, 7.0])
    secret = await token_of(session, operator, TokenAccess.WRITE)

    status, body, _ = await get(
        client, "/api/v1/areas/GB/availability?from=2026-03-02T13:01:00%2B01:00&to=2026-03-02T12:06:00Z", secret
    )

    assert status == 200, body
    assert [(m["minute"], m["available_kw"]) for m in body["minutes"]] == [
        ("2026-03-02T12:01:00Z", 2.0),
        ("2026-03-02T12:05:00Z", 6.0),
    ]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/areas/DK3/availability", "area"),
        ("/api/v1/areas/dk1/availability", "area"),
        ("/api/v1/areas/DK1/availability?from=yesterday", "from"),
        ("/api/v1/areas/DK1/availability?from=2026-03-02T12:00:00", "from"),
        ("/api/v1/areas/DK1/availability?from=2026-03-02T12:00:00+01:00", "from"),
        ("/api/v1/areas/DK1/availability?to=2026-03-02", "to"),
        ("/api/v1/areas/DK1/availability?from=2026-03-02T12:00:00Z&to=2026-03-02T11:00:00Z", "from"),
        ("/api/v1/areas/DK1/availability?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "to"),
        ("/api/v1/areas/DK1/availability?since=2026-01-01T00:00:00Z", "since"),
    ],
)
async def test_bad_input_is_refused_with_the_field(
    client: QuartClient, session: AsyncSession, factory: Factory, path: str, field: str
) -> None:
    operator = await factory.operator()
    secret = await token_of(session, operator, TokenAccess.READ)

    status, body, mimetype = await get(client, path, secret)

    assert (status, mimetype) == (422, PROBLEM), body
    assert field in [error["field"] for error in body["errors"]], body


async def test_team_tokens_and_no_token_are_refused(
    client: QuartClient, session: AsyncSession, factory: Factory
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    await minutes(session, operator, "DK1", this_minute() - timedelta(minutes=1), [4.0])
    team_token = await token_of(session, operator, TokenAccess.WRITE, team.id)

    status, body, mimetype = await get(client, "/api/v1/areas/DK1/availability", team_token)
    assert (status, mimetype) == (403, PROBLEM)
    assert "operator-wide" in body["detail"]
    assert "minutes" not in body

    response = await client.get("/api/v1/areas/DK1/availability")
    assert response.status_code == 401


async def test_another_operators_minutes_are_never_shown(
    client: QuartClient, session: AsyncSession, factory: Factory
) -> None:
    ours, theirs = await factory.operator(), await factory.operator()
    await minutes(session, theirs, "DK2", this_minute() - timedelta(minutes=2), [123.0, 456.0])
    secret = await token_of(session, ours, TokenAccess.READ)

    status, body, _ = await get(client, "/api/v1/areas/DK2/availability", secret)

    assert status == 200
    assert body["minutes"] == []


async def test_the_endpoint_is_in_the_openapi_document(client: QuartClient) -> None:
    document = await (await client.get("/api/openapi.json")).get_json()
    operation = document["paths"]["/api/v1/areas/{area}/availability"]["get"]
    assert {parameter["name"] for parameter in operation["parameters"]} >= {"area", "from", "to"}
    assert {"200", "401", "403", "422"} <= set(operation["responses"])
