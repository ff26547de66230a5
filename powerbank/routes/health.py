"""`/healthz` for a load balancer, `/readyz` for an orchestrator, and the Nodes page for operator admins."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from quart import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from powerbank.dispatch.gateway import find_gateway
from powerbank.routes.loaders import operator_for
from powerbank.rules.permissions import Permission
from powerbank.services.cluster import node_statuses
from powerbank.services.schema import schema_state
from powerbank.web.auth import login_required, principal
from powerbank.web.render import render_page
from powerbank.web.state import db_session

blueprint = Blueprint("health", __name__)

# A database that does not answer within this is as good as gone for the balancer.
DATABASE_TIMEOUT_S = 2.0


@blueprint.get("/healthz")
async def healthz() -> Response:
    """Answer 200 when this node reaches its database and takes chargers, else 503 (JSON either way).

    No log-in: it says nothing but the node's name, its state, how many chargers it holds and whether
    it leads (runs the activation scheduler).
    """
    found = find_gateway(current_app)
    name, taking, chargers = found.node() if found else (str(current_app.config["NODE_ID"]), False, 0)
    problems: list[str] = []
    if not taking:
        problems.append("shutting down" if found else "not serving")
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_S):
            await (await db_session()).exec(text("SELECT 1"))  # type: ignore[call-overload]
    except Exception as exc:  # the database's own error, whatever its driver
        problems.append(f"database: {type(exc).__name__}")
    body: dict[str, object] = {
        "node": name,
        "status": "ok" if not problems else "unavailable",
        "chargers": chargers,
        "leader": found is not None and found.leads,
    }
    if problems:
        body["problems"] = problems
    response = jsonify(body)
    response.status_code = 503 if problems else 200
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/readyz")
async def readyz() -> Response:
    """Answer 200 when this node may be sent traffic: it serves, its database answers, and the
    database's schema is the one this code's migrations make; else 503 with the problems (JSON).

    No log-in: it says nothing but the node's name and the schema revisions.
    """
    found = find_gateway(current_app)
    name, taking, _chargers = found.node() if found else (str(current_app.config["NODE_ID"]), False, 0)
    problems: list[str] = []
    if not taking:
        problems.append("shutting down" if found else "not serving")
    body: dict[str, object] = {"node": name}
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_S):
            schema = await schema_state(await db_session())
    except Exception as exc:  # the database's own error, whatever its driver
        problems.append(f"database: {type(exc).__name__}")
    else:
        body["schema"] = sorted(schema.database)
        body["code_schema"] = sorted(schema.code)
        problem = schema.problem()
        if problem is not None:
            problems.append(problem)
    body["status"] = "ready" if not problems else "unavailable"
    if problems:
        body["problems"] = problems
    response = jsonify(body)
    response.status_code = 503 if problems else 200
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/operators/<int:operator_id>/nodes")
@login_required
async def nodes(operator_id: int) -> Response:
    """The nodes serving this installation, and how many of this operator's chargers each holds."""
    operator = await operator_for(await principal(), operator_id, may=Permission.VIEW_CONNECTION_ATTEMPTS)
    lease = timedelta(seconds=float(current_app.config["CLUSTER_LEASE_S"]))
    statuses = await node_statuses(await db_session(), lease=lease, operator_id=operator_id)
    return await render_page("admin/nodes.html", operator=operator, nodes=statuses, lease_s=int(lease.total_seconds()))
