"""Earnings pages and API: who sees which statement, who enters prices, CSV and PDF, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from quart import Quart
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import AvailableHour, MarketPrice, Operator, Team, TeamRole
from powerbank.rules.earnings import month_bounds, month_of, previous_month
from powerbank.services import earnings
from powerbank.services.api_tokens import create_token_by_names
from powerbank.services.audit import SYSTEM
from tests.conftest import Factory, LoginAs, post_form

LAST = previous_month(month_of(datetime.now(UTC)))
START, _END = month_bounds(LAST)


async def _world(session: AsyncSession, factory: Factory) -> dict[str, object]:
    operator = await factory.operator("Earning Operator")
    team = await factory.team(operator, "Copenhagen")
    cp = await factory.charge_point(team, name="Harbour 1", price_area="DK2")
    other_operator = await factory.operator("Another Operator")
    other_team = await factory.team(other_operator, "Elsewhere")
    other_cp = await factory.charge_point(other_team, name="Far away", price_area="DK2")
    for hour in range(10):
        session.add(AvailableHour(charge_point_id=cp.id or 0, hour=START + timedelta(hours=hour), power_w=5000.0))
        session.add(AvailableHour(charge_point_id=other_cp.id or 0, hour=START + timedelta(hours=hour), power_w=5000.0))
    await session.commit()
    now = datetime.now(UTC)
    for op in (operator, other_operator):
        text = "price_area,market,kind,currency,starts_at,ends_at,price\n" + (
            f"DK2,FCR-D up,capacity,DKK,{START.isoformat()},{(START + timedelta(hours=24)).isoformat()},200\n"
        )
        await earnings.save_prices(session, SYSTEM, op.id or 0, earnings.read_price_csv(text), now)
    await session.commit()
    return {
        "operator": operator,
        "team": team,
        "cp": cp,
        "other_team": other_team,
        "other_cp": other_cp,
        "other_operator": other_operator,
    }


async def test_a_team_member_sees_the_statement_with_lines_that_add_up_and_downloads_csv_and_pdf(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    world = await _world(session, factory)
    team = world["team"]
    assert isinstance(team, Team)
    member = await factory.user(team=team, team_role=TeamRole.MEMBER)
    client = await login_as(member)
    page = await client.get(f"/teams/{team.id}/earnings?month={LAST}")
    body = await page.get_data(as_text=True)
    assert page.status_code == 200
    # 10 hours × 0.005 MW × 200 DKK = 10 DKK of market value; 70 % (the default share) is 7.00.
    assert "Harbour 1" in body and "7.00 DKK" in body and "Far away" not in body
    csv_response = await client.get(f"/teams/{team.id}/earnings/{LAST}.csv")
    assert csv_response.status_code == 200
    rows = (await csv_response.get_data(as_text=True)).splitlines()
    assert rows[1].split(",")[2] == "Harbour 1" and rows[1].split(",")[-3:-1] == ["7.00", "DKK"]
    pdf = await client.get(f"/teams/{team.id}/earnings/{LAST}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert (await pdf.get_data(as_text=False)).startswith(b"%PDF")
    section = await client.get(f"/teams/{team.id}/earnings/section", headers={"HX-Request": "true"})
    assert LAST in await section.get_data(as_text=True)
    cp_section = await client.get(f"/charge-points/{world['cp'].id}/earnings")  # type: ignore[attr-defined]
    assert "7.00 DKK" in await cp_section.get_data(as_text=True)
    # A Swedish reader sees the amounts as Swedes write them (the CSV stays as spreadsheets read it).
    swedish = await client.get(f"/teams/{team.id}/earnings?month={LAST}", headers={"Accept-Language": "sv"})
    assert "7,00 DKK" in await swedish.get_data(as_text=True)
    # A team member sees no way to enter prices, and may not.
    assert "/earnings/prices" not in await section.get_data(as_text=True)
    operator = world["operator"]
    assert isinstance(operator, Operator)
    refused = await post_form(
        client,
        f"/operators/{operator.id}/earnings/prices",
        {
            "price_area": "DK2",
            "market": "FCR-D up",
            "kind": "capacity",
            "currency": "DKK",
            "starts_at": "2026-01-01T00:00:00Z",
            "price": "5",
        },
    )
    assert refused.status_code == 403
    assert (await client.get(f"/operators/{operator.id}/earnings")).status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/teams/{other_team}/earnings",
        "/teams/{other_team}/earnings/section",
        "/teams/{other_team}/earnings/{month}.csv",
        "/teams/{other_team}/earnings/{month}.pdf",
        "/charge-points/{other_cp}/earnings",
        "/operators/{other_operator}/earnings",
    ],
)
async def test_another_operators_earnings_are_not_found(
    session: AsyncSession, factory: Factory, login_as: LoginAs, path: str
) -> None:
    world = await _world(session, factory)
    admin = await factory.user(operator=world["operator"], operator_role="admin")  # type: ignore[arg-type]
    client = await login_as(admin)
    url = path.format(
        other_team=world["other_team"].id,  # type: ignore[attr-defined]
        other_cp=world["other_cp"].id,  # type: ignore[attr-defined]
        other_operator=world["other_operator"].id,  # type: ignore[attr-defined]
        month=LAST,
    )
    assert (await client.get(url)).status_code == 404


@pytest.mark.parametrize("role", ["admin", "manager"])
async def test_operator_admins_and_managers_enter_prices_and_import_a_file(
    session: AsyncSession, factory: Factory, login_as: LoginAs, role: str
) -> None:
    world = await _world(session, factory)
    operator = world["operator"]
    assert isinstance(operator, Operator)
    user = await factory.user(operator=operator, operator_role=role)
    client = await login_as(user)
    page = await client.get(f"/operators/{operator.id}/earnings")
    assert page.status_code == 200
    start = (START + timedelta(hours=30)).isoformat()
    saved = await post_form(
        client,
        f"/operators/{operator.id}/earnings/prices",
        {
            "price_area": "DK2",
            "market": "FCR-D up",
            "kind": "capacity",
            "currency": "DKK",
            "starts_at": start,
            "ends_at": "",
            "price": "150.5",
        },
    )
    assert saved.status_code == 303
    bad_file = (
        "price_area,market,kind,currency,starts_at,ends_at,price\n"
        f"DK2,FCR-D up,capacity,DKK,{(START + timedelta(hours=40)).isoformat()},,100\n"
        f"DK2,FCR-D up,capacity,EUR,{(START + timedelta(hours=41)).isoformat()},,100\n"
    )
    before = (await session.exec(select(func.count()).select_from(MarketPrice))).one()
    refused = await client.post(
        f"/operators/{operator.id}/earnings/prices/import",
        form={"csrf_token": client.csrf_token},  # type: ignore[attr-defined]
        files={"prices_file": _upload(bad_file)},
    )
    body = await refused.get_data(as_text=True)
    assert refused.status_code == 422 and "Line 3" in body and "in DKK, not EUR" in body
    assert (await session.exec(select(func.count()).select_from(MarketPrice))).one() == before
    negative = await post_form(
        client,
        f"/operators/{operator.id}/earnings/prices",
        {
            "price_area": "DK2",
            "market": "FCR-D up",
            "kind": "capacity",
            "currency": "DKK",
            "starts_at": start,
            "price": "-1",
        },
    )
    assert negative.status_code == 422 and "cannot be negative" in await negative.get_data(as_text=True)
    share = await post_form(client, f"/operators/{operator.id}/earnings/share", {"share": "80"})
    assert share.status_code == 303
    assert (await post_form(client, f"/operators/{operator.id}/earnings/refresh")).status_code == 303
    assert (await earnings.shares_of(session, operator.id or 0)).operator == Decimal("0.8")
    closed = await post_form(client, f"/operators/{operator.id}/earnings/months/{LAST}/close")
    assert closed.status_code == 303
    twice = await post_form(client, f"/operators/{operator.id}/earnings/months/{LAST}/close")
    assert twice.status_code == 409 and "closed already" in await twice.get_data(as_text=True)


def _upload(text: str) -> object:
    from io import BytesIO

    from quart.datastructures import FileStorage

    return FileStorage(BytesIO(text.encode()), filename="prices.csv", content_type="text/csv")


async def _token(session: AsyncSession, operator: Operator, team: Team | None, access: str) -> str:
    _, secret = await create_token_by_names(
        session,
        operator_name=operator.name,
        team_name=team.name if team is not None else None,
        access=access,
        name="script",
        expires_in_days=None,
        created_by_email=None,
    )
    await session.commit()
    return secret


async def test_the_api_gives_a_teams_statement_in_the_tokens_scope(
    app: Quart, session: AsyncSession, factory: Factory
) -> None:
    world = await _world(session, factory)
    operator, team, other_team = world["operator"], world["team"], world["other_team"]
    assert isinstance(operator, Operator) and isinstance(team, Team) and isinstance(other_team, Team)
    client = app.test_client()
    for scope in (None, team):
        token = await _token(session, operator, scope, "read")
        headers = {"Authorization": f"Bearer {token}"}
        response = await client.get(f"/api/v1/teams/{team.id}/earnings?month={LAST}", headers=headers)
        assert response.status_code == 200
        data = await response.get_json()
        assert data["state"] == "open" and data["totals"] == [{"currency": "DKK", "amount": "7.00"}]
        assert [line["charge_point_name"] for line in data["lines"]] == ["Harbour 1"]
        foreign = await client.get(f"/api/v1/teams/{other_team.id}/earnings?month={LAST}", headers=headers)
        assert foreign.status_code == 404
        bad = await client.get(f"/api/v1/teams/{team.id}/earnings?month=2026-13", headers=headers)
        assert bad.status_code == 422
        # Read tokens and team tokens may not enter prices.
        price = {
            "price_area": "DK2",
            "market": "FCR-D up",
            "kind": "capacity",
            "currency": "DKK",
            "starts_at": START.isoformat(),
            "price": "1",
        }
        refused = await client.post("/api/v1/earnings/prices", json={"prices": [price]}, headers=headers)
        assert refused.status_code == 403


async def test_the_api_enters_prices_all_or_nothing(app: Quart, session: AsyncSession, factory: Factory) -> None:
    world = await _world(session, factory)
    operator = world["operator"]
    assert isinstance(operator, Operator)
    headers = {"Authorization": f"Bearer {await _token(session, operator, None, 'write')}"}
    client = app.test_client()
    start = START + timedelta(days=2)
    good = {
        "price_area": "DK2",
        "market": "FCR-D up",
        "kind": "capacity",
        "currency": "DKK",
        "starts_at": start.isoformat(),
        "price": "10",
    }
    unknown = {**good, "price_area": "DE", "starts_at": (start + timedelta(hours=1)).isoformat()}
    refused = await client.post("/api/v1/earnings/prices", json={"prices": [good, unknown]}, headers=headers)
    assert refused.status_code == 422
    assert [e["field"] for e in (await refused.get_json())["errors"]] == ["prices.1"]
    saved = await client.post("/api/v1/earnings/prices", json={"prices": [good]}, headers=headers)
    assert saved.status_code == 200 and (await saved.get_json())["added"] == 1
    again = await client.post("/api/v1/earnings/prices", json={"prices": [good]}, headers=headers)
    assert (await again.get_json())["unchanged"] == 1


async def test_a_long_statement_is_paged_and_its_totals_cover_every_line(
    session: AsyncSession, factory: Factory, login_as: LoginAs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from powerbank.routes import earnings as routes

    world = await _world(session, factory)
    team = world["team"]
    assert isinstance(team, Team)
    second = await factory.charge_point(team, name="Harbour 2", price_area="DK2")
    session.add(AvailableHour(charge_point_id=second.id or 0, hour=START, power_w=5000.0))
    await session.commit()
    await earnings.refresh_month(session, world["operator"].id or 0, LAST, datetime.now(UTC))  # type: ignore[attr-defined]
    await session.commit()
    monkeypatch.setattr(routes, "PAGE_LINES", 1)
    client = await login_as(await factory.user(team=team, team_role=TeamRole.OWNER))
    first = await (await client.get(f"/teams/{team.id}/earnings?month={LAST}")).get_data(as_text=True)
    page_two = await (await client.get(f"/teams/{team.id}/earnings?month={LAST}&page=2")).get_data(as_text=True)
    # 7.00 + 0.70 (one hour of 5 kW at 200 DKK, 70 %).
    assert "Harbour 1" in first and "Harbour 2" not in first and "7.70 DKK" in first
    assert "Harbour 2" in page_two and "Harbour 1" not in page_two and "7.70 DKK" in page_two


async def test_a_long_statements_pdf_prints_its_lines_as_text(
    session: AsyncSession, factory: Factory, login_as: LoginAs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from powerbank.routes import earnings as routes

    world = await _world(session, factory)
    team = world["team"]
    assert isinstance(team, Team)
    monkeypatch.setattr(routes, "PDF_TABLE_LINES", 0)
    client = await login_as(await factory.user(team=team, team_role=TeamRole.MEMBER))
    pdf = await client.get(f"/teams/{team.id}/earnings/{LAST}.pdf")
    assert pdf.status_code == 200 and (await pdf.get_data(as_text=False)).startswith(b"%PDF")
    row = earnings.text_rows((await earnings.statement(session, SYSTEM, team, LAST)).lines)[0]
    assert row.startswith("Harbour 1") and row.endswith("7.00 DKK")
