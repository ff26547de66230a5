"""The charge point page's OCPP security section: the guided upgrade over a live connection,
certificates with their expiry, revocation, and who may see and do what."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ocpp.routing import after, on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession
from websockets.exceptions import InvalidStatus
from websockets.protocol import State

from powerbank.models import ChargePoint
from powerbank.services import certificates
from powerbank.services.certificates import CertificateAuthority
from tests.conftest import Factory, LoginAs, csrf_of
from tests.helpers import eventually
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
    # Chargers reach this hub through a TLS proxy that verifies client certificates (a documentation
    # address: none of the tests' own connections comes from it).
    return {"CA_DIR": str(ca_dir), "TLS_PROXY_ADDRESSES": "192.0.2.1", "TLS_CLIENT_CERT_HEADER": "X-SSL-Client-Cert"}


class Upgradable16(Charger16):
    """A 1.6 charger with the security extension: takes the CA, asks for a certificate, switches."""

    asked: list[tuple[str, str]]

    @on(Action16.change_configuration)
    def on_change_configuration(self, key: str, value: str) -> result16.ChangeConfiguration:
        self.asked.append((key, value))
        return result16.ChangeConfiguration(status="Accepted")

    @on(Action16.install_certificate)
    def on_install_certificate(self, certificate_type: str, certificate: str) -> result16.InstallCertificate:
        self.asked.append((certificate_type, certificate))
        return result16.InstallCertificate(status="Accepted")

    @on(Action16.extended_trigger_message)
    def on_extended_trigger(self, requested_message: str, **_: Any) -> result16.ExtendedTriggerMessage:
        return result16.ExtendedTriggerMessage(status="Accepted")

    @after(Action16.extended_trigger_message)
    async def after_extended_trigger(self, requested_message: str, **_: Any) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.id)]))
            .sign(key, hashes.SHA256())
        )
        await self.call(call16.SignCertificate(csr=csr.public_bytes(serialization.Encoding.PEM).decode()))

    @on(Action16.certificate_signed)
    def on_certificate_signed(self, certificate_chain: str) -> result16.CertificateSigned:
        return result16.CertificateSigned(status="Accepted")


class Upgradable201(Charger201):
    asked: list[Any]

    @on(Action201.get_variables)
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> result201.GetVariables:
        wanted = get_variable_data[0]
        if wanted["variable"]["name"] != "NetworkConfigurationPriority":
            return super().on_get_variables(get_variable_data)
        # It is connected through slot 1 now, with slot 2 as its fallback.
        return result201.GetVariables(
            get_variable_result=[{**wanted, "attribute_status": "Accepted", "attribute_value": "1,2"}]
        )

    @on(Action201.set_network_profile)
    def on_set_network_profile(self, configuration_slot: int, connection_data: dict[str, Any], **_: Any) -> Any:
        self.asked.append((configuration_slot, connection_data))
        return result201.SetNetworkProfile(status="Accepted")

    @on(Action201.set_variables)
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        self.asked.append(set_variable_data)
        return result201.SetVariables(
            set_variable_result=[
                {
                    "attribute_status": "RebootRequired",
                    "component": item["component"],
                    "variable": item["variable"],
                }
                for item in set_variable_data
            ]
        )


async def admin_client(factory: Factory, login_as: LoginAs, charge_point: ChargePoint, team: Any) -> Any:
    operator_admin = await factory.user(team=team, team_role="owner")
    return await login_as(operator_admin)


async def post(client: Any, path: str, form: dict[str, str], page: str) -> Any:
    token = await csrf_of(client, page)
    return await client.post(path, form={"csrf_token": token, **form}, headers={"HX-Request": "true"})


async def reloaded(session: AsyncSession, charge_point: ChargePoint) -> ChargePoint:
    await session.refresh(charge_point)
    return charge_point


async def test_a_16_charger_is_guided_to_profile_3_over_its_live_connection(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs, ca: CertificateAuthority
) -> None:
    team = await factory.team()
    charge_point = await factory.charge_point(team)
    client = await admin_client(factory, login_as, charge_point, team)
    page = f"/charge-points/{charge_point.id}/security"
    async with charger(app, charge_point.identity, client=Upgradable16) as station:
        station.asked = []
        response = await post(client, f"{page}/steps/install_ca", {"profile": "3"}, page)
        assert "The charger answered Accepted." in await response.get_data(as_text=True)
        assert station.asked == [("CentralSystemRootCertificate", ca.pem)]
        # No certificate yet: the switch is not even sent (the charger could never come back).
        response = await post(client, f"{page}/steps/switch", {"profile": "3"}, page)
        assert response.status_code == 422
        assert "no valid certificate yet" in await response.get_data(as_text=True)
        response = await post(client, f"{page}/steps/request_certificate", {"profile": "3"}, page)
        assert response.status_code == 200

        async def listed() -> bool:
            return bool(await certificates.certificates_of(session, charge_point.id or 0))

        await eventually(listed, message="the charger's certificate was never signed")
        response = await post(client, f"{page}/steps/switch", {"profile": "3"}, page)
        text = await response.get_data(as_text=True)
        assert "From now on it must connect with security profile 3." in text
        assert station.asked[-1] == ("SecurityProfile", "3")
    assert (await reloaded(session, charge_point)).security_profile == 3
    shown = await (await client.get(page)).get_data(as_text=True)
    row = (await certificates.certificates_of(session, charge_point.id or 0))[0]
    assert row.serial in shown and row.not_after.isoformat() in shown


async def test_a_201_station_gets_a_network_profile_and_its_priority(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs, ca: CertificateAuthority
) -> None:
    team = await factory.team()
    charge_point = await factory.charge_point(team)
    client = await admin_client(factory, login_as, charge_point, team)
    page = f"/charge-points/{charge_point.id}/security"
    async with charger(app, charge_point.identity, protocol="ocpp2.0.1", client=Upgradable201) as station:
        station.asked = []
        response = await post(client, f"{page}/steps/switch", {"profile": "2"}, page)
        text = await response.get_data(as_text=True)
    assert "The charger answered RebootRequired." in text
    assert "after the charger&#39;s next reboot" in text or "after the charger's next reboot" in text
    (slot, network), priority = station.asked
    assert slot == 2 and priority[0]["attribute_value"] == "2"
    assert (
        network["security_profile"] == 2
        and network["ocpp_csms_url"].startswith("wss://")
        and network["ocpp_csms_url"].endswith("/ocpp/")
    )
    assert priority[0]["variable"]["name"] == "NetworkConfigurationPriority"
    assert (await reloaded(session, charge_point)).security_profile == 2


async def test_a_step_to_a_charger_that_is_not_connected_changes_nothing(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs, ca: CertificateAuthority
) -> None:
    team = await factory.team()
    charge_point = await factory.charge_point(team)
    client = await admin_client(factory, login_as, charge_point, team)
    page = f"/charge-points/{charge_point.id}/security"
    response = await post(client, f"{page}/steps/switch", {"profile": "2"}, page)
    assert "The charger answered Not connected." in await response.get_data(as_text=True)
    assert (await reloaded(session, charge_point)).security_profile == 1


async def test_revoking_a_certificate_refuses_it_and_another_tenant_gets_404(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs, ca: CertificateAuthority
) -> None:
    team = await factory.team()
    charge_point = await factory.charge_point(team, security_profile=3)
    _key, certificate = await certificates.issue_key_and_certificate(session, ca, charge_point)
    await session.commit()
    row = (await certificates.certificates_of(session, charge_point.id or 0))[0]
    page = f"/charge-points/{charge_point.id}/security"
    stranger_team = await factory.team()
    stranger = await login_as(await factory.user(team=stranger_team, team_role="owner"))
    assert (await stranger.get(page)).status_code == 404
    token = await csrf_of(stranger, f"/teams/{stranger_team.id}/charge-points")
    refused = await stranger.post(f"{page}/certificates/{row.id}/revoke", form={"csrf_token": token})
    assert refused.status_code == 404
    still = await certificates.check_client_certificate(
        session, ca.certificate, charge_point.id or 0, charge_point.identity, certificate
    )
    assert still is None
    client = await admin_client(factory, login_as, charge_point, team)
    response = await post(client, f"{page}/certificates/{row.id}/revoke", {}, page)
    assert "Revoked" in await response.get_data(as_text=True)
    reason = await certificates.check_client_certificate(
        session, ca.certificate, charge_point.id or 0, charge_point.identity, certificate
    )
    assert reason == "Client certificate revoked"


async def test_a_member_without_the_right_to_configure_sees_the_profile_but_no_controls(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs, ca: CertificateAuthority
) -> None:
    team = await factory.team()
    charge_point = await factory.charge_point(team, security_profile=2)
    member = await login_as(await factory.user(team=team, team_role="member"))
    page = f"/charge-points/{charge_point.id}/security"
    text = await (await member.get(page)).get_data(as_text=True)
    assert "TLS and HTTP Basic authentication" in text and "steps/switch" not in text
    token = await csrf_of(member, f"/teams/{team.id}/charge-points")
    response = await member.post(f"{page}/profile", form={"csrf_token": token, "profile": "1"})
    assert response.status_code == 403
    assert (await reloaded(session, charge_point)).security_profile == 2
    detail = await (await member.get(f"/charge-points/{charge_point.id}")).get_data(as_text=True)
    assert page in detail


async def test_the_required_profile_can_be_set_by_hand_and_a_stray_value_is_refused(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs, ca: CertificateAuthority
) -> None:
    team = await factory.team()
    charge_point = await factory.charge_point(team)
    client = await admin_client(factory, login_as, charge_point, team)
    page = f"/charge-points/{charge_point.id}/security"
    assert (await post(client, f"{page}/profile", {"profile": "9"}, page)).status_code == 422
    assert (await post(client, f"{page}/profile", {"profile": "2"}, page)).status_code == 200
    assert (await reloaded(session, charge_point)).security_profile == 2


async def test_raising_the_profile_by_hand_ends_a_connection_made_below_it(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs, ca: CertificateAuthority
) -> None:
    team = await factory.team()
    charge_point = await factory.charge_point(team)
    client = await admin_client(factory, login_as, charge_point, team)
    page = f"/charge-points/{charge_point.id}/security"
    async with charger(app, charge_point.identity) as station:
        assert (await post(client, f"{page}/profile", {"profile": "2"}, page)).status_code == 200
        await eventually(
            lambda: station._connection.state is State.CLOSED, message="the profile-1 connection stayed open"
        )
    # Over plain ws with its password it is no longer let in.
    with pytest.raises(InvalidStatus):
        async with charger(app, charge_point.identity):
            pass


async def test_no_database_transaction_is_held_open_while_the_charger_answers(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs, ca: CertificateAuthority, monkeypatch: Any
) -> None:
    # A step may wait for the charger up to its timeout per call: meanwhile the page's database
    # connection is back in the pool, not idle in a transaction.
    from powerbank.ocpp.security import StepResult
    from powerbank.routes import charger_security
    from powerbank.web.state import db_session

    held: list[bool] = []

    class Gateway:
        async def security_step(self, *args: Any, **kwargs: Any) -> Any:
            held.append((await db_session()).in_transaction())
            return StepResult(True, "Accepted")

    monkeypatch.setattr(charger_security, "gateway", Gateway)
    team = await factory.team()
    charge_point = await factory.charge_point(team)
    client = await admin_client(factory, login_as, charge_point, team)
    page = f"/charge-points/{charge_point.id}/security"
    response = await post(client, f"{page}/steps/switch", {"profile": "2"}, page)
    assert response.status_code == 200 and held == [False]
    assert (await reloaded(session, charge_point)).security_profile == 2


@pytest.mark.parametrize(
    ("settings", "profile", "refusal"),
    [
        ({"TLS_PROXY_ADDRESSES": ""}, 2, "This hub does not serve TLS"),
        ({"TLS_CLIENT_CERT_HEADER": None}, 3, "This hub does not verify client certificates"),
    ],
)
async def test_a_charger_is_not_switched_to_a_profile_the_hub_cannot_serve(
    app: Quart,
    session: AsyncSession,
    factory: Factory,
    login_as: LoginAs,
    ca: CertificateAuthority,
    settings: dict[str, Any],
    profile: int,
    refusal: str,
) -> None:
    team = await factory.team()
    charge_point = await factory.charge_point(team)
    await certificates.issue_key_and_certificate(session, ca, charge_point)
    await session.commit()
    client = await admin_client(factory, login_as, charge_point, team)
    page = f"/charge-points/{charge_point.id}/security"
    app.config.update(settings)
    response = await post(client, f"{page}/steps/switch", {"profile": str(profile)}, page)
    assert response.status_code == 422
    assert refusal in await response.get_data(as_text=True)
    assert (await reloaded(session, charge_point)).security_profile == 1
