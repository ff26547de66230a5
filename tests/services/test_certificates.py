"""The operator CA and the checks on what chargers send it: CSRs are hostile input."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from powerbank.services import certificates
from powerbank.services.certificates import CertificateAuthority, CertificateError


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return certificates.init_ca(tmp_path_factory.mktemp("ca") / "ca")


def csr_pem(
    key: object,
    names: list[str],
    algorithm: hashes.HashAlgorithm | None = None,
    extensions: list[x509.ExtensionType] = (),  # type: ignore[assignment]
) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name) for name in names])
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, algorithm or hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()  # type: ignore[arg-type]


def test_ca_init_writes_a_key_only_its_owner_reads_and_never_overwrites(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    ca = certificates.init_ca(directory, "Example CA")
    key_file = directory / certificates.CA_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with pytest.raises(FileExistsError):
        certificates.init_ca(directory)
    assert certificates.load_ca(directory).certificate == ca.certificate


def test_a_good_csr_is_signed_with_the_identity_only_and_for_client_authentication(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    # The charger asks to be a CA: nothing but its public key is taken from the CSR.
    pem = csr_pem(key, ["CP-1"], extensions=[x509.BasicConstraints(ca=True, path_length=None)])
    csr = certificates.check_csr(pem, "CP-1")
    certificate = certificates.sign_charger_certificate(ca, csr.public_key(), "CP-1")
    certificate.verify_directly_issued_by(ca.certificate)
    assert certificate.subject.rfc4514_string() == "CN=CP-1"
    assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert certificate.not_valid_after_utc <= ca.certificate.not_valid_after_utc


def _tampered() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = csr_pem(key, ["CP-1"])
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    body = x509.load_der_x509_csr(bytes(der))
    return body.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: csr_pem(ec.generate_private_key(ec.SECP256R1()), ["CP-2"]), "common name"),
        (lambda: csr_pem(ec.generate_private_key(ec.SECP256R1()), ["CP-1", "CP-2"]), "common name"),
        (lambda: csr_pem(ec.generate_private_key(ec.SECP256R1()), []), "common name"),
        (lambda: csr_pem(rsa.generate_private_key(65537, 1024), ["CP-1"]), "RSA key of 1024 bits"),
        (lambda: csr_pem(ec.generate_private_key(ec.SECP521R1()), ["CP-1"]), "curve"),
        (lambda: csr_pem(ec.generate_private_key(ec.SECP256R1()), ["CP-1"], hashes.SHA224()), "hash"),
        (_tampered, "signature is not valid"),
        (lambda: "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n", "PEM"),
        (lambda: "A" * (certificates.MAX_CSR_CHARS + 1), "too long"),
        (lambda: "ü", "PEM"),
    ],
    ids=[
        "other identity",
        "two names",
        "no name",
        "small RSA key",
        "unaccepted curve",
        "SHA-224",
        "bad signature",
        "garbage",
        "too long",
        "not ASCII",
    ],
)
def test_a_csr_the_hub_must_not_sign_is_refused_with_a_reason(make: object, reason: str) -> None:
    with pytest.raises(CertificateError, match=reason):
        certificates.check_csr(make(), "CP-1")  # type: ignore[operator]


def test_an_rsa_csr_of_2048_bits_is_accepted(ca: CertificateAuthority) -> None:
    key = rsa.generate_private_key(65537, 2048)
    csr = certificates.check_csr(csr_pem(key, ["CP-9"]), "CP-9")
    certificate = certificates.sign_charger_certificate(ca, csr.public_key(), "CP-9")
    assert certificate.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment


def test_a_proxy_header_certificate_is_read_url_encoded_or_not(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = certificates.sign_charger_certificate(ca, key.public_key(), "CP-1")
    pem = certificates.certificate_pem(certificate)
    from urllib.parse import quote

    assert certificates.parse_client_certificate(quote(pem)) == certificate
    assert certificates.parse_client_certificate(pem) == certificate
    with pytest.raises(CertificateError):
        certificates.parse_client_certificate("%ZZ not a certificate")


def test_an_expired_operator_ca_signs_nothing_and_says_so(tmp_path: Path) -> None:
    # A charger asking again and again must get a refusal, not an internal error each time.
    expired = certificates.init_ca(tmp_path / "old", now=datetime.now(UTC) - timedelta(days=21 * 365))
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(CertificateError, match="expired"):
        certificates.sign_charger_certificate(expired, key.public_key(), "CP-1")
    with pytest.raises(CertificateError, match="expired"):
        certificates.sign_server_certificate(expired, ["hub.example"])
