"""Real `powerbank serve` nodes on one PostgreSQL, started as an operator starts them (for the cluster tests)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlmodel import select

from powerbank.config import PROJECT_ROOT
from powerbank.db import standalone_session
from powerbank.models import ChargePoint, ClusterNode
from powerbank.runtime.server import wait_until_listening
from tests.helpers import free_port

# Short enough for tests: a node is declared dead 2 s after its last heartbeat.
CLUSTER_ENV = {
    "POWERBANK_DEV": "1",
    "POWERBANK_CLUSTER_HEARTBEAT_S": "0.5",
    "POWERBANK_CLUSTER_LEASE_S": "2",
    "POWERBANK_OCPP_LAST_SEEN_FLUSH_S": "0.2",
    "PYTHONUNBUFFERED": "1",
}


class Node:
    """One `powerbank serve` process on a free loopback port."""

    def __init__(self, name: str, url: str, log: Path, **settings: str) -> None:
        self.name, self.url, self.log, self.settings = name, url, log, settings
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("POWERBANK_")}
        env.update(CLUSTER_ENV)
        env.update({"POWERBANK_DATABASE_URL": self.url, "POWERBANK_NODE_ID": self.name, **self.settings})
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "powerbank.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                cwd=PROJECT_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def ocpp_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    async def listening(self) -> None:
        await wait_until_listening("127.0.0.1", self.port, timeout=60)

    def health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as error:
            return dict(json.loads(error.read()))

    def api(self, method: str, path: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Call the JSON API on this node; return the status and the decoded answer."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def kill(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)


async def holders(url: str) -> dict[str, str | None]:
    """Return each charge point's identity and the name of the node shown holding it (None: offline)."""
    async with standalone_session(url) as session:
        names = {node.id: node.name for node in await session.exec(select(ClusterNode))}
        return {
            cp.identity: names.get(cp.node_id) if cp.online else None for cp in await session.exec(select(ChargePoint))
        }


def cluster_status(url: str) -> str:
    env = {**os.environ, "POWERBANK_DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "powerbank.cli", "cluster", "status"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


async def api(node: Node, method: str, path: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    return await asyncio.to_thread(node.api, method, path, token, body)


@contextmanager
def nodes_on(
    url: str, folder: Path, names: Iterable[str] = ("node-1", "node-2"), **settings: str
) -> Iterator[list[Node]]:
    """Nodes (not started yet) on one database, their logs in ``folder``; killed when done."""
    started = [Node(name, url, folder / f"{name}.log", **settings) for name in names]
    try:
        yield started
    finally:
        stop_all(started)


def stop_all(nodes: list[Node]) -> None:
    for node in nodes:
        node.kill(signal.SIGKILL)
