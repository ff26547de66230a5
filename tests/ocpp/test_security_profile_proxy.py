"""Security profiles on a hub without TLS of its own: plain ws, and TLS terminated by a trusted proxy.

A proxy at a configured address says ``X-Forwarded-Proto: https`` and passes the client certificate
it verified in the configured header; from any other address those headers mean nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from quart import Quart
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from powerbank.models import ConnectionAttempt
from powerbank.ocpp.security import ChargerSecurity
from powerbank.services import certificates
from powerbank.services.certificates import CertificateAuthority
from tests.conftest import TEST_PASSWORD, Factory
from tests.ocpp.support import basic

pytestmark = pytest.mark.served

PROXY = "127.0.0.2"
HEADER = "X-SSL-Client-Cert"


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "ca"


@pytest.fixture
def ca(ca_dir: Path) -> CertificateAuthority:
    return certificates.init_ca(ca_dir)


@pytest.fixture
def config_overrides(ca_dir: Path) -> dict[str, Any]:
    return {"CA_DIR": str(ca_dir), "TLS_PROXY_ADDRESSES": f"{PROXY}/32", "TLS_CLIENT_CERT_HEADER": HEADER}


async def connects(app: Quart, identity: str, headers: dict[str, str], source: str = "127.0.0.1") -> int:
    """Try to connect; return 101 when the hub upgrades, else the HTTP status it answers."""
    try:
        async with connect(
            f"{app.config['TEST_OCPP_URL']}/{identity}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=headers,
            local_addr=(source, 0),
        ):
            return 101
    except InvalidStatus as refusal:
        return refusal.response.status_code


async def reasons(session: AsyncSession, identity: str) -> list[str]:
    rows = await session.exec(select(ConnectionAttempt.reason).where(col(ConnectionAttempt.identity) == identity))
    return list(rows)


async def test_profile_1_still_connects_over_plain_ws_and_profile_2_is_refused_there(
    app: Quart, session: AsyncSession, factory: Factory
) -> None:
    team = await factory.team()
    existing = await factory.charge_point(team)
    assert existing.security_profile == 1
    assert await connects(app, existing.identity, basic(existing.identity, TEST_PASSWORD)) == 101
    upgraded = await factory.charge_point(team, security_profile=2)
    assert await connects(app, upgraded.identity, basic(upgraded.identity, TEST_PASSWORD)) == 401
    assert await reasons(session, upgraded.identity) == [
        "Security profile 2 needs TLS (offered plain ws, HTTP Basic authentication)"
    ]


async def test_a_trusted_proxy_passes_tls_and_the_client_certificate(
    app: Quart, session: AsyncSession, factory: Factory, ca: CertificateAuthority
) -> None:
    team = await factory.team()
    profile2 = await factory.charge_point(team, security_profile=2)
    profile3 = await factory.charge_point(team, security_profile=3)
    _key, certificate = await certificates.issue_key_and_certificate(session, ca, profile3)
    await session.commit()
    tls = {"X-Forwarded-Proto": "https"}
    passed = {**tls, HEADER: quote(certificates.certificate_pem(certificate))}
    assert await connects(app, profile2.identity, {**tls, **basic(profile2.identity, TEST_PASSWORD)}, PROXY) == 101
    assert await connects(app, profile3.identity, passed, PROXY) == 101
    # The proxy did not terminate TLS (or says nothing): no certificate counts.
    assert await connects(app, profile3.identity, {HEADER: passed[HEADER]}, PROXY) == 401


async def test_tls_headers_from_anyone_but_the_proxy_are_ignored(
    app: Quart, session: AsyncSession, factory: Factory, ca: CertificateAuthority
) -> None:
    team = await factory.team()
    profile3 = await factory.charge_point(team, security_profile=3)
    _key, certificate = await certificates.issue_key_and_certificate(session, ca, profile3)
    await session.commit()
    forged = {"X-Forwarded-Proto": "https", HEADER: quote(certificates.certificate_pem(certificate))}
    assert await connects(app, profile3.identity, forged) == 401
    assert await reasons(session, profile3.identity) == [
        "Security profile 3 needs TLS with a client certificate (offered plain ws)"
    ]


async def test_an_unreadable_certificate_header_is_refused(
    app: Quart, session: AsyncSession, factory: Factory, ca: CertificateAuthority
) -> None:
    profile3 = await factory.charge_point(await factory.team(), security_profile=3)
    headers = {"X-Forwarded-Proto": "https", HEADER: "-----BEGIN CERTIFICATE-----%0Agarbage"}
    assert await connects(app, profile3.identity, headers, PROXY) == 401
    assert await reasons(session, profile3.identity) == ["Client certificate unreadable"]


def test_a_proxy_is_known_by_its_ipv4_address_on_a_dual_stack_socket() -> None:
    # Bound to [::], the hub sees an IPv4 proxy as ::ffff:a.b.c.d: still the proxy, and no one else.
    security = ChargerSecurity({"TLS_PROXY_ADDRESSES": "10.0.0.7, 192.168.0.0/24"})
    assert security.from_proxy("10.0.0.7") and security.from_proxy("::ffff:10.0.0.7")
    assert security.from_proxy("::ffff:192.168.0.9")
    assert not security.from_proxy("::ffff:10.0.0.8") and not security.from_proxy("10.0.0.8")
