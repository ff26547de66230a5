"""The wheel is all a deployment needs: built, installed in a fresh virtual environment and run from
outside the source tree, `powerbank` migrates its database and serves pages, static files and `/healthz`.

Building and installing need the package index pip is configured with (and take about half a minute).
Where that cannot be done the test is skipped, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port

SOURCE = Path(__file__).resolve().parents[1]
# What a build reads: the project description, the package and the resources setup.py bundles.
BUILT_FROM = (
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "alembic.ini",
    "powerbank",
    "templates",
    "static",
    "migrations",
)
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "_bundled", "node_modules", "*.egg-info")


def cannot_run(reason: str, output: str = "") -> None:
    message = f"{reason}\n{output[-3000:]}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def run(*command: str | Path, timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )


def get(url: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return (
                response.status,
                response.read().decode("utf-8", "replace"),
                {k.lower(): v for k, v in response.headers.items()},
            )
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace"), {k.lower(): v for k, v in error.headers.items()}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a copy of the sources and install it, with its dependencies, in a fresh venv."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in BUILT_FROM:
        path = SOURCE / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=IGNORED)
        else:
            shutil.copy2(path, source / name)
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", source)
    if built.returncode != 0:
        cannot_run("the wheel could not be built", built.stdout + built.stderr)
    (wheel,) = (work / "dist").glob("powerbank-*.whl")
    venv = work / "venv"
    made = run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    added = run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile", wheel, timeout=600)
    if added.returncode != 0:
        cannot_run("the wheel's dependencies could not be installed", added.stdout + added.stderr)
    return venv


def test_the_wheel_serves_pages_static_files_and_health_from_a_fresh_venv(installed: Path, tmp_path: Path) -> None:
    place = tmp_path / "deployment"
    place.mkdir()
    env = {
        "PATH": f"{installed / 'bin'}:/usr/bin:/bin",
        "HOME": str(place),
        "POWERBANK_DATABASE_URL": f"sqlite+aiosqlite:///{place / 'powerbank.db'}",
        "POWERBANK_SECRET_KEY": "a-long-random-value-for-this-test-only",
        "POWERBANK_LOG_FORMAT": "json",
        "POWERBANK_METRICS_TOKEN": "metrics-token-for-this-test",
    }
    where = run(installed / "bin" / "python", "-c", "import powerbank; print(powerbank.__file__)", cwd=place, env=env)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed), "powerbank was not imported from the wheel"

    migrated = run(installed / "bin" / "powerbank", "db", "upgrade", cwd=place, env=env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    port = free_port()
    server = subprocess.Popen(
        [str(installed / "bin" / "powerbank"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=place,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body, _ = get(f"{base}/healthz")
                break
            except OSError:
                assert server.poll() is None, server.communicate()[1][-3000:]
                assert time.monotonic() < deadline, "powerbank serve did not answer within 60 s"
                time.sleep(0.2)
        assert status == 200, body
        assert get(f"{base}/readyz")[0] == 200
        status, page, _ = get(f"{base}/login")
        assert status == 200 and "<form" in page and 'name="csrf_token"' in page
        status, script, headers = get(f"{base}/static/htmx.min.js")
        assert status == 200 and "htmx" in script and headers["content-type"].startswith("text/javascript")
        assert get(f"{base}/metrics")[0] == 401
        scrape = urllib.request.Request(
            f"{base}/metrics", headers={"Authorization": "Bearer metrics-token-for-this-test"}
        )
        with urllib.request.urlopen(scrape, timeout=10) as response:
            assert 'powerbank_chargers_connected{protocol="ocpp1.6"} 0.0' in response.read().decode()
    finally:
        server.send_signal(signal.SIGTERM)
        _, errors = server.communicate(timeout=30)
    assert server.returncode == 0, errors[-3000:]
    # The log is JSON lines, as configured.
    lines = [json.loads(line) for line in errors.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message", "request_id", "charger"} <= set(line) for line in lines)
    # No file was written into the installation: the database is where it was configured.
    assert (place / "powerbank.db").is_file()
    assert not (installed / "lib" / "python3.11" / "site-packages" / "var").exists()
