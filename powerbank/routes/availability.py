"""The Activations page's availability chart: per price area, what could be paused over the last 24 hours.

A fragment the Activations page loads with htmx (``hx-trigger="load"``); without htmx the same URL
is a page of its own, linked from there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from quart import Blueprint, Response

from powerbank.routes.loaders import operator_for
from powerbank.rules.permissions import Permission
from powerbank.services import availability as service
from powerbank.web.auth import login_required, principal
from powerbank.web.render import render_page
from powerbank.web.state import db_session

blueprint = Blueprint("availability", __name__)

CHART_W, CHART_H, CHART_PAD = 640, 160, 40
SHOWN = timedelta(hours=24)


def chart_geometry(points: list[service.Point], start: datetime, end: datetime) -> dict[str, Any]:
    """Lay one area's series out for inline SVG: one line per run of consecutive minutes, gaps left empty."""
    span = (end - start).total_seconds()
    top = max([p.power_w / 1000 for p in points] + [1.0]) * 1.1
    width, height = CHART_W - 2 * CHART_PAD, CHART_H - 2 * CHART_PAD

    def x(moment: datetime) -> float:
        return round(CHART_PAD + (moment - start).total_seconds() / span * width, 1)

    def y(kw: float) -> float:
        return round(CHART_PAD + height - kw / top * height, 1)

    runs: list[list[service.Point]] = []
    for point in points:
        if runs and point.minute - runs[-1][-1].minute <= timedelta(minutes=1):
            runs[-1].append(point)
        else:
            runs.append([point])
    latest = points[-1] if points else None
    return {
        "width": CHART_W,
        "height": CHART_H,
        "pad": CHART_PAD,
        "bottom": CHART_PAD + height,
        "right": CHART_PAD + width,
        "lines": [" ".join(f"{x(p.minute)},{y(p.power_w / 1000)}" for p in run) for run in runs if len(run) > 1],
        "dots": [(x(run[0].minute), y(run[0].power_w / 1000)) for run in runs if len(run) == 1],
        "top_label": f"{top:.1f} kW",
        "start_label": start.strftime("%d %b %H:%M"),
        "end_label": end.strftime("%d %b %H:%M UTC"),
        "latest": latest,
        "peak_kw": max(p.power_w for p in points) / 1000 if points else 0.0,
        "sampled": len(points),
        "gaps": len(runs) - 1,
    }


@blueprint.get("/operators/<int:operator_id>/activations/availability")
@login_required
async def charts(operator_id: int) -> Response:
    """Show, per price area, the power the operator's signed-up, online chargers drew over the last 24 hours."""
    operator = await operator_for(await principal(), operator_id, may=Permission.MANAGE_ACTIVATIONS)
    session = await db_session()
    end = datetime.now(UTC)
    start = end - SHOWN
    areas = []
    # One range read of the table's key per price area, whatever the number of chargers.
    for area in service.AREAS:
        points = await service.series(session, operator_id, service.Range(area, start, end))
        if points:
            areas.append((area, chart_geometry(points, start, end)))
    return await render_page(
        "activations/availability.html",
        "partials/availability_chart.html",
        operator=operator,
        areas=areas,
        start=start,
        end=end,
    )
