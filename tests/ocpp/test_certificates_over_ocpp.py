"""Chargers ask for certificates over OCPP (SignCertificate, 1.6 security extension and 2.0.1).

The hub checks the CSR, signs it with the operator CA and sends the certificate back in its own
CertificateSigned call; what it signed is listed for the charge point.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.services import certificates
from powerbank.services.certificates import CertificateAuthority
from tests.conftest import Factory
from tests.ocpp.support import Charger16, Charger201, charger

pytestmark = pytest.mark.served


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "ca"


@pytest.fixture
def ca(ca_dir: Path) -> CertificateAuthority:
    return certificates.init_ca(ca_dir)


@pytest.fixture
def config_overrides(ca_dir: Path) -> dict[str, Any]:
    return {"CA_DIR": str(ca_dir)}


class Receiving16(Charger16):
    received: asyncio.Queue[str]

    @on(Action16.certificate_signed)
    def on_certificate_signed(self, certificate_chain: str) -> result16.CertificateSigned:
        self.received.put_nowait(certificate_chain)
        return result16.CertificateSigned(status="Accepted")


class Receiving201(Charger201):
    received: asyncio.Queue[str]

    @on(Action201.certificate_signed)
    def on_certificate_signed(self, certificate_chain: str, **_: Any) -> result201.CertificateSigned:
        self.received.put_nowait(certificate_chain)
        return result201.CertificateSigned(status="Accepted")


def csr_for(identity: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode()


def sign_request(protocol: str, csr: str) -> Any:
    if protocol == "ocpp1.6":
        return call16.SignCertificate(csr=csr)
    return call201.SignCertificate(csr=csr, certificate_type="ChargingStationCertificate")


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_charger_gets_its_csr_signed_and_the_certificate_is_listed(
    app: Quart, session: AsyncSession, factory: Factory, ca: CertificateAuthority, protocol: str
) -> None:
    charge_point = await factory.charge_point(await factory.team())
    client = Receiving201 if protocol == "ocpp2.0.1" else Receiving16
    async with charger(app, charge_point.identity, protocol=protocol, client=client) as station:
        station.received = asyncio.Queue()
        answer = await station.call(sign_request(protocol, csr_for(charge_point.identity)))
        assert answer.status == "Accepted"
        chain = await asyncio.wait_for(station.received.get(), 5)
    certificate = x509.load_pem_x509_certificate(chain.encode())
    certificate.verify_directly_issued_by(ca.certificate)
    assert certificate.subject.rfc4514_string() == f"CN={charge_point.identity}"
    listed = await certificates.certificates_of(session, charge_point.id or 0)
    assert [row.serial for row in listed] == [certificates.serial_text(certificate)]


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_csr_for_another_identity_is_rejected_and_nothing_is_signed(
    app: Quart, session: AsyncSession, factory: Factory, ca: CertificateAuthority, protocol: str
) -> None:
    team = await factory.team()
    charge_point = await factory.charge_point(team)
    other = await factory.charge_point(team)
    client = Receiving201 if protocol == "ocpp2.0.1" else Receiving16
    async with charger(app, charge_point.identity, protocol=protocol, client=client) as station:
        station.received = asyncio.Queue()
        answer = await station.call(sign_request(protocol, csr_for(other.identity)))
        assert answer.status == "Rejected"
        # A Heartbeat answered after it: had a CertificateSigned been sent, it would have come first.
        await station.call(call16.Heartbeat() if protocol == "ocpp1.6" else call201.Heartbeat())
        assert station.received.empty()
    assert await certificates.certificates_of(session, charge_point.id or 0) == []
    assert await certificates.certificates_of(session, other.id or 0) == []


async def test_a_charger_asking_for_certificates_in_a_loop_is_refused_after_the_daily_allowance(
    app: Quart, session: AsyncSession, factory: Factory, ca: CertificateAuthority
) -> None:
    charge_point = await factory.charge_point(await factory.team())
    async with charger(app, charge_point.identity, client=Receiving16) as station:
        station.received = asyncio.Queue()
        statuses = [
            (await station.call(call16.SignCertificate(csr=csr_for(charge_point.identity)))).status for _ in range(12)
        ]
    assert statuses == ["Accepted"] * 10 + ["Rejected"] * 2
    assert len(await certificates.certificates_of(session, charge_point.id or 0)) == 10


async def test_a_v2g_certificate_request_is_rejected(
    app: Quart, session: AsyncSession, factory: Factory, ca: CertificateAuthority
) -> None:
    charge_point = await factory.charge_point(await factory.team())
    async with charger(app, charge_point.identity, protocol="ocpp2.0.1", client=Receiving201) as station:
        station.received = asyncio.Queue()
        request = call201.SignCertificate(csr=csr_for(charge_point.identity), certificate_type="V2GCertificate")
        assert (await station.call(request)).status == "Rejected"
    assert await certificates.certificates_of(session, charge_point.id or 0) == []


async def test_without_an_operator_ca_a_csr_is_rejected(app: Quart, session: AsyncSession, factory: Factory) -> None:
    charge_point = await factory.charge_point(await factory.team())
    async with charger(app, charge_point.identity, client=Receiving16) as station:
        station.received = asyncio.Queue()
        answer = await station.call(call16.SignCertificate(csr=csr_for(charge_point.identity)))
    assert answer.status == "Rejected"
