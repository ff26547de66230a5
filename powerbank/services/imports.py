"""CSV import of charge points into a team: read the file, check every row, then save all or nothing.

The pages, the API and the command line share it. A file is checked whole before anything is
saved (the preview): its encoding, its columns, each row with the validators of the Add charge
point form, identities used twice in the file or already in the hub. Saving checks it again and
writes every charge point in a fixed number of statements, whatever the number of rows.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.errors import FormErrors, NotFoundError
from powerbank.i18n import gettext as _
from powerbank.i18n import ngettext
from powerbank.models import AuditEntry, ChargePoint, Operator, Team
from powerbank.rules.countries import COUNTRIES
from powerbank.services.access import Acting, actor_of
from powerbank.services.charge_points import (
    EDITABLE_FIELDS,
    IDENTITY_TAKEN,
    clean_charge_point_fields,
    require_configure,
)
from powerbank.services.enrollment import reevaluate, spreadsheet_text
from powerbank.services.passwords import generate_secret, hash_secret

# At most this many charge points in one file, and this many bytes (the pages' and the API's body limit).
MAX_IMPORT_ROWS = 10_000
MAX_IMPORT_BYTES = 1024 * 1024
# A page or an answer lists at most this many problems (a wrong file can have one on every line).
SHOWN_PROBLEMS = 1_000
# (field, column heading): the columns of an import file, in the order of the template.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "Name"),
    ("identity", "Identity"),
    ("brand", "Brand"),
    ("model", "Model"),
    ("country", "Country"),
    ("price_area", "Price area"),
    ("facility_id", "Facility ID"),
)
LABELS = dict(COLUMNS)
REQUIRED = ("name", "identity", "country")
# Headings people write for the same column; compared without case, spaces, dashes or underscores.
ALIASES = {
    "name": "name",
    "chargepointname": "name",
    "identity": "identity",
    "ocppidentity": "identity",
    "chargepointidentity": "identity",
    "brand": "brand",
    "vendor": "brand",
    "model": "model",
    "country": "country",
    "pricearea": "price_area",
    "area": "price_area",
    "facilityid": "facility_id",
    "anläggningsid": "facility_id",
    "gsrn": "facility_id",
}
SEPARATORS = (";", ",", "\t")
IMPORT_ACTION = "charge_point.import"


def save_as_csv() -> str:
    """What to do with a file that is not CSV text, in the reader's language."""
    return _("Save it as CSV (comma or semicolon separated), preferably CSV UTF-8.")


def split_advice() -> str:
    """What to do with a file of too many charge points, in the reader's language."""
    return _("Import at most %(count)s charge points at once: split the file.", count=f"{MAX_IMPORT_ROWS:,}")


def too_large() -> str:
    """Why a file over MAX_IMPORT_BYTES is refused, in the reader's language."""
    return _("The file is larger than %(kib)s KiB.", kib=f"{MAX_IMPORT_BYTES // 1024:,}") + " " + split_advice()


_COUNTRY_BY_NAME = {name.casefold(): code for code, name in COUNTRIES.items()}
_CHARGE_POINTS = ChargePoint.__table__  # type: ignore[attr-defined]
_AUDIT_LOG = AuditEntry.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ImportProblem:
    """Why a file, or one of its lines, cannot be imported."""

    line: int  # the line of the file (1 is the heading); 0 for the file as a whole
    column: str | None  # a field of COLUMNS, or None
    message: str

    @property
    def text(self) -> str:
        """Return the problem as one sentence that says where it is."""
        where = _("Line %(line)s", line=self.line) if self.line else _("File")
        if self.column:
            where += f", {_(LABELS[self.column])}"
        return f"{where}: {self.message}"


class ImportRefused(FormErrors):
    """Nothing was imported; ``problems`` says why, line by line."""

    def __init__(self, problems: Sequence[ImportProblem]) -> None:
        self.problems = list(problems)
        super().__init__({"file": summary(self.problems)})


@dataclass(frozen=True)
class ImportRow:
    """One charge point of the file, checked: its line and its clean values."""

    line: int
    values: dict[str, Any]


@dataclass
class ImportPreview:
    """What a file would import: every row checked, and every problem found."""

    rows: list[ImportRow] = field(default_factory=list)
    problems: list[ImportProblem] = field(default_factory=list)
    separator: str = ";"
    encoding: str = "UTF-8"

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.rows)

    @property
    def lines_with_problems(self) -> int:
        return len({problem.line for problem in self.problems if problem.line})


@dataclass(frozen=True)
class ImportedChargePoint:
    """A charge point the import created, with its OCPP password (shown only once)."""

    line: int
    id: int
    name: str
    identity: str
    ocpp_password: str
    values: dict[str, Any]


def summary(problems: Sequence[ImportProblem]) -> str:
    """Return one sentence saying that nothing was imported and how much is wrong."""
    lines = len({problem.line for problem in problems if problem.line})
    if not lines:
        if problems:
            return _("Nothing was imported: %(problem)s", problem=problems[0].message)
        return _("Nothing was imported.")
    return ngettext(
        "Nothing was imported: %(num)s line of the file have problems.",
        "Nothing was imported: %(num)s lines of the file have problems.",
        lines,
        num=f"{lines:,}",
    )


def decode_csv(data: bytes) -> tuple[str, str]:
    """Return the text of an uploaded file and the encoding it was in (UTF-8, with or without BOM, or Windows-1252).

    Raise ImportRefused for a file too large, a workbook, or anything that is not text.
    """
    if len(data) > MAX_IMPORT_BYTES:
        raise ImportRefused([_file_problem(too_large())])
    if data.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise ImportRefused([_file_problem(_("This is a spreadsheet workbook, not a CSV file.") + " " + save_as_csv())])
    for bom, encoding, label in (
        (codecs.BOM_UTF8, "utf-8", "UTF-8 with BOM"),
        (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
    ):
        if data.startswith(bom):
            try:
                return _text(data[len(bom) :].decode(encoding)), label
            except UnicodeDecodeError:
                raise ImportRefused(
                    [
                        _file_problem(
                            _("The file starts as %(encoding)s but is not.", encoding=label) + " " + save_as_csv()
                        )
                    ]
                ) from None
    try:
        return _text(data.decode("utf-8")), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        # What spreadsheets on Windows save as "CSV" (ä, ö and å are single bytes here).
        return _text(data.decode("cp1252")), "Windows-1252"
    except UnicodeDecodeError:
        raise ImportRefused(
            [_file_problem(_("The file is neither UTF-8 nor Windows-1252 text.") + " " + save_as_csv())]
        ) from None


def _file_problem(message: str) -> ImportProblem:
    return ImportProblem(0, None, message)


def _text(text: str) -> str:
    # NUL is in no CSV a spreadsheet writes (a UTF-16 file without its BOM is full of them).
    if "\x00" in text:
        raise ImportRefused(
            [_file_problem(_("The file holds NUL characters, so it is not a CSV text file.") + " " + save_as_csv())]
        )
    return text


def _heading_key(heading: str) -> str:
    return "".join(char for char in heading.casefold() if char not in " _-.\ufeff")


def _split(line: str, separator: str) -> list[str]:
    return next(csv.reader([line], delimiter=separator), [])


def _choose_separator(first_line: str) -> str:
    """Return the separator that makes the most known column headings of the first line."""

    def known(separator: str) -> int:
        return sum(1 for heading in _split(first_line, separator) if _heading_key(heading) in ALIASES)

    return max(SEPARATORS, key=lambda separator: (known(separator), first_line.count(separator)))


def _read_heading(cells: list[str]) -> tuple[list[str | None], list[ImportProblem]]:
    """Return the field of each column of the heading (None: an empty heading) and the heading's problems."""
    fields: list[str | None] = []
    problems: list[ImportProblem] = []
    known = ", ".join(label for _, label in COLUMNS)
    for number, heading in enumerate(cells, start=1):
        name = heading.strip().lstrip("\ufeff")
        if not name:
            fields.append(None)
            continue
        found = ALIASES.get(_heading_key(name))
        if found is None:
            problems.append(
                ImportProblem(1, None, f'Unknown column "{name[:40]}" (column {number}); the columns are {known}.')
            )
        elif found in fields:
            problems.append(
                ImportProblem(
                    1,
                    None,
                    _(
                        "The column %(column)s appears twice (column %(number)s).",
                        column=_(LABELS[found]),
                        number=number,
                    ),
                )
            )
        fields.append(found)
    for required in REQUIRED:
        if required not in fields:
            problems.append(
                ImportProblem(
                    1,
                    None,
                    _(
                        "The column %(column)s is missing; the columns are %(known)s.",
                        column=_(LABELS[required]),
                        known=known,
                    ),
                )
            )
    return fields, problems


def _country_code(value: str) -> str:
    """Return the country's code for a country written as a code or by its English name."""
    text = value.strip()
    return _COUNTRY_BY_NAME.get(text.casefold(), text)


def parse_import(text: str) -> ImportPreview:
    """Check a file's heading and every row without the database; the rows' identities are not yet checked."""
    preview = ImportPreview()
    text = text.lstrip("\ufeff")
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    if not first_line:
        preview.problems.append(_file_problem(_("The file is empty. Its first line names the columns.")))
        return preview
    preview.separator = _choose_separator(first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=preview.separator, strict=False)
    records: list[tuple[int, list[str]]] = []
    line = 1
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                records.append((line, cells))
            line = reader.line_num + 1
    except csv.Error as exc:
        preview.problems.append(ImportProblem(line, None, _("The line cannot be read as CSV (%(error)s).", error=exc)))
        return preview
    if not records:
        preview.problems.append(_file_problem(_("The file is empty. Its first line names the columns.")))
        return preview
    (heading_line, heading), rows = records[0], records[1:]
    fields, problems = _read_heading(heading)
    if heading_line != 1:
        problems = [ImportProblem(heading_line, p.column, p.message) for p in problems]
    if problems:
        preview.problems.extend(problems)
        return preview
    if not rows:
        preview.problems.append(_file_problem(_("The file names the columns but holds no charge points.")))
        return preview
    if len(rows) > MAX_IMPORT_ROWS:
        preview.problems.append(
            _file_problem(_("The file holds %(count)s charge points.", count=f"{len(rows):,}") + " " + split_advice())
        )
        return preview
    for line, cells in rows:
        extra = cells[len(fields) :]
        if len(cells) < len(fields) or any(cell.strip() for cell in extra):
            preview.problems.append(
                ImportProblem(
                    line,
                    None,
                    _(
                        "This line has %(values)s values; the heading names %(columns)s columns.",
                        values=len(cells),
                        columns=len(fields),
                    ),
                )
            )
            continue
        form = {name: cell for name, cell in zip(fields, cells, strict=False) if name is not None}
        if "country" in form:
            form["country"] = _country_code(form["country"])
        values, errors = clean_charge_point_fields(form)
        for name, message in errors.items():
            preview.problems.append(ImportProblem(line, name, message))
        if not errors:
            preview.rows.append(ImportRow(line, values))
    return preview


def _duplicates_in_file(rows: Iterable[ImportRow]) -> list[ImportProblem]:
    first_line: dict[str, int] = {}
    problems = []
    for row in rows:
        identity = row.values["identity"]
        if identity in first_line:
            problems.append(ImportProblem(row.line, "identity", f"{identity} is also on line {first_line[identity]}."))
        else:
            first_line[identity] = row.line
    return problems


async def _identities_taken(session: AsyncSession, team: Team, rows: Sequence[ImportRow]) -> list[ImportProblem]:
    """Return a problem for each row whose identity is already in the hub (one query)."""
    identities = list({row.values["identity"] for row in rows})
    if not identities:
        return []
    found = await session.exec(
        select(ChargePoint.identity, ChargePoint.team_id, ChargePoint.name).where(
            col(ChargePoint.identity).in_(identities)
        )
    )
    taken = {identity: (team_id, name) for identity, team_id, name in found}
    problems = []
    for row in rows:
        owner = taken.get(row.values["identity"])
        if owner is None:
            continue
        # Only this team's own charge point is named: another team's or operator's is not the caller's to know.
        message = (
            f"{row.values['identity']} is already the identity of {owner[1]} in this team."
            if owner[0] == team.id
            else IDENTITY_TAKEN
        )
        problems.append(ImportProblem(row.line, "identity", message))
    return problems


async def preview_import(session: AsyncSession, by: Acting, team: Team, text: str) -> ImportPreview:
    """Check a file for ``team`` whole, saving nothing: every row, duplicates in it and in the hub (one query)."""
    require_configure(by, team)
    preview = parse_import(text)
    if preview.rows and not any(problem.line in (0, 1) for problem in preview.problems):
        preview.problems.extend(_duplicates_in_file(preview.rows))
        preview.problems.extend(await _identities_taken(session, team, preview.rows))
        preview.problems.sort(key=lambda problem: problem.line)
    return preview


async def import_charge_points(session: AsyncSession, by: Acting, team: Team, text: str) -> list[ImportedChargePoint]:
    """Import every charge point of a file into ``team``, or none (ImportRefused says why, per line).

    Each gets a new OCPP password, returned here and stored only hashed. The number of statements
    does not depend on the number of rows.
    """
    preview = await preview_import(session, by, team, text)
    if not preview.ok:
        raise ImportRefused(preview.problems or [_file_problem(_("The file holds no charge points."))])
    now = utcnow()
    passwords = [generate_secret() for _ in preview.rows]
    try:
        await session.exec(
            insert(_CHARGE_POINTS),
            params=[
                {
                    "team_id": team.id,
                    "firmware": "",
                    "serial": "",
                    **row.values,
                    "ocpp_password_hash": hash_secret(password),
                    "online": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for row, password in zip(preview.rows, passwords, strict=True)
            ],
        )
    except IntegrityError as exc:
        if "identity" not in str(exc.orig):
            raise
        raise ImportRefused(
            [_file_problem(_("Another charge point took one of these identities meanwhile. Check the file again."))]
        ) from exc
    identities = [row.values["identity"] for row in preview.rows]
    created = await session.exec(
        select(ChargePoint.identity, ChargePoint.id).where(
            ChargePoint.team_id == team.id, col(ChargePoint.identity).in_(identities)
        )
    )
    id_of = {identity: cp_id or 0 for identity, cp_id in created}
    imported = [
        ImportedChargePoint(
            row.line, id_of[row.values["identity"]], row.values["name"], row.values["identity"], password, row.values
        )
        for row, password in zip(preview.rows, passwords, strict=True)
    ]
    await _record_imports(session, by, team, imported)
    await reevaluate(session, [item.id for item in imported])
    return imported


async def _record_imports(
    session: AsyncSession, by: Acting, team: Team, imported: Sequence[ImportedChargePoint]
) -> None:
    """Write one audit entry per imported charge point, as adding it by hand does (one statement)."""
    actor = actor_of(by)
    now = utcnow()
    entries = [
        {
            "at": now,
            "operator_id": team.operator_id,
            "actor_user_id": actor.user_id,
            "actor": actor.label,
            "action": IMPORT_ACTION,
            "object_type": ChargePoint.__name__,
            "object_id": item.id,
            "object_label": item.name,
            "before": None,
            "after": {name: item.values[name] for name in EDITABLE_FIELDS},
        }
        for item in imported
    ]
    await session.exec(insert(_AUDIT_LOG), params=entries)


CREDENTIAL_COLUMNS = ("Name", "Identity", "OCPP URL", "Password")


def credentials_csv(imported: Sequence[ImportedChargePoint], ocpp_url: Callable[[str], str]) -> str:
    """Return the CSV of the new charge points' OCPP credentials (no cell is a spreadsheet formula)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CREDENTIAL_COLUMNS)
    for item in imported:
        cells = (item.name, item.identity, ocpp_url(item.identity), item.ocpp_password)
        writer.writerow([spreadsheet_text(cell) for cell in cells])
    return out.getvalue()


def template_csv() -> str:
    """Return an import file with only its heading, for people to fill in."""
    return ";".join(label for _, label in COLUMNS) + "\r\n"


async def find_team(session: AsyncSession, team_name: str, operator_name: str | None = None) -> Team:
    """Return the team with this name (of this operator); NotFoundError if there is none, or several."""
    query = (
        select(Team, Operator.name)
        .join(Operator, col(Operator.id) == col(Team.operator_id))
        .where(Team.name == team_name)
    )
    if operator_name:
        query = query.where(Operator.name == operator_name)
    found = list(await session.exec(query))
    if not found:
        owner = f" of {operator_name}" if operator_name else ""
        raise NotFoundError(f"No team{owner} is named {team_name!r}.")
    if len(found) > 1:
        operators = ", ".join(sorted(name for _, name in found))
        raise NotFoundError(
            f"Several operators have a team named {team_name!r} ({operators}): name one with --operator."
        )
    return found[0][0]
