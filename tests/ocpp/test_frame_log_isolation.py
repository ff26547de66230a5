"""The OCPP frames of a charge point that was deleted or renamed are never shown under the identity's next owner."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession
from websockets.exceptions import ConnectionClosed

from powerbank.ocpp.registry import registry_of
from tests.conftest import Factory, LoginAs, post_form
from tests.helpers import eventually
from tests.ocpp.support import EDIT_FORM, raw_socket

pytestmark = pytest.mark.served

SECRET = "tenant-a-private-vendor"


@pytest.mark.parametrize("connected", [True, False], ids=["connected", "offline"])
@pytest.mark.parametrize("change", ["delete", "identity", "delete team"])
async def test_frames_of_a_gone_charge_point_are_not_shown_to_the_identitys_next_owner(
    app: Quart, factory: Factory, session: AsyncSession, login_as: LoginAs, change: str, connected: bool
) -> None:
    operator_a, operator_b = await factory.operator(), await factory.operator()
    team_a, team_b = await factory.team(operator_a), await factory.team(operator_b)
    cp_a = await factory.charge_point(team_a)
    identity = cp_a.identity
    admin_a = await factory.user(operator=operator_a, operator_role="admin", team=team_a, team_role="owner")
    member_b = await factory.user(team=team_b, team_role="member")
    registry = registry_of(app)
    path, form = {
        "delete": (f"/charge-points/{cp_a.id}/delete", {}),
        "identity": (f"/charge-points/{cp_a.id}/edit", {**EDIT_FORM, "identity": "RENAMED-1"}),
        "delete team": (f"/teams/{team_a.id}/delete", {}),
    }[change]
    client_a = await login_as(admin_a)
    async with raw_socket(app, identity) as websocket:
        await websocket.send(json.dumps([2, "a1", "DataTransfer", {"vendorId": SECRET}]))
        assert json.loads(await websocket.recv())[:2] == [3, "a1"]
        assert any(SECRET in frame.text for frame in registry.frame_log.recent(identity))
        if connected:
            response = await post_form(client_a, path, form)
            assert response.status_code in (200, 303), await response.get_data(as_text=True)
            # The charger still talks while it is being disconnected: that must not be logged either.
            with contextlib.suppress(ConnectionClosed):
                await websocket.send(json.dumps([2, "a2", "DataTransfer", {"vendorId": SECRET}]))
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(websocket.recv(), 5)
    if not connected:
        await eventually(lambda: registry.get(identity) is None)
        response = await post_form(client_a, path, form)
        assert response.status_code in (200, 303), await response.get_data(as_text=True)
    await eventually(lambda: registry.get(identity) is None)

    # Tenant A's deleted rows may still be in this test's session (their ids can be handed out again).
    session.expunge_all()
    cp_b = await factory.charge_point(team_b, identity=identity)
    client_b = await login_as(member_b)
    page = await (await client_b.get(f"/charge-points/{cp_b.id}")).get_data(as_text=True)
    fragment = await (await client_b.get(f"/charge-points/{cp_b.id}/ocpp", headers={"HX-Request": "true"})).get_data(
        as_text=True
    )
    for html in (page, fragment):
        assert "OCPP log" in html
        assert SECRET not in html and "DataTransfer" not in html
    assert registry.frame_log.recent(identity) == []


async def test_a_new_password_keeps_the_charge_points_frames(app: Quart, factory: Factory, login_as: LoginAs) -> None:
    operator = await factory.operator()
    team = await factory.team(operator)
    cp = await factory.charge_point(team)
    admin = await factory.user(operator=operator, operator_role="admin", team=team, team_role="owner")
    registry = registry_of(app)
    async with raw_socket(app, cp.identity) as websocket:
        await websocket.send('[2, "h", "Heartbeat", {}]')
        assert json.loads(await websocket.recv())[:2] == [3, "h"]
        response = await post_form(await login_as(admin), f"/charge-points/{cp.id}/ocpp-password", {})
        assert response.status_code in (200, 303)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(websocket.recv(), 5)
    assert any('"Heartbeat"' in frame.text for frame in registry.frame_log.recent(cp.identity))
