"""The Activations page's availability chart: the last 24 hours per price area, the operator's own only."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import AreaAvailability, Operator
from powerbank.routes.availability import chart_geometry
from powerbank.services import availability as service
from tests.conftest import Factory, LoginAs

pytestmark = pytest.mark.usefixtures("fast_hashing")


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {"AVAILABILITY_SAMPLING": False}


async def minutes(session: AsyncSession, operator: Operator, area: str, start: datetime, kw: list[float]) -> None:
    for n, value in enumerate(kw):
        session.add(
            AreaAvailability(
                operator_id=operator.id or 0,
                price_area=area,
                minute=start + timedelta(minutes=n),
                power_w=value * 1000,
                signed_up=3,
                online=2,
                reporting=2,
            )
        )
    await session.commit()


def this_minute() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0)


async def test_the_activations_page_loads_the_chart_of_each_area_of_the_operator(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    ours, theirs = await factory.operator("Ours"), await factory.operator("Theirs")
    admin = await factory.user(operator=ours, operator_role="admin")
    now = this_minute()
    await minutes(session, ours, "DK2", now - timedelta(minutes=10), [4.0, 5.0, 6.0])
    await minutes(session, ours, "SE3", now - timedelta(minutes=10), [2.0])
    await minutes(session, theirs, "GB", now - timedelta(minutes=10), [9.0])
    client = await login_as(admin)

    page = await (await client.get(f"/operators/{ours.id}/activations")).get_data(as_text=True)
    fragment_url = f"/operators/{ours.id}/activations/availability"
    assert f'hx-get="{fragment_url}" hx-trigger="load"' in page

    response = await client.get(fragment_url, headers={"HX-Request": "true"})
    fragment = await response.get_data(as_text=True)

    assert response.status_code == 200
    assert "HX-Request" in response.headers["Vary"]
    assert "<html" not in fragment
    assert fragment.count("<svg") == 2
    assert "Available power in DK2" in fragment and "Available power in SE3" in fragment
    assert "GB" not in fragment
    assert "6.0 kW at" in fragment
    assert "2 online charge points (3 signed up)" in fragment

    # Without htmx the same address is a page of its own.
    full = await (await client.get(fragment_url)).get_data(as_text=True)
    assert "<html" in full and "Available power in DK2" in full


async def test_without_sampled_minutes_the_chart_says_so(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    operator = await factory.operator()
    admin = await factory.user(operator=operator, operator_role="admin")
    await minutes(session, operator, "DK1", this_minute() - timedelta(hours=30), [5.0])
    client = await login_as(admin)

    response = await client.get(f"/operators/{operator.id}/activations/availability", headers={"HX-Request": "true"})

    assert "No availability sampled in the last 24 hours" in await response.get_data(as_text=True)


async def test_only_those_who_manage_activations_see_it(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    ours, theirs = await factory.operator(), await factory.operator()
    team = await factory.team(ours)
    owner = await factory.user(team=team, team_role="owner")
    stranger = await factory.user(operator=theirs, operator_role="admin")
    await minutes(session, ours, "DK1", this_minute() - timedelta(minutes=2), [5.0])
    path = f"/operators/{ours.id}/activations/availability"

    for user, refused in ((owner, (403, 404)), (stranger, (404,))):
        client = await login_as(user)
        response = await client.get(path, headers={"HX-Request": "true"})
        assert response.status_code in refused
        assert "Available power" not in await response.get_data(as_text=True)


def test_a_gap_breaks_the_line() -> None:
    start = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    end = start + timedelta(hours=24)

    def point(minute: int, kw: float) -> service.Point:
        return service.Point(start + timedelta(minutes=minute), kw * 1000, 1, 1, 1)

    chart = chart_geometry(
        [point(0, 1.0), point(1, 2.0), point(2, 3.0), point(10, 4.0), point(30, 5.0), point(31, 6.0)], start, end
    )

    assert len(chart["lines"]) == 2
    assert [len(re.findall(r"\d+(?:\.\d+)?,\d+(?:\.\d+)?", line)) for line in chart["lines"]] == [3, 2]
    assert len(chart["dots"]) == 1
    assert chart["gaps"] == 2
    assert chart["sampled"] == 6
    # The line starts at the left of the axis and rises with the power.
    first_x, first_y = (float(v) for v in chart["lines"][0].split()[0].split(","))
    last_y = float(chart["lines"][1].split()[-1].split(",")[1])
    assert first_x == chart["pad"]
    assert last_y < first_y
