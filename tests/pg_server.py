"""Run a command against a throw-away PostgreSQL: `python -m tests.pg_server -- python -m pytest ...`.

`make test-pg` uses it. It needs Debian's `postgresql` package (initdb and pg_ctl) and nothing
configured: a cluster is made in a temporary folder, listens on a free loopback port (and a socket
in that folder), trusts local connections, and is stopped and deleted when the command ends. The
command gets POWERBANK_TEST_PG_URL, the URL of the cluster's `postgres` database as its superuser.

`initdb` and `postgres` refuse to run as root; as root (CI), they run as the `postgres` user on a
folder it owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def _bindir() -> Path:
    """Return the folder of initdb and pg_ctl (the newest installed PostgreSQL)."""
    found = shutil.which("pg_config")
    if found:
        bindir = Path(subprocess.run([found, "--bindir"], check=True, capture_output=True, text=True).stdout.strip())
        if (bindir / "initdb").exists():
            return bindir
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        sys.exit("PostgreSQL is not installed: `apt-get install postgresql` (make test-pg needs initdb and pg_ctl).")
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_owner(command: list[str]) -> list[str]:
    """Return ``command`` run as the `postgres` user when we are root (initdb and postgres refuse root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        sys.exit("usage: python -m tests.pg_server -- COMMAND [ARG...]")
    bindir = _bindir()
    folder = Path(tempfile.mkdtemp(prefix="powerbank-pg-"))
    data = folder / "data"
    port = _free_port()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    folder.chmod(0o700)
    started = False
    try:
        subprocess.run(
            _as_owner(
                [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # Durability is not under test: a test cluster that skips fsync runs the suite several times faster.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=300"
        )
        subprocess.run(
            _as_owner(
                [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        started = True
        env = {**os.environ, "POWERBANK_TEST_PG_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"}
        return subprocess.run(argv, env=env).returncode
    finally:
        if started:
            subprocess.run(
                _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                stdout=subprocess.DEVNULL,
            )
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
