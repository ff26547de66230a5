"""A small helper for htmx request and response headers."""

from __future__ import annotations

from quart import Response, request


def is_htmx() -> bool:
    """Return True when the request comes from htmx (it then wants a fragment)."""
    return request.headers.get("HX-Request") == "true"


def add_vary(response: Response) -> Response:
    """Mark a response as depending on HX-Request, so caches keep page and fragment apart."""
    response.vary.add("HX-Request")
    return response


def hx_redirect(response: Response, url: str) -> Response:
    """Tell htmx to navigate the whole page to ``url``."""
    response.headers["HX-Redirect"] = url
    return response


def hx_trigger(response: Response, event: str) -> Response:
    """Tell htmx to fire ``event`` on the page (other fragments listen and refresh)."""
    response.headers["HX-Trigger"] = event
    return response
