"""A team's pages: the Charge points tab, adding a charge point, and importing a CSV file of them."""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any
from urllib.parse import quote

from quart import Blueprint, Response, current_app, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from powerbank.errors import ForbiddenError, FormErrors, NotFoundError
from powerbank.i18n import gettext as _
from powerbank.models import Team
from powerbank.routes.loaders import team_for, team_with_operator_for
from powerbank.rules.countries import AREAS_BY_COUNTRY, country_names
from powerbank.rules.permissions import Permission, can_on_team, denial_reason
from powerbank.services import charge_points as cp_service
from powerbank.services import enrollment, imports, reliability
from powerbank.web.auth import current_principal, login_required, principal
from powerbank.web.render import discard_changes, form_errors_status, public_url, redirect_to, render_page
from powerbank.web.state import db_session

blueprint = Blueprint("teams", __name__)


def ocpp_url(identity: str) -> str:
    """Return the websocket URL a charger is configured with."""
    base = public_url()
    base = base.replace("https://", "wss://", 1) if base.startswith("https://") else base.replace("http://", "ws://", 1)
    return f"{base}ocpp/{identity}"


def form_choices() -> dict[str, Any]:
    return {"countries": country_names(), "areas_by_country": AREAS_BY_COUNTRY}


@blueprint.get("/teams/<int:team_id>")
@login_required
async def team(team_id: int) -> Response:
    await team_for(await principal(), team_id)
    return redirect_to(url_for("teams.charge_points", team_id=team_id))


@blueprint.get("/teams/<int:team_id>/charge-points")
@login_required
async def charge_points(team_id: int) -> Response:
    me = await principal()
    team_, operator = await team_with_operator_for(me, team_id)
    session = await db_session()
    query = cp_service.parse_query(request.args.to_dict(), current_app.config["PAGE_SIZE"])
    page = await cp_service.list_charge_points(session, team_id, query)
    return await render_page(
        "teams/charge_points.html",
        "partials/charge_point_table.html",
        team=team_,
        operator=operator,
        page=page,
        query=query,
        countries=country_names(),
        status_of=cp_service.connection_status,
        can_configure=can_on_team(me, Permission.CONFIGURE_CHARGE_POINTS, team_),
        configure_reason=denial_reason(me, Permission.CONFIGURE_CHARGE_POINTS, team_),
        powerbank_statuses=await enrollment.statuses_for(session, team_, page.items),
        powerbank_reason=denial_reason(me, Permission.SIGN_UP_POWERBANK, team_),
        reliability=await reliability.reliability_of(session, [cp.id or 0 for cp in page.items]),
    )


@blueprint.get("/teams/<int:team_id>/charge-points/new")
@login_required
async def new_charge_point(team_id: int) -> Response:
    team_ = await team_for(await principal(), team_id, may=Permission.CONFIGURE_CHARGE_POINTS)
    # The Connection attempts page links here with a refused charger's identity filled in.
    values = {"identity": request.args.get("identity", "")}
    return await render_page(
        "charge_points/form.html", team=team_, charge_point=None, values=values, errors={}, **form_choices()
    )


@blueprint.post("/teams/<int:team_id>/charge-points/new")
@login_required
async def create_charge_point(team_id: int) -> Response:
    me = await principal()
    team_ = await team_for(me, team_id, may=Permission.CONFIGURE_CHARGE_POINTS)
    session = await db_session()
    form = (await request.form).to_dict()
    try:
        charge_point, password = await cp_service.create_charge_point(session, me, team_, form)
    except FormErrors as exc:
        await discard_changes(session, team_)
        return await render_page(
            "charge_points/form.html",
            status=form_errors_status(exc.errors),
            team=team_,
            charge_point=None,
            values=form,
            errors=exc.errors,
            **form_choices(),
        )
    await session.commit()
    return await render_page(
        "charge_points/credentials.html",
        status=201,
        team=team_,
        charge_point=charge_point,
        password=password,
        ocpp_url=ocpp_url(charge_point.identity),
        created=True,
    )


# ---- importing a CSV file of charge points: choose the file, check it (the preview), import ----

IMPORT_PERMISSION = Permission.CONFIGURE_CHARGE_POINTS
# The checked file travels back with the Import button compressed: the form field stays well
# below the form memory limit even for the largest file, and the import checks it all again.
MAX_CARRIED_TEXT = 4 * imports.MAX_IMPORT_BYTES


def carry_text(text: str) -> str:
    """Return a file's text packed into a form field value."""
    return base64.b64encode(zlib.compress(text.encode(), 6)).decode()


def carried_text(value: str) -> str | None:
    """Return the text packed by ``carry_text``, or None for anything else (or anything too large unpacked)."""
    try:
        packed = base64.b64decode(value.encode("ascii"), validate=True)
        unpacker = zlib.decompressobj()
        raw = unpacker.decompress(packed, MAX_CARRIED_TEXT)
        if unpacker.unconsumed_tail or not unpacker.eof:
            return None
        return raw.decode()
    except (binascii.Error, zlib.error, UnicodeError, ValueError):
        return None


def data_url(text: str, media_type: str = "text/csv") -> str:
    """Return ``text`` as a data: URL, so a download is made once from this page and never fetched again."""
    return f"data:{media_type};charset=utf-8,{quote(text, safe='')}"


async def render_import_form(team_: Team, error: str | None = None, status: int = 200) -> Response:
    return await render_page(
        "charge_points/import.html",
        status=status,
        team=team_,
        error=error,
        columns=imports.COLUMNS,
        required=imports.REQUIRED,
        max_rows=imports.MAX_IMPORT_ROWS,
        max_kib=imports.MAX_IMPORT_BYTES // 1024,
        template_url=data_url("\ufeff" + imports.template_csv()),
    )


async def render_import_problems(team_: Team, problems: list[imports.ImportProblem], **context: Any) -> Response:
    return await render_page(
        "charge_points/import_preview.html",
        status=422,
        team=team_,
        problems=problems[: imports.SHOWN_PROBLEMS],
        problem_count=len(problems),
        summary=imports.summary(problems),
        rows=[],
        row_count=0,
        carried=None,
        labels=imports.LABELS,
        **context,
    )


@blueprint.get("/teams/<int:team_id>/charge-points/import")
@login_required
async def import_form(team_id: int) -> Response:
    team_ = await team_for(await principal(), team_id, may=IMPORT_PERMISSION)
    return await render_import_form(team_)


@blueprint.post("/teams/<int:team_id>/charge-points/import/preview")
@login_required
async def preview_import(team_id: int) -> Response:
    me = await principal()
    team_ = await team_for(me, team_id, may=IMPORT_PERMISSION)
    upload = (await request.files).get("file")
    if upload is None or not upload.filename:
        return await render_import_form(team_, _("Choose the CSV file to import."), 422)
    try:
        text, encoding = imports.decode_csv(upload.read(imports.MAX_IMPORT_BYTES + 1))
    except imports.ImportRefused as exc:
        return await render_import_problems(team_, exc.problems, filename=upload.filename)
    preview = await imports.preview_import(await db_session(), me, team_, text)
    if not preview.ok:
        return await render_import_problems(team_, preview.problems, filename=upload.filename)
    return await render_page(
        "charge_points/import_preview.html",
        team=team_,
        problems=[],
        problem_count=0,
        summary="",
        rows=preview.rows[: imports.SHOWN_PROBLEMS],
        row_count=len(preview.rows),
        carried=carry_text(text),
        labels=imports.LABELS,
        filename=upload.filename,
        encoding=encoding,
        separator={";": "semicolons", ",": "commas", "\t": "tabs"}[preview.separator],
    )


@blueprint.post("/teams/<int:team_id>/charge-points/import")
@login_required
async def import_charge_points(team_id: int) -> Response:
    me = await principal()
    team_ = await team_for(me, team_id, may=IMPORT_PERMISSION)
    text = carried_text((await request.form).get("content", ""))
    if text is None:
        return await render_import_form(team_, _("The checked file did not come back whole; choose it again."), 400)
    session = await db_session()
    try:
        imported = await imports.import_charge_points(session, me, team_, text)
    except imports.ImportRefused as exc:
        await discard_changes(session, team_)
        return await render_import_problems(team_, exc.problems)
    await session.commit()
    response = await render_page(
        "charge_points/import_done.html",
        status=201,
        team=team_,
        imported=imported,
        download_url=data_url("\ufeff" + imports.credentials_csv(imported, ocpp_url)),
        download_name=f"{team_.name} OCPP passwords.csv",
        ocpp_url=ocpp_url,
    )
    # The passwords are on this page only: no cache keeps them.
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.errorhandler(RequestEntityTooLarge)
async def too_large(exc: RequestEntityTooLarge) -> Response:
    """Say on the import page that the file is too large; elsewhere, the usual error page."""
    me = await current_principal() if request.endpoint == "teams.preview_import" else None
    if me is not None and request.view_args:
        try:
            team_ = await team_for(me, int(request.view_args["team_id"]), may=IMPORT_PERMISSION)
        except (NotFoundError, ForbiddenError):
            pass
        else:
            message = imports.too_large()
            return await render_import_form(team_, message, 413)
    return await render_page("error.html", status=413, title=exc.name, message=exc.description or exc.name)
