"""Domain services: the rules of PowerBank, shared by pages, API, OCPP handlers and CLI."""
