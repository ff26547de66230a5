"""Facility IDs in bulk: lines pasted or uploaded into the Swedish sign-up flow fill the table before Save."""

from __future__ import annotations

import io
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from quart.testing import QuartClient
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from werkzeug.datastructures import FileStorage

from powerbank.models import ChargePoint, Participation, Team
from powerbank.rules.gsrn import make_facility_id
from powerbank.services.enrollment import MAX_PASTE_BYTES, MAX_PASTE_LINES
from tests.conftest import Factory, LoginAs, htmx_headers, post_form

SOLNA_1 = make_facility_id("20000000001")
SOLNA_2 = make_facility_id("20000000002")
SODERMALM = make_facility_id("20000000003")
TOO_LONG = "The list is too long: at most 10,000 lines and 512 KiB."
NOT_TEXT = "The file is not text in UTF-8 or Windows-1252."


def squash(html: str) -> str:
    return re.sub(r"\s+", " ", html)


async def stockholm(session: AsyncSession) -> tuple[Team, dict[str, ChargePoint]]:
    team = (await session.exec(select(Team).where(Team.name == "Stockholm Offices"))).one()
    rows = await session.exec(select(ChargePoint).where(ChargePoint.team_id == team.id))
    return team, {cp.identity: cp for cp in rows}


async def paste(client: QuartClient, team: Team, text: str, extra: list[tuple[str, str]] | None = None) -> Any:
    """Press "Fill in from the pasted lines" of the sign-up form, as htmx sends it (URL-encoded)."""
    pairs = [("csrf_token", client.csrf_token), *(extra or []), ("pasted_facility_ids", text), ("action", "paste")]  # type: ignore[attr-defined]
    headers = {"Content-Type": "application/x-www-form-urlencoded", **htmx_headers(client)}
    return await client.post(
        f"/teams/{team.id}/powerbank/sign-up/facility-ids", data=urlencode(pairs).encode(), headers=headers
    )


async def upload(client: QuartClient, team: Team, data: bytes, filename: str = "facility-ids.csv") -> Any:
    """Choose a file and press "Fill in from the file" (a multipart form of its own)."""
    return await client.post(
        f"/teams/{team.id}/powerbank/sign-up/facility-ids",
        form={"csrf_token": client.csrf_token},  # type: ignore[attr-defined]
        files={"facility_ids_file": FileStorage(io.BytesIO(data), filename=filename)},
        headers=htmx_headers(client),
    )


def input_value(html: str, cp: ChargePoint) -> str:
    match = re.search(rf'id="facility-id-{cp.id}" name="facility_id_{cp.id}"[^>]*? value="([^"]*)"', html)
    assert match, f"no Facility ID input for {cp.name}"
    return match.group(1)


def problems(html: str) -> list[tuple[int, str]]:
    """Return the (line, reason) pairs of the "Lines not used" table."""
    table = html.split("<caption>Lines not used</caption>", 1)
    if len(table) == 1:
        return []
    body = table[1].split("</table>", 1)[0]
    return [
        (int(line), why)
        for line, why in re.findall(r"<tr><td>(\d+)</td><td><code>.*?</code></td><td>(.*?)</td></tr>", body)
    ]


async def stored(session: AsyncSession, cps: dict[str, ChargePoint]) -> dict[str, str | None]:
    """Read the stored Facility IDs afresh (columns, not the loaded objects), as the next request would."""
    ids = [cp.id for cp in cps.values()]
    rows = await session.exec(select(ChargePoint.identity, ChargePoint.facility_id).where(col(ChargePoint.id).in_(ids)))
    return dict(rows.all())


async def test_pasted_lines_fill_the_table_and_unusable_lines_are_listed_with_their_reason(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    team, cps = await stockholm(session)
    client = await login_as("owner@demo.test")
    page = squash(await (await client.get(f"/teams/{team.id}/powerbank/sign-up")).get_data(as_text=True))
    assert '<label for="facility-id-lines">Lines of identity or name, then Facility ID</label>' in page
    assert '<input type="file" id="facility-id-file" name="facility_ids_file" form="facility-id-upload"' in page
    # The example in the hint is a valid Facility ID.
    example = re.search(r"e\.g\. <code>STO-001;(\d+)</code>", page)
    assert example and example.group(1) == make_facility_id("10000000001")
    before = await stored(session, cps)
    text = "\r\n".join(
        [
            "Identity;Facility ID",  # a header: skipped
            f"STO-003; {SOLNA_1[:6]} {SOLNA_1[6:12]}-{SOLNA_1[12:]}",  # spaces and dashes are ignored
            f"  solna   2 ;{SOLNA_2};;",  # a name, without regard to case and spacing; empty trailing columns
            "",
            f"STO-999;{SODERMALM}",
            f"Södermalm;{SODERMALM[:-1]}{(int(SODERMALM[-1]) + 1) % 10}",
            "Gamla Stan",
            f"CPH-001;{SODERMALM}",  # another team's charge point
            f"STO-003;{SOLNA_2}",
            f"STO-003;{SOLNA_1}",  # the same again: fine
        ]
    )

    response = await paste(client, team, text)

    assert response.status_code == 200
    html = squash(await response.get_data(as_text=True))
    assert "Filled in 2 Facility IDs from your list; 5 lines could not be used (listed below). " in html
    assert "Nothing is saved until you click Save." in html
    assert input_value(html, cps["STO-003"]) == SOLNA_1
    assert input_value(html, cps["STO-004"]) == SOLNA_2
    assert input_value(html, cps["STO-005"]) == ""
    assert f'id="facility-id-message-{cps["STO-004"].id}" aria-live="polite">From line 3 of your list' in html
    assert problems(html) == [
        (5, "No charge point of this team has the identity or name “STO-999”."),
        (6, f"Facility ID check digit is wrong: the last digit should be {SODERMALM[-1]}."),
        (7, "Expected two columns, identity or name and Facility ID, separated by ; , or a tab; this has 1 column."),
        (8, "No charge point of this team has the identity or name “CPH-001”."),
        (9, "Solna 1 has another Facility ID on line 2."),
    ]
    # The list stays in the box to be fixed; nothing is stored until Save.
    assert "STO-999" in html.split('id="facility-id-lines"', 1)[1].split("</textarea>", 1)[0]
    assert await stored(session, cps) == before

    # Save with what the table now shows: Solna 1 and 2 are signed up with the pasted Facility IDs.
    saved = await post_form(
        client,
        f"/teams/{team.id}/powerbank/sign-up",
        {
            "terms_version": "demo-v1",
            "accept_terms": "yes",
            "action": "selected",
            "sign_up": str(cps["STO-003"].id),
            f"facility_id_{cps['STO-003'].id}": input_value(html, cps["STO-003"]),
        },
    )
    assert saved.status_code == 303
    assert (await stored(session, cps))["STO-003"] == SOLNA_1


async def test_ticks_and_typed_ids_survive_a_paste_and_the_pasted_id_wins(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    team, cps = await stockholm(session)
    client = await login_as("owner@demo.test")
    typed = make_facility_id("30000000005")
    extra = [
        ("terms_version", "demo-v1"),
        ("accept_terms", "yes"),
        ("sign_up", str(cps["STO-005"].id)),
        (f"facility_id_{cps['STO-005'].id}", typed),
        (f"facility_id_{cps['STO-003'].id}", make_facility_id("30000000003")),
    ]

    html = squash(
        await (await paste(client, team, f"STO-003\t{SOLNA_1}\nSolna 2\t{SOLNA_2}", extra)).get_data(as_text=True)
    )

    assert input_value(html, cps["STO-005"]) == typed
    assert input_value(html, cps["STO-003"]) == SOLNA_1
    assert re.search(rf'id="sign-up-{cps["STO-005"].id}" name="sign_up" value="{cps["STO-005"].id}" checked', html)
    assert 'id="accept-terms" name="accept_terms" value="yes" data-accept-terms checked' in html
    assert problems(html) == []
    # Every line was used, so the box is empty again.
    assert 'aria-describedby="facility-id-lines-hint"></textarea>' in html


@pytest.mark.parametrize(
    ("encoding", "separator"),
    [("utf-8", ";"), ("utf-8-sig", ","), ("cp1252", ";"), ("cp1252", "\t")],
    ids=["UTF-8", "UTF-8 with BOM, commas", "Windows-1252", "Windows-1252, tabs"],
)
async def test_an_uploaded_file_in_the_encodings_spreadsheets_write_fills_the_table(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs, encoding: str, separator: str
) -> None:
    team, cps = await stockholm(session)
    client = await login_as("owner@demo.test")
    lines = [f"Name{separator}Anläggnings-ID", f"Södermalm{separator}{SODERMALM}", f"Solna 1{separator}{SOLNA_1}"]
    data = "\r\n".join(lines).encode(encoding)

    response = await upload(client, team, data)

    assert response.status_code == 200
    html = squash(await response.get_data(as_text=True))
    assert "Filled in 2 Facility IDs from your list. Nothing is saved until you click Save." in html
    assert input_value(html, cps["STO-005"]) == SODERMALM
    assert input_value(html, cps["STO-003"]) == SOLNA_1
    assert problems(html) == []


@pytest.mark.parametrize(
    ("how", "content", "message"),
    [
        ("paste", "\n".join(f"STO-003;{SOLNA_1}" for _ in range(MAX_PASTE_LINES + 1)), TOO_LONG),
        ("paste", "x" * (MAX_PASTE_BYTES + 1), TOO_LONG),
        ("paste", " \n\n ", "Paste lines of identity or name and Facility ID, or choose a file."),
        ("file", b"\n".join(b"STO-003;" + SOLNA_1.encode() for _ in range(MAX_PASTE_LINES + 1)), TOO_LONG),
        ("file", b"a;" * (MAX_PASTE_BYTES // 2 + 1), TOO_LONG),
        ("file", f"STO-003;{SOLNA_1}".encode("utf-16"), NOT_TEXT),
        ("file", b"STO-003;\x81\x8d\x8f", NOT_TEXT),
        ("file", b"STO-003;735999\x00", NOT_TEXT),
    ],
    ids=["10,001 lines", "too many bytes", "nothing", "10,001 lines file", "large file", "UTF-16", "not text", "NUL"],
)
async def test_a_list_that_cannot_be_read_is_refused_whole_with_a_clear_error(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs, how: str, content: Any, message: str
) -> None:
    team, cps = await stockholm(session)
    client = await login_as("owner@demo.test")
    response = await (paste(client, team, content) if how == "paste" else upload(client, team, content))
    assert response.status_code == 422
    html = squash(await response.get_data(as_text=True))
    assert f'<p class="error" id="facility-id-lines-error" role="alert">{message}</p>' in html
    assert 'aria-describedby="facility-id-lines-hint facility-id-lines-error" aria-invalid="true"' in html
    assert all(input_value(html, cp) == (cp.facility_id or "") for identity, cp in cps.items())


async def test_names_shared_by_two_charge_points_and_non_swedish_ones_are_refused_per_line(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    team = await factory.team()
    twin_a = await factory.charge_point(team, name="Twin", country="SE", price_area="SE3")
    await factory.charge_point(team, name="twin", country="SE", price_area="SE3")
    await factory.charge_point(team, name="Copenhagen", country="DK", price_area="DK1")
    client = await login_as(await factory.user(team=team, team_role="owner"))

    text = f"Twin;{SOLNA_1}\nCopenhagen;{SOLNA_2}\n{twin_a.identity};{SOLNA_1}\n<b>bold</b>;{SOLNA_2}"
    html = squash(await (await paste(client, team, text)).get_data(as_text=True))

    assert problems(html) == [
        (1, "2 charge points of this team are called “Twin”: use the identity."),
        (2, "Copenhagen is not in Sweden: it needs no Facility ID."),
        (4, "No charge point of this team has the identity or name “&lt;b&gt;bold&lt;/b&gt;”."),
    ]
    assert input_value(html, twin_a) == SOLNA_1
    assert "<b>bold</b>" not in html


async def test_a_team_without_swedish_charge_points_shows_no_list_box(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    team = (await session.exec(select(Team).where(Team.name == "Copenhagen Fleet"))).one()
    client = await login_as("owner@demo.test")
    html = await (await client.get(f"/teams/{team.id}/powerbank/sign-up")).get_data(as_text=True)
    assert "facility-id-lines" not in html and "facility-id-upload" not in html


PERMISSIONS = [
    ("owner@demo.test", 200),
    ("operator.manager@demo.test", 200),
    ("readonly.admin@demo.test", 403),
    ("member@demo.test", 403),
    ("fjord.admin@demo.test", 404),
]


@pytest.mark.parametrize(("email", "expected"), PERMISSIONS, ids=[email for email, _ in PERMISSIONS])
async def test_only_those_who_may_sign_up_fill_in_facility_ids(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs, email: str, expected: int
) -> None:
    team, cps = await stockholm(session)
    client = await login_as(email)
    response = await paste(client, team, f"STO-003;{SOLNA_1}")
    assert response.status_code == expected
    html = await response.get_data(as_text=True)
    assert (SOLNA_1 in html) == (expected == 200)
    page = await (await client.get(f"/teams/{team.id}/powerbank/sign-up")).get_data(as_text=True)
    assert ('id="facility-id-lines"' in page) == (expected == 200)
    # Filling in never signs anything up nor stores a Facility ID.
    assert (
        await session.exec(select(Participation).where(Participation.charge_point_id == cps["STO-003"].id))
    ).first() is None
    assert (await stored(session, cps))["STO-003"] is None


async def test_the_fill_in_post_needs_the_csrf_token(
    session: AsyncSession, demo: list[ChargePoint], login_as: LoginAs
) -> None:
    team, _ = await stockholm(session)
    client = await login_as("owner@demo.test")
    response = await client.post(
        f"/teams/{team.id}/powerbank/sign-up/facility-ids", form={"pasted_facility_ids": f"STO-003;{SOLNA_1}"}
    )
    assert response.status_code == 400
