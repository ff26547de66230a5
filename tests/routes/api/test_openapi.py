"""A property-based run over the OpenAPI document: generated requests never get a 5xx, and
every answer matches the document (status, media type, body schema).

Schemathesis drives the ASGI app in its own thread; each operation gets a bounded number of
valid and invalid requests, with a write token of Nordic Charge against the demo data, half of
them aimed at real demo objects so they get past "not found". The run is derandomised so
`make test` is repeatable; raise POWERBANK_API_EXAMPLES to search harder.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart import Quart
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlmodel import select

from powerbank import create_app
from powerbank.db import standalone_session
from powerbank.models import ChargePoint, Team
from powerbank.services.api_tokens import create_token_by_names
from powerbank.tools.demo_data import load_demo_data

EXAMPLES = int(os.environ.get("POWERBANK_API_EXAMPLES", "12"))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


async def _prepare(url: str) -> tuple[str, dict[str, int]]:
    async with standalone_session(url) as session:
        await load_demo_data(session)
        _, token = await create_token_by_names(
            session,
            operator_name="Nordic Charge",
            team_name=None,
            access="write",
            name="schemathesis",
            expires_in_days=None,
            created_by_email="operator.admin@demo.test",
        )
        await session.commit()
        team = (await session.exec(select(Team).where(Team.name == "Stockholm Offices"))).one()
        charge_point = (await session.exec(select(ChargePoint).where(ChargePoint.identity == "STO-003"))).one()
    return token, {"team_id": team.id or 0, "cp_id": charge_point.id or 0}


@pytest.fixture
def api_app(migrated_template: Path, tmp_path: Path) -> Iterator[tuple[Quart, str, dict[str, int]]]:
    path = tmp_path / "api.db"
    shutil.copy(migrated_template, path)
    url = f"sqlite+aiosqlite:///{path}"
    token, ids = asyncio.run(_prepare(url))
    app = create_app({"DEMO": True, "DATABASE_URL": url, "SECRET_KEY": "test-secret", "API_RATE_LIMIT": 1_000_000})
    try:
        yield app, token, ids
    finally:
        shutdown_lifespans()


def test_generated_requests_get_documented_answers(api_app: tuple[Quart, str, dict[str, int]]) -> None:
    app, token, known_ids = api_app
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "GET /api/v1/teams",
        "PATCH /api/v1/charge-points/{cp_id}",
        "POST /api/v1/teams/{team_id}/powerbank/signup",
    }
    for operation in operations:
        names = {parameter.name for parameter in operation.path_parameters}
        aimed = {name: value for name, value in known_ids.items() if name in names}
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategies = [operation.as_strategy(generation_mode=mode)]
            if aimed and mode is schemathesis.GenerationMode.POSITIVE:
                strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=aimed))
            _run(st.one_of(strategies), headers)


def _run(strategy: st.SearchStrategy[Any], headers: dict[str, str]) -> None:
    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()
