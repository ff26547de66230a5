"""OCPP security profiles at connect, the TLS the hub terminates, and certificates over OCPP.

Profile 1: HTTP Basic authentication (plain ws or TLS). Profile 2: TLS and Basic authentication.
Profile 3: TLS with a client certificate the operator CA signed for the charger (no password).
A charger is let in only at its charge point's profile or above, never below it.

TLS is terminated either by the hub (Hypercorn with ``POWERBANK_TLS_CERT``/``_KEY``, client
certificates requested when ``POWERBANK_TLS_CLIENT_CA`` is set) or by a proxy at one of
``POWERBANK_TLS_PROXY_ADDRESSES``, which says ``X-Forwarded-Proto: https`` and passes the client
certificate it verified in ``POWERBANK_TLS_CLIENT_CERT_HEADER``. Those headers count only from
those addresses.
"""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import ssl
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from hypercorn.config import Config
from ocpp.exceptions import OCPPError
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from quart import Quart
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel.ext.asyncio.session import AsyncSession
from werkzeug.datastructures import Headers

from powerbank.config import ca_directory
from powerbank.ocpp.connection import CallErrorReceived, ConnectionLost
from powerbank.services import certificates, chargers
from powerbank.services.certificates import CertificateError

if TYPE_CHECKING:
    from powerbank.ocpp.connection import HubConnection

logger = logging.getLogger("powerbank.ocpp")

_SECURITY = "powerbank.ocpp.security"
# Certificates one charge point may have signed per day (each is a row; a charger may loop).
SIGNINGS_PER_DAY = 10

# The client certificate (DER) of the TLS connection the current task serves, set when the
# handshake completes. asyncio makes the connection's task in the context that ran the handshake,
# and Hypercorn's request tasks inherit it, so the websocket handler reads its own connection's.
PEER_CERTIFICATE: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("peer_certificate", default=None)


class PeerCertificateSSLObject(ssl.SSLObject):
    """An SSL object that tells the serving task which client certificate the handshake verified."""

    def do_handshake(self) -> None:
        super().do_handshake()
        PEER_CERTIFICATE.set(self.getpeercert(binary_form=True))


class TlsConfig(Config):
    """Hypercorn's settings, with an SSL context that passes the client certificate on."""

    def create_ssl_context(self) -> ssl.SSLContext | None:
        context = super().create_ssl_context()
        if context is not None:
            context.sslobject_class = PeerCertificateSSLObject
        return context


def configure_tls(config: Config, settings: Mapping[str, Any]) -> bool:
    """Make Hypercorn terminate TLS when ``TLS_CERT`` and ``TLS_KEY`` are set; return whether it does.

    With ``TLS_CLIENT_CA`` a client certificate is asked for and, when one is offered, verified
    against it in the handshake (unknown CA, expired: no connection). Chargers without one
    (profiles 1 and 2) still connect; whether a charger needs one is its profile's business.
    """
    cert, key, client_ca = settings.get("TLS_CERT"), settings.get("TLS_KEY"), settings.get("TLS_CLIENT_CA")
    if not cert or not key:
        return False
    config.certfile, config.keyfile = str(cert), str(key)
    if client_ca:
        config.ca_certs = str(client_ca)
        config.verify_mode = ssl.CERT_OPTIONAL
    return True


@dataclass(frozen=True)
class Transport:
    """How a charger reached the hub: over TLS or not, and the client certificate it showed."""

    tls: bool
    certificate: x509.Certificate | None = None
    # Why a certificate it showed could not be read (a refusal when its profile needs one).
    certificate_error: str | None = None


class ChargerSecurity:
    """What the hub's OCPP side needs to know about TLS, proxies and the operator CA."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.ca_dir = ca_directory(settings)
        self.cert_header = settings.get("TLS_CLIENT_CERT_HEADER") or None
        self.proxies = [
            ipaddress.ip_network(part.strip(), strict=False)
            for part in str(settings.get("TLS_PROXY_ADDRESSES") or "").split(",")
            if part.strip()
        ]
        self._ca_certificate: x509.Certificate | None = None
        self._ca: certificates.CertificateAuthority | None = None

    def ca_certificate(self) -> x509.Certificate | None:
        """Return the operator CA's certificate (read once it exists), or None."""
        if self._ca_certificate is None:
            self._ca_certificate = certificates.load_ca_certificate(self.ca_dir)
        return self._ca_certificate

    def ca(self) -> certificates.CertificateAuthority:
        """Return the operator CA with its key (read once); FileNotFoundError without one."""
        if self._ca is None:
            self._ca = certificates.load_ca(self.ca_dir)
        return self._ca

    def from_proxy(self, remote_address: str) -> bool:
        """Whether a connection comes from a proxy whose TLS headers are trusted."""
        try:
            address = ipaddress.ip_address(remote_address)
        except ValueError:
            return False
        # On a dual-stack socket an IPv4 peer is ::ffff:a.b.c.d.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.proxies)

    def transport(self, remote_address: str, scheme: str, headers: Headers) -> Transport:
        """Tell how a charger connected: TLS here, TLS at a trusted proxy, or plain."""
        if self.from_proxy(remote_address):
            tls = headers.get("X-Forwarded-Proto", "").lower() in ("https", "wss")
            passed = headers.get(self.cert_header) if self.cert_header else None
            if not tls or not passed:
                return Transport(tls)
            try:
                return Transport(True, certificates.parse_client_certificate(passed))
            except CertificateError as error:
                return Transport(True, certificate_error=str(error))
        if scheme != "wss":
            return Transport(False)
        der = PEER_CERTIFICATE.get()
        if der is None:
            return Transport(True)
        try:
            return Transport(True, certificates.parse_client_certificate(der))
        except CertificateError as error:
            return Transport(True, certificate_error=str(error))


def hold_security(app: Quart) -> ChargerSecurity:
    """Make the app's charger security settings (from its config) and keep them."""
    security = app.extensions[_SECURITY] = ChargerSecurity(app.config)
    return security


def security_of(app: Quart) -> ChargerSecurity:
    """Return the app's charger security settings."""
    security: ChargerSecurity = app.extensions[_SECURITY]
    return security


def _offered(username: str | None, transport: Transport) -> str:
    parts = ["TLS" if transport.tls else "plain ws"]
    if username is not None:
        parts.append("HTTP Basic authentication")
    if transport.certificate is not None:
        parts.append("a client certificate")
    return ", ".join(parts)


async def authenticate(
    login: chargers.Login | None,
    sessions: Callable[[], AbstractAsyncContextManager[AsyncSession]],
    checker: chargers.PasswordChecker,
    security: ChargerSecurity,
    identity: str,
    username: str | None,
    password: str | None,
    transport: Transport,
    *,
    demo_mode: bool,
) -> chargers.Authentication:
    """Let a charger in at its charge point's security profile or above; else say why not.

    ``login`` is what its identity logs in with (None: unknown); ``sessions`` opens a session
    for what profile 3 must read (its certificates).
    """
    if login is not None and login.security_profile >= 3:
        async with sessions() as session:
            reason = await _certificate_refusal(session, security, login.charge_point_id, identity, username, transport)
        return chargers.Authentication(login.charge_point_id if reason is None else None, reason, login.operator_id)
    outcome = await chargers.check_password(checker, login, identity, username, password, demo_mode=demo_mode)
    if outcome.charge_point_id is not None and login is not None and login.security_profile == 2 and not transport.tls:
        return chargers.Authentication(
            None, f"Security profile 2 needs TLS (offered {_offered(username, transport)})", outcome.operator_id
        )
    return outcome


async def _certificate_refusal(
    session: AsyncSession,
    security: ChargerSecurity,
    charge_point_id: int,
    identity: str,
    username: str | None,
    transport: Transport,
) -> str | None:
    """Return why a profile-3 charger may not connect as it did, or None."""
    offered = _offered(username, transport)
    if not transport.tls:
        return f"Security profile 3 needs TLS with a client certificate (offered {offered})"
    if transport.certificate_error is not None:
        return transport.certificate_error
    if transport.certificate is None:
        return f"Security profile 3 needs a client certificate (offered {offered})"
    return await certificates.check_client_certificate(
        session, security.ca_certificate(), charge_point_id, identity, transport.certificate
    )


# Certificates over OCPP ------------------------------------------------------------------------


async def sign_for(connection: HubConnection, security: ChargerSecurity | None, csr: str) -> str | None:
    """Check and sign a charger's CSR, list the certificate; return it in PEM, or None when refused."""
    if security is None:
        return None
    try:
        ca = security.ca()
    except FileNotFoundError:
        logger.warning("%s asked for a certificate, but there is no operator CA (powerbank ca init)", connection.id)
        return None
    try:
        async with connection.registry.writing() as session:
            if await certificates.signed_lately(session, connection.charge_point_id) >= SIGNINGS_PER_DAY:
                logger.warning("%s asked for too many certificates today; refused", connection.id)
                return None
            certificate = await certificates.sign_csr_for(session, ca, connection.charge_point_id, connection.id, csr)
            await session.commit()
    except CertificateError as error:
        logger.info("%s: CSR refused: %s", connection.id, error)
        return None
    except SQLAlchemyError:
        logger.exception("%s: the signed certificate could not be stored", connection.id)
        return None
    logger.info("%s: certificate %s signed", connection.id, certificates.serial_text(certificate))
    return certificates.certificate_pem(certificate)


async def send_certificate(connection: HubConnection, request: Any) -> None:
    """Send a signed certificate to the charger (CertificateSigned) and log its answer."""
    try:
        answer = await connection.call(request)
    except (ConnectionLost, CallErrorReceived, OCPPError, TimeoutError) as error:
        logger.info("%s: CertificateSigned not answered: %r", connection.id, error)
        return
    logger.info("%s: CertificateSigned %s", connection.id, answer.status)


# The guided upgrade: steps sent over a charger's live connection ------------------------------

# The OCPP 2.0.1 network configuration slots PowerBank writes the upgraded profile to: the first
# that is not the one in use (a station refuses to overwrite its active slot).
NETWORK_SLOTS = (1, 2)
STEP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class StepResult:
    """What a charger answered to a guided step: whether it took it, and its words."""

    accepted: bool
    answer: str
    # The charger applies it only after a reboot.
    reboot_required: bool = False


async def run_step(
    connection: HubConnection | None, step: str, *, profile: int, ca_pem: str | None, csms_url: str
) -> StepResult:
    """Send one step of a profile upgrade to a connected charger and return its answer."""
    if connection is None or connection.closed:
        return StepResult(False, "Not connected")
    try:
        if connection.protocol == "ocpp1.6":
            return await _step16(connection, step, profile, ca_pem)
        return await _step201(connection, step, profile, ca_pem, csms_url)
    except (ConnectionLost, CallErrorReceived, OCPPError, TimeoutError) as error:
        return StepResult(False, type(error).__name__)


def _answered(status: str) -> StepResult:
    return StepResult(status in ("Accepted", "RebootRequired"), status, status == "RebootRequired")


async def _step16(connection: HubConnection, step: str, profile: int, ca_pem: str | None) -> StepResult:
    if step == "install_ca":
        if ca_pem is None:
            return StepResult(False, "No operator CA")
        request: Any = call16.InstallCertificate(certificate_type="CentralSystemRootCertificate", certificate=ca_pem)
    elif step == "request_certificate":
        request = call16.ExtendedTriggerMessage(requested_message="SignChargePointCertificate")
    elif step == "switch":
        # OCPP 1.6 security whitepaper: the charger reconnects with the new profile at once.
        request = call16.ChangeConfiguration(key="SecurityProfile", value=str(profile))
    else:
        return StepResult(False, "No such step")
    answer = await connection.call(request, timeout=STEP_TIMEOUT_S)
    return _answered(str(answer.status))


async def _step201(connection: HubConnection, step: str, profile: int, ca_pem: str | None, csms_url: str) -> StepResult:
    if step == "install_ca":
        if ca_pem is None:
            return StepResult(False, "No operator CA")
        answer = await connection.call(
            call201.InstallCertificate(certificate_type="CSMSRootCertificate", certificate=ca_pem),
            timeout=STEP_TIMEOUT_S,
        )
        return _answered(str(answer.status))
    if step == "request_certificate":
        answer = await connection.call(
            call201.TriggerMessage(requested_message="SignChargingStationCertificate"), timeout=STEP_TIMEOUT_S
        )
        return _answered(str(answer.status))
    if step != "switch":
        return StepResult(False, "No such step")
    slot = await _free_network_slot(connection)
    network = await connection.call(
        call201.SetNetworkProfile(
            configuration_slot=slot,
            connection_data={
                "ocpp_version": "OCPP20",
                "ocpp_transport": "JSON",
                "ocpp_csms_url": csms_url,
                "message_timeout": 30,
                "security_profile": profile,
                "ocpp_interface": "Wired0",
            },
        ),
        timeout=STEP_TIMEOUT_S,
    )
    if str(network.status) != "Accepted":
        return StepResult(False, f"SetNetworkProfile {network.status}")
    # Only the new slot: falling back to the old one would be connecting below the profile.
    variables = await connection.call(
        call201.SetVariables(
            set_variable_data=[
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "NetworkConfigurationPriority"},
                    "attribute_value": str(slot),
                }
            ]
        ),
        timeout=STEP_TIMEOUT_S,
    )
    results = variables.set_variable_result
    status = str(results[0]["attribute_status"]) if results else "Rejected"
    return _answered(status)


async def _free_network_slot(connection: HubConnection) -> int:
    """Return a network configuration slot the station is not connected through now."""
    answer = await connection.call(
        call201.GetVariables(
            get_variable_data=[
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NetworkConfigurationPriority"}}
            ]
        ),
        timeout=STEP_TIMEOUT_S,
    )
    results = answer.get_variable_result
    value = str(results[0].get("attribute_value") or "") if results else ""
    active = value.split(",")[0].strip()
    return next(slot for slot in NETWORK_SLOTS if str(slot) != active)
