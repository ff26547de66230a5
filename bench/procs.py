"""Processes the benchmark runs and watches: servers, load generators, and a probe client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from bench.loadgen import basic_auth_header, raise_open_files_limit
from powerbank.config import PROJECT_ROOT
from powerbank.runtime.server import wait_until_listening

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Return a process's resident memory (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """Return a process's user plus system CPU time, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields 14 and 15 of stat (utime, stime), counted after the command name.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Measured(Protocol):
    """What a run measures and drives: one server process, or the nodes of a cluster together."""

    kind: str

    @property
    def http(self) -> str: ...

    @property
    def ocpp_url(self) -> str: ...

    def rss_kib(self) -> int: ...

    def cpu_seconds(self) -> float: ...


class ServerProcess:
    """A server under test, started as its own process with its output in a log file."""

    def __init__(self, kind: str, argv: list[str], env: dict[str, str], port: int, log_path: Path) -> None:
        self.kind = kind
        self.argv = argv
        self.env = env
        self.port = port
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ocpp_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def start(self, timeout: float = 60) -> None:
        """Start the server and return once it accepts TCP connections."""
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=raise_open_files_limit,
            )
        try:
            await wait_until_listening("127.0.0.1", self.port, timeout)
        except TimeoutError:
            await self.stop()
            raise RuntimeError(f"{self.kind} did not start; see {self.log_path}") from None

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    async def stop(self, timeout: float = 20) -> None:
        """Stop the server with SIGTERM, killing it if it does not end in time."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class LoadGenerators:
    """One or more load generator processes, each holding a slice of the chargers.

    Given several URLs (the nodes of a cluster), generator i connects its chargers to URL i modulo
    their number.
    """

    def __init__(
        self,
        url: str | list[str],
        password: str,
        chargers: int,
        processes: int,
        log_path: Path,
        max_connecting: int | None = None,
    ) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        # Handshakes at a time, per generator (None: the generator's default).
        self.max_connecting = max_connecting
        self.password = password
        self.chargers = chargers
        self.count = max(1, min(processes, chargers))
        self.log_path = log_path
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        per = -(-self.chargers // self.count)
        with self.log_path.open("ab") as log:
            for index in range(self.count):
                first = 1 + index * per
                count = min(per, self.chargers - index * per)
                self.processes.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "bench.loadgen",
                        "--url",
                        self.urls[index % len(self.urls)],
                        "--password",
                        self.password,
                        "--first",
                        str(first),
                        "--count",
                        str(count),
                        *(["--max-connecting", str(self.max_connecting)] if self.max_connecting else []),
                        cwd=PROJECT_ROOT,
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=log,
                        limit=2**26,
                        preexec_fn=raise_open_files_limit,
                    )
                )

    async def command(self, wait_s: float, /, **command: Any) -> list[dict[str, Any]]:
        """Send one command to every generator and return their answers (waiting at most ``wait_s``)."""
        line = (json.dumps(command) + "\n").encode()
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(line)
            await process.stdin.drain()

        async def answer(process: asyncio.subprocess.Process) -> dict[str, Any]:
            assert process.stdout is not None
            raw = await process.stdout.readline()
            if not raw:
                raise RuntimeError(f"load generator ended; see {self.log_path}")
            return dict(json.loads(raw))

        return list(await asyncio.wait_for(asyncio.gather(*(answer(p) for p in self.processes)), wait_s))

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.processes if p.returncode is None)

    async def stop(self) -> None:
        """Close the generators' connections and end them (bounded in time)."""
        with contextlib.suppress(RuntimeError, TimeoutError, ConnectionError):
            await self.command(30, cmd="close")
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.wait()


async def http_json(
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, Any]:
    """Make one HTTP request and return its status and decoded JSON body (None if not JSON)."""

    def request() -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            url,
            data=data,
            method=method,
            headers={
                "Accept": "application/json",
                **({"Content-Type": "application/json"} if data else {}),
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, None

    return await asyncio.to_thread(request)


async def ping_probe(url: str, identity: str, password: str, stop: asyncio.Event, every: float = 0.1) -> list[float]:
    """Measure websocket ping → pong round trips on an idle charger connection until ``stop``.

    The server's websocket layer answers a ping on its event loop without touching the app, so the
    round trip is how long the loop takes to get to it: an outside measure of event-loop lag.
    """
    round_trips: list[float] = []
    async with connect(
        f"{url}/{identity}",
        subprotocols=[Subprotocol("ocpp1.6")],
        additional_headers={"Authorization": basic_auth_header(identity, password)},
        compression=None,
        proxy=None,
        ping_interval=None,
        open_timeout=30,
    ) as ws:
        while not stop.is_set():
            started = time.monotonic()
            pong = await ws.ping()
            try:
                await asyncio.wait_for(pong, 10)
            except TimeoutError:
                round_trips.append(10.0)
            else:
                round_trips.append(time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
    return round_trips
