"""The operator CA and the chargers' client certificates (OCPP security profile 3).

One small CA per installation (``powerbank ca init``): its key is a file only the hub's user may
read, in the directory ``POWERBANK_CA_DIR`` names (``var/ca`` by default, never in the repository).
It signs the certificate signing requests chargers send (``SignCertificate``), after checking them:
a charger's CSR is hostile input like anything else it sends. Every certificate it signs for a
charger is listed by serial with its charge point, so a charger connects with a certificate only
while that certificate is listed for its charge point, unrevoked and unexpired, and names the
charger's identity.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.db import utcnow
from powerbank.models import ChargePoint, ChargerCertificate, Team
from powerbank.rules.validators import IDENTITY_RE
from powerbank.services.access import Acting, actor_of
from powerbank.services.audit import record
from powerbank.services.charge_points import require_configure
from powerbank.services.chargers import disconnect_after_commit

CA_KEY_FILE = "ca-key.pem"
CA_CERT_FILE = "ca.pem"
CA_VALIDITY = timedelta(days=20 * 365)
CHARGER_VALIDITY = timedelta(days=2 * 365)
SERVER_VALIDITY = timedelta(days=2 * 365)
# Clocks differ: a certificate is valid from a little before it is made.
BACKDATE = timedelta(minutes=5)
# OCPP 2.0.1 allows a CSR of 5,500 characters; anything longer is refused unparsed.
MAX_CSR_CHARS = 5500
MAX_CERTIFICATE_CHARS = 16384
RSA_BITS = range(2048, 4097)
EC_CURVES = (ec.SECP256R1, ec.SECP384R1)
SIGNATURE_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)
SECURITY_PROFILES = (1, 2, 3)
# The guided upgrade, in order: the charger trusts the operator CA, asks for its certificate, switches.
UPGRADE_STEPS = ("install_ca", "request_certificate", "switch")

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class CertificateError(ValueError):
    """A CSR or certificate the hub refuses; the message says why (it may be shown and logged)."""


@dataclass(frozen=True)
class CertificateAuthority:
    """The operator CA: its certificate and private key."""

    certificate: x509.Certificate
    key: PrivateKey

    @property
    def pem(self) -> str:
        """Return the CA certificate in PEM (what chargers and clients trust)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()


def serial_text(certificate: x509.Certificate) -> str:
    """Return a certificate's serial number as stored: lower-case hex."""
    return f"{certificate.serial_number:x}"


def certificate_pem(certificate: x509.Certificate) -> str:
    """Return a certificate in PEM."""
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: PrivateKey) -> str:
    """Return a private key in unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _write_private(path: Path, data: str) -> None:
    """Write a new file only its owner may read (never over an existing one)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(data)


def init_ca(
    directory: Path, name: str = "PowerBank operator CA", *, now: datetime | None = None
) -> CertificateAuthority:
    """Make the operator CA in ``directory`` (key mode 0600); refuse if one is there already."""
    key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
    if key_path.exists() or cert_path.exists():
        raise FileExistsError(f"A CA already exists in {directory}")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = (now or datetime.now(UTC)) - BACKDATE
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )
    _write_private(key_path, key_pem(key))
    cert_path.write_text(certificate_pem(certificate))
    return CertificateAuthority(certificate, key)


def load_ca(directory: Path) -> CertificateAuthority:
    """Load the operator CA from ``directory``; FileNotFoundError if there is none."""
    certificate = x509.load_pem_x509_certificate((directory / CA_CERT_FILE).read_bytes())
    key = serialization.load_pem_private_key((directory / CA_KEY_FILE).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("The CA key is neither an EC nor an RSA key")
    return CertificateAuthority(certificate, key)


def load_ca_certificate(directory: Path) -> x509.Certificate | None:
    """Return the CA certificate (what checks need; not the key), or None without a CA."""
    try:
        return x509.load_pem_x509_certificate((directory / CA_CERT_FILE).read_bytes())
    except FileNotFoundError:
        return None


def _check_public_key(key: object) -> None:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size not in RSA_BITS:
            raise CertificateError(f"RSA key of {key.key_size} bits (2048 to 4096 accepted)")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, EC_CURVES):
            raise CertificateError(f"Elliptic curve {key.curve.name} not accepted (P-256 or P-384)")
        return
    raise CertificateError("Key type not accepted (RSA or EC P-256/P-384)")


def check_csr(csr_pem: str, identity: str) -> x509.CertificateSigningRequest:
    """Return the charger's CSR if it may be signed; CertificateError says why not.

    Its signature must be valid (the charger holds the key), its key RSA 2048-4096 or EC
    P-256/P-384, signed with SHA-2, and its subject's only common name the charger's identity.
    """
    if not isinstance(csr_pem, str) or len(csr_pem) > MAX_CSR_CHARS:
        raise CertificateError("CSR missing or too long")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as error:
        raise CertificateError("CSR is not a PEM certificate signing request") from error
    try:
        algorithm = csr.signature_hash_algorithm
        _check_public_key(csr.public_key())
        if not isinstance(algorithm, SIGNATURE_HASHES):
            raise CertificateError("CSR signature hash not accepted (SHA-256, -384 or -512)")
        if not csr.is_signature_valid:
            raise CertificateError("CSR signature is not valid")
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (UnsupportedAlgorithm, ValueError) as error:
        if isinstance(error, CertificateError):
            raise
        raise CertificateError("CSR uses an algorithm that is not accepted") from error
    if len(names) != 1 or names[0].value != identity:
        raise CertificateError("CSR common name is not the charger's identity")
    return csr


def _check_ca_valid(start: datetime, end: datetime) -> None:
    """Refuse to sign once the operator CA has expired (what it signs cannot outlive it)."""
    if end <= start:
        raise CertificateError("The operator CA has expired: make a new one (powerbank ca init)")


def sign_charger_certificate(
    ca: CertificateAuthority,
    public_key: object,
    identity: str,
    *,
    now: datetime | None = None,
    validity: timedelta = CHARGER_VALIDITY,
) -> x509.Certificate:
    """Sign a TLS client certificate for a charger: the identity as its only name, client auth only.

    Nothing of the CSR but its public key is copied: the hub decides every name and extension.
    """
    _check_public_key(public_key)
    if not IDENTITY_RE.match(identity):
        raise CertificateError("Not a charger identity")
    start = (now or datetime.now(UTC)) - BACKDATE
    end = min(start + validity, ca.certificate.not_valid_after_utc)
    _check_ca_valid(start, end)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )


def sign_server_certificate(
    ca: CertificateAuthority, hosts: list[str], *, now: datetime | None = None
) -> tuple[PrivateKey, x509.Certificate]:
    """Make a key and a TLS server certificate for the hub's host names or addresses."""
    if not hosts:
        raise CertificateError("At least one host name")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    start = (now or datetime.now(UTC)) - BACKDATE
    _check_ca_valid(start, ca.certificate.not_valid_after_utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(start + SERVER_VALIDITY, ca.certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return key, certificate


def parse_client_certificate(data: bytes | str) -> x509.Certificate:
    """Read a client certificate: DER (from the TLS layer) or PEM, raw or URL-encoded (a proxy's header)."""
    try:
        if isinstance(data, bytes):
            return x509.load_der_x509_certificate(data)
        if len(data) > MAX_CERTIFICATE_CHARS:
            raise CertificateError("Client certificate too long")
        text = unquote(data) if "%" in data else data
        return x509.load_pem_x509_certificate(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as error:
        if isinstance(error, CertificateError):
            raise
        raise CertificateError("Client certificate unreadable") from error


# Stored data ---------------------------------------------------------------------------------


async def record_certificate(
    session: AsyncSession, charge_point_id: int, certificate: x509.Certificate
) -> ChargerCertificate:
    """List a certificate the CA signed for a charge point (the caller commits)."""
    row = ChargerCertificate(
        charge_point_id=charge_point_id,
        serial=serial_text(certificate),
        common_name=str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)[:48],
        fingerprint_sha256=hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest(),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
    )
    session.add(row)
    await session.flush()
    return row


async def sign_csr_for(
    session: AsyncSession, ca: CertificateAuthority, charge_point_id: int, identity: str, csr_pem: str
) -> x509.Certificate:
    """Check a charger's CSR, sign it and list the certificate for its charge point (the caller commits)."""
    csr = check_csr(csr_pem, identity)
    certificate = sign_charger_certificate(ca, csr.public_key(), identity)
    await record_certificate(session, charge_point_id, certificate)
    return certificate


async def issue_key_and_certificate(
    session: AsyncSession, ca: CertificateAuthority, charge_point: ChargePoint
) -> tuple[PrivateKey, x509.Certificate]:
    """Make a key and a certificate for a charger that cannot make its own CSR (the caller commits)."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = sign_charger_certificate(ca, key.public_key(), charge_point.identity)
    await record_certificate(session, charge_point.id or 0, certificate)
    return key, certificate


async def signed_lately(session: AsyncSession, charge_point_id: int) -> int:
    """Return how many certificates were signed for a charge point in the last day."""
    since = utcnow() - timedelta(days=1)
    count = (
        await session.exec(
            select(func.count())
            .select_from(ChargerCertificate)
            .where(ChargerCertificate.charge_point_id == charge_point_id, col(ChargerCertificate.issued_at) >= since)
        )
    ).one()
    return int(count)


async def certificates_of(session: AsyncSession, charge_point_id: int) -> list[ChargerCertificate]:
    """Return the certificates listed for a charge point, newest first."""
    rows = await session.exec(
        select(ChargerCertificate)
        .where(ChargerCertificate.charge_point_id == charge_point_id)
        .order_by(col(ChargerCertificate.id).desc())
    )
    return list(rows)


async def check_client_certificate(
    session: AsyncSession,
    ca_certificate: x509.Certificate | None,
    charge_point_id: int,
    identity: str,
    certificate: x509.Certificate,
    *,
    now: datetime | None = None,
) -> str | None:
    """Return why a charger's client certificate does not let it in, or None when it does.

    The TLS layer (or the proxy) has checked the chain already; this checks again what the hub
    itself must be sure of: signed by the operator CA, valid now, the identity as common name,
    listed for this charge point and not revoked.
    """
    if ca_certificate is None:
        return "No operator CA configured (powerbank ca init)"
    try:
        certificate.verify_directly_issued_by(ca_certificate)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return "Client certificate not issued by the operator CA"
    moment = now or datetime.now(UTC)
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        return "Client certificate expired or not yet valid"
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or names[0].value != identity:
        return "Client certificate common name is not the charger's identity"
    row = (
        await session.exec(
            select(ChargerCertificate.charge_point_id, ChargerCertificate.revoked_at).where(
                ChargerCertificate.serial == serial_text(certificate)
            )
        )
    ).first()
    if row is None or row[0] != charge_point_id:
        return "Client certificate not listed for this charge point"
    if row[1] is not None:
        return "Client certificate revoked"
    return None


async def revoke_certificate(
    session: AsyncSession, by: Acting, team: Team, charge_point: ChargePoint, certificate_id: int
) -> ChargerCertificate:
    """Revoke one of a charge point's certificates; a charger connected with it must connect again."""
    require_configure(by, team, charge_point)
    row = await session.get(ChargerCertificate, certificate_id)
    if row is None or row.charge_point_id != charge_point.id:
        raise CertificateError("No such certificate of this charge point")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        record(session, actor_of(by), "charge_point.revoke_certificate", charge_point, operator_id=team.operator_id)
        if charge_point.security_profile == 3:
            disconnect_after_commit(session, [charge_point.id or 0], "Client certificate revoked", identity_kept=True)
    return row


async def set_security_profile(
    session: AsyncSession, by: Acting, team: Team, charge_point: ChargePoint, profile: int, *, reconnect: bool = True
) -> None:
    """Record the security profile a charge point must connect with from now on (the caller commits).

    Raised by hand, a live connection made at the lower profile is ended once this commits, so the
    charger is held to the new one; ``reconnect=False`` when the charger itself is switching over.
    """
    require_configure(by, team, charge_point)
    if profile not in SECURITY_PROFILES:
        raise CertificateError("Security profile 1, 2 or 3")
    if profile == charge_point.security_profile:
        return
    before = charge_point.security_profile
    charge_point.security_profile = profile
    charge_point.updated_at = utcnow()
    session.add(charge_point)
    record(
        session,
        actor_of(by),
        "charge_point.security_profile",
        charge_point,
        operator_id=team.operator_id,
        before={"security_profile": before},
        after={"security_profile": profile},
    )
    if reconnect and profile > before:
        disconnect_after_commit(session, [charge_point.id or 0], "Security profile raised", identity_kept=True)


def usable_certificate(rows: list[ChargerCertificate], now: datetime | None = None) -> ChargerCertificate | None:
    """Return the newest listed certificate a charger could connect with now (unrevoked, valid), or None."""
    return next((row for row, state in states_of(rows, now) if state == "valid"), None)


def states_of(rows: list[ChargerCertificate], now: datetime | None = None) -> list[tuple[ChargerCertificate, str]]:
    """Return each certificate with its state: revoked, expired, not yet valid or valid."""
    moment = now or utcnow()

    def state(row: ChargerCertificate) -> str:
        if row.revoked_at is not None:
            return "revoked"
        if row.not_after < moment:
            return "expired"
        return "not yet valid" if moment < row.not_before else "valid"

    return [(row, state(row)) for row in rows]


@dataclass(frozen=True)
class HubTls:
    """What the hub offers chargers: TLS (its own, or a trusted proxy's), and client certificates verified."""

    serves_tls: bool
    verifies_client_certificates: bool


def hub_tls(settings: Mapping[str, Any]) -> HubTls:
    """Return what the hub's settings (POWERBANK_TLS_*) offer chargers."""
    own = bool(settings.get("TLS_CERT") and settings.get("TLS_KEY"))
    proxied = bool(str(settings.get("TLS_PROXY_ADDRESSES") or "").strip())
    return HubTls(
        serves_tls=own or proxied,
        verifies_client_certificates=(own and bool(settings.get("TLS_CLIENT_CA")))
        or (proxied and bool(settings.get("TLS_CLIENT_CERT_HEADER"))),
    )


async def check_upgrade_step(
    session: AsyncSession, by: Acting, team: Team, charge_point: ChargePoint, step: str, profile: int, tls: HubTls
) -> None:
    """Refuse a step of the guided upgrade that must not be sent (CertificateError says why)."""
    require_configure(by, team, charge_point)
    if step not in UPGRADE_STEPS:
        raise CertificateError("No such step.")
    if profile not in (2, 3) or profile <= charge_point.security_profile:
        raise CertificateError("Choose a security profile above the charger's current one.")
    # A charger switched to a profile the hub cannot serve reconnects over TLS and never gets in again.
    if step == "switch" and not tls.serves_tls:
        raise CertificateError(
            "This hub does not serve TLS (POWERBANK_TLS_CERT and POWERBANK_TLS_KEY, or a TLS proxy in "
            "POWERBANK_TLS_PROXY_ADDRESSES): a charger switched to a TLS profile could not connect again."
        )
    if step == "switch" and profile == 3 and not tls.verifies_client_certificates:
        raise CertificateError(
            "This hub does not verify client certificates (POWERBANK_TLS_CLIENT_CA, or a TLS proxy's "
            "POWERBANK_TLS_CLIENT_CERT_HEADER): a charger switched to profile 3 could not connect again."
        )
    if step == "switch" and profile == 3:
        listed = await certificates_of(session, charge_point.id or 0)
        if usable_certificate(listed, utcnow()) is None:
            # It would be refused at once, and could not reconnect to ask for a certificate.
            raise CertificateError("The charger has no valid certificate yet: have it ask for one first.")
