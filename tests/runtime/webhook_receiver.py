"""A real HTTP receiver on loopback for webhook tests: records each request, answers as it is told."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import h11

from tests.helpers import free_port

# What the receiver does with a request: answer with this status, or "hang" (never answer),
# or "redirect" (a 302 to another address, which must not be followed).
Behaviour = int | str


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int
    # Behaviours for the next requests, in order; once used up every request gets ``then``.
    script: list[Behaviour] = field(default_factory=list)
    then: Behaviour = 200
    received: list[Received] = field(default_factory=list)
    _server: asyncio.base_events.Server | None = None
    _hanging: list[asyncio.Event] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/powerbank"

    def bodies_by_key(self) -> dict[str, int]:
        """Return how many times each idempotency key arrived."""
        counts: dict[str, int] = {}
        for request in self.received:
            key = request.headers.get("idempotency-key", "")
            counts[key] = counts.get(key, 0) + 1
        return counts

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = b""
        try:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await reader.read(65536))
                    continue
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            assert request is not None
            self.received.append(
                Received(
                    request.target.decode(),
                    {name.decode().lower(): value.decode() for name, value in request.headers},
                    body,
                )
            )
            behaviour = self.script.pop(0) if self.script else self.then
            if behaviour == "hang":
                released = asyncio.Event()
                self._hanging.append(released)
                await released.wait()
                return
            headers = [("Content-Length", "2"), ("Connection", "close")]
            status = 200
            if behaviour == "redirect":
                status = 302
                headers.append(("Location", "http://127.0.0.1:1/elsewhere"))
            else:
                assert isinstance(behaviour, int)
                status = behaviour
            writer.write(connection.send(h11.Response(status_code=status, headers=headers)) or b"")
            writer.write(connection.send(h11.Data(data=b"ok")) or b"")
            writer.write(connection.send(h11.EndOfMessage()) or b"")
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def release_hanging(self) -> None:
        for event in self._hanging:
            event.set()


@contextlib.asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    """Run a receiver on 127.0.0.1 for the duration of the block."""
    receiver = Receiver(free_port())
    server = await asyncio.start_server(receiver._handle, "127.0.0.1", receiver.port)
    receiver._server = server
    try:
        yield receiver
    finally:
        receiver.release_hanging()
        server.close()
        await server.wait_closed()
