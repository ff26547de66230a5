"""What every request's text must be before any page or API route sees it."""

from __future__ import annotations

from quart import abort, request

from powerbank.rules.validators import holds_nul

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
NUL_REFUSED = "Text may not contain NUL characters."


async def refuse_nul_characters() -> None:
    """Refuse (400) a request whose path, query, form or JSON holds a NUL character.

    No input of PowerBank needs one, and PostgreSQL refuses to store or even compare text with
    one: caught here, it is a clear 400 instead of a database error deep in a route.
    """
    if "\x00" in request.path or holds_nul(list(request.args.items(multi=True))):
        abort(400, description=NUL_REFUSED)
    if request.mimetype in FORM_TYPES:
        form = await request.form
        if holds_nul(list(form.items(multi=True))):
            abort(400, description=NUL_REFUSED)
    elif request.is_json:
        # JSON carries a NUL only escaped, so only a body with the escape is parsed here.
        if b"\\u0000" in await request.get_data() and holds_nul(await request.get_json(silent=True)):
            abort(400, description=NUL_REFUSED)
