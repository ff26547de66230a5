"""The web layer: what every page needs, registered on the app by init_web."""

from __future__ import annotations

from typing import Any

from quart import Quart, g

from powerbank.web.auth import current_principal
from powerbank.web.csrf import check_csrf, csrf_token
from powerbank.web.i18n import init_i18n
from powerbank.web.ids import DatabaseIdConverter
from powerbank.web.inputs import refuse_nul_characters
from powerbank.web.render import add_security_headers, public_url


def init_web(app: Quart) -> None:
    """Register the request hooks shared by every page (before the blueprints: their routes use `int`)."""
    app.url_map.converters["int"] = DatabaseIdConverter
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["public_url"] = public_url
    app.before_request(refuse_nul_characters)
    app.before_request(check_csrf)
    init_i18n(app)
    app.after_request(add_security_headers)

    @app.teardown_appcontext
    async def close_db_session(_exc: BaseException | None) -> None:
        db = g.pop("db_session", None)
        if db is not None:
            await db.close()

    @app.context_processor
    async def inject_globals() -> dict[str, Any]:
        return {"principal": await current_principal(), "demo_mode": app.config["DEMO"]}
