"""Frames shared between nodes (ocpp/frame_sharing.py): only a charge point's own, never after its identity went.

One node on PostgreSQL asks itself on the bus, as another node would: the real NOTIFY, the real table.
The page on a node that does not hold the charger is tested with two real nodes in
tests/runtime/test_cluster_frames.py.
"""

from __future__ import annotations

import json

import pytest
from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import SharedFrames
from powerbank.ocpp.frame_sharing import FRAMES_WANTED, shared_log
from powerbank.ocpp.registry import registry_of
from powerbank.services.frame_log import FrameLog, unpack
from tests.conftest import Factory, LoginAs, post_form
from tests.helpers import eventually
from tests.ocpp.support import EDIT_FORM, raw_socket

SECRET = "tenant-a-private-vendor"


@pytest.mark.served
@pytest.mark.postgres_only
async def test_a_node_publishes_the_frames_of_the_charge_point_asked_for_and_deletes_them_when_renamed(
    app: Quart, factory: Factory, session: AsyncSession, login_as: LoginAs
) -> None:
    operator_a, operator_b = await factory.operator(), await factory.operator()
    team_a = await factory.team(operator_a)
    cp_a = await factory.charge_point(team_a)
    cp_b = await factory.charge_point(await factory.team(operator_b))
    admin_a = await factory.user(operator=operator_a, operator_role="admin", team=team_a, team_role="owner")
    registry = registry_of(app)

    async def row(charge_point_id: int | None) -> SharedFrames | None:
        return await session.get(SharedFrames, charge_point_id, populate_existing=True)

    async with raw_socket(app, cp_a.identity) as websocket:
        await websocket.send(json.dumps([2, "a1", "DataTransfer", {"vendorId": SECRET}]))
        assert json.loads(await websocket.recv())[:2] == [3, "a1"]
        # Asked for another charge point under this charger's identity: nothing is published.
        registry.bus.send(FRAMES_WANTED, charge_point=cp_b.id, identity=cp_a.identity)
        registry.bus.send(FRAMES_WANTED, charge_point=cp_a.id, identity=cp_a.identity)

        async def published() -> bool:
            found = await row(cp_a.id)
            return found is not None and any(SECRET in frame for frame in found.frames)

        await eventually(published, message="the frames asked for were not published")
        assert await row(cp_b.id) is None
        shown = await shared_log(session, cp_a.id or 0, cp_a.identity)
        assert shown.node == registry.node_name and any(SECRET in frame.text for frame in shown.frames)
        # Read under another identity (the charge point renamed), they are not shown.
        assert (await shared_log(session, cp_a.id or 0, "RENAMED-1")).frames == []

        response = await post_form(
            await login_as(admin_a), f"/charge-points/{cp_a.id}/edit", {**EDIT_FORM, "identity": "RENAMED-1"}
        )
        assert response.status_code in (200, 303), await response.get_data(as_text=True)

    async def deleted() -> bool:
        return await row(cp_a.id) is None

    await eventually(deleted, message="the renamed charge point's published frames were kept")


def test_frames_kept_packed_read_back_newest_first_and_malformed_ones_are_left_out() -> None:
    log = FrameLog(size=3)
    for n in range(4):
        log.add("CP-1", n % 2 == 0, f"frame {n}")
    packed = log.packed("CP-1")
    assert len(packed) == 3
    frames = unpack([*packed, "", "<not-a-time text", ">nan x", 7])  # type: ignore[list-item]
    assert [frame.text for frame in frames] == ["frame 3", "frame 2", "frame 1"]
    assert [frame.outgoing for frame in frames] == [False, True, False]
    assert frames == log.recent("CP-1")
