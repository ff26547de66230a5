"""Two real `powerbank serve` nodes on one PostgreSQL count failed log-ins and API requests together.

Spread over both nodes, as a load balancer spreads them, guesses and requests meet the limit one
node would set: a second node gives an attacker no more guesses, and a token no more requests.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from powerbank.config import PROJECT_ROOT
from powerbank.db import standalone_session
from powerbank.runtime.server import wait_until_listening
from powerbank.services.api_tokens import create_token_by_names
from tests.conftest import CSRF_RE, TEST_PASSWORD, Factory
from tests.helpers import free_port

pytestmark = pytest.mark.postgres_only

MAX_FAILURES = 4
API_LIMIT = 4
EMAIL = "guessed@example.test"


class Node:
    """One `powerbank serve` process on a free loopback port, with small limits."""

    def __init__(self, name: str, url: str, log: Path) -> None:
        self.name, self.port = name, free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith("POWERBANK_")}
        env.update(
            {
                "POWERBANK_DATABASE_URL": url,
                "POWERBANK_DEV": "1",
                "POWERBANK_NODE_ID": name,
                # One secret for every node, as a cluster must have: a session made on one is valid on the other.
                "POWERBANK_SECRET_KEY": "cluster-throttle-test-secret",
                "POWERBANK_LOGIN_MAX_FAILURES": str(MAX_FAILURES),
                "POWERBANK_API_RATE_LIMIT": str(API_LIMIT),
                "POWERBANK_API_RATE_WINDOW_S": "3600",
                "PYTHONUNBUFFERED": "1",
            }
        )
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "powerbank.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                cwd=PROJECT_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def log_in(self, email: str, password: str) -> int:
        """Log in through the form as a browser does (its page, then the post); return the post's status."""
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()), _NoRedirect())
        base = f"http://127.0.0.1:{self.port}"
        with opener.open(f"{base}/login", timeout=10) as page:
            match = CSRF_RE.search(page.read().decode())
        assert match, "no CSRF token on the log-in page"
        form = urllib.parse.urlencode({"email": email, "password": password, "csrf_token": match.group(1)}).encode()
        status, _ = _status(opener, urllib.request.Request(f"{base}/login", data=form))
        return status

    def api_get(self, token: str) -> tuple[int, str | None]:
        """GET the API's teams with a token; return the status and any Retry-After."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1/teams", headers={"Authorization": f"Bearer {token}"}
        )
        return _status(urllib.request.build_opener(), request)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Keep a redirect as the answer: a successful log-in is a 303."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _status(opener: urllib.request.OpenerDirector, request: urllib.request.Request) -> tuple[int, str | None]:
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers.get("Retry-After")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After")


@pytest.fixture
def nodes(database_url: str, tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    one, two = (Node(name, database_url, tmp_path / f"{name}.log") for name in ("node-1", "node-2"))
    try:
        yield one, two
    finally:
        one.kill()
        two.kill()


async def _user_and_token(database_url: str) -> str:
    """Make the guessed user, and an operator's read token; return the token."""
    async with standalone_session(database_url) as session:
        factory = Factory(session)
        await factory.user(email=EMAIL)
        operator = await factory.operator(name="Throttled Operator")
        await factory.team(operator)
        _, secret = await create_token_by_names(
            session,
            operator_name=operator.name,
            team_name=None,
            access="read",
            name="busy script",
            expires_in_days=None,
            created_by_email=None,
        )
        await session.commit()
        return secret


async def test_log_ins_and_api_requests_spread_over_two_nodes_meet_one_limit(
    database_url: str, nodes: tuple[Node, Node]
) -> None:
    token = await _user_and_token(database_url)
    for node in nodes:
        await wait_until_listening("127.0.0.1", node.port, timeout=60)
    one, two = nodes

    # Wrong passwords alternating between the nodes: the limit is met at the same total as on one node.
    failed = [await asyncio.to_thread(nodes[n % 2].log_in, EMAIL, "wrong guess") for n in range(MAX_FAILURES)]
    assert failed == [401] * MAX_FAILURES
    assert await asyncio.to_thread(one.log_in, EMAIL, "one more guess") == 429
    # Even the right password waits now, on either node.
    assert await asyncio.to_thread(two.log_in, EMAIL, TEST_PASSWORD) == 429

    # A token's requests alternating between the nodes spend one bucket.
    answers = [await asyncio.to_thread(nodes[n % 2].api_get, token) for n in range(API_LIMIT)]
    assert [status for status, _ in answers] == [200] * API_LIMIT
    for node in (two, one):
        status, retry_after = await asyncio.to_thread(node.api_get, token)
        assert status == 429
        assert retry_after is not None and re.fullmatch(r"\d+", retry_after)
        # Refilled at 4 requests an hour: one more in 15 minutes.
        assert 850 <= int(retry_after) <= 900
