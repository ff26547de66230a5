"""The import page: choose a CSV file, see every line checked, import all or nothing, get the passwords once."""

from __future__ import annotations

import html
import io
import re
from urllib.parse import unquote

import pytest
from quart.testing import QuartClient
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from werkzeug.datastructures import FileStorage

from powerbank.models import AuditEntry, ChargePoint, Operator, Participation, Team
from powerbank.routes.teams import carry_text
from powerbank.rules.gsrn import make_facility_id
from powerbank.services.charge_points import IDENTITY_TAKEN
from powerbank.services.imports import MAX_IMPORT_ROWS
from powerbank.services.passwords import verify_secret
from tests.conftest import Factory, LoginAs, post_form

pytestmark = pytest.mark.usefixtures("fast_hashing")

HEADING = "Name;Identity;Brand;Model;Country;Price area;Facility ID"
GSRN_1, GSRN_2 = make_facility_id("20000000001"), make_facility_id("20000000002")
GOOD = "\r\n".join(
    [
        HEADING,
        f"Södermalm 1;SOD-1;Zaptec;Go;SE;SE3;{GSRN_1}",
        f"Södermalm 2;SOD-2;Zaptec;Go;Sweden;SE3;{GSRN_2}",
        "Amager 1;AMA-1;Easee;Home;DK;DK2;",
    ]
)
CONTENT_RE = re.compile(r'name="content" value="([^"]+)"')
DOWNLOAD_RE = re.compile(r'href="data:text/csv;charset=utf-8,([^"]+)" download="([^"]+)"')


async def owner_of_team(factory: Factory, login_as: LoginAs, **role: object) -> tuple[Team, QuartClient]:
    team = await factory.team(name="Stockholm Offices")
    user = await factory.user(team=team, team_role="owner", **role)  # type: ignore[arg-type]
    return team, await login_as(user)


async def upload(client: QuartClient, team: Team, data: bytes, filename: str = "charge points.csv") -> tuple[int, str]:
    """Choose a file on the import page and check it, as the browser sends it."""
    response = await client.post(
        f"/teams/{team.id}/charge-points/import/preview",
        form={"csrf_token": client.csrf_token},  # type: ignore[attr-defined]
        files={"file": FileStorage(io.BytesIO(data), filename=filename, content_type="text/csv")},
    )
    return response.status_code, await response.get_data(as_text=True)


async def count(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(ChargePoint))).one()


def problems_of(body: str) -> list[str]:
    """Return the rows of the Problems table as "line | column | problem"."""
    table = body.split('id="import-problems"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", table)
    return [html.unescape(" | ".join(row)) for row in rows]


async def test_a_checked_file_is_imported_whole_and_the_passwords_are_shown_once(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    team, client = await owner_of_team(factory, login_as)
    tab = await (await client.get(f"/teams/{team.id}/charge-points")).get_data(as_text=True)
    assert f'href="/teams/{team.id}/charge-points/import"' in tab
    form = await client.get(f"/teams/{team.id}/charge-points/import")
    assert form.status_code == 200
    assert 'type="file"' in await form.get_data(as_text=True)

    # A spreadsheet on Windows saves CSV in Windows-1252, separated by semicolons.
    status, preview = await upload(client, team, GOOD.encode("cp1252"))
    assert status == 200, preview
    assert "The file is good: importing it adds 3 charge points" in preview
    assert "Windows-1252" in preview and "semicolons" in preview
    assert "Södermalm 2" in preview and "Import 3 charge points" in preview
    assert await count(session) == 0, "the preview saved something"

    match = CONTENT_RE.search(preview)
    assert match
    response = await post_form(client, f"/teams/{team.id}/charge-points/import", {"content": match.group(1)})
    done = await response.get_data(as_text=True)
    assert response.status_code == 201, done
    assert response.headers["Cache-Control"] == "no-store"
    assert "3 charge points imported" in done

    stored = {cp.identity: cp for cp in await session.exec(select(ChargePoint).where(ChargePoint.team_id == team.id))}
    assert set(stored) == {"SOD-1", "SOD-2", "AMA-1"}
    assert stored["SOD-2"].name == "Södermalm 2" and stored["SOD-2"].country == "SE"
    assert stored["SOD-1"].facility_id == GSRN_1 and stored["AMA-1"].price_area == "DK2"

    download = DOWNLOAD_RE.search(done)
    assert download, "no CSV download of the passwords"
    assert download.group(2) == "Stockholm Offices OCPP passwords.csv"
    lines = unquote(download.group(1)).lstrip("\ufeff").splitlines()
    assert lines[0] == "Name,Identity,OCPP URL,Password"
    passwords = {}
    for line in lines[1:]:
        name, identity, url, password = line.split(",")
        assert url.endswith(f"/ocpp/{identity}") and f'<code class="secret">{password}</code>' in done
        passwords[identity] = password
    assert set(passwords) == set(stored)
    for identity, cp in stored.items():
        assert verify_secret(cp.ocpp_password_hash, passwords[identity])
        assert passwords[identity] not in cp.ocpp_password_hash

    audit = list(await session.exec(select(AuditEntry).where(AuditEntry.action == "charge_point.import")))
    assert sorted(entry.object_id for entry in audit) == sorted(cp.id for cp in stored.values())
    assert not any(password in str(entry.after) for entry in audit for password in passwords.values())
    # R6: the compatible charge point in DK2 is signed up by the system, as when added by hand.
    signed_up = list(
        await session.exec(select(Participation.charge_point_id).where(Participation.state == "signed_up"))
    )
    assert signed_up == [stored["AMA-1"].id]

    # Sending the same checked file again imports nothing more: its identities are taken now.
    again = await post_form(client, f"/teams/{team.id}/charge-points/import", {"content": match.group(1)})
    assert again.status_code == 422
    assert "SOD-1 is already the identity of Södermalm 1 in this team" in html.unescape(
        await again.get_data(as_text=True)
    )
    assert await count(session) == 3


@pytest.mark.parametrize(
    ("data", "encoding", "separator"),
    [
        (GOOD.replace(";", ",").encode("utf-8-sig"), "UTF-8 with BOM", "commas"),
        (GOOD.encode(), "UTF-8", "semicolons"),
        (GOOD.replace(";", "\t").encode("utf-16"), "UTF-16", "tabs"),
    ],
    ids=["utf-8 BOM, commas", "utf-8, semicolons", "utf-16, tabs"],
)
async def test_files_in_each_encoding_and_separator_read_the_same(
    factory: Factory, login_as: LoginAs, data: bytes, encoding: str, separator: str
) -> None:
    team, client = await owner_of_team(factory, login_as)
    status, preview = await upload(client, team, data)
    assert status == 200, preview
    assert f"{encoding}, values separated by {separator}" in preview
    assert "Södermalm 1" in preview and "Import 3 charge points" in preview


TOO_MANY = HEADING + "\n" + "\n".join(f"C{n};ID-{n};;;NO;;" for n in range(MAX_IMPORT_ROWS + 1))
BAD_FILES = {
    "no Identity column": (b"Name;Country\nA;SE\n", ["1 | — | The column Identity is missing"]),
    "unknown column": (
        HEADING.encode() + b";Colour\nA;A-1;;;NO;;;red\n",
        ['1 | — | Unknown column "Colour" (column 8)'],
    ),
    "too many values on a line": (
        f"{HEADING}\nA;A-1;;;NO;;;extra\nB;B-1;;;NO;;".encode(),
        ["2 | — | This line has 8 values; the heading names 7 columns."],
    ),
    "too few values on a line": (f"{HEADING}\nA;A-1;;;NO\n".encode(), ["2 | — | This line has 5 values"]),
    "identity twice in the file": (
        f"{HEADING}\nA;SAME-1;;;NO;;\nB;OTHER;;;NO;;\nC;SAME-1;;;NO;;".encode(),
        ["4 | Identity | SAME-1 is also on line 2."],
    ),
    "unknown country": (f"{HEADING}\nA;A-1;;;Atlantis;;".encode(), ["2 | Country | Choose a country from the list."]),
    "area of another country": (
        f"{HEADING}\nA;A-1;;;SE;DK2;{GSRN_1}".encode(),
        ["2 | Price area | Price area for Sweden must be one of SE1, SE2, SE3, SE4."],
    ),
    "invalid Facility ID": (
        f"{HEADING}\nA;A-1;;;SE;SE3;735999200000000010".encode(),
        ["2 | Facility ID | Facility ID check digit is wrong"],
    ),
    "Facility ID outside Sweden": (
        f"{HEADING}\nA;A-1;;;DK;DK1;{GSRN_1}".encode(),
        ["2 | Facility ID | A Facility ID is only used for charge points in Sweden."],
    ),
    "bad identity and missing name on one line": (
        f"{HEADING}\n;bad identity;;;NO;;".encode(),
        ["2 | Name | Name is required.", "2 | Identity | OCPP identity may only contain"],
    ),
    "more rows than allowed": (TOO_MANY.encode(), [f"— | — | The file holds {MAX_IMPORT_ROWS + 1:,} charge points."]),
    "a workbook": (b"PK\x03\x04" + b"\x00" * 100, ["— | — | This is a spreadsheet workbook, not a CSV file."]),
    "neither UTF-8 nor Windows-1252": (b"Name;Identity;Country\n\x81\x8d;A;SE\n", ["neither UTF-8 nor Windows-1252"]),
    "NUL characters": (b"Name;Identity;Country\nA\x00;A-1;SE\n", ["holds NUL characters"]),
    "empty": (b"", ["The file is empty."]),
    "only the heading": (HEADING.encode() + b"\n;;;;;;\n", ["holds no charge points"]),
}


@pytest.mark.parametrize(("data", "expected"), BAD_FILES.values(), ids=BAD_FILES.keys())
async def test_a_bad_file_says_what_is_wrong_on_which_line_and_nothing_is_saved(
    session: AsyncSession, factory: Factory, login_as: LoginAs, data: bytes, expected: list[str]
) -> None:
    team, client = await owner_of_team(factory, login_as)
    status, body = await upload(client, team, data)
    assert status == 422, body
    assert "Nothing was imported" in body and 'name="content"' not in body
    found = problems_of(body)
    for wanted in expected:
        assert any(wanted in problem for problem in found), f"{wanted!r} not in {found}"
    assert 'type="file"' in body, "no way to choose the corrected file"
    assert await count(session) == 0


async def test_an_identity_of_another_operator_is_taken_without_saying_whose(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    team, client = await owner_of_team(factory, login_as)
    rival = await factory.team(await factory.operator("Rival Charging AB"), name="Rival Team")
    await factory.charge_point(rival, name="Rival Secret Charger", identity="TAKEN-1")
    sibling = await factory.team(await session.get_one(Operator, team.operator_id), name="Sibling")
    await factory.charge_point(sibling, name="Sibling Charger", identity="TAKEN-2")
    status, body = await upload(client, team, f"{HEADING}\nMine;TAKEN-1;;;NO;;\nOurs;TAKEN-2;;;NO;;".encode())
    assert status == 422
    assert problems_of(body) == [f"2 | Identity | {IDENTITY_TAKEN}", f"3 | Identity | {IDENTITY_TAKEN}"]
    for secret in ("Rival", "Sibling"):
        assert secret not in body
    assert await count(session) == 2


async def test_a_file_larger_than_the_limit_is_refused_on_the_import_page(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    team, client = await owner_of_team(factory, login_as)
    status, body = await upload(client, team, (HEADING + "\n" + "A;A-1;;;NO;;\n" * 100_000).encode())
    assert status == 413
    assert "The file is larger than 1,024 KiB" in body and 'type="file"' in body
    assert await count(session) == 0


async def test_the_import_checks_the_file_again_and_saves_nothing_when_a_line_is_wrong(
    session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    team, client = await owner_of_team(factory, login_as)
    # What the browser sends back is the browser's: a forged file never skips the checks.
    forged = carry_text(f"{HEADING}\nGood;GOOD-1;;;NO;;\nBad;BAD 1;;;NO;;")
    response = await post_form(client, f"/teams/{team.id}/charge-points/import", {"content": forged})
    assert response.status_code == 422
    assert problems_of(await response.get_data(as_text=True)) == [
        "3 | Identity | OCPP identity may only contain letters, digits and - _ . :"
    ]
    garbled = await post_form(client, f"/teams/{team.id}/charge-points/import", {"content": "not a packed file"})
    assert garbled.status_code == 400
    assert "did not come back whole" in await garbled.get_data(as_text=True)
    assert await count(session) == 0


ROLES = [
    ({"team_role": "owner"}, 200),
    ({"team_role": "owner", "can_configure": False}, 403),
    ({"team_role": "admin", "can_configure": True}, 200),
    ({"team_role": "admin", "can_configure": False}, 403),
    ({"team_role": "member", "can_configure": False}, 403),
]


@pytest.mark.parametrize(("role", "allowed"), ROLES, ids=[str(role) for role, _ in ROLES])
async def test_only_those_who_configure_charge_points_may_import(
    session: AsyncSession, factory: Factory, login_as: LoginAs, role: dict[str, object], allowed: int
) -> None:
    team = await factory.team()
    client = await login_as(await factory.user(team=team, **role))  # type: ignore[arg-type]
    tab = await (await client.get(f"/teams/{team.id}/charge-points")).get_data(as_text=True)
    assert (f'href="/teams/{team.id}/charge-points/import"' in tab) is (allowed == 200)
    assert (await client.get(f"/teams/{team.id}/charge-points/import")).status_code == allowed
    status, _ = await upload(client, team, GOOD.encode())
    assert status == allowed
    response = await post_form(client, f"/teams/{team.id}/charge-points/import", {"content": carry_text(GOOD)})
    assert response.status_code == (201 if allowed == 200 else 403)
    assert await count(session) == (3 if allowed == 200 else 0)


async def test_another_operators_team_is_not_found(factory: Factory, login_as: LoginAs, session: AsyncSession) -> None:
    _, client = await owner_of_team(factory, login_as)
    other = await factory.team(await factory.operator(), name="Elsewhere")
    assert (await client.get(f"/teams/{other.id}/charge-points/import")).status_code == 404
    assert (await upload(client, other, GOOD.encode()))[0] == 404
    response = await post_form(client, f"/teams/{other.id}/charge-points/import", {"content": carry_text(GOOD)})
    assert response.status_code == 404
    assert (
        await session.exec(select(func.count()).select_from(ChargePoint).where(col(ChargePoint.team_id) == other.id))
    ).one() == 0
