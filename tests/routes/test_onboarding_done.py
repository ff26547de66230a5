"""Issue 18's "done when", on the demo data as `make run` serves it.

A CSV of 500 charge points with Facility IDs is imported into Stockholm Offices. The sign-up flow
then signs them all up in one Save, and the compatibility page finds "zaptec" as you type.
"""

from __future__ import annotations

import io
import re
from urllib.parse import urlencode

import pytest
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from werkzeug.datastructures import FileStorage

from powerbank.models import ChargePoint, Participation, ParticipationState, Team
from powerbank.rules.gsrn import make_facility_id
from tests.conftest import LoginAs, htmx_headers, post_form

pytestmark = pytest.mark.usefixtures("fast_hashing")


async def test_500_imported_charge_points_are_signed_up_in_one_save(
    session: AsyncSession, demo: object, login_as: LoginAs
) -> None:
    team = (await session.exec(select(Team).where(Team.name == "Stockholm Offices"))).one()
    client = await login_as("admin@demo.test")
    lines = ["Name;Identity;Brand;Model;Country;Price area;Facility ID"]
    lines += [f"Kungsholmen {n};KUNG-{n:03d};Zaptec;Go;SE;SE3;{make_facility_id(f'3{n:010d}')}" for n in range(500)]
    preview = await client.post(
        f"/teams/{team.id}/charge-points/import/preview",
        form={"csrf_token": client.csrf_token},  # type: ignore[attr-defined]
        files={"file": FileStorage(io.BytesIO("\r\n".join(lines).encode()), filename="fleet.csv")},
    )
    body = await preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Import 500 charge points" in body
    content = re.search(r'name="content" value="([^"]+)"', body)
    assert content
    imported = await post_form(client, f"/teams/{team.id}/charge-points/import", {"content": content.group(1)})
    assert imported.status_code == 201

    ids = list(await session.exec(select(ChargePoint.id).where(col(ChargePoint.identity).startswith("KUNG-"))))
    assert len(ids) == 500
    form = [("csrf_token", client.csrf_token), ("terms_version", "demo-v1"), ("accept_terms", "yes")]  # type: ignore[attr-defined]
    form += [("action", "selected"), *(("sign_up", str(cp_id)) for cp_id in ids)]
    saved = await client.post(
        f"/teams/{team.id}/powerbank/sign-up",
        data=urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", **htmx_headers(client)},
    )
    assert saved.status_code in (200, 303), await saved.get_data(as_text=True)
    signed_up = await session.exec(
        select(Participation.charge_point_id).where(
            col(Participation.charge_point_id).in_(ids), Participation.state == ParticipationState.SIGNED_UP
        )
    )
    assert len(list(signed_up)) == 500

    search = await client.get("/compatibility", query_string={"q": "zaptec"}, headers=htmx_headers(client))
    found = await search.get_data(as_text=True)
    assert search.status_code == 200 and "Zaptec" in found and "Easee" not in found
