"""Activation pages: start one (or a short Test), watch it live, cancel it; a charge point's activations."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from quart import Blueprint, Response, request, url_for

from powerbank.dispatch.gateway import gateway, judged_delivery
from powerbank.errors import ConflictError, FormErrors
from powerbank.models import ActivationAction
from powerbank.routes.loaders import activation_for, charge_point_for, operator_for
from powerbank.rules.permissions import Permission
from powerbank.services import activations as service
from powerbank.services import delivery
from powerbank.services.audit import Actor
from powerbank.web.auth import login_required, principal
from powerbank.web.render import csv_download, redirect_to, render_page
from powerbank.web.state import db_session

blueprint = Blueprint("activations", __name__)

# While an activation runs (and shortly after, until its last answers are in) the page refreshes.
LIVE_POLL_S = 1
# Chargers per page of an activation's table (an activation may reach tens of thousands).
CHARGER_ROWS = 100


async def _list_page(
    operator_id: int, status: int = 200, values: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> Response:
    operator = await operator_for(await principal(), operator_id, may=Permission.MANAGE_ACTIVATIONS)
    session = await db_session()
    found = await service.list_activations(session, [operator_id])
    return await render_page(
        "activations/index.html",
        status=status,
        operator=operator,
        activations=found,
        summaries=await service.summaries_of(session, [a.id or 0 for a in found]),
        values=values or {"action": "pause", "market": "FCR-D up", "price_area": "DK2", "duration_s": "300"},
        errors=errors or {},
        areas=service.AREAS,
        area_options=[(area, area) for area in service.AREAS],
        markets=service.MARKETS,
        overlap_rule=service.OVERLAP_RULE,
        test_duration_s=service.TEST_DURATION_S,
        max_limit_kw=service.MAX_LIMIT_KW,
        max_duration_s=service.MAX_DURATION_S,
    )


@blueprint.get("/operators/<int:operator_id>/activations")
@login_required
async def index(operator_id: int) -> Response:
    return await _list_page(operator_id)


async def _create(operator_id: int, form: dict[str, str], typed: dict[str, str] | None = None) -> Response:
    """Start an activation from ``form``; on errors re-render what was ``typed``."""
    me = await principal()
    await operator_for(me, operator_id, may=Permission.MANAGE_ACTIVATIONS)
    try:
        request_ = service.clean_activation(form)
    except FormErrors as exc:
        return await _list_page(operator_id, 422, typed or form, exc.errors)
    activation = await gateway().start_activation(await db_session(), me, Actor.of(me.user), operator_id, request_)
    return redirect_to(url_for("activations.detail", activation_id=activation.id), 303)


@blueprint.post("/operators/<int:operator_id>/activations")
@login_required
async def create(operator_id: int) -> Response:
    typed = (await request.form).to_dict()
    start = typed.get("start_at", "").strip()
    # The form's date-time field has no time zone; the page says the start is in UTC.
    utc_start = f"{start}+00:00" if start and "+" not in start and not start.endswith("Z") else start
    return await _create(operator_id, {**typed, "start_at": utc_start}, typed)


@blueprint.post("/operators/<int:operator_id>/activations/test")
@login_required
async def create_test(operator_id: int) -> Response:
    """Start a short Test activation: pause the chosen area for a few seconds."""
    form = await request.form
    return await _create(
        operator_id,
        {
            "price_area": form.get("price_area", ""),
            "market": "Test",
            "action": ActivationAction.PAUSE,
            "duration_s": str(service.TEST_DURATION_S),
        },
    )


CHART_W, CHART_H, CHART_PAD = 640, 200, 36


def chart_geometry(chart: service.PowerChart | None, baseline_kw: float | None = None) -> dict[str, Any] | None:
    """Lay the power chart out for inline SVG: the line, the baseline, the window band and the axis labels."""
    if chart is None or not chart.points:
        return None
    span = max(chart.end_s - chart.start_s, 1.0)
    top = max(chart.max_kw, baseline_kw or 0.0) * 1.1
    width, height = CHART_W - 2 * CHART_PAD, CHART_H - 2 * CHART_PAD

    def x(seconds: float) -> float:
        return round(CHART_PAD + (seconds - chart.start_s) / span * width, 1)

    def y(kw: float) -> float:
        return round(CHART_PAD + height - kw / top * height, 1)

    window_end = min(chart.window_end_s, chart.end_s)
    return {
        "width": CHART_W,
        "height": CHART_H,
        "pad": CHART_PAD,
        "bottom": CHART_PAD + height,
        "right": CHART_PAD + width,
        "line": " ".join(f"{x(s)},{y(kw)}" for s, kw in chart.points),
        "window_x": x(0),
        "window_w": max(0.0, round(x(window_end) - x(0), 1)),
        "top_label": f"{top:.1f} kW",
        "start_label": f"{chart.start_s:+.0f} s",
        "end_label": f"{chart.end_s:+.0f} s",
        "latest_kw": chart.points[-1][1],
        "before_kw": next((kw for s, kw in reversed(chart.points) if s <= 0), None),
        "baseline_y": y(baseline_kw) if baseline_kw is not None else None,
        "baseline_kw": baseline_kw,
    }


async def _detail_context(activation_id: int) -> dict[str, Any]:
    me = await principal()
    activation = await activation_for(me, activation_id)
    operator = await operator_for(me, activation.operator_id)
    session = await db_session()
    summary = await service.summary_of(session, activation)
    finished = activation.ended_at
    # After the window the page keeps refreshing a while, to show charging coming back.
    settled = (
        finished is not None
        and summary.count("pending") == 0
        and (datetime.now(UTC) - finished).total_seconds() > service.CHART_CONTEXT_S
    )
    pages = max(1, math.ceil(summary.total / CHARGER_ROWS))
    page = min(max(1, request.args.get("page", 1, type=int) or 1), pages)
    shown = await service.dispatch_page(session, activation_id, (page - 1) * CHARGER_ROWS, CHARGER_ROWS)
    # Once judged and stored, only the chargers shown are read; until then all are judged (once for
    # every reader of this node while it serves).
    delivered = None
    if activation.evidence_kept_at is not None:
        delivered = await delivery.stored_delivery(session, activation, shown, these_only=True)
    if delivered is None:
        delivered = await judged_delivery(session, activation)
    baseline_kw = delivered.baseline_w / 1000 if delivered is not None and delivered.baseline_w is not None else None
    return {
        "activation": activation,
        "operator": operator,
        "shown": shown,
        "page": page,
        "pages": pages,
        "first_row": (page - 1) * CHARGER_ROWS + 1,
        "summary": summary,
        "delivery": delivered,
        "delivery_share": delivery.DELIVERED_SHARE,
        "delivered_by": {c.dispatch.id: c for c in delivered.chargers} if delivered is not None else {},
        "chart": chart_geometry(service.power_chart(activation, delivered), baseline_kw),
        "live": not settled,
        "poll_s": LIVE_POLL_S,
        "overlap_rule": service.OVERLAP_RULE,
        "label": service.describe(activation),
    }


@blueprint.get("/activations/<int:activation_id>")
@login_required
async def detail(activation_id: int) -> Response:
    return await render_page(
        "activations/detail.html", "partials/activation_live.html", **await _detail_context(activation_id)
    )


@blueprint.get("/activations/<int:activation_id>/response.csv")
@login_required
async def response_csv(activation_id: int) -> Response:
    """The area's response at 1 s (time, baseline, measured, limit, chargers reporting) as CSV."""
    found = await _delivery(activation_id)
    rows = delivery.curve_rows(found.area) if found is not None else []
    return csv_download(delivery.to_csv(delivery.CURVE_COLUMNS, rows), f"activation-{activation_id}-response.csv")


@blueprint.get("/activations/<int:activation_id>/chargers.csv")
@login_required
async def chargers_csv(activation_id: int) -> Response:
    """Each charger's verdict and the numbers behind it, as CSV."""
    found = await _delivery(activation_id)
    rows = delivery.charger_rows(found.chargers) if found is not None else []
    return csv_download(delivery.to_csv(delivery.CHARGER_COLUMNS, rows), f"activation-{activation_id}-chargers.csv")


async def _delivery(activation_id: int) -> delivery.Delivery | None:
    activation = await activation_for(await principal(), activation_id)
    return await judged_delivery(await db_session(), activation)


@blueprint.post("/activations/<int:activation_id>/cancel")
@login_required
async def cancel(activation_id: int) -> Response:
    me = await principal()
    activation = await activation_for(me, activation_id)
    try:
        await gateway().cancel_activation(await db_session(), me, Actor.of(me.user), activation)
    except ConflictError as exc:
        # Refused before anything changed: nothing to roll back.
        context = await _detail_context(activation_id)
        return await render_page("activations/detail.html", status=409, error=str(exc), **context)
    return redirect_to(url_for("activations.detail", activation_id=activation_id), 303)


@blueprint.get("/charge-points/<int:cp_id>/activations")
@login_required
async def of_charge_point(cp_id: int) -> Response:
    """List the activations that reached a charge point (a fragment of its page)."""
    me = await principal()
    charge_point, team = await charge_point_for(me, cp_id)
    return await render_page(
        "partials/activation_charge_point.html",
        "partials/activation_charge_point.html",
        charge_point=charge_point,
        rows=await service.activations_of_charge_point(await db_session(), cp_id),
        may_manage=service.may_manage(me, team.operator_id),
    )
