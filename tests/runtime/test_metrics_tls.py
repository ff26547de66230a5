"""End to end: a charger connected with security profile 3 to `powerbank serve` with TLS is in `/metrics`.

Set up as an operator does it (tests/ocpp/test_security_profile_serve.py): the operator CA, the hub's
certificate, the charger's, the hub served with POWERBANK_TLS_* and POWERBANK_METRICS_TOKEN, and
`powerbank simulate` with the charger's certificate; Prometheus's scrape is made over the same TLS.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from powerbank.db import standalone_session
from powerbank.runtime.server import wait_until_listening
from tests.conftest import Factory
from tests.helpers import eventually, free_port
from tests.ocpp.test_security_profile_serve import POWERBANK, environment, run, stop

TOKEN = "a-token-prometheus-is-given"


def scrape(url: str, context: ssl.SSLContext, token: str | None) -> tuple[int, dict[tuple[str, str], float]]:
    """Return the status and the samples (name, labels as text) of one scrape."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), context=context, timeout=10) as got:
            text = got.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, {}
    samples = {
        (sample.name, ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return 200, samples


async def test_a_profile_3_charger_over_tls_is_counted_in_metrics(database_url: str, tmp_path: Path) -> None:
    ca_dir, tls_dir, charger_dir = tmp_path / "ca", tmp_path / "tls", tmp_path / "chargers"
    env = environment(database_url, ca_dir)
    await run(["ca", "init"], env)
    await run(["ca", "server-cert", "127.0.0.1", "localhost", "--out", str(tls_dir)], env)
    async with standalone_session(database_url) as session:
        factory = Factory(session)
        identity = (await factory.charge_point(await factory.team(), security_profile=3)).identity
    await run(["ca", "issue", identity, "--out", str(charger_dir)], env)

    port = free_port()
    served_env = {
        **env,
        "POWERBANK_TLS_CERT": str(tls_dir / "server.pem"),
        "POWERBANK_TLS_KEY": str(tls_dir / "server-key.pem"),
        "POWERBANK_TLS_CLIENT_CA": str(ca_dir / "ca.pem"),
        "POWERBANK_METRICS_TOKEN": TOKEN,
    }
    hub = await asyncio.create_subprocess_exec(
        str(POWERBANK), "serve", "--port", str(port), env=served_env, stdout=asyncio.subprocess.DEVNULL
    )
    simulator: asyncio.subprocess.Process | None = None
    url = f"https://127.0.0.1:{port}/metrics"
    context = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
    try:
        await wait_until_listening("127.0.0.1", port)
        status, _ = await asyncio.to_thread(scrape, url, context, None)
        assert status == 401
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

        async def counted() -> bool:
            status, samples = await asyncio.to_thread(scrape, url, context, TOKEN)
            assert status == 200
            return (
                samples.get(("powerbank_chargers_connected", "protocol=ocpp1.6")) == 1
                and samples.get(("powerbank_ocpp_messages_total", "action=BootNotification,direction=in,kind=call"))
                == 1
                and samples.get(("powerbank_ocpp_reply_seconds_count", "action=BootNotification")) == 1
            )

        await eventually(counted, timeout=30, message="/metrics never showed the profile-3 charger and its boot")
    finally:
        if simulator is not None:
            await stop(simulator)
        await stop(hub)
