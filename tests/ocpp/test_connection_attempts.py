"""Refused OCPP connections: what the Connection attempts page shows to whom, and what a flood may store.

Chargers connect over a real websocket (the hub served by Hypercorn); the page is read as a logged-in admin.
"""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import event
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from powerbank.models import ConnectionAttempt
from powerbank.services.chargers import (
    ATTEMPT_MERGE_WINDOW,
    ATTEMPT_REPEAT_INTERVAL,
    ATTEMPT_REPEATS_AT_ONCE,
    ATTEMPT_ROWS_PER_ADDRESS,
    ATTEMPT_ROWS_PER_WINDOW,
    ATTEMPT_WRITES_PER_ADDRESS,
    AttemptThrottle,
)
from powerbank.web import state
from tests.conftest import TEST_PASSWORD, Factory, LoginAs

pytestmark = pytest.mark.served

# Connection attempts stored or counted, as they reach the database.
ATTEMPT_WRITE = re.compile(r"^\s*(INSERT INTO|UPDATE)\s+\"?connection_attempt\b", re.IGNORECASE)


async def refused(app: Quart, identity: str, password: str = "not-the-password", source: str = "127.0.0.1") -> None:
    """Try to connect as ``identity`` from the local address ``source``; the hub must answer 401."""
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    with pytest.raises(InvalidStatus) as refusal:
        async with connect(
            f"{app.config['TEST_OCPP_URL']}/{identity}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Basic {token}"},
            local_addr=(source, 0),
        ):
            pass
    assert refusal.value.response.status_code == 401


async def page(app: Quart, login_as: LoginAs, factory: Factory, operator: Any) -> str:
    client = await login_as(await factory.user(operator=operator, operator_role="admin"))
    response = await client.get(f"/operators/{operator.id}/connection-attempts")
    assert response.status_code == 200
    return str(await response.get_data(as_text=True))


async def test_another_operators_admin_never_sees_where_a_charger_connects_from(
    app: Quart, factory: Factory, login_as: LoginAs
) -> None:
    operator_a, operator_b = await factory.operator(), await factory.operator()
    registered = await factory.charge_point(await factory.team(operator_a), identity="A-DEPOT-1")
    await factory.team(operator_b)
    # A's depot: a registered charger with a wrong password, and a new one A has not registered yet.
    await refused(app, registered.identity, source="127.0.0.2")
    await refused(app, "A-DEPOT-2", password=TEST_PASSWORD, source="127.0.0.3")

    seen_by_b = await page(app, login_as, factory, operator_b)
    assert "A-DEPOT-1" not in seen_by_b
    assert "A-DEPOT-2" in seen_by_b, "an unknown identity is listed for every operator, so its owner can register it"
    assert "127.0.0.2" not in seen_by_b and "127.0.0.3" not in seen_by_b

    seen_by_a = await page(app, login_as, factory, operator_a)
    assert "127.0.0.2" in seen_by_a, "an operator sees where its own charge points connect from"
    assert "127.0.0.3" not in seen_by_a, "an unknown identity may be anyone's charger: no operator sees its address"


async def test_an_unknown_identity_is_listed_with_its_register_shortcut_but_no_address(
    app: Quart, factory: Factory, session: AsyncSession, login_as: LoginAs
) -> None:
    operator = await factory.operator()
    team = await factory.team(operator, name="Depot")
    for _ in range(2):
        await refused(app, "NEW-CP-7", source="127.0.0.4")

    html = await page(app, login_as, factory, operator)
    row = re.search(r"<tr>\s*<td><code>NEW-CP-7</code>.*?</tr>", html, re.DOTALL)
    assert row is not None
    assert "127.0.0.4" not in row.group(0) and "Not shown" in row.group(0)
    assert re.search(r"<td>2</td>", row.group(0)), "both attempts are counted"
    assert "Register charge point" in row.group(0) and 'name="identity" value="NEW-CP-7"' in row.group(0)

    client = await login_as(await factory.user(operator=operator, operator_role="admin"))
    shortcut = await client.get(
        f"/operators/{operator.id}/connection-attempts/register?identity=NEW-CP-7&team_id={team.id}"
    )
    assert shortcut.status_code == 303
    assert 'value="NEW-CP-7"' in await (await client.get(shortcut.headers["Location"])).get_data(as_text=True)
    stored = (await session.exec(select(ConnectionAttempt))).one()
    assert stored.remote_address == "127.0.0.4", "the address is kept for the hub's administrators, only not shown"


async def test_a_flood_of_refused_upgrades_from_one_address_stores_and_writes_at_most_the_cap(
    app: Quart, session: AsyncSession
) -> None:
    writes: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if ATTEMPT_WRITE.match(statement):
            writes.append(statement)

    engine = state.engine(app).sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        # 1,000 unauthenticated upgrades: identities guessed anew and repeated, as a scanner does.
        for batch in range(20):
            await asyncio.gather(*(refused(app, f"GUESS-{(batch * 50 + n) % 150}") for n in range(50)))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    stored = list(await session.exec(select(ConnectionAttempt).order_by(col(ConnectionAttempt.id))))
    assert 0 < len(stored) <= ATTEMPT_ROWS_PER_ADDRESS
    assert len(writes) <= ATTEMPT_WRITES_PER_ADDRESS, f"{len(writes)} writes for one address"

    # Another charger, elsewhere, is still listed.
    await refused(app, "ELSEWHERE-1", source="127.0.0.5")
    assert (await session.exec(select(ConnectionAttempt).where(ConnectionAttempt.identity == "ELSEWHERE-1"))).first()


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_retrying_charger_is_counted_at_once_then_once_a_minute_with_nothing_lost() -> None:
    clock = Clock()
    throttle = AttemptThrottle(clock)
    written = [throttle.admit("GHOST", "192.0.2.1") for _ in range(ATTEMPT_REPEATS_AT_ONCE + 10)]
    assert written == [1] * ATTEMPT_REPEATS_AT_ONCE + [0] * 10
    clock.now += ATTEMPT_REPEAT_INTERVAL.total_seconds()
    assert throttle.admit("GHOST", "192.0.2.1") == 11, "the repeats held back are added to the next write"


def test_attempts_from_many_addresses_are_capped_overall_until_the_window_turns() -> None:
    clock = Clock()
    throttle = AttemptThrottle(clock)
    rows = sum(1 for n in range(ATTEMPT_ROWS_PER_WINDOW + 50) if throttle.admit(f"GUESS-{n}", f"2001:db8::{n:x}") == 1)
    assert rows == ATTEMPT_ROWS_PER_WINDOW
    assert throttle.prune_due() and not throttle.prune_due()
    clock.now += ATTEMPT_MERGE_WINDOW.total_seconds()
    assert throttle.admit("NEW-CP", "2001:db8::1") == 1
    assert throttle.prune_due()


async def test_an_identity_no_charge_point_could_have_is_refused_without_a_lookup_and_listed_legibly(
    app: Quart, session: AsyncSession
) -> None:
    # A NUL (which PostgreSQL cannot hold in text) and a path far longer than any identity.
    await refused(app, "EVIL%00ONE")
    await refused(app, "X" * 3000)
    listed = {row.identity for row in await session.exec(select(ConnectionAttempt))}
    assert listed == {"EVIL\ufffdONE", "X" * 100}
