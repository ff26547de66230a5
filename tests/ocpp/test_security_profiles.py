"""OCPP security profiles 2 and 3 over real TLS on loopback: who connects, who is refused, and where.

The hub is served by Hypercorn terminating TLS with a server certificate of a test operator CA and
asking for client certificates; chargers connect with the ``websockets`` client and Python's ssl.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from quart import Quart
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from powerbank.cli import main
from powerbank.models import ChargePoint, ConnectionAttempt
from powerbank.services import certificates
from powerbank.services.certificates import CertificateAuthority
from powerbank.tools.simulator import ChargerSpec, SimulatedCharger, TlsSettings
from tests.conftest import TEST_PASSWORD, Factory
from tests.helpers import eventually
from tests.ocpp.support import basic

pytestmark = pytest.mark.served


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "ca"


@pytest.fixture
def ca(ca_dir: Path) -> CertificateAuthority:
    return certificates.init_ca(ca_dir, "Test operator CA")


@pytest.fixture
def server_files(ca: CertificateAuthority, tmp_path: Path) -> tuple[Path, Path]:
    key, certificate = certificates.sign_server_certificate(ca, ["127.0.0.1", "localhost"])
    cert_path, key_path = tmp_path / "server.pem", tmp_path / "server-key.pem"
    cert_path.write_text(certificates.certificate_pem(certificate))
    key_path.write_text(certificates.key_pem(key))
    return cert_path, key_path


@pytest.fixture
def config_overrides(ca_dir: Path) -> dict[str, Any]:
    return {"CA_DIR": str(ca_dir)}


@pytest.fixture
def hypercorn_overrides(ca_dir: Path, server_files: tuple[Path, Path]) -> dict[str, Any]:
    cert_path, key_path = server_files
    return {
        "certfile": str(cert_path),
        "keyfile": str(key_path),
        "ca_certs": str(ca_dir / certificates.CA_CERT_FILE),
        "verify_mode": ssl.CERT_OPTIONAL,
    }


def wss_url(app: Quart, identity: str) -> str:
    return f"wss://127.0.0.1:{app.config['TEST_PORT']}/ocpp/{identity}"


def client_context(
    ca_dir: Path, tmp_path: Path, key: Any = None, certificate: x509.Certificate | None = None
) -> ssl.SSLContext:
    """A charger's TLS settings: trust the operator CA, and show a client certificate if given one."""
    context = ssl.create_default_context(cafile=str(ca_dir / certificates.CA_CERT_FILE))
    if certificate is not None:
        cert_path, key_path = (
            tmp_path / f"{certificate.serial_number}.pem",
            tmp_path / f"{certificate.serial_number}.key",
        )
        cert_path.write_text(certificates.certificate_pem(certificate))
        key_path.write_text(certificates.key_pem(key))
        context.load_cert_chain(str(cert_path), str(key_path))
    return context


@asynccontextmanager
async def wss(
    app: Quart, identity: str, context: ssl.SSLContext, headers: dict[str, str] | None = None
) -> AsyncIterator[ClientConnection]:
    async with connect(
        wss_url(app, identity),
        ssl=context,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=headers or {},
    ) as websocket:
        yield websocket


async def heartbeat(websocket: ClientConnection) -> dict[str, Any]:
    """Send a Heartbeat and return the hub's answer payload (proof the hub serves this charger)."""
    await websocket.send(json.dumps([2, "hb-1", "Heartbeat", {}]))
    while True:
        frame = json.loads(await asyncio.wait_for(websocket.recv(), 5))
        if frame[0] == 3 and frame[1] == "hb-1":
            payload: dict[str, Any] = frame[2]
            return payload


async def profile3(factory: Factory, **fields: Any) -> ChargePoint:
    team = await factory.team()
    return await factory.charge_point(team, security_profile=3, **fields)


async def attempt_reasons(session: AsyncSession, identity: str) -> list[str]:
    rows = await session.exec(select(ConnectionAttempt.reason).where(col(ConnectionAttempt.identity) == identity))
    return list(rows)


async def refused_with_401(
    app: Quart, identity: str, context: ssl.SSLContext, headers: dict[str, str] | None = None
) -> None:
    with pytest.raises(InvalidStatus) as refusal:
        async with wss(app, identity, context, headers):
            pass
    assert refusal.value.response.status_code == 401


async def refused_in_handshake(app: Quart, identity: str, context: ssl.SSLContext) -> None:
    """The TLS handshake fails: no HTTP request, let alone an upgrade, reaches the hub."""
    with pytest.raises((InvalidMessage, ssl.SSLError, ConnectionError)) as refusal:
        async with wss(app, identity, context):
            pass
    # The websocket client reads no HTTP response at all: the hub closed the TLS connection.
    assert not isinstance(refusal.value, InvalidStatus)


async def test_a_good_client_certificate_connects_at_profile_3(
    app: Quart, session: AsyncSession, factory: Factory, ca: CertificateAuthority, ca_dir: Path, tmp_path: Path
) -> None:
    charge_point = await profile3(factory)
    key, certificate = await certificates.issue_key_and_certificate(session, ca, charge_point)
    await session.commit()
    async with wss(app, charge_point.identity, client_context(ca_dir, tmp_path, key, certificate)) as websocket:
        assert websocket.subprotocol == "ocpp1.6"
        assert "currentTime" in await heartbeat(websocket)


async def test_a_certificate_of_an_unknown_ca_is_refused_in_the_handshake(
    app: Quart, session: AsyncSession, factory: Factory, ca: CertificateAuthority, ca_dir: Path, tmp_path: Path
) -> None:
    charge_point = await profile3(factory)
    stranger = certificates.init_ca(tmp_path / "other-ca", "Someone else's CA")
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = certificates.sign_charger_certificate(stranger, key.public_key(), charge_point.identity)
    await refused_in_handshake(app, charge_point.identity, client_context(ca_dir, tmp_path, key, certificate))


async def test_an_expired_certificate_is_refused_in_the_handshake(
    app: Quart, session: AsyncSession, factory: Factory, ca: CertificateAuthority, ca_dir: Path, tmp_path: Path
) -> None:
    charge_point = await profile3(factory)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = certificates.sign_charger_certificate(
        ca,
        key.public_key(),
        charge_point.identity,
        now=datetime.now(UTC) - timedelta(days=30),
        validity=timedelta(days=1),
    )
    await certificates.record_certificate(session, charge_point.id or 0, certificate)
    await session.commit()
    await refused_in_handshake(app, charge_point.identity, client_context(ca_dir, tmp_path, key, certificate))


async def test_a_revoked_certificate_is_refused_before_the_upgrade_and_listed(
    app: Quart, session: AsyncSession, factory: Factory, ca: CertificateAuthority, ca_dir: Path, tmp_path: Path
) -> None:
    charge_point = await profile3(factory)
    key, certificate = await certificates.issue_key_and_certificate(session, ca, charge_point)
    await session.commit()
    context = client_context(ca_dir, tmp_path, key, certificate)
    async with wss(app, charge_point.identity, context) as websocket:
        await heartbeat(websocket)
    row = (await certificates.certificates_of(session, charge_point.id or 0))[0]
    row.revoked_at = datetime.now(UTC)
    session.add(row)
    await session.commit()
    await refused_with_401(app, charge_point.identity, context)
    assert await attempt_reasons(session, charge_point.identity) == ["Client certificate revoked"]


async def test_a_certificate_naming_another_charger_is_refused_before_the_upgrade(
    app: Quart, session: AsyncSession, factory: Factory, ca: CertificateAuthority, ca_dir: Path, tmp_path: Path
) -> None:
    charge_point = await profile3(factory)
    other = await profile3(factory)
    key, certificate = await certificates.issue_key_and_certificate(session, ca, other)
    await session.commit()
    await refused_with_401(app, charge_point.identity, client_context(ca_dir, tmp_path, key, certificate))
    assert await attempt_reasons(session, charge_point.identity) == [
        "Client certificate common name is not the charger's identity"
    ]


async def test_a_certificate_the_hub_never_listed_for_the_charge_point_is_refused(
    app: Quart, session: AsyncSession, factory: Factory, ca: CertificateAuthority, ca_dir: Path, tmp_path: Path
) -> None:
    # Signed by the CA with the right name, but never issued through the hub (or for a deleted
    # charge point whose identity was registered again): not enough.
    charge_point = await profile3(factory)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = certificates.sign_charger_certificate(ca, key.public_key(), charge_point.identity)
    await refused_with_401(app, charge_point.identity, client_context(ca_dir, tmp_path, key, certificate))
    assert await attempt_reasons(session, charge_point.identity) == [
        "Client certificate not listed for this charge point"
    ]


async def test_a_profile_3_charger_offering_only_basic_auth_is_refused_and_listed(
    app: Quart, session: AsyncSession, factory: Factory, ca: CertificateAuthority, ca_dir: Path, tmp_path: Path
) -> None:
    charge_point = await profile3(factory)
    headers = basic(charge_point.identity, TEST_PASSWORD)
    await refused_with_401(app, charge_point.identity, client_context(ca_dir, tmp_path), headers)
    assert await attempt_reasons(session, charge_point.identity) == [
        "Security profile 3 needs a client certificate (offered TLS, HTTP Basic authentication)"
    ]


@pytest.mark.parametrize("profile", [1, 2])
async def test_profiles_1_and_2_connect_over_tls_with_their_password(
    app: Quart,
    session: AsyncSession,
    factory: Factory,
    ca: CertificateAuthority,
    ca_dir: Path,
    tmp_path: Path,
    profile: int,
) -> None:
    charge_point = await factory.charge_point(await factory.team(), security_profile=profile)
    context = client_context(ca_dir, tmp_path)
    async with wss(app, charge_point.identity, context, basic(charge_point.identity, TEST_PASSWORD)) as websocket:
        await heartbeat(websocket)
    await refused_with_401(app, charge_point.identity, context, basic(charge_point.identity, "wrong"))


async def test_a_profile_2_charger_with_a_certificate_but_no_password_is_refused(
    app: Quart, session: AsyncSession, factory: Factory, ca: CertificateAuthority, ca_dir: Path, tmp_path: Path
) -> None:
    charge_point = await factory.charge_point(await factory.team(), security_profile=2)
    key, certificate = await certificates.issue_key_and_certificate(session, ca, charge_point)
    await session.commit()
    await refused_with_401(app, charge_point.identity, client_context(ca_dir, tmp_path, key, certificate))
    await eventually(lambda: attempt_reasons(session, charge_point.identity))


@pytest.mark.parametrize("profile", [2, 3])
async def test_the_charger_simulator_connects_with_profile_2_and_3(
    app: Quart,
    session: AsyncSession,
    factory: Factory,
    ca: CertificateAuthority,
    ca_dir: Path,
    tmp_path: Path,
    profile: int,
) -> None:
    charge_point = await factory.charge_point(await factory.team(), security_profile=profile)
    tls = TlsSettings(ca_file=str(ca_dir / certificates.CA_CERT_FILE))
    if profile == 3:
        await run_cli(["ca", "issue", charge_point.identity, "--out", str(tmp_path / "chargers")], ca_dir, app)
        tls = replace(tls, cert_dir=str(tmp_path / "chargers"))
    simulated = SimulatedCharger(ChargerSpec(identity=charge_point.identity))
    url = f"wss://127.0.0.1:{app.config['TEST_PORT']}/ocpp"
    task = asyncio.create_task(
        simulated.run(url, TEST_PASSWORD if profile == 2 else "", tls.context_for(charge_point.identity))
    )
    try:

        async def booted() -> bool:
            await session.refresh(charge_point)
            return charge_point.booted_at is not None

        await eventually(booted, message=f"the simulated profile-{profile} charger never booted")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert await attempt_reasons(session, charge_point.identity) == []


async def run_cli(argv: list[str], ca_dir: Path, app: Quart) -> None:
    """Run a `powerbank` command on the test's database and CA, in-process."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POWERBANK_CA_DIR", str(ca_dir))
        patch.setenv("POWERBANK_DATABASE_URL", str(app.config["DATABASE_URL"]))
        assert await asyncio.to_thread(main, argv) == 0
