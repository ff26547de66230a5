"""Chargers connecting together are looked up together: one query for many, each answered its own."""

from __future__ import annotations

import asyncio

from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.ocpp.logins import LoginLookups
from powerbank.web import state
from tests.conftest import Factory


async def test_chargers_looked_up_together_share_a_query_and_each_gets_its_own(
    app: Quart, factory: Factory, session: AsyncSession
) -> None:
    team = await factory.team()
    known = [await factory.charge_point(team) for _ in range(5)]
    lookups = LoginLookups(state.sessionmaker(app), max_batch=4)
    wanted = [cp.identity for cp in known] + ["NOT-A-CHARGER", "bad\x00identity", known[0].identity]
    found = await asyncio.gather(*(lookups.find(identity) for identity in wanted))
    for cp, login in zip(known, found, strict=False):
        assert login is not None
        assert (login.charge_point_id, login.password_hash, login.security_profile) == (
            cp.id,
            cp.ocpp_password_hash,
            cp.security_profile,
        )
        assert login.operator_id == team.operator_id
    assert found[5] is None and found[6] is None
    assert found[7] == found[0]
    # Seven identities (one asked twice) in the same moment, four at most a query: two queries.
    assert lookups.queries == 2


async def test_a_database_error_reaches_every_caller_of_its_batch(app: Quart, factory: Factory) -> None:
    lookups = LoginLookups(state.sessionmaker(app))

    class Broken(Exception):
        pass

    async def broken(*_: object) -> None:
        raise Broken()

    import powerbank.services.chargers as chargers

    original = chargers.find_logins
    chargers.find_logins = broken  # type: ignore[assignment]
    try:
        results = await asyncio.gather(lookups.find("CP-1"), lookups.find("CP-2"), return_exceptions=True)
    finally:
        chargers.find_logins = original
    assert all(isinstance(result, Broken) for result in results)
