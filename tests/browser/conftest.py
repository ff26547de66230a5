"""Browser tests: the real app served as `make run` serves it, driven by Playwright in Debian's Chromium.

Playwright cannot download its own browser here, so it drives the system Chromium
(`apt-get install chromium`; another binary with POWERBANK_CHROMIUM=/path). Without it the
browser tests are skipped on a developer machine and fail in CI (CI=true).

Playwright's sync API marks its event loop as running between calls, which would break the
pytest-asyncio tests elsewhere in the suite; so Playwright and the server live for this package
only (package scope) and are gone before any other test runs.

axe-core is vendored in vendor/axe.min.js (npm package axe-core, version AXE_VERSION).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from powerbank.config import PROJECT_ROOT
from powerbank.tools.demo_data import DEMO_PASSWORD
from tests.helpers import free_port

try:
    from playwright.sync_api import Browser, BrowserContext, Locator, Page, Playwright, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]

HERE = Path(__file__).resolve().parent
AXE_VERSION = "4.14.1"
AXE_SCRIPT = HERE / "vendor" / "axe.min.js"
# Served by the test under the app's own origin, so the page's CSP (script-src 'self') stays on.
AXE_URL_PATH = "/__browser-tests__/axe.min.js"
SCREENSHOT_DIR = Path(os.environ.get("POWERBANK_SCREENSHOT_DIR", PROJECT_ROOT / "test-results" / "screenshots"))
SERVER_START_TIMEOUT_S = 60.0
# A ceiling, not a wait: generous for a busy CI machine, and a passing test never waits for it.
EXPECT_TIMEOUT_MS = 20_000
# The simulated chargers connect once the server listens; a charge point's page refreshes itself.
CONNECT_TIMEOUT_MS = 45_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = (
    "Browser tests need Chromium and Playwright for Python: `sudo apt-get install chromium` "
    "and `.venv/bin/pip install -e '.[test]'` (or point POWERBANK_CHROMIUM at a Chromium binary)."
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def _chromium_path() -> str | None:
    configured = os.environ.get("POWERBANK_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _missing_browser() -> str | None:
    """Return what is missing to run the browser tests, or None."""
    if sync_playwright is None:
        return "Playwright for Python is not installed."
    if _chromium_path() is None:
        return "No Chromium binary found (looked for POWERBANK_CHROMIUM, `chromium`, `chromium-browser`)."
    return None


# Without Playwright the test modules cannot even be imported; outside CI, do not collect them.
collect_ignore_glob = ["test_*.py"] if sync_playwright is None and not _in_ci() else []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the browser tests on a machine without a browser, unless in CI where that is a failure."""
    missing = _missing_browser()
    if missing is None or _in_ci():
        return
    marker = pytest.mark.skip(reason=f"BROWSER TESTS SKIPPED: {missing} {INSTALL_HINT}")
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(marker)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say loudly, at the end of the run, that the browser tests did not run and how to fix it."""
    missing = _missing_browser()
    if missing is None or _in_ci():
        return
    terminalreporter.write_sep("!", "BROWSER TESTS SKIPPED", yellow=True, bold=True)
    terminalreporter.write_line(f"{missing} {INSTALL_HINT}", yellow=True, bold=True)


@dataclass
class Server:
    """The PowerBank process under test."""

    base_url: str
    log_path: Path

    def log_tail(self, lines: int = 80) -> str:
        if not self.log_path.exists():
            return "(no server log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


_SERVER: Server | None = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the server's log to a failing browser test's report."""
    report = yield
    if report.failed and _SERVER is not None and HERE in Path(str(item.path)).parents:
        report.sections.append(("PowerBank server log (last lines)", _SERVER.log_tail()))
    return report


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, server: Server) -> None:
    """Return once the server accepts connections; fail early if it exits."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"PowerBank exited with {process.returncode} before listening:\n{server.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            # Nothing to wait on but the port itself: retry the connect, briefly.
            time.sleep(0.05)
    pytest.fail(f"PowerBank did not listen on port {port} within {SERVER_START_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def _powerbank(env: dict[str, str], *args: str, log: Any) -> None:
    """Run the `powerbank` command of this environment; fail with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "powerbank.cli", *args],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=120,
        check=False,
    )
    log.write(result.stdout)
    log.flush()
    if result.returncode != 0:
        pytest.fail(f"`powerbank {' '.join(args)}` failed:\n{result.stdout.decode(errors='replace')}")


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Serve PowerBank as `make run` does: fresh database, demo data, simulated chargers, a free port."""
    global _SERVER
    missing = _missing_browser()
    if missing is not None:
        # Only reached in CI: elsewhere the tests were skipped at collection.
        pytest.fail(f"CI must run the browser tests, but: {missing} {INSTALL_HINT}")
    workdir = tmp_path_factory.mktemp("powerbank-server")
    port = free_port()
    # The developer's own POWERBANK_* settings must not leak into the demo under test.
    env = {name: value for name, value in os.environ.items() if not name.startswith("POWERBANK_")}
    env.update(
        {
            "POWERBANK_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'powerbank.db'}",
            "POWERBANK_DEMO": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    log_path = workdir / "server.log"
    _SERVER = server_ = Server(base_url=f"http://127.0.0.1:{port}", log_path=log_path)
    with log_path.open("wb") as log:
        _powerbank(env, "db", "upgrade", log=log)
        _powerbank(env, "demo-data", log=log)
        process = subprocess.Popen(
            [sys.executable, "-m", "powerbank.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--simulate"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_until_listening(process, port, server_)
            yield server_
        finally:
            # SIGTERM lets the server stop its simulator; if it hangs, kill its whole process group.
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            _SERVER = None


@pytest.fixture(scope="package")
def playwright(server: Server) -> Iterator[Playwright]:
    with sync_playwright() as driver:
        expect.set_options(timeout=EXPECT_TIMEOUT_MS)
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = _chromium_path()
    assert chromium is not None
    browser_ = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
    yield browser_
    browser_.close()


@pytest.fixture
def context(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) per test."""
    context_ = browser.new_context(
        base_url=server.base_url, viewport={"width": 1280, "height": 800}, locale="en-GB", timezone_id="UTC"
    )
    context_.set_default_timeout(EXPECT_TIMEOUT_MS)
    context_.route(
        f"**{AXE_URL_PATH}",
        lambda route: route.fulfill(
            status=200, content_type="text/javascript", body=AXE_SCRIPT.read_text(encoding="utf-8")
        ),
    )
    yield context_
    context_.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def new_page(browser: Browser, server: Server) -> Iterator[Callable[[], Page]]:
    """Open another page in a browser profile of its own (another person at another computer)."""
    contexts: list[BrowserContext] = []

    def _open() -> Page:
        other = browser.new_context(base_url=server.base_url, viewport={"width": 1280, "height": 800})
        other.set_default_timeout(EXPECT_TIMEOUT_MS)
        contexts.append(other)
        return other.new_page()

    yield _open
    for other in contexts:
        other.close()


def loaded(page: Page) -> None:
    """Wait, once the new page is showing, until it has loaded: its scripts (htmx, app.js) are running.

    A person never acts in the milliseconds between a page appearing and its scripts starting;
    a test can, and a change made then goes unnoticed by htmx.
    """
    page.wait_for_load_state("load")


def log_in(page: Page, email: str, password: str = DEMO_PASSWORD) -> None:
    """Log in through the log-in form, as a person does, and wait for the teams page."""
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Your teams", level=1)).to_be_visible()
    loaded(page)


def open_team(page: Page, team_name: str) -> None:
    """From the teams page, open a team's Charge points tab."""
    page.get_by_role("link", name=team_name, exact=True).click()
    expect(page.get_by_role("heading", name=team_name, level=1)).to_be_visible()
    loaded(page)


def open_powerbank_tab(page: Page) -> None:
    """On a team's page, open its PowerBank tab (the team's history)."""
    page.get_by_role("navigation", name="Team").get_by_role("link", name="PowerBank").click()
    expect(page.get_by_role("combobox", name="Charge point")).to_be_visible()
    loaded(page)


def open_charge_point(page: Page, team_name: str, charge_point_name: str) -> None:
    """From the teams page, open a charge point of a team."""
    open_team(page, team_name)
    page.get_by_role("link", name=charge_point_name, exact=True).click()
    expect(page.get_by_role("heading", name=charge_point_name, level=1)).to_be_visible()
    loaded(page)


def expect_online(page: Page) -> None:
    """On a charge point's page, wait until its OCPP section says the charger is Online."""
    ocpp = page.get_by_role("region", name="OCPP")
    expect(ocpp.get_by_role("definition").filter(has_text=re.compile("^Online"))).to_be_visible(
        timeout=CONNECT_TIMEOUT_MS
    )


def open_actions_menu(page: Page) -> Locator:
    """Open the Charge points tab's Actions menu and return it."""
    page.get_by_text("Actions", exact=True).click()
    menu = page.get_by_role("group").filter(has=page.get_by_text("Actions", exact=True))
    expect(menu.get_by_role("listitem").first).to_be_visible()
    return menu


def open_sign_up_flow(page: Page, team_name: str) -> None:
    """From the teams page: the team → Charge points → Actions → Sign up for PowerBank."""
    open_team(page, team_name)
    open_actions_menu(page).get_by_role("link", name="Sign up for PowerBank").click()
    expect(page.get_by_role("heading", name="Sign up for PowerBank")).to_be_visible()
    loaded(page)


def screenshot(page: Page, name: str, *, of: Locator | None = None, full_page: bool = True) -> Path:
    """Save a screenshot of the page (or of one part of it) under the screenshot folder.

    The folder is test-results/screenshots/ unless POWERBANK_SCREENSHOT_DIR says otherwise.
    """
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    if of is not None:
        of.screenshot(path=path)
    else:
        page.screenshot(path=path, full_page=full_page)
    return path


def assert_accessible(page: Page, what: str) -> None:
    """Run axe-core on the page as it is now; fail on serious or critical violations, listing them."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(url=AXE_URL_PATH)
    results = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => ({target: n.target, summary: n.failureSummary}))}))"
    )
    serious = [v for v in results if v["impact"] in ("serious", "critical")]
    assert not serious, (
        f"axe-core {AXE_VERSION} found serious/critical violations on {what} ({page.url}):\n"
        + json.dumps(serious, indent=2, ensure_ascii=False)
    )
