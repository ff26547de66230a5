"""Three real `powerbank serve` nodes behind a real HAProxy on docs/deploy/haproxy.cfg, used as people and chargers do.

The balancer runs the very file docs/cluster.md shows; only what differs between machines is
replaced (addresses, ports, the certificate's and the admin socket's paths). HAProxy (Debian's
`haproxy` package) and `openssl` (for a throw-away certificate) are needed: without them the tests
are skipped on a developer machine and fail in CI (CI=true), where `.ci/run` installs them.
"""

from __future__ import annotations

import asyncio
import csv
import http.cookiejar
import io
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlmodel import select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from powerbank.config import PROJECT_ROOT
from powerbank.db import standalone_session
from powerbank.models import ChargePoint, ClusterNode
from powerbank.runtime.server import wait_until_listening
from tests import postgres
from tests.conftest import CSRF_RE, TEST_PASSWORD, Factory
from tests.helpers import eventually, free_port
from tests.ocpp.support import basic

pytestmark = pytest.mark.postgres_only

HAPROXY_CONFIG = PROJECT_ROOT / "docs" / "deploy" / "haproxy.cfg"
NODE_NAMES = ("node1", "node2", "node3")
# The example's addresses of the nodes, as docs/deploy/haproxy.cfg names them.
EXAMPLE_ADDRESSES = {"node1": "10.0.0.11:8000", "node2": "10.0.0.12:8000", "node3": "10.0.0.13:8000"}
# What every node of one installation shares (docs/cluster.md): the key that signs sessions above all.
SECRET_KEY = "one-secret-key-shared-by-every-node"
ADMIN_EMAIL = "admin@cluster.example"
# How long a simulated charger waits before connecting again, as a real one backs off.
RECONNECT_DELAY_S = 0.5


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


@pytest.fixture
def tools() -> None:
    """Skip without HAProxy or openssl on a developer machine; in CI their absence is a failure."""
    missing = [tool for tool in ("haproxy", "openssl") if shutil.which(tool) is None]
    if not missing:
        return
    message = f"{' and '.join(missing)} not installed: `apt-get install haproxy openssl`"
    if _in_ci():
        pytest.fail(f"CI must run the HAProxy cluster tests, but {message}")
    pytest.skip(message)


class Node:
    """A `powerbank serve` process configured as docs/cluster.md says, on a port of its own."""

    def __init__(self, name: str, url: str, public_url: str, log: Path) -> None:
        self.name, self.port, self.log = name, free_port(), log
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("POWERBANK_")}
        self.env.update(
            {
                "POWERBANK_DATABASE_URL": url,
                "POWERBANK_NODE_ID": name,
                "POWERBANK_SECRET_KEY": SECRET_KEY,
                "POWERBANK_PUBLIC_URL": public_url,
                "POWERBANK_TRUSTED_PROXY_HEADER": "X-Forwarded-For",
                "POWERBANK_TRUSTED_PROXY_COUNT": "1",
                # Short beats and lease, so a dead node is declared dead within the test's patience.
                "POWERBANK_CLUSTER_HEARTBEAT_S": "0.5",
                "POWERBANK_CLUSTER_LEASE_S": "2",
                "POWERBANK_OCPP_LAST_SEEN_FLUSH_S": "0.2",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "powerbank.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                cwd=PROJECT_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def restart(self) -> None:
        """Start the node again, under the same name and port, once it has stopped."""
        assert self.process.poll() is not None
        self.process = self._start()

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def kill(self, sig: int) -> None:
        self.signal(sig)
        self.process.wait(timeout=30)


class Balancer:
    """HAProxy in the foreground, running docs/deploy/haproxy.cfg with this machine's ports and paths."""

    def __init__(self, folder: Path, nodes: list[Node], certificate: Path, http_port: int, https_port: int) -> None:
        self.http_port, self.https_port = http_port, https_port
        self.admin_socket = folder / "haproxy-admin.sock"
        self.config = folder / "haproxy.cfg"
        self.config.write_text(self._render(nodes, certificate))
        self.log = folder / "haproxy.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                ["haproxy", "-db", "-f", str(self.config)], stdout=out, stderr=subprocess.STDOUT
            )

    def _render(self, nodes: list[Node], certificate: Path) -> str:
        text = HAPROXY_CONFIG.read_text()
        replacements = {
            "bind :80\n": f"bind 127.0.0.1:{self.http_port}\n",
            "bind :443 ": f"bind 127.0.0.1:{self.https_port} ",
            "/etc/haproxy/certs/powerbank.pem": str(certificate),
            "/run/haproxy/admin.sock": str(self.admin_socket),
        }
        for node in nodes:
            replacements[f"server {node.name} {EXAMPLE_ADDRESSES[node.name]}"] = (
                f"server {node.name} 127.0.0.1:{node.port}"
            )
        for example, here in replacements.items():
            assert text.count(example) == 1, f"docs/deploy/haproxy.cfg no longer has {example!r} once"
            text = text.replace(example, here)
        if os.geteuid() != 0:
            # Changing root and user needs root; CI runs as root and so runs these lines too.
            text = re.sub(r"^\s*(chroot|user|group) .*\n", "", text, flags=re.MULTILINE)
        return text

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def server_states(self) -> dict[str, str]:
        """Return HAProxy's state of each node (UP, DOWN, or on its way: "UP 1/2"), read from its admin socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as admin:
            admin.settimeout(5)
            admin.connect(str(self.admin_socket))
            admin.sendall(b"show stat\n")
            chunks = []
            while chunk := admin.recv(65536):
                chunks.append(chunk)
        rows = csv.DictReader(io.StringIO(b"".join(chunks).decode().lstrip("# ")))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == "powerbank_nodes" and row["svname"] in NODE_NAMES
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=30)


def make_certificate(folder: Path) -> Path:
    """Make a self-signed certificate for 127.0.0.1, as one PEM file holding the key too (what HAProxy reads)."""
    key, cert, pem = folder / "key.pem", folder / "cert.pem", folder / "powerbank.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    pem.write_bytes(cert.read_bytes() + key.read_bytes())
    return cert


@dataclass
class Cluster:
    database_url: str
    nodes: dict[str, Node]
    balancer: Balancer
    tls: ssl.SSLContext

    async def all_up(self) -> bool:
        states = await asyncio.to_thread(self.balancer.server_states)
        return states == dict.fromkeys(NODE_NAMES, "UP")


@pytest.fixture
async def cluster(tools: None, database_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with standalone_session(database_url) as session:
        factory = Factory(session)
        operator = await factory.operator("Cluster Operator")
        team = await factory.team(operator, "Cluster Team")
        await factory.user(operator=operator, operator_role="admin", email=ADMIN_EMAIL)
        for n in range(1, 13):
            await factory.charge_point(team, identity=f"CP-{n:02d}")
    certificate = make_certificate(tmp_path)
    http_port, https_port = free_port(), free_port()
    public_url = f"https://127.0.0.1:{https_port}"
    nodes = {name: Node(name, database_url, public_url, tmp_path / f"{name}.log") for name in NODE_NAMES}
    balancer = Balancer(tmp_path, list(nodes.values()), tmp_path / "powerbank.pem", http_port, https_port)
    try:
        try:
            await wait_until_listening("127.0.0.1", https_port, timeout=30)
        except TimeoutError:
            pytest.fail(f"HAProxy did not start:\n{balancer.log.read_text()}")
        for node in nodes.values():
            await wait_until_listening("127.0.0.1", node.port, timeout=60)
        tls = ssl.create_default_context(cafile=str(certificate))
        found = Cluster(database_url, nodes, balancer, tls)
        await eventually(found.all_up, timeout=30, message="HAProxy never saw every node up")
        yield found
    finally:
        balancer.stop()
        for node in nodes.values():
            node.kill(signal.SIGKILL)


@dataclass
class Page:
    status: int
    headers: Any
    text: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand redirects back to the test, as the status a browser would see."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch(opener: urllib.request.OpenerDirector, url: str, form: dict[str, str] | None = None, **headers: str) -> Page:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with opener.open(request, timeout=10) as response:
            return Page(response.status, response.headers, response.read().decode())
    except urllib.error.HTTPError as error:
        return Page(error.code, error.headers, error.read().decode())


class Browser:
    """A person's browser on the balancer's HTTPS address: cookies kept, redirects shown."""

    def __init__(self, base: str, tls: ssl.SSLContext) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), urllib.request.HTTPSHandler(context=tls), _NoRedirect()
        )

    def open(self, path: str, form: dict[str, str] | None = None) -> Page:
        return fetch(self.opener, self.base + path, form)

    def cookie_header(self) -> str:
        return "; ".join(f"{cookie.name}={cookie.value}" for cookie in self.jar)


def logged_in(page: Page) -> bool:
    return page.status == 200 and ADMIN_EMAIL in page.text


@dataclass
class Charger:
    """A charger that stays connected through the balancer and connects again whenever it is dropped."""

    identity: str
    url: str
    tls: ssl.SSLContext | None
    boots: int = 0
    online: bool = False
    served_by: str | None = None
    close_codes: list[int | None] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def start(self) -> Charger:
        self.task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with suppress(asyncio.CancelledError):
            await self.task

    async def _run(self) -> None:
        while True:
            websocket: ClientConnection | None = None
            try:
                async with connect(
                    f"{self.url}/{self.identity}",
                    subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                    additional_headers=basic(self.identity, TEST_PASSWORD),
                    ssl=self.tls,
                    open_timeout=10,
                ) as websocket:
                    await self._boot(websocket)
                    self.served_by = websocket.response.headers.get("X-Served-By") if websocket.response else None
                    self.boots += 1
                    self.online = True
                    async for message in websocket:
                        await self._answer(websocket, message)
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError):
                pass
            self.online = False
            if websocket is not None:
                self.close_codes.append(websocket.close_code)
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def _boot(self, websocket: ClientConnection) -> None:
        boot = {"chargePointVendor": "Easee", "chargePointModel": "Home"}
        await websocket.send(json.dumps([2, "boot", "BootNotification", boot]))
        while True:
            message = await asyncio.wait_for(websocket.recv(), 10)
            frame = json.loads(message)
            if frame[:2] == [3, "boot"]:
                assert frame[2]["status"] == "Accepted", frame
                return
            await self._answer(websocket, message)

    @staticmethod
    async def _answer(websocket: ClientConnection, message: str | bytes) -> None:
        """Answer the hub's own calls (such as its capability probe) as a charger that knows none of them."""
        frame = json.loads(message)
        if frame[0] == 2:
            await websocket.send(json.dumps([4, frame[1], "NotImplemented", "", {}]))


@asynccontextmanager
async def chargers_online(
    cluster: Cluster, identities: list[str], url: str | None = None
) -> AsyncIterator[list[Charger]]:
    """Connect chargers one after another through the balancer (wss://), and stop them on exit."""
    started: list[Charger] = []
    try:
        for identity in identities:
            address = url or f"wss://127.0.0.1:{cluster.balancer.https_port}/ocpp"
            charger = Charger(identity, address, cluster.tls if address.startswith("wss:") else None)
            started.append(charger.start())
            await eventually(lambda: charger.online, timeout=30, message=f"{identity} never came online")
        yield started
    finally:
        for charger in started:
            await charger.stop()


async def holders(url: str) -> dict[str, str | None]:
    """Return each charge point's identity and the name of the node shown holding it (None: offline)."""
    async with standalone_session(url) as session:
        names = {node.id: node.name for node in await session.exec(select(ClusterNode))}
        return {
            cp.identity: names.get(cp.node_id) if cp.online else None for cp in await session.exec(select(ChargePoint))
        }


def cluster_status(url: str) -> dict[str, list[str]]:
    """Return `powerbank cluster status`: each node's state and number of chargers."""
    env = {**os.environ, "POWERBANK_DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "powerbank.cli", "cluster", "status"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return {line.split()[0]: line.split()[1:3] for line in done.stdout.splitlines()[1:]}


async def shown_held_as_connected(cluster: Cluster, chargers: list[Charger]) -> bool:
    """Whether the database shows each charger held by the node it is connected to now."""
    shown = await holders(cluster.database_url)
    return all(charger.online and shown[charger.identity] == charger.served_by for charger in chargers)


async def test_people_stay_logged_in_whichever_node_answers(cluster: Cluster) -> None:
    browser = Browser(cluster.balancer.base, cluster.tls)
    login = await asyncio.to_thread(browser.open, "/login")
    assert login.status == 200
    token = CSRF_RE.search(login.text)
    assert token is not None
    # The form was made by one node; its post may reach another, which must accept the session's token.
    done = await asyncio.to_thread(
        browser.open, "/login", {"email": ADMIN_EMAIL, "password": TEST_PASSWORD, "csrf_token": token.group(1)}
    )
    assert done.status == 303, done.text

    answered: set[str] = set()

    async def two_nodes_answered() -> bool:
        page = await asyncio.to_thread(browser.open, "/")
        assert logged_in(page), (page.status, page.headers.get("X-Served-By"))
        answered.add(page.headers["X-Served-By"])
        return len(answered) >= 2

    await eventually(two_nodes_answered, timeout=30, message=f"only {answered} answered through the balancer")

    # Whichever node the balancer picks next: each of them takes the session cookie made through it.
    plain = urllib.request.build_opener(_NoRedirect())
    for node in cluster.nodes.values():
        page = await asyncio.to_thread(fetch, plain, f"http://127.0.0.1:{node.port}/", Cookie=browser.cookie_header())
        assert logged_in(page), f"{node.name} did not take the session made through the balancer"

    # Plain HTTP is sent to HTTPS, except a charger's OCPP address (security profile 1 is ws://).
    page = await asyncio.to_thread(fetch, plain, f"http://127.0.0.1:{cluster.balancer.http_port}/login")
    assert page.status == 301
    # The same host (and here, its port: 80 and 443 in the example) under https://.
    assert page.headers["Location"] == f"https://127.0.0.1:{cluster.balancer.http_port}/login"


async def test_a_rolling_restart_moves_chargers_to_the_other_nodes(cluster: Cluster, capsys: Any) -> None:
    one = cluster.nodes["node1"]
    plain_url = f"ws://127.0.0.1:{cluster.balancer.http_port}/ocpp"
    async with (
        chargers_online(cluster, [f"CP-{n:02d}" for n in range(1, 9)]) as secure,
        chargers_online(cluster, ["CP-09"], url=plain_url) as profile_one,
    ):
        everyone = secure + profile_one
        await eventually(lambda: shown_held_as_connected(cluster, everyone), timeout=15)
        # Least connections spreads chargers that connect one after another over every node.
        assert {charger.served_by for charger in everyone} == set(NODE_NAMES)

        leaving = [charger for charger in everyone if charger.served_by == "node1"]
        staying = [charger for charger in everyone if charger.served_by != "node1"]
        started = time.monotonic()
        one.signal(signal.SIGTERM)

        async def back_elsewhere() -> bool:
            return all(charger.boots == 2 and charger.served_by != "node1" for charger in leaving) and (
                await shown_held_as_connected(cluster, everyone)
            )

        await eventually(back_elsewhere, timeout=30, message="node 1's chargers did not come back elsewhere")
        elapsed = time.monotonic() - started
        with capsys.disabled():
            print(f"\n{len(leaving)} chargers of the SIGTERM'd node were back through HAProxy in {elapsed:.2f} s")
        # They were told the hub is going away; the others never noticed.
        assert [charger.close_codes for charger in leaving] == [[1001]] * len(leaving)
        assert all(charger.boots == 1 and not charger.close_codes for charger in staying)
        assert await asyncio.to_thread(one.process.wait, 30) == 0

        async def one_down() -> bool:
            return (await asyncio.to_thread(cluster.balancer.server_states))["node1"] == "DOWN"

        await eventually(one_down, timeout=15, message="HAProxy never marked node 1 down")
        for _ in range(6):
            page = await asyncio.to_thread(
                fetch,
                urllib.request.build_opener(urllib.request.HTTPSHandler(context=cluster.tls)),
                f"{cluster.balancer.base}/healthz",
            )
            assert page.status == 200
            assert json.loads(page.text)["node"] == page.headers["X-Served-By"] != "node1"

        # Started again, node 1 is taken back into the balancer and gets the next chargers: it has fewest.
        one.restart()
        await wait_until_listening("127.0.0.1", one.port, timeout=60)
        await eventually(cluster.all_up, timeout=30, message="HAProxy never took node 1 back")
        async with chargers_online(cluster, ["CP-10", "CP-11", "CP-12"]) as newcomers:
            assert [charger.served_by for charger in newcomers] == ["node1"] * 3
            await eventually(lambda: shown_held_as_connected(cluster, newcomers), timeout=15)


async def test_a_killed_node_chargers_come_back_elsewhere_and_it_is_declared_dead(cluster: Cluster) -> None:
    two = cluster.nodes["node2"]
    async with chargers_online(cluster, [f"CP-{n:02d}" for n in range(1, 10)]) as everyone:
        await eventually(lambda: shown_held_as_connected(cluster, everyone), timeout=15)
        orphans = [charger for charger in everyone if charger.served_by == "node2"]
        assert orphans

        two.kill(signal.SIGKILL)

        async def back_elsewhere() -> bool:
            return all(charger.boots == 2 and charger.served_by in ("node1", "node3") for charger in orphans) and (
                await shown_held_as_connected(cluster, everyone)
            )

        await eventually(back_elsewhere, timeout=30, message="node 2's chargers did not come back elsewhere")

        async def two_dead() -> bool:
            return (await asyncio.to_thread(cluster_status, cluster.database_url))["node2"][0] == "dead"

        await eventually(two_dead, timeout=20, message="node 2 was never declared dead")
        # Declaring node 2 dead shows offline only what it still held: its chargers, back elsewhere, stay online.
        assert await shown_held_as_connected(cluster, everyone)
        status = await asyncio.to_thread(cluster_status, cluster.database_url)
        assert status["node2"] == ["dead", "0"]
        assert sum(int(status[name][1]) for name in ("node1", "node3")) == len(everyone)

        async def two_down() -> bool:
            return (await asyncio.to_thread(cluster.balancer.server_states))["node2"] == "DOWN"

        await eventually(two_down, timeout=15, message="HAProxy never marked node 2 down")


async def reach_database(database_url: str, reachable: bool) -> None:
    """Let the nodes reach their database again, or cut them off it as when PostgreSQL goes away."""
    name = make_url(database_url).database
    admin = make_url(postgres.ADMIN_URL)
    connection = await asyncpg.connect(
        host=admin.host, port=admin.port, user=admin.username, password=admin.password, database=admin.database
    )
    try:
        await connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(reachable).lower()}')
        if not reachable:
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
    finally:
        await connection.close()


async def test_without_the_database_the_balancer_stops_sending_until_it_is_back(cluster: Cluster) -> None:
    async with chargers_online(cluster, [f"CP-{n:02d}" for n in range(1, 7)]) as everyone:
        await eventually(lambda: shown_held_as_connected(cluster, everyone), timeout=15)
        await reach_database(cluster.database_url, False)
        try:

            async def every_node_says_unavailable() -> bool:
                answers = [
                    await asyncio.to_thread(
                        fetch, urllib.request.build_opener(), f"http://127.0.0.1:{node.port}/healthz"
                    )
                    for node in cluster.nodes.values()
                ]
                return all(answer.status == 503 for answer in answers)

            await eventually(every_node_says_unavailable, timeout=15, message="a node still said it could serve")

            async def all_down() -> bool:
                states = await asyncio.to_thread(cluster.balancer.server_states)
                return states == dict.fromkeys(NODE_NAMES, "DOWN")

            await eventually(all_down, timeout=15, message="HAProxy kept sending to a node without its database")
            # The balancer answers for the nodes, and cut the chargers off nodes that cannot serve them.
            secure = urllib.request.build_opener(urllib.request.HTTPSHandler(context=cluster.tls))
            page = await asyncio.to_thread(fetch, secure, f"{cluster.balancer.base}/healthz")
            assert page.status == 503 and "X-Served-By" not in page.headers
            await eventually(lambda: not any(charger.online for charger in everyone), timeout=15)
        finally:
            await reach_database(cluster.database_url, True)

        # The database back, the nodes serve again and the chargers come back through the balancer.
        await eventually(cluster.all_up, timeout=30, message="HAProxy never took the nodes back")
        await eventually(
            lambda: shown_held_as_connected(cluster, everyone), timeout=30, message="the chargers did not come back"
        )
        # A node declared dead while the database was away (its heartbeats were stale) is a node again.
        status = await asyncio.to_thread(cluster_status, cluster.database_url)
        assert {name: state for name, (state, _) in status.items()} == dict.fromkeys(NODE_NAMES, "alive")
        assert sum(int(chargers) for _, chargers in status.values()) == len(everyone)
