"""`/healthz`: whether this node can serve, for a load balancer's health check."""

from __future__ import annotations

import asyncio

from quart import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from powerbank.dispatch.gateway import find_gateway
from powerbank.web.state import db_session

blueprint = Blueprint("health", __name__)

# A database that does not answer within this is as good as gone for the balancer.
DATABASE_TIMEOUT_S = 2.0


@blueprint.get("/healthz")
async def healthz() -> Response:
    """Answer 200 when this node reaches its database and takes chargers, else 503 (JSON either way).

    No log-in: it says nothing but the node's name, its state and how many chargers it holds.
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
    body: dict[str, object] = {"node": name, "status": "ok" if not problems else "unavailable", "chargers": chargers}
    if problems:
        body["problems"] = problems
    response = jsonify(body)
    response.status_code = 503 if problems else 200
    response.headers["Cache-Control"] = "no-store"
    return response
