"""A NUL character anywhere in a request is a clear 400 on either database (PostgreSQL refuses NUL in text)."""

from __future__ import annotations

import pytest
from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.conftest import Factory, LoginAs, csrf_of, post_form
from tests.routes.api.support import bearer, demo_ids, make_token

pytestmark = pytest.mark.usefixtures("fast_hashing")


async def test_a_nul_in_a_form_query_or_path_is_refused_before_any_route(
    app: Quart, factory: Factory, login_as: LoginAs
) -> None:
    team = await factory.team()
    admin = await factory.user(team=team, team_role="admin")
    client = app.test_client()
    login = await client.post(
        "/login", form={"email": "a\x00@example.test", "password": "x", "csrf_token": await csrf_of(client)}
    )
    assert login.status_code == 400 and "NUL" in await login.get_data(as_text=True)
    signed_in = await login_as(admin)
    search = await signed_in.get(f"/teams/{team.id}/charge-points", query_string={"q": "Ea\x00see"})
    assert search.status_code == 400
    edit = await post_form(signed_in, f"/teams/{team.id}/charge-points/new", {"name": "Depot\x00 1"})
    assert edit.status_code == 400
    assert (await signed_in.get("/invitations/ab%00cd")).status_code == 400
    # Without one, the same requests are served.
    assert (await signed_in.get(f"/teams/{team.id}/charge-points", query_string={"q": "Easee"})).status_code == 200


async def test_a_nul_in_api_json_is_a_problem_response(app: Quart, session: AsyncSession, demo: object) -> None:
    token = await make_token(session)
    client = app.test_client()
    response = await client.patch(
        f"/api/v1/charge-points/{(await demo_ids(session))['kista']}",
        headers={**bearer(token), "Content-Type": "application/json"},
        data='{"name": "Depot\\u0000"}',
    )
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert "NUL" in (await response.get_json())["detail"]
