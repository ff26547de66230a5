"""The PowerBank app, for ASGI servers: ``hypercorn app:app`` (prefer ``powerbank serve``)."""

from powerbank import create_app

app = create_app()
