"""End to end: a simulated charger connects with security profile 3 to `powerbank serve` with TLS.

Everything as an operator types it: `powerbank ca init`, a server certificate and a charger's
certificate from `powerbank ca`, the hub served with POWERBANK_TLS_*, and `powerbank simulate`
with the CA and the charger's certificate. The charger is online once the hub let it in.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import ssl
import sys
from pathlib import Path

import pytest
from sqlmodel import select
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from powerbank.db import standalone_session
from powerbank.models import ChargePoint, ConnectionAttempt
from powerbank.runtime.server import wait_until_listening
from tests.conftest import Factory
from tests.helpers import eventually, free_port

POWERBANK = Path(sys.executable).parent / "powerbank"


def environment(database_url: str, ca_dir: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("POWERBANK_")}
    env.update(
        POWERBANK_DATABASE_URL=database_url,
        POWERBANK_SECRET_KEY="a long random secret for this test only",
        POWERBANK_CA_DIR=str(ca_dir),
    )
    return env


async def run(argv: list[str], env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        str(POWERBANK), *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _out, err = await process.communicate()
    assert process.returncode == 0, f"powerbank {shlex.join(argv)}: {err.decode()}"


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        await process.wait()


async def test_a_simulated_charger_connects_with_profile_3_to_the_served_hub(database_url: str, tmp_path: Path) -> None:
    ca_dir, tls_dir, charger_dir = tmp_path / "ca", tmp_path / "tls", tmp_path / "chargers"
    env = environment(database_url, ca_dir)
    await run(["ca", "init"], env)
    await run(["ca", "server-cert", "127.0.0.1", "localhost", "--out", str(tls_dir)], env)
    async with standalone_session(database_url) as session:
        factory = Factory(session)
        charge_point = await factory.charge_point(await factory.team(), security_profile=3)
        identity = charge_point.identity
    await run(["ca", "issue", identity, "--out", str(charger_dir)], env)
    assert (charger_dir / f"{identity}-key.pem").stat().st_mode & 0o077 == 0

    port = free_port()
    served_env = {
        **env,
        "POWERBANK_TLS_CERT": str(tls_dir / "server.pem"),
        "POWERBANK_TLS_KEY": str(tls_dir / "server-key.pem"),
        "POWERBANK_TLS_CLIENT_CA": str(ca_dir / "ca.pem"),
    }
    hub = await asyncio.create_subprocess_exec(
        str(POWERBANK), "serve", "--port", str(port), env=served_env, stdout=asyncio.subprocess.DEVNULL
    )
    simulator: asyncio.subprocess.Process | None = None
    try:
        await wait_until_listening("127.0.0.1", port)
        simulator = await asyncio.create_subprocess_exec(
            str(POWERBANK),
            "simulate",
            "--url",
            f"wss://127.0.0.1:{port}/ocpp",
            "--identities",
            identity,
            "--ca-file",
            str(ca_dir / "ca.pem"),
            "--cert-dir",
            str(charger_dir),
            env=env,
            stderr=asyncio.subprocess.DEVNULL,
        )

        async def online() -> bool:
            async with standalone_session(database_url) as check:
                row = (await check.exec(select(ChargePoint).where(ChargePoint.identity == identity))).one()
                return row.online and row.booted_at is not None

        await eventually(online, timeout=30, message="the profile-3 charger never came online")
        # The same charger without its certificate (its password would not do) is refused.
        plain = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
        with pytest.raises(InvalidStatus):
            async with connect(f"wss://127.0.0.1:{port}/ocpp/{identity}", ssl=plain, subprotocols=["ocpp1.6"]):  # type: ignore[list-item]
                pass
        async with standalone_session(database_url) as check:
            reasons = list(await check.exec(select(ConnectionAttempt.reason)))
        assert reasons == ["Security profile 3 needs a client certificate (offered TLS)"]
    finally:
        if simulator is not None:
            await stop(simulator)
        await stop(hub)
