"""Log-in, log-out, remember me, throttling, safe redirects, cookies, CSRF and security headers."""

from __future__ import annotations

import asyncio
import html
import re
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank import ConfigurationError, create_app
from powerbank.models import User
from powerbank.services import users
from powerbank.tools.demo_data import DEMO_PASSWORD
from powerbank.web import state
from tests.conftest import TEST_PASSWORD, Factory, LoginAs, csrf_of, htmx_headers
from tests.routes.rules import RULES

pytestmark = pytest.mark.usefixtures("fast_hashing")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the machine's POWERBANK_* settings out of tests that build their own app."""
    for name in ("POWERBANK_DEMO", "POWERBANK_DEV", "POWERBANK_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)


async def log_in(client: QuartClient, email: str, password: str, **extra: str) -> Any:
    token = await csrf_of(client)
    return await client.post("/login", form={"email": email, "password": password, "csrf_token": token, **extra})


async def login_cookies(client: QuartClient, email: str, scheme: str = "http") -> dict[str, str]:
    """Return the cookies a browser receives while logging in: the session (CSRF), then the login."""
    page = await client.get("/login", scheme=scheme)
    token = re.search(r'name="csrf_token" value="([^"]+)"', await page.get_data(as_text=True))
    assert token
    response = await client.post(
        "/login", scheme=scheme, form={"email": email, "password": TEST_PASSWORD, "csrf_token": token.group(1)}
    )
    assert response.status_code == 303
    return {**set_cookies(page), **set_cookies(response)}


def set_cookies(response: Any) -> dict[str, str]:
    """Return each Set-Cookie header by cookie name."""
    return {header.split("=", 1)[0]: header for header in response.headers.getlist("Set-Cookie")}


async def test_login_form_is_labelled(client: QuartClient) -> None:
    body = await (await client.get("/login")).get_data(as_text=True)
    assert re.search(r'<label for="f-email">Email', body)
    assert re.search(r'<label for="f-password">Password', body)
    assert re.search(r'<button type="submit"[^>]*>Log in</button>', body)
    assert 'id="f-email"' in body and 'id="f-password"' in body and 'type="password"' in body


async def test_log_in_gives_a_new_csrf_token(app: Quart, factory: Factory) -> None:
    await factory.user(email="someone@example.test")
    client = app.test_client()
    before = await csrf_of(client)
    assert (await log_in(client, "someone@example.test", TEST_PASSWORD)).status_code == 303
    after = await csrf_of(client, "/")
    assert after != before
    refused = await client.post("/logout", form={"csrf_token": before})
    assert refused.status_code == 400
    assert (await client.post("/logout", form={"csrf_token": after})).status_code == 303


async def test_log_in_and_out(app: Quart, factory: Factory) -> None:
    user = await factory.user(email="someone@example.test")
    client = app.test_client()
    assert (await client.get("/")).status_code == 302
    response = await log_in(client, "Someone@Example.TEST ", TEST_PASSWORD)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert user.email in await (await client.get("/")).get_data(as_text=True)
    token = await csrf_of(client, "/")
    response = await client.post("/logout", form={"csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    response = await client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("someone@example.test", "wrong password"),
        ("nobody@example.test", TEST_PASSWORD),
        ("", ""),
        ("someone@example.test", ""),
        ("someone@example.test", TEST_PASSWORD + " "),
    ],
)
async def test_wrong_credentials_keep_the_email(app: Quart, factory: Factory, email: str, password: str) -> None:
    await factory.user(email="someone@example.test")
    client = app.test_client()
    response = await log_in(client, email, password)
    body = await response.get_data(as_text=True)
    assert response.status_code == 401
    assert "Wrong email or password." in body
    assert f'value="{email}"' in body
    assert (await client.get("/")).status_code == 302


@pytest.mark.parametrize("remember", [True, False])
async def test_remember_me_keeps_the_login_cookie(app: Quart, factory: Factory, remember: bool) -> None:
    await factory.user(email="someone@example.test")
    response = await log_in(
        app.test_client(), "someone@example.test", TEST_PASSWORD, **({"remember": "1"} if remember else {})
    )
    cookie = set_cookies(response)["QUART_AUTH"]
    persistent = "Expires=" in cookie or "Max-Age=" in cookie
    assert persistent is remember


async def test_cookies_are_http_only_and_same_site_lax(app: Quart, factory: Factory) -> None:
    await factory.user(email="someone@example.test")
    cookies = await login_cookies(app.test_client(), "someone@example.test")
    assert {"QUART_AUTH", "session"} <= set(cookies)
    for cookie in cookies.values():
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.fixture
async def production_app(clean_env: None, database_url: str) -> AsyncIterator[Quart]:
    """An app as run for real: a secret key, neither demo nor development mode."""
    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": "a-real-secret"})
    async with app.test_app():
        yield app


async def test_cookies_are_secure_outside_demo_and_dev(production_app: Quart) -> None:
    assert production_app.config["QUART_AUTH_COOKIE_SECURE"] is True
    assert production_app.config["SESSION_COOKIE_SECURE"] is True
    async with state.sessionmaker(production_app)() as session:
        await Factory(session).user(email="someone@example.test")
    # Behind the TLS-terminating proxy the app sees HTTPS requests.
    cookies = await login_cookies(production_app.test_client(), "someone@example.test", scheme="https")
    assert {"QUART_AUTH", "session"} <= set(cookies)
    for cookie in cookies.values():
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.parametrize("mode", ["DEMO", "DEV"])
def test_cookies_are_not_secure_in_demo_or_dev(clean_env: None, mode: str) -> None:
    app = create_app({mode: True, "DATABASE_URL": "sqlite+aiosqlite://"})
    assert app.config["QUART_AUTH_COOKIE_SECURE"] is False
    assert app.config["SESSION_COOKIE_SECURE"] is False


def test_refuses_to_start_without_secret_key(clean_env: None) -> None:
    with pytest.raises(ConfigurationError, match="POWERBANK_SECRET_KEY"):
        create_app({"DATABASE_URL": "sqlite+aiosqlite://"})
    with pytest.raises(ConfigurationError):
        create_app({"DATABASE_URL": "sqlite+aiosqlite://", "SECRET_KEY": ""})


@pytest.mark.parametrize("url", ["powerbank.example.com", "ftp://powerbank.example.com", "https://", "https://x/?a=1"])
def test_refuses_a_public_url_that_is_not_a_web_address(clean_env: None, url: str) -> None:
    with pytest.raises(ConfigurationError, match="POWERBANK_PUBLIC_URL"):
        create_app({"DEV": True, "DATABASE_URL": "sqlite+aiosqlite://", "PUBLIC_URL": url})


def test_public_url_from_the_environment(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERBANK_PUBLIC_URL", "https://powerbank.example.com")
    app = create_app({"DEV": True, "DATABASE_URL": "sqlite+aiosqlite://"})
    assert app.config["PUBLIC_URL"] == "https://powerbank.example.com"


def test_secret_key_from_the_environment(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERBANK_SECRET_KEY", "from-the-environment")
    assert create_app({"DATABASE_URL": "sqlite+aiosqlite://"}).config["SECRET_KEY"] == "from-the-environment"


@pytest.mark.parametrize("mode", ["DEMO", "DEV"])
def test_demo_and_dev_start_without_secret_key(clean_env: None, mode: str) -> None:
    app = create_app({mode: True, "DATABASE_URL": "sqlite+aiosqlite://"})
    assert len(app.config["SECRET_KEY"]) >= 32


async def test_demo_password_refused_outside_demo_mode(production_app: Quart) -> None:
    async with state.sessionmaker(production_app)() as session:
        session.add(User(email="demo.user@example.test", password_hash=_cheap_hash(DEMO_PASSWORD)))
        await session.commit()
    response = await log_in(production_app.test_client(), "demo.user@example.test", DEMO_PASSWORD)
    assert response.status_code == 401
    assert "Wrong email or password." in await response.get_data(as_text=True)


async def test_demo_password_works_in_demo_mode(app: Quart, session: AsyncSession) -> None:
    session.add(User(email="demo.user@example.test", password_hash=_cheap_hash(DEMO_PASSWORD)))
    await session.commit()
    assert (await log_in(app.test_client(), "demo.user@example.test", DEMO_PASSWORD)).status_code == 303


def _cheap_hash(password: str) -> str:
    from powerbank.services.passwords import hash_password

    return hash_password(password)


def _from(address: str) -> dict[str, Any]:
    return {"scope_base": {"client": (address, 40000)}}


async def _attempt(app: Quart, email: str, password: str, address: str = "192.0.2.1") -> Any:
    client = app.test_client()
    token = await csrf_of(client)
    return await client.post(
        "/login", form={"email": email, "password": password, "csrf_token": token}, **_from(address)
    )


async def test_repeated_failures_for_one_email_are_throttled(app: Quart, factory: Factory) -> None:
    await factory.user(email="someone@example.test")
    for attempt in range(5):
        response = await _attempt(app, "someone@example.test", "wrong", address=f"192.0.2.{attempt + 1}")
        assert response.status_code == 401
    # From yet another address, and even with the right password: the email is throttled.
    response = await _attempt(app, "SOMEONE@example.test", TEST_PASSWORD, address="198.51.100.7")
    body = await response.get_data(as_text=True)
    assert response.status_code == 429
    assert "Too many failed log-in attempts. Try again in 15 minutes." in body
    assert 1 <= int(response.headers["Retry-After"]) <= 15 * 60
    assert 'value="SOMEONE@example.test"' in body
    assert "QUART_AUTH" not in set_cookies(response)
    # Another user from a fresh address is not affected.
    other = await factory.user(email="other@example.test")
    assert (await _attempt(app, other.email, TEST_PASSWORD, address="198.51.100.8")).status_code == 303


async def test_repeated_failures_from_one_address_are_throttled(app: Quart, factory: Factory) -> None:
    await factory.user(email="someone@example.test")
    for n in range(5):
        assert (await _attempt(app, f"guess{n}@example.test", "wrong", address="203.0.113.9")).status_code == 401
    response = await _attempt(app, "someone@example.test", TEST_PASSWORD, address="203.0.113.9")
    assert response.status_code == 429
    assert "Too many failed log-in attempts" in await response.get_data(as_text=True)
    assert (await _attempt(app, "someone@example.test", TEST_PASSWORD, address="203.0.113.10")).status_code == 303


async def test_throttle_window_passes(app: Quart, factory: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    await factory.user(email="someone@example.test")
    clock = [1000.0]
    monkeypatch.setattr("powerbank.web.throttle.time.monotonic", lambda: clock[0])
    for _ in range(5):
        await _attempt(app, "someone@example.test", "wrong")
    assert (await _attempt(app, "someone@example.test", TEST_PASSWORD)).status_code == 429
    clock[0] += 15 * 60 + 1
    assert (await _attempt(app, "someone@example.test", TEST_PASSWORD)).status_code == 303


async def test_next_goes_to_a_local_page(app: Quart, factory: Factory) -> None:
    await factory.user(email="someone@example.test")
    client = app.test_client()
    response = await client.get("/teams/1/charge-points?q=x")
    assert response.headers["Location"] == "/login?next=/teams/1/charge-points?q%3Dx"
    login_page = await (await client.get(response.headers["Location"])).get_data(as_text=True)
    assert 'name="next" value="/teams/1/charge-points?q=x"' in login_page
    response = await log_in(client, "someone@example.test", TEST_PASSWORD, next="/teams/1/charge-points?q=x")
    assert response.headers["Location"] == "/teams/1/charge-points?q=x"


OFF_SITE = [
    "//evil.test",
    "//evil.test/path",
    "///evil.test",
    "////evil.test",
    "https://evil.test",
    "http://evil.test/",
    "HTTPS://evil.test",
    "/\\evil.test",
    "\\\\evil.test",
    "\\/evil.test",
    "/\\/evil.test",
    "https:evil.test",
    "http:/evil.test",
    "javascript:alert(1)",
    "data:text/html,x",
    " //evil.test",
    "\t//evil.test",
    "/\t/evil.test",
    "/\n/evil.test",
    "/\r\n/evil.test",
    "/%09/evil.test",
    "evil.test",
    "@evil.test",
    "/\x00/evil.test",
    "//evil.test%2F..",
    "/ /evil.test",
    "\u3002evil.test",
    "/\u2044evil.test",
]


async def test_next_never_leaves_the_site(app: Quart, factory: Factory) -> None:
    await factory.user(email="someone@example.test")
    for target in OFF_SITE:
        response = await log_in(app.test_client(), "someone@example.test", TEST_PASSWORD, next=target)
        if "\x00" in target:
            # A NUL in any input is refused outright (tests/web/test_inputs.py): no redirect at all.
            assert response.status_code == 400 and "Location" not in response.headers, repr(target)
            assert (await app.test_client().get("/login", query_string={"next": target})).status_code == 400
            continue
        assert response.status_code == 303, repr(target)
        assert is_local(response.headers["Location"]), repr(target)
        login_page = await (await app.test_client().get("/login", query_string={"next": target})).get_data(as_text=True)
        match = re.search(r'name="next" value="([^"]*)"', login_page)
        assert match and is_local(html.unescape(match.group(1))), repr(target)


def is_local(location: str) -> bool:
    """Tell whether a browser would stay on this site following ``location``."""
    # Browsers drop tabs and newlines from URLs and read a backslash as a slash.
    return (
        location.startswith("/")
        and not location.startswith("//")
        and "\\" not in location
        and not re.search(r"[\x00-\x20\x7f]", location)
    )


async def test_htmx_request_when_logged_out_redirects_the_page(client: QuartClient) -> None:
    response = await client.get(
        "/teams/1/charge-points",
        headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/teams/1/charge-points?q=a"},
    )
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/login?next=/teams/1/charge-points?q%3Da"


UNSAFE_RULES = [
    (rule, method)
    for rule in RULES
    for method in sorted(rule.methods or ())
    if method in ("POST", "PUT", "PATCH", "DELETE")
]


def _sample_path(rule: Any) -> str:
    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", lambda m: "1" if m.group(1) == "int" else "operator", rule.rule)


async def test_csrf_checked_on_every_unsafe_request(app: Quart, factory: Factory, login_as: LoginAs) -> None:
    operator = await factory.operator()
    user = await factory.user(operator=operator, operator_role="admin")
    client = await login_as(user)
    exempt = app.config.get("CSRF_EXEMPT_BLUEPRINTS", ())
    checked = [(rule, method) for rule, method in UNSAFE_RULES if rule.endpoint.split(".")[0] not in exempt]
    assert len(checked) >= 15
    for rule, method in checked:
        path = _sample_path(rule)
        for attempt in (
            {},
            {"form": {"csrf_token": "wrong"}},
            {"headers": {"X-CSRF-Token": "wrong"}},
            {"form": {"csrf_token": ""}},
        ):
            response = await client.open(path, method=method, **attempt)
            assert response.status_code == 400, f"{method} {path} {attempt}"
            assert "did not come from PowerBank" in await response.get_data(as_text=True)
        # The same request with the session's token (as htmx sends it) gets past the check.
        response = await client.open(path, method=method, headers=htmx_headers(client))
        assert response.status_code != 400, f"{method} {path}"


async def test_csrf_token_of_another_session_is_refused(app: Quart, factory: Factory, login_as: LoginAs) -> None:
    user = await factory.user()
    client = await login_as(user)
    stranger = app.test_client()
    stranger_token = await csrf_of(stranger)
    response = await client.post("/logout", form={"csrf_token": stranger_token})
    assert response.status_code == 400
    assert (await client.get("/")).status_code == 200


async def test_login_itself_needs_the_csrf_token(client: QuartClient, factory: Factory) -> None:
    await factory.user(email="someone@example.test")
    response = await client.post("/login", form={"email": "someone@example.test", "password": TEST_PASSWORD})
    assert response.status_code == 400


def _assert_security_headers(response: Any, what: str) -> None:
    csp = response.headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp, what
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp, what
    assert response.headers.get("X-Content-Type-Options") == "nosniff", what


async def test_security_headers_on_every_response(app: Quart, factory: Factory, login_as: LoginAs) -> None:
    team = await factory.team()
    user = await factory.user(team=team, team_role="member")
    anonymous = app.test_client()
    for path in ("/login", "/", "/static/app.css", "/static/htmx.min.js", "/no-such-page"):
        _assert_security_headers(await anonymous.get(path), path)
    _assert_security_headers(await anonymous.post("/logout"), "CSRF refusal")
    client = await login_as(user)
    for path in ("/", f"/teams/{team.id}/charge-points", "/teams/999/charge-points", "/operators/1/members"):
        _assert_security_headers(await client.get(path), path)
        _assert_security_headers(await client.get(path, headers=htmx_headers(client)), f"{path} (htmx)")
    for _ in range(6):
        response = await _attempt(app, "nobody@example.test", "wrong")
    assert response.status_code == 429
    _assert_security_headers(response, "throttled log-in")


async def test_own_success_does_not_clear_the_address_failures(app: Quart, factory: Factory) -> None:
    await factory.user(email="attacker@example.test")
    for n in range(4):
        assert (await _attempt(app, f"victim{n}@example.test", "guess", address="203.0.113.50")).status_code == 401
    assert (await _attempt(app, "attacker@example.test", TEST_PASSWORD, address="203.0.113.50")).status_code == 303
    assert (await _attempt(app, "victim9@example.test", "guess", address="203.0.113.50")).status_code == 401
    assert (await _attempt(app, "victim9@example.test", "guess", address="203.0.113.50")).status_code == 429


def test_throttle_forgets_stale_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from powerbank.web.throttle import LoginThrottle

    clock = [0.0]
    monkeypatch.setattr("powerbank.web.throttle.time.monotonic", lambda: clock[0])
    throttle = LoginThrottle(max_failures=5, window_s=60)
    for n in range(LoginThrottle.MAX_KEYS):
        throttle.fail([f"email:guess{n}@example.test"])
    clock[0] = 61
    throttle.fail(["email:late@example.test"])
    assert throttle.retry_after(["email:guess1@example.test"]) == 0
    assert len(throttle._failures) < 10


async def test_demo_banner_only_in_demo_mode(client: QuartClient, production_app: Quart) -> None:
    demo_page = await (await client.get("/login")).get_data(as_text=True)
    assert 'class="demo-banner"' in demo_page and "operator.admin@demo.test" in demo_page
    real_page = await (await production_app.test_client().get("/login", scheme="https")).get_data(as_text=True)
    assert "demo-banner" not in real_page and "demo.test" not in real_page and DEMO_PASSWORD not in real_page


# ---- log-in throttling holds under parallel bursts and behind a TLS proxy (issue 13 finding 7) ----


@pytest.fixture
def checked_passwords(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the thread each password check runs in, one entry per check."""
    threads: list[int] = []
    real_verify = users.verify_password

    def recording_verify(password_hash: str | None, password: str) -> bool:
        threads.append(threading.get_ident())
        return real_verify(password_hash, password)

    monkeypatch.setattr(users, "verify_password", recording_verify)
    return threads


@pytest.mark.parametrize(
    ("emails", "addresses"),
    [
        (["someone@example.test"] * 20, [f"192.0.2.{n + 1}" for n in range(20)]),
        ([f"guess{n}@example.test" for n in range(20)], ["203.0.113.9"] * 20),
    ],
    ids=["one account from many addresses", "many accounts from one address"],
)
async def test_a_parallel_burst_gets_no_more_guesses_than_the_limit(
    app: Quart, factory: Factory, checked_passwords: list[int], emails: list[str], addresses: list[str]
) -> None:
    await factory.user(email="someone@example.test")
    clients = [app.test_client() for _ in emails]
    tokens = [await csrf_of(client) for client in clients]
    responses = await asyncio.gather(
        *(
            client.post("/login", form={"email": email, "password": "wrong", "csrf_token": token}, **_from(address))
            for client, token, email, address in zip(clients, tokens, emails, addresses, strict=True)
        )
    )
    assert len(checked_passwords) == 5
    assert sorted(response.status_code for response in responses) == [401] * 5 + [429] * 15


async def test_passwords_are_checked_off_the_event_loop(
    app: Quart, factory: Factory, checked_passwords: list[int]
) -> None:
    await factory.user(email="someone@example.test")
    assert (await log_in(app.test_client(), "someone@example.test", TEST_PASSWORD)).status_code == 303
    assert (await log_in(app.test_client(), "someone@example.test", "wrong")).status_code == 401
    assert (await log_in(app.test_client(), "nobody@example.test", "wrong")).status_code == 401
    assert len(checked_passwords) == 3
    assert threading.get_ident() not in checked_passwords


PROXY = "10.0.0.2"


async def _via_proxy(app: Quart, email: str, password: str, forwarded_for: str) -> int:
    """Log in through the TLS proxy at PROXY, which says the client's address in X-Forwarded-For."""
    client = app.test_client()
    token = await csrf_of(client)
    response = await client.post(
        "/login",
        form={"email": email, "password": password, "csrf_token": token},
        headers={"X-Forwarded-For": forwarded_for},
        **_from(PROXY),
    )
    return response.status_code


async def test_behind_a_trusted_proxy_each_client_is_throttled_on_its_own(app: Quart, factory: Factory) -> None:
    app.config["TRUSTED_PROXY_HEADER"] = "X-Forwarded-For"
    await factory.user(email="someone@example.test")
    for n in range(5):
        assert await _via_proxy(app, f"guess{n}@example.test", "wrong", "198.51.100.1") == 401
    assert await _via_proxy(app, "guess9@example.test", "wrong", "198.51.100.1") == 429
    # Someone else behind the same proxy, at their own address, is not locked out.
    assert await _via_proxy(app, "someone@example.test", TEST_PASSWORD, "198.51.100.2") == 303
    # The proxy appends the address it saw: an address the guesser writes before it changes nothing.
    assert await _via_proxy(app, "guess9@example.test", "wrong", "192.0.2.77, 198.51.100.1") == 429


async def test_the_forwarded_header_is_ignored_unless_configured(app: Quart, factory: Factory) -> None:
    await factory.user(email="someone@example.test")
    for n in range(5):
        assert await _via_proxy(app, f"guess{n}@example.test", "wrong", f"198.51.100.{n + 1}") == 401
    assert await _via_proxy(app, "someone@example.test", TEST_PASSWORD, "198.51.100.99") == 429
