"""Charge points: the register of each team, with validation of everything typed in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.errors import FormErrors, NotFoundError
from powerbank.i18n import gettext as _
from powerbank.models import ChargePoint, Team
from powerbank.rules.eligibility import needs_facility_id
from powerbank.rules.gsrn import clean_facility_id
from powerbank.rules.permissions import Permission, Principal, can_on_team
from powerbank.rules.validators import (
    ValidationError,
    clean_country,
    clean_identity,
    clean_name,
    clean_optional,
    clean_price_area,
    page_number,
)
from powerbank.services.access import Acting, actor_of, require_on_team
from powerbank.services.audit import record
from powerbank.services.chargers import disconnect_after_commit
from powerbank.services.enrollment import reevaluate, release_charge_points
from powerbank.services.passwords import generate_secret, hash_secret

SORT_COLUMNS: dict[str, Any] = {
    "name": ChargePoint.name,
    "identity": ChargePoint.identity,
    "model": ChargePoint.brand,
    "country": ChargePoint.country,
    "status": ChargePoint.last_seen_at,
}
IDENTITY_TAKEN = "Another charge point already uses this OCPP identity."
EDITABLE_FIELDS = ("name", "identity", "brand", "model", "firmware", "serial", "country", "price_area", "facility_id")


@dataclass
class ChargePointQuery:
    """What the Charge points tab asks for: search, filter, sort and page."""

    search: str = ""
    country: str = ""
    sort: str = "name"
    descending: bool = False
    page: int = 1
    page_size: int = 50


@dataclass
class ChargePointPage:
    items: list[ChargePoint]
    total: int
    page: int
    page_size: int
    countries: list[str]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def parse_query(args: dict[str, str], page_size: int) -> ChargePointQuery:
    """Turn query-string values into a ChargePointQuery, ignoring anything malformed."""
    sort = args.get("sort", "name")
    return ChargePointQuery(
        search=args.get("q", "").strip()[:100],
        country=args.get("country", "").strip().upper()[:2],
        sort=sort if sort in SORT_COLUMNS else "name",
        descending=args.get("dir") == "desc",
        page=page_number(args.get("page")),
        page_size=page_size,
    )


def _like_pattern(text: str) -> str:
    """Return a LIKE pattern matching ``text`` anywhere, with its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_charge_points(session: AsyncSession, team_id: int, query: ChargePointQuery) -> ChargePointPage:
    """Return one page of a team's charge points (three queries whatever the team's size)."""
    conditions: list[Any] = [ChargePoint.team_id == team_id]
    if query.search:
        pattern = _like_pattern(query.search)
        conditions.append(
            or_(
                col(ChargePoint.name).ilike(pattern, escape="\\"), col(ChargePoint.identity).ilike(pattern, escape="\\")
            )
        )
    if query.country:
        conditions.append(ChargePoint.country == query.country)
    total = (await session.exec(select(func.count()).select_from(ChargePoint).where(*conditions))).one()
    # A page past the end (say, its last charge point was just deleted) shows the last page instead.
    page = min(query.page, max(1, -(-total // query.page_size)))
    order = col(SORT_COLUMNS[query.sort])
    order_by = [order.desc() if query.descending else order.asc(), col(ChargePoint.id)]
    items = await session.exec(
        select(ChargePoint)
        .where(*conditions)
        .order_by(*order_by)
        .offset((page - 1) * query.page_size)
        .limit(query.page_size)
    )
    countries = await session.exec(
        select(ChargePoint.country).where(ChargePoint.team_id == team_id).distinct().order_by(col(ChargePoint.country))
    )
    return ChargePointPage(list(items), total, page, query.page_size, list(countries))


async def get_charge_point_or_404(
    session: AsyncSession, principal: Principal, charge_point_id: int
) -> tuple[ChargePoint, Team]:
    """Return a charge point and its team if the caller may see the team; otherwise NotFoundError."""
    row = (
        await session.exec(
            select(ChargePoint, Team)
            .join(Team, col(Team.id) == col(ChargePoint.team_id))
            .where(ChargePoint.id == charge_point_id)
        )
    ).first()
    if row is None or not can_on_team(principal, Permission.VIEW_TEAM, row[1]):
        raise NotFoundError(_("No such charge point."))
    return row[0], row[1]


async def names_of_team(session: AsyncSession, team_id: int) -> list[tuple[int, str]]:
    """Return the id and name of each charge point of a team, by name (for a filter's choices)."""
    rows = await session.exec(
        select(ChargePoint.id, ChargePoint.name)
        .where(ChargePoint.team_id == team_id)
        .order_by(col(ChargePoint.name), col(ChargePoint.id))
    )
    return [(cp_id or 0, name) for cp_id, name in rows]


def require_configure(by: Acting, team: Team, charge_point: ChargePoint | None = None) -> None:
    """Refuse ``by`` unless it may configure the charge points of ``team`` (``charge_point`` among them).

    Unseen (or a charge point of another team) is NotFoundError; seen but not allowed, ForbiddenError.
    """
    missing = "No such team." if charge_point is None else "No such charge point."
    if charge_point is not None and charge_point.team_id != team.id:
        raise NotFoundError(missing)
    require_on_team(by, Permission.CONFIGURE_CHARGE_POINTS, team, not_found=missing)


async def get_by_identity(session: AsyncSession, identity: str) -> ChargePoint | None:
    """Return the charge point with this OCPP identity (hub-wide unique)."""
    return (await session.exec(select(ChargePoint).where(ChargePoint.identity == identity))).first()


def clean_charge_point_fields(form: Mapping[str, str | None]) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate a charge point's fields, all but whether its identity is free; return clean values and errors.

    The form and the CSV import (one row at a time, without a query) share it.
    """
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}

    def take(field: str, cleaner: Any) -> None:
        try:
            values[field] = cleaner(form.get(field))
        except ValidationError as exc:
            errors[field] = str(exc)

    take("name", lambda v: clean_name(v, label="Name"))
    take("identity", clean_identity)
    for field, label in (("brand", "Brand"), ("model", "Model"), ("firmware", "Firmware"), ("serial", "Serial number")):
        take(field, lambda v, label=label: clean_optional(v, label=label))
    take("country", clean_country)
    if "country" in values:
        take("price_area", lambda v: clean_price_area(values["country"], v))
    facility_raw = (form.get("facility_id") or "").strip()
    if facility_raw:
        if "country" in values and needs_facility_id(values["country"]):
            take("facility_id", clean_facility_id)
        elif "country" in values:
            errors["facility_id"] = _("A Facility ID is only used for charge points in Sweden.")
    else:
        values["facility_id"] = None
    return values, errors


async def clean_charge_point_form(
    session: AsyncSession, form: dict[str, str], *, existing: ChargePoint | None = None
) -> dict[str, Any]:
    """Validate a charge point form; return clean values or raise FormErrors with every problem."""
    values, errors = clean_charge_point_fields(form)
    if "identity" in values and (existing is None or existing.identity != values["identity"]):
        other = await get_by_identity(session, values["identity"])
        if other is not None:
            errors["identity"] = IDENTITY_TAKEN
    if errors:
        raise FormErrors(errors)
    return values


async def _flush_identity(session: AsyncSession) -> None:
    """Write a new or changed charge point now; an identity taken meanwhile is a form error, not a crash.

    The check in ``clean_charge_point_form`` cannot see a charge point that someone else adds at
    the same moment; the unique index can.
    """
    try:
        await session.flush()
    except IntegrityError as exc:
        if "identity" not in str(exc.orig):
            raise
        raise FormErrors({"identity": IDENTITY_TAKEN}) from exc


def _snapshot(charge_point: ChargePoint) -> dict[str, Any]:
    return {field: getattr(charge_point, field) for field in EDITABLE_FIELDS}


async def create_charge_point(
    session: AsyncSession, by: Acting, team: Team, form: dict[str, str]
) -> tuple[ChargePoint, str]:
    """Create a charge point; return it with its OCPP password, shown to the user only once."""
    require_configure(by, team)
    values = await clean_charge_point_form(session, form)
    password = generate_secret()
    now = utcnow()
    charge_point = ChargePoint(
        team_id=team.id or 0, ocpp_password_hash=hash_secret(password), created_at=now, updated_at=now, **values
    )
    session.add(charge_point)
    await _flush_identity(session)
    record(
        session,
        actor_of(by),
        "charge_point.create",
        charge_point,
        operator_id=team.operator_id,
        after=_snapshot(charge_point),
    )
    await reevaluate(session, [charge_point])
    return charge_point, password


async def update_charge_point(
    session: AsyncSession, by: Acting, team: Team, charge_point: ChargePoint, form: dict[str, str]
) -> dict[str, tuple[Any, Any]]:
    """Apply an edit form; return the changed fields as (before, after)."""
    require_configure(by, team, charge_point)
    values = await clean_charge_point_form(session, form, existing=charge_point)
    before = _snapshot(charge_point)
    for field, value in values.items():
        setattr(charge_point, field, value)
    after = _snapshot(charge_point)
    changes = {k: (before[k], after[k]) for k in EDITABLE_FIELDS if before[k] != after[k]}
    if changes:
        charge_point.updated_at = utcnow()
        session.add(charge_point)
        await _flush_identity(session)
        record(
            session,
            actor_of(by),
            "charge_point.update",
            charge_point,
            operator_id=team.operator_id,
            before={k: v[0] for k, v in changes.items()},
            after={k: v[1] for k, v in changes.items()},
        )
        # A move that ends participation releases through the hooks already; one that keeps it must too (S2).
        if not await reevaluate(session, [charge_point]) and "price_area" in changes:
            await release_charge_points(session, [charge_point.id or 0], "moved to another area")
        if "identity" in changes:
            disconnect_after_commit(session, [charge_point.id or 0], "OCPP identity changed")
    return changes


async def reset_ocpp_password(session: AsyncSession, by: Acting, team: Team, charge_point: ChargePoint) -> str:
    """Give a charge point a new OCPP password; return it (shown once)."""
    require_configure(by, team, charge_point)
    password = generate_secret()
    charge_point.ocpp_password_hash = hash_secret(password)
    charge_point.updated_at = utcnow()
    session.add(charge_point)
    record(session, actor_of(by), "charge_point.reset_password", charge_point, operator_id=team.operator_id)
    disconnect_after_commit(session, [charge_point.id or 0], "OCPP password changed", identity_kept=True)
    return password


async def delete_charge_point(session: AsyncSession, by: Acting, team: Team, charge_point: ChargePoint) -> None:
    """Delete a charge point, keeping what it was in the audit log."""
    require_configure(by, team, charge_point)
    record(
        session,
        actor_of(by),
        "charge_point.delete",
        charge_point,
        operator_id=team.operator_id,
        before=_snapshot(charge_point),
    )
    await release_charge_points(session, [charge_point.id or 0], "charge point deleted")
    disconnect_after_commit(session, [charge_point.id or 0], "Charge point deleted")
    await session.delete(charge_point)


def connection_status(charge_point: ChargePoint) -> str:
    """Return what the Charge points tab shows: Online, Offline or Never connected."""
    if charge_point.online:
        return "Online"
    if charge_point.last_seen_at is None:
        return "Never connected"
    return "Offline"
