"""Activation rules without chargers: validation, who may, the overlap rule, the frames' schemas, pages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from ocpp.messages import Call, validate_payload
from quart import Quart
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.dispatch import fanout
from powerbank.errors import FormErrors
from powerbank.models import Activation, Dispatch, Operator, Team, TokenAccess
from powerbank.services import activations as service
from powerbank.services import enrollment
from powerbank.services.api_tokens import TokenRequest, create_token
from powerbank.services.audit import SYSTEM
from tests.conftest import Factory, LoginAs, post_form
from tests.helpers import eventually

pytestmark = pytest.mark.usefixtures("fast_hashing")

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


GOOD = {"price_area": "DK2", "action": "pause", "duration_s": 300, "market": "FCR-D up"}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"price_area": "DE"}, "price_area", "Choose a price area"),
        ({"price_area": ""}, "price_area", "Choose a price area"),
        ({"duration_s": 0}, "duration_s", "1 s to 60 min"),
        ({"duration_s": 3601}, "duration_s", "1 s to 60 min"),
        ({"duration_s": 1.5}, "duration_s", "whole number"),
        ({"action": "limit", "limit_kw": -1}, "limit_kw", "below 0"),
        ({"action": "limit", "limit_kw": 30}, "limit_kw", "maximum"),
        ({"action": "limit"}, "limit_kw", "Give the limit"),
        ({"action": "stop"}, "action", "pause or limit"),
        ({"start_at": "2029-12-31T23:00:00Z"}, "start_at", "in the past"),
        ({"start_at": "2030-01-02T10:00:00"}, "start_at", "time zone"),
        ({"start_at": "tomorrow"}, "start_at", "date and time"),
        ({"market": ""}, "market", "Name the market"),
    ],
)
def test_bad_activation_requests_name_the_field(changes: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(FormErrors) as caught:
        service.clean_activation({**GOOD, **changes}, NOW)
    assert message in caught.value.errors[field]


def test_good_requests_start_now_or_later() -> None:
    assert service.clean_activation(GOOD, NOW).start_at is None
    later = service.clean_activation({**GOOD, "start_at": "2030-01-01T13:00:00+00:00"}, NOW)
    assert later.start_at == NOW + timedelta(hours=1)
    limited = service.clean_activation({**GOOD, "action": "limit", "limit_kw": "3.7", "duration_s": "1"}, NOW)
    assert (limited.limit_kw, limited.duration_s) == (3.7, 1)


def activation(limit_kw: float | None, ends_in_s: int) -> Activation:
    return Activation(
        operator_id=1,
        price_area="DK2",
        market="Test",
        action="pause" if limit_kw is None else "limit",
        limit_kw=limit_kw,
        start_at=NOW,
        duration_s=ends_in_s,
        end_at=NOW + timedelta(seconds=ends_in_s),
        created_by="test",
    )


def test_overlapping_activations_give_the_stricter_limit_while_both_run() -> None:
    steps = service.envelope([activation(4.6, 60), activation(None, 10), activation(11, 30)], NOW)
    assert steps == [service.Step(NOW + timedelta(seconds=10), 0.0), service.Step(NOW + timedelta(seconds=60), 4600.0)]
    assert service.envelope([activation(None, 10)], NOW + timedelta(seconds=10)) == []


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
@pytest.mark.parametrize("unit", ["W", "A"])
async def test_the_frames_sent_are_valid_ocpp(protocol: str, unit: str) -> None:
    steps = [service.Step(NOW + timedelta(seconds=10), 0.0), service.Step(NOW + timedelta(seconds=60), 3700.0)]
    version = protocol.removeprefix("ocpp")
    for action, payload in (
        fanout.set_limit_payload((protocol, unit, 8), steps, NOW, 5.0),
        fanout.clear_payload((protocol, unit, 8)),
    ):
        await validate_payload(Call("1", action, payload), version)
    _, payload = fanout.set_limit_payload((protocol, unit, 8), steps, NOW, 5.0)
    profile = payload.get("csChargingProfiles") or payload["chargingProfile"]
    schedule = profile["chargingSchedule"] if protocol == "ocpp1.6" else profile["chargingSchedule"][0]
    assert profile["validTo"] == "2030-01-01T12:01:05.000Z" and schedule["duration"] == 65
    limits = [period["limit"] for period in schedule["chargingSchedulePeriod"]]
    assert limits == ([0.0, 3700.0] if unit == "W" else [0.0, 5.3])
    assert [period["startPeriod"] for period in schedule["chargingSchedulePeriod"]] == [0, 10]


async def token(
    session: AsyncSession, operator: Operator, access: str = TokenAccess.WRITE, team: Team | None = None
) -> dict[str, str]:
    _, secret = await create_token(
        session,
        SYSTEM,
        operator.id or 0,
        TokenRequest(
            name=f"grid {access}", access=TokenAccess(access), team_id=team.id if team else None, expires_in_days=None
        ),
    )
    await session.commit()
    return {"Authorization": f"Bearer {secret}"}


async def activation_count(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(Activation))).one()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"price_area": "XX"}, "price_area"),
        ({"duration_s": 0}, "duration_s"),
        ({"duration_s": 3601}, "duration_s"),
        ({"action": "limit", "limit_kw": -0.1}, "limit_kw"),
        ({"action": "limit", "limit_kw": 50}, "limit_kw"),
        ({"start_at": "2000-01-01T00:00:00Z"}, "start_at"),
        ({"action": "brake"}, "action"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_api_refuses_bad_input_with_a_problem_and_starts_nothing(
    app: Quart,
    factory: Factory,
    session: AsyncSession,
    changes: dict[str, Any],
    field: str,
) -> None:
    operator = await factory.operator()
    response = await app.test_client().post(
        "/api/v1/activations", json={**GOOD, **changes}, headers=await token(session, operator)
    )
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert field in [error["field"] for error in (await response.get_json())["errors"]]
    assert await activation_count(session) == 0


@pytest.mark.parametrize(
    ("access", "team_scoped", "create_status", "read_status"),
    [
        ("write", False, 201, 200),
        ("read", False, 403, 200),
        ("write", True, 403, 403),
        ("read", True, 403, 403),
    ],
)
async def test_only_operator_write_tokens_start_activations(
    app: Quart,
    factory: Factory,
    session: AsyncSession,
    access: str,
    team_scoped: bool,
    create_status: int,
    read_status: int,
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    headers = await token(session, operator, access, team if team_scoped else None)
    client = app.test_client()
    created = await client.post("/api/v1/activations", json=GOOD, headers=headers)
    assert created.status_code == create_status
    assert await activation_count(session) == (1 if create_status == 201 else 0)
    listed = await client.get("/api/v1/activations", headers=headers)
    assert listed.status_code == read_status


async def test_api_lists_reads_and_hides_other_tenants(app: Quart, factory: Factory, session: AsyncSession) -> None:
    ours, theirs = await factory.operator(), await factory.operator()
    team = await factory.team(ours)
    charge_point = await factory.charge_point(team, price_area="DK2")
    await enrollment.reevaluate(session, [charge_point])
    await session.commit()
    headers, their_headers = await token(session, ours), await token(session, theirs)
    client = app.test_client()
    created = await (
        await client.post("/api/v1/activations", json={**GOOD, "start_at": "2099-01-01T00:00:00Z"}, headers=headers)
    ).get_json()
    assert created["state"] == "scheduled" and created["created_by"] == "API token grid write"
    listed = await (await client.get("/api/v1/activations", headers=headers)).get_json()
    assert [item["id"] for item in listed["items"]] == [created["id"]]
    assert (await (await client.get("/api/v1/activations", headers=their_headers)).get_json())["items"] == []
    assert (await client.get(f"/api/v1/activations/{created['id']}", headers=their_headers)).status_code == 404
    assert (await client.delete(f"/api/v1/activations/{created['id']}", headers=their_headers)).status_code == 404
    cancelled = await client.delete(f"/api/v1/activations/{created['id']}", headers=headers)
    assert (await cancelled.get_json())["state"] == "cancelled"
    # A cancelled scheduled activation never starts: nothing was ever sent.
    assert (await session.exec(select(func.count()).select_from(Dispatch))).one() == 0
    document = await (await client.get("/api/openapi.json")).get_json()
    assert {"post", "get"} <= set(document["paths"]["/api/v1/activations"])
    assert {"get", "delete"} <= set(document["paths"]["/api/v1/activations/{activation_id}"])


ROLES = ["operator admin", "operator manager", "team owner", "team admin", "team member", "other operator admin"]


async def user_in_role(factory: Factory, operator: Operator, team: Team, role: str) -> Any:
    match role:
        case "operator admin" | "operator manager":
            return await factory.user(operator=operator, operator_role=role.split()[1])
        case "other operator admin":
            return await factory.user(operator=await factory.operator(), operator_role="admin")
        case _:
            return await factory.user(team=team, team_role=role.split()[1])


@pytest.mark.parametrize(
    ("role", "page_status", "post_status"),
    [
        ("operator admin", 200, 303),
        ("operator manager", 200, 303),
        ("team owner", 403, 403),
        ("team admin", 403, 403),
        ("team member", 403, 403),
        ("other operator admin", 404, 404),
    ],
)
async def test_only_operator_admins_and_managers_start_activations_from_the_page(
    factory: Factory,
    session: AsyncSession,
    login_as: LoginAs,
    role: str,
    page_status: int,
    post_status: int,
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    client = await login_as(await user_in_role(factory, operator, team, role))
    page = await client.get(f"/operators/{operator.id}/activations")
    assert page.status_code == page_status
    response = await post_form(client, f"/operators/{operator.id}/activations/test", {"price_area": "DK2"})
    assert response.status_code == post_status
    assert await activation_count(session) == (1 if post_status == 303 else 0)


async def test_the_page_starts_a_test_activation_and_shows_it(
    factory: Factory,
    session: AsyncSession,
    login_as: LoginAs,
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    charge_point = await factory.charge_point(team, price_area="DK2", name="Harbour 1")
    await enrollment.reevaluate(session, [charge_point])
    await session.commit()
    identity, cp_id = charge_point.identity, charge_point.id
    admin = await factory.user(operator=operator, operator_role="admin")
    email = admin.email
    client = await login_as(admin)
    home = await (await client.get("/")).get_data(as_text=True)
    assert f"/operators/{operator.id}/activations" in home
    index = await (await client.get(f"/operators/{operator.id}/activations")).get_data(as_text=True)
    assert service.OVERLAP_RULE in index and "Start a Test activation" in index
    started = await post_form(client, f"/operators/{operator.id}/activations/test", {"price_area": "DK2"})
    assert started.status_code == 303
    detail_path = started.headers["Location"]
    test = (await session.exec(select(Activation))).one()
    assert (test.market, test.action, test.duration_s) == ("Test", "pause", service.TEST_DURATION_S)
    assert test.created_by == email
    test_id = test.id

    async def dispatched() -> list[tuple[str, str]]:
        await session.rollback()  # a fresh snapshot: the runner writes in its own session
        return [(d.identity, d.status) for d in await session.exec(select(Dispatch))]

    # No charger is connected in this test: the signed-up one is recorded offline, not skipped.
    await eventually(lambda: _is(dispatched(), [(identity, "offline")]))
    page = await client.get(detail_path)
    body = await page.get_data(as_text=True)
    assert service.OVERLAP_RULE in body and identity in body and "<svg" in body
    fragment = await client.get(detail_path, headers={"HX-Request": "true"})
    fragment_body = await fragment.get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in fragment_body and "<html" not in fragment_body
    listing = await client.get(f"/charge-points/{cp_id}/activations", headers={"HX-Request": "true"})
    assert f"#{test_id} Test: pause" in await listing.get_data(as_text=True)
    cancelled = await post_form(client, f"/activations/{test_id}/cancel")
    assert cancelled.status_code == 303
    again = await post_form(client, f"/activations/{test_id}/cancel")
    assert again.status_code == 409 and "already cancelled" in await again.get_data(as_text=True)


async def test_the_page_form_shows_what_is_wrong_and_keeps_the_input(
    factory: Factory,
    session: AsyncSession,
    login_as: LoginAs,
) -> None:
    operator = await factory.operator()
    client = await login_as(await factory.user(operator=operator, operator_role="manager"))
    response = await post_form(
        client,
        f"/operators/{operator.id}/activations",
        {
            "price_area": "DK2",
            "market": "FCR-N",
            "action": "limit",
            "limit_kw": "99",
            "duration_s": "7200",
            "start_at": "",
        },
    )
    assert response.status_code == 422
    body = await response.get_data(as_text=True)
    assert 'id="f-limit_kw-error"' in body and 'id="f-duration_s-error"' in body
    assert 'value="99"' in body and 'value="FCR-N"' in body
    assert await activation_count(session) == 0


async def stored_pause(session: AsyncSession, team: Team) -> Activation:
    """Store a one-minute pause of DK1 for the team's operator, starting now."""
    activation = Activation(
        operator_id=team.operator_id,
        price_area="DK1",
        market="Test",
        action="pause",
        start_at=NOW,
        duration_s=60,
        end_at=NOW + timedelta(seconds=60),
        created_by="test",
    )
    session.add(activation)
    await session.commit()
    return activation


async def test_a_charger_booting_during_the_fan_out_keeps_its_row_and_the_others_are_recorded(
    factory: Factory,
    session: AsyncSession,
) -> None:
    team = await factory.team()
    early, other = await factory.charge_point(team), await factory.charge_point(team)
    activation = await stored_pause(session, team)
    targets = [service.Target(cp.id or 0, cp.identity, "W", None) for cp in (early, other)]
    # The boot path records its charger first; the fan-out's bulk insert comes after it.
    await service.record_resent(session, [activation], [targets[0]], NOW, 0.0)
    await service.record_sent(session, activation, {cp.id or 0: NOW for cp in (early, other)}, [], targets, 0.0)
    await session.commit()
    rows = {d.charge_point_id: d.detail for d in await session.exec(select(Dispatch))}
    assert rows == {early.id: "sent after the charger connected", other.id: ""}


async def test_chargers_that_reconnect_together_are_recorded_again_in_one_go(
    factory: Factory,
    session: AsyncSession,
) -> None:
    team = await factory.team()
    answered, new = await factory.charge_point(team), await factory.charge_point(team)
    activation = await stored_pause(session, team)
    targets = [service.Target(cp.id or 0, cp.identity, "W", None) for cp in (answered, new)]
    answered_id, new_id = targets[0].charge_point_id, targets[1].charge_point_id
    await service.record_sent(session, activation, {answered_id: NOW}, [], targets[:1], 0.0)
    await service.record_answers(session, [activation.id or 0], [(answered_id, "Accepted", "", NOW)])
    await session.commit()

    later = NOW + timedelta(seconds=5)
    await service.record_resent(session, [activation], targets, later, 0.0)
    await session.commit()

    session.expire_all()
    rows = {
        d.charge_point_id: (d.status, d.detail, d.sent_at, d.answered_at) for d in await session.exec(select(Dispatch))
    }
    # The one sent before is pending again with its new send time; the other has a row of its own.
    assert rows == {
        answered_id: ("pending", "sent after the charger connected", later, None),
        new_id: ("pending", "sent after the charger connected", later, None),
    }


class OneCharger:
    """A registry of one connected 1.6 charger whose answer the test gives by hand."""

    def __init__(self) -> None:
        self.connection = SimpleNamespace(protocol="ocpp1.6", closed=False, forget=lambda _message_id: None)
        self.answer: asyncio.Future[Any] | None = None

    def get(self, identity: str) -> Any:
        return self.connection if identity == "CP-1" else None

    def broadcast(self, frame: str, message_id: str, identities: list[str]) -> dict[str, asyncio.Future[Any]]:
        self.answer = asyncio.get_running_loop().create_future()
        return {"CP-1": self.answer}


async def test_an_answer_is_timed_when_it_arrives_not_when_it_is_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = OneCharger()
    sent = fanout.broadcast(
        registry,
        [service.Target(1, "CP-1", "W", None)],
        fanout.clear_payload,  # type: ignore[arg-type]
        NOW,
    )
    clock = NOW + timedelta(seconds=1)
    monkeypatch.setattr(fanout, "utcnow", lambda: clock)
    assert registry.answer is not None
    registry.answer.set_result({"status": "Accepted"})
    await asyncio.sleep(0)  # The answer's callbacks run on the next turn of the loop.
    clock = NOW + timedelta(seconds=30)  # The database was busy: the answers are collected late.
    stored: list[fanout.Answer] = []

    async def store(batch: list[fanout.Answer]) -> None:
        stored.extend(batch)

    await fanout.collect(registry, sent, store, timeout_s=5)  # type: ignore[arg-type]

    assert stored == [(1, "Accepted", "", NOW + timedelta(seconds=1))]
