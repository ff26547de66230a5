"""Earnings pages: a team's statements (page, CSV, PDF), its PowerBank tab's and a charge point's sections,
and the operator's prices, revenue shares and months."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from quart import Blueprint, Response, abort, render_template, request, url_for

from powerbank.errors import ConflictError, FormErrors
from powerbank.i18n import gettext as _
from powerbank.models import Team
from powerbank.routes.loaders import charge_point_for, operator_for, team_for
from powerbank.rules.earnings import CURRENCY_BY_AREA, month_of, parse_month, previous_month
from powerbank.rules.permissions import Permission, can_on_operator
from powerbank.rules.validators import page_number
from powerbank.services import earnings as service
from powerbank.services.teams import teams_of
from powerbank.web.auth import login_required, principal
from powerbank.web.render import csv_download, discard_changes, redirect_to, render_page
from powerbank.web.state import db_session

blueprint = Blueprint("earnings", __name__)

# Lines per page of a statement (the CSV and PDF have them all).
PAGE_LINES = 250
# Above this many lines a statement's PDF prints them as fixed-width text instead of a table.
PDF_TABLE_LINES = 300
# The largest price file taken (a month of hourly prices for every area and market is far less).
MAX_IMPORT_BYTES = 2_000_000


def _now() -> datetime:
    return datetime.now(UTC)


def _month_arg(default: str) -> str:
    text = request.args.get("month")
    if text is None or not text.strip():
        return default
    month = parse_month(text)
    if month is None:
        abort(400, _("Give the month as YYYY-MM, e.g. 2026-11."))
    return month


def _chart(totals: list[service.MonthTotal]) -> list[dict[str, Any]]:
    """Return bars for the months' totals (each currency scaled to its own largest month)."""
    largest: dict[str, float] = {}
    for total in totals:
        largest[total.currency] = max(largest.get(total.currency, 0.0), float(total.amount))
    return [
        {
            "total": total,
            "percent": round(100 * float(total.amount) / largest[total.currency]) if largest[total.currency] > 0 else 0,
        }
        for total in sorted(totals, key=lambda t: (t.month, t.currency))
    ]


@blueprint.get("/teams/<int:team_id>/earnings")
@login_required
async def statement(team_id: int) -> Response:
    me = await principal()
    team = await team_for(me, team_id)
    month = _month_arg(previous_month(month_of(_now())))
    session = await db_session()
    found = await service.statement(session, me, team, month)
    pages = max(1, -(-len(found.lines) // PAGE_LINES))
    page = min(page_number(request.args.get("page")), pages)
    return await render_page(
        "earnings/statement.html",
        "earnings/_statement.html",
        team=team,
        statement=found,
        shown=found.lines[(page - 1) * PAGE_LINES : page * PAGE_LINES],
        page=page,
        pages=pages,
        # One address per line without url_for for each of thousands of lines.
        charge_point_path=url_for("charge_points.detail", cp_id=0).removesuffix("0"),
        month=month,
        months=_recent_months(12),
        average_kw=service.average_kw,
        percent=service.percent,
        may_manage=can_on_operator(me, Permission.MANAGE_EARNINGS, team.operator_id),
    )


def _recent_months(count: int) -> list[str]:
    months = [month_of(_now())]
    while len(months) < count:
        months.append(previous_month(months[-1]))
    return months


@blueprint.get("/teams/<int:team_id>/earnings/section")
@login_required
async def team_section(team_id: int) -> Response:
    """The Earnings section of the team's PowerBank tab: this month so far, the last months, a chart."""
    me = await principal()
    team = await team_for(me, team_id)
    session = await db_session()
    totals = await service.month_totals(session, team, 12, _now())
    current = month_of(_now())
    shares = await service.shares_of(session, team.operator_id)
    return await render_page(
        "earnings/section_page.html",
        "earnings/_team_section.html",
        team=team,
        current=current,
        this_month=[t for t in totals if t.month == current],
        past=[t for t in totals if t.month != current],
        bars=_chart(totals),
        share=service.percent(shares.of(team.id or 0)),
        may_manage=can_on_operator(me, Permission.MANAGE_EARNINGS, team.operator_id),
    )


@blueprint.get("/teams/<int:team_id>/earnings/<month>.csv")
@login_required
async def statement_csv(team_id: int, month: str) -> Response:
    me = await principal()
    team = await team_for(me, team_id)
    valid = parse_month(month) or abort(404)
    found = await service.statement(await db_session(), me, team, valid)
    return csv_download(service.statement_csv(found, team.name), f"powerbank-earnings-team-{team.id}-{valid}.csv")


@blueprint.get("/teams/<int:team_id>/earnings/<month>.pdf")
@login_required
async def statement_pdf(team_id: int, month: str) -> Response:
    me = await principal()
    team, operator = await _team_and_operator(me, team_id)
    valid = parse_month(month) or abort(404)
    found = await service.statement(await db_session(), me, team, valid)
    # A long statement's lines are printed as fixed-width text: a table of thousands of rows takes
    # WeasyPrint minutes to lay out, text seconds.
    compact = len(found.lines) > PDF_TABLE_LINES
    header = service.text_row(
        [
            _("Charge point"),
            _("Area"),
            _("Hours"),
            _("Avg kW"),
            _("Act."),
            _("kWh"),
            _("Market value"),
            _("Earnings"),
        ]
    )
    html = await render_template(
        "earnings/statement_pdf.html",
        team=team,
        operator=operator,
        statement=found,
        compact=compact,
        text_header=header,
        text_rows=service.text_rows(found.lines) if compact else [],
        month=valid,
        average_kw=service.average_kw,
        percent=service.percent,
        printed_at=_now(),
    )
    pdf = await asyncio.to_thread(_pdf_of, html)
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="powerbank-earnings-team-{team.id}-{valid}.pdf"'
    return response


def _pdf_of(html: str) -> bytes:
    """Render HTML to PDF with the fonts installed on the machine; nothing is fetched."""
    import weasyprint

    def refuse(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise ValueError(f"a statement fetches nothing: {url}")

    return bytes(weasyprint.HTML(string=html, url_fetcher=refuse).write_pdf() or b"")


async def _team_and_operator(me: Any, team_id: int) -> tuple[Team, Any]:
    team = await team_for(me, team_id)
    return team, await operator_for(me, team.operator_id)


@blueprint.get("/charge-points/<int:cp_id>/earnings")
@login_required
async def charge_point_section(cp_id: int) -> Response:
    """A charge point's earnings: this month so far and the last 12 months."""
    me = await principal()
    charge_point, team = await charge_point_for(me, cp_id)
    months = await service.charge_point_months(await db_session(), charge_point, team, 12, _now())
    return await render_page(
        "earnings/section_page.html",
        "earnings/_charge_point.html",
        team=team,
        charge_point=charge_point,
        current=month_of(_now()),
        cp_months=months,
        currency=CURRENCY_BY_AREA.get(charge_point.price_area or "", ""),
    )


# ---- the operator's prices, shares and months ----


async def _operator_page(
    operator_id: int,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
) -> Response:
    me = await principal()
    operator = await operator_for(me, operator_id, may=Permission.MANAGE_EARNINGS)
    session = await db_session()
    month = _month_arg(month_of(_now()))
    shares = await service.shares_of(session, operator_id)
    teams = await teams_of(session, operator_id)
    closed = await service.closed_months(session, operator_id)
    return await render_page(
        "earnings/operator.html",
        status=status,
        operator=operator,
        month=month,
        months=_recent_months(13),
        closed=closed,
        prices=await service.list_prices(session, operator_id, month),
        shares=shares,
        teams=teams,
        percent=service.percent,
        values=values or {"kind": "capacity", "market": "FCR-D up", "price_area": "DK2", "currency": "DKK"},
        errors=errors or {},
        message=message or request.args.get("saved"),
        areas=service.AREAS,
        markets=service.PRICED_MARKETS,
        currencies=CURRENCY_BY_AREA,
        current=month_of(_now()),
    )


@blueprint.get("/operators/<int:operator_id>/earnings")
@login_required
async def operator_page(operator_id: int) -> Response:
    return await _operator_page(operator_id)


def _saved_message(saved: service.PricesSaved) -> str:
    return _(
        "Prices saved: %(added)s added, %(changed)s changed, %(unchanged)s already there.",
        added=saved.added,
        changed=saved.changed,
        unchanged=saved.unchanged,
    )


async def _save(operator_id: int, rows: list[service.PriceInput], values: dict[str, str]) -> Response:
    me = await principal()
    await operator_for(me, operator_id, may=Permission.MANAGE_EARNINGS)
    session = await db_session()
    try:
        saved = await service.save_prices(session, me, operator_id, rows, _now())
    except FormErrors as exc:
        await discard_changes(session)
        return await _operator_page(operator_id, status=422, values=values, errors=exc.errors)
    await session.commit()
    return redirect_to(url_for("earnings.operator_page", operator_id=operator_id, saved=_saved_message(saved)), 303)


@blueprint.post("/operators/<int:operator_id>/earnings/prices")
@login_required
async def enter_price(operator_id: int) -> Response:
    form = {key: value for key, value in (await request.form).items() if key != "csrf_token"}
    row, problems = service.clean_price_row(form, 1)
    if row is None:
        errors = {}
        for problem in problems:
            name, _sep, text = problem.partition(": ")
            errors[name if name in service.PRICE_FIELDS else "form"] = text or problem
        await operator_for(await principal(), operator_id, may=Permission.MANAGE_EARNINGS)
        return await _operator_page(operator_id, status=422, values=form, errors=errors)
    return await _save(operator_id, [row], form)


@blueprint.post("/operators/<int:operator_id>/earnings/prices/import")
@login_required
async def import_prices(operator_id: int) -> Response:
    await operator_for(await principal(), operator_id, may=Permission.MANAGE_EARNINGS)
    upload = (await request.files).get("prices_file")
    data = upload.read(MAX_IMPORT_BYTES + 1) if upload is not None else b""
    if not data:
        return await _operator_page(operator_id, status=422, errors={"prices_file": _("Choose a CSV file of prices.")})
    if len(data) > MAX_IMPORT_BYTES:
        return await _operator_page(operator_id, status=422, errors={"prices_file": _("The file is larger than 2 MB.")})
    try:
        rows = service.read_price_csv(data.decode("utf-8"))
    except UnicodeDecodeError:
        return await _operator_page(operator_id, status=422, errors={"prices_file": _("Save the file as UTF-8 CSV.")})
    except FormErrors as exc:
        return await _operator_page(operator_id, status=422, errors={"import": "", **exc.errors})
    return await _save(operator_id, rows, {})


@blueprint.post("/operators/<int:operator_id>/earnings/share")
@login_required
async def set_operator_share(operator_id: int) -> Response:
    return await _set_share(operator_id, None)


@blueprint.post("/operators/<int:operator_id>/earnings/teams/<int:team_id>/share")
@login_required
async def set_team_share(operator_id: int, team_id: int) -> Response:
    team = await team_for(await principal(), team_id)
    if team.operator_id != operator_id:
        abort(404)
    return await _set_share(operator_id, team)


async def _set_share(operator_id: int, team: Team | None) -> Response:
    me = await principal()
    await operator_for(me, operator_id, may=Permission.MANAGE_EARNINGS)
    session = await db_session()
    percent = (await request.form).get("share", "")
    try:
        await service.set_share(session, me, operator_id, team, percent, _now())
    except FormErrors as exc:
        await discard_changes(session)
        field = f"share_{team.id}" if team is not None else "share"
        return await _operator_page(operator_id, status=422, errors={field: exc.errors.get("share", str(exc))})
    await session.commit()
    return redirect_to(url_for("earnings.operator_page", operator_id=operator_id, saved=_("Share saved.")), 303)


@blueprint.post("/operators/<int:operator_id>/earnings/months/<month>/close")
@login_required
async def close_month(operator_id: int, month: str) -> Response:
    me = await principal()
    await operator_for(me, operator_id, may=Permission.MANAGE_EARNINGS)
    valid = parse_month(month) or abort(404)
    session = await db_session()
    try:
        await service.close_month(session, me, operator_id, valid, _now())
    except (FormErrors, ConflictError) as exc:
        await discard_changes(session)
        text = exc.errors.get("month", str(exc)) if isinstance(exc, FormErrors) else str(exc)
        return await _operator_page(operator_id, status=409, errors={"close": text})
    await session.commit()
    return redirect_to(
        url_for("earnings.operator_page", operator_id=operator_id, saved=_("%(month)s closed.", month=valid)), 303
    )


@blueprint.post("/operators/<int:operator_id>/earnings/refresh")
@login_required
async def refresh(operator_id: int) -> Response:
    """Accrue the latest hours and deliveries and recompute the open months now."""
    me = await principal()
    await operator_for(me, operator_id, may=Permission.MANAGE_EARNINGS)
    session = await db_session()
    now = _now()
    # Hours are accrued for every operator at once: the newest accrued hour is where the next accrual starts.
    await service.accrue_hours(session, now)
    await service.settle_deliveries(session, now)
    for month in await service.open_months(session, operator_id, now):
        await service.refresh_month(session, operator_id, month, now)
    await session.commit()
    return redirect_to(
        url_for("earnings.operator_page", operator_id=operator_id, saved=_("Open months recomputed.")), 303
    )
