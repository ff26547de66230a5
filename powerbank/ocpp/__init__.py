"""OCPP: the websocket endpoint, the 1.6J and 2.0.1 handlers and the connection registry."""
