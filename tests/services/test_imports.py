"""The CSV import service: reading files as spreadsheets write them, a constant number of queries whatever
the number of rows, all or nothing when an identity is taken meanwhile, and `powerbank import-charge-points`."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.cli import main
from powerbank.db import standalone_session
from powerbank.models import ChargePoint, Team
from powerbank.rules.gsrn import make_facility_id
from powerbank.services import imports
from powerbank.services.audit import SYSTEM
from powerbank.services.passwords import verify_secret
from powerbank.services.teams import create_operator
from powerbank.web import state
from tests.conftest import Factory
from tests.services.test_enrollment_concurrency import count_queries

HEADING = "Name;Identity;Brand;Model;Country;Price area;Facility ID"


def import_file(rows: int, prefix: str = "IMP") -> str:
    """Return an import file of ``rows`` charge points, alternately Swedish (with a Facility ID) and Danish."""
    lines = [HEADING]
    for n in range(rows):
        if n % 2:
            lines.append(f"Charger {n};{prefix}-{n:05d};Zaptec;Go;SE;SE3;{make_facility_id(f'{n:011d}')}")
        else:
            lines.append(f"Charger {n};{prefix}-{n:05d};Easee;Home;DK;DK2;")
    return "\n".join(lines) + "\n"


async def test_importing_runs_the_same_number_of_queries_for_10_and_1000_rows(
    app: Quart, session: AsyncSession, factory: Factory
) -> None:
    counts: dict[str, dict[int, int]] = {"preview": {}, "import": {}}
    for size in (10, 1_000):
        team = await factory.team()
        text = import_file(size, prefix=f"T{size}")

        async def check(team: Team = team, text: str = text) -> None:
            assert (await imports.preview_import(session, SYSTEM, team, text)).ok

        async def save(team: Team = team, text: str = text, size: int = size) -> None:
            assert len(await imports.import_charge_points(session, SYSTEM, team, text)) == size
            await session.commit()

        counts["preview"][size] = await count_queries(app, check)
        counts["import"][size] = await count_queries(app, save)
    assert counts["preview"][10] == counts["preview"][1_000] == 1
    # Charge points, read back, audit entries, and the DK2 automatic sign-ups with their history and
    # the notification telling of them.
    assert counts["import"][10] == counts["import"][1_000]
    assert counts["import"][1_000] <= 13
    stored = (await session.exec(select(func.count()).select_from(ChargePoint))).one()
    assert stored == 1_010


def test_reading_a_file_as_spreadsheets_write_it() -> None:
    text = "\n".join(
        [
            # Headings in any order, any case, with the spellings people use.
            "OCPP identity,name,COUNTRY,price_area,facility-id,Brand,Model",
            'STO-1,"Kista, garage",Sweden,SE3,7359 9920 0000 0000 17,Zaptec,Go',
            # A spreadsheet's empty rows and trailing separators.
            ",,,,,,",
            "",
            # A value over two lines: its problem is said at the line it starts on; the next line keeps its number.
            'STO-2,"Two\nlines",se,se3,,,,',
            "STO-3,Third,sweden,SE4,,,",
        ]
    )
    preview = imports.parse_import(text)
    assert [problem.text for problem in preview.problems] == [
        "Line 5, Name: Name contains characters that cannot be used."
    ]
    assert preview.separator == ","
    assert [(row.line, row.values["identity"], row.values["name"]) for row in preview.rows] == [
        (2, "STO-1", "Kista, garage"),
        (7, "STO-3", "Third"),
    ]
    first = preview.rows[0].values
    assert (first["country"], first["price_area"], first["facility_id"]) == ("SE", "SE3", "735999200000000017")
    assert (first["brand"], first["model"]) == ("Zaptec", "Go")


@pytest.mark.parametrize(
    ("data", "text", "encoding"),
    [
        (
            "Name;Identity;Country\nÅre;A;SE\n".encode("utf-8-sig"),
            "Name;Identity;Country\nÅre;A;SE\n",
            "UTF-8 with BOM",
        ),
        ("Name;Identity;Country\nÅre;A;SE\n".encode(), "Name;Identity;Country\nÅre;A;SE\n", "UTF-8"),
        ("Name;Identity;Country\nÅre €;A;SE\n".encode("cp1252"), "Name;Identity;Country\nÅre €;A;SE\n", "Windows-1252"),
        ("Name\tIdentity\tCountry\n".encode("utf-16"), "Name\tIdentity\tCountry\n", "UTF-16"),
    ],
    ids=["utf-8 BOM", "utf-8", "windows-1252", "utf-16"],
)
def test_decoding_each_encoding_spreadsheets_save_in(data: bytes, text: str, encoding: str) -> None:
    assert imports.decode_csv(data) == (text, encoding)


def test_a_file_over_the_byte_limit_is_refused_before_reading_it() -> None:
    with pytest.raises(imports.ImportRefused) as refused:
        imports.decode_csv(b"x" * (imports.MAX_IMPORT_BYTES + 1))
    assert "larger than 1,024 KiB" in refused.value.problems[0].text


async def test_an_identity_taken_between_the_check_and_the_save_saves_nothing(
    app: Quart, session: AsyncSession, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = await factory.team()
    team_id = team.id
    other = await factory.team(await factory.operator())
    original = imports._identities_taken

    async def checked_before_someone_else_saves(session: AsyncSession, team: Team, rows: Any) -> list[Any]:
        problems = await original(session, team, rows)
        # Someone adds IMP-00001 after the file was checked: only the unique index can see it now.
        async with state.sessionmaker(app)() as elsewhere:
            elsewhere.add(
                ChargePoint(
                    team_id=other.id or 0, name="Quick", identity="IMP-00001", country="NO", ocpp_password_hash="x"
                )
            )
            await elsewhere.commit()
        return problems

    monkeypatch.setattr(imports, "_identities_taken", checked_before_someone_else_saves)
    with pytest.raises(imports.ImportRefused) as refused:
        await imports.import_charge_points(session, SYSTEM, team, import_file(5))
    await session.rollback()
    assert "took one of these identities meanwhile" in refused.value.problems[0].text
    in_team = select(func.count()).select_from(ChargePoint).where(ChargePoint.team_id == team_id)
    assert (await session.exec(in_team)).one() == 0


async def _make_team(url: str, operator: str, team: str) -> None:
    async with standalone_session(url) as session:
        made = await create_operator(session, SYSTEM, operator)
        session.add(Team(operator_id=made.id or 0, name=team))
        await session.commit()


async def _stored(url: str) -> dict[str, ChargePoint]:
    async with standalone_session(url) as session:
        return {cp.identity: cp for cp in await session.exec(select(ChargePoint))}


def test_the_command_imports_a_file_and_prints_the_passwords_as_csv(
    migrated_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cli.db"
    shutil.copy(migrated_template, path)
    url = f"sqlite+aiosqlite:///{path}"
    monkeypatch.setenv("POWERBANK_DATABASE_URL", url)
    monkeypatch.setenv("POWERBANK_PUBLIC_URL", "https://hub.example.test/")
    for operator in ("Nordic Charge", "Other Operator"):
        asyncio.run(_make_team(url, operator, "Stockholm Offices"))
    file = tmp_path / "charge points.csv"
    file.write_bytes(import_file(4).encode("cp1252"))

    # Two operators have a team of that name: the command asks which.
    assert main(["import-charge-points", str(file), "--team", "Stockholm Offices"]) == 1
    assert "--operator" in capsys.readouterr().err
    args = ["import-charge-points", str(file), "--team", "Stockholm Offices", "--operator", "Nordic Charge"]
    assert main([*args, "--dry-run"]) == 0
    assert "it adds 4 charge points" in capsys.readouterr().out
    assert asyncio.run(_stored(url)) == {}

    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "Imported 4 charge points into Stockholm Offices" in err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["Name", "Identity", "OCPP URL", "Password"]
    stored = asyncio.run(_stored(url))
    assert sorted(stored) == sorted(row[1] for row in rows[1:]) == [f"IMP-{n:05d}" for n in range(4)]
    for name, identity, url_, password in rows[1:]:
        assert url_ == f"wss://hub.example.test/ocpp/{identity}"
        assert stored[identity].name == name and verify_secret(stored[identity].ocpp_password_hash, password)

    # The same file again: each line says its identity is taken, and nothing more is saved.
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "Line 2, Identity: IMP-00000 is already the identity of Charger 0 in this team." in err
    assert "Nothing was imported: 4 lines of the file have problems." in err
    assert len(asyncio.run(_stored(url))) == 4
    assert main(["import-charge-points", str(tmp_path / "missing.csv"), "--team", "Stockholm Offices"]) == 1
    assert "Cannot read" in capsys.readouterr().err
