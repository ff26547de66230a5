"""The development mailbox: in demo and development mode without an SMTP server, the email PowerBank would send."""

from __future__ import annotations

from quart import Blueprint, Response

from powerbank.services.mail import recent_mail
from powerbank.web.render import render_page
from powerbank.web.state import db_session

# Registered only in demo and development mode without an SMTP server (see create_app): it shows
# every message, invitation links included, to whoever opens it.
blueprint = Blueprint("mailbox", __name__)


@blueprint.get("/dev/mail")
async def mailbox() -> Response:
    return await render_page("mailbox/index.html", messages=await recent_mail(await db_session()))
