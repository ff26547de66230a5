"""A charge point's OCPP security: its profile, its certificates, and the guided upgrade.

The upgrade is a sequence of steps sent over the charger's live connection (install the operator
CA, have the charger ask for a certificate, switch its profile); each answer is shown, and the
profile the hub requires is raised once the charger has taken the switch.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, current_app, request

from powerbank.config import ca_directory
from powerbank.dispatch.gateway import gateway
from powerbank.errors import NotFoundError
from powerbank.models import ChargePoint, Team
from powerbank.routes.loaders import charge_point_for
from powerbank.routes.teams import ocpp_url
from powerbank.rules.permissions import Permission, Principal, can_on_team, denial_reason
from powerbank.services import certificates
from powerbank.services.certificates import CertificateError
from powerbank.web.auth import login_required, principal
from powerbank.web.render import render_page
from powerbank.web.state import db_session

blueprint = Blueprint("charger_security", __name__)


@blueprint.get("/charge-points/<int:cp_id>/security")
@login_required
async def show(cp_id: int) -> Response:
    me = await principal()
    charge_point, team = await charge_point_for(me, cp_id)
    return await _render(me, charge_point, team)


@blueprint.post("/charge-points/<int:cp_id>/security/profile")
@login_required
async def set_profile(cp_id: int) -> Response:
    """Set the profile the hub requires by hand (a charger configured on site, or a step back)."""
    me = await principal()
    charge_point, team = await charge_point_for(me, cp_id, may=Permission.CONFIGURE_CHARGE_POINTS)
    session = await db_session()
    try:
        await certificates.set_security_profile(session, me, team, charge_point, _profile_of(await request.form))
    except CertificateError as error:
        return await _render(me, charge_point, team, error=str(error), status=422)
    await session.commit()
    return await _render(me, charge_point, team)


@blueprint.post("/charge-points/<int:cp_id>/security/steps/<step>")
@login_required
async def run_step(cp_id: int, step: str) -> Response:
    """Send one step of the upgrade to the charger and show its answer."""
    me = await principal()
    charge_point, team = await charge_point_for(me, cp_id, may=Permission.CONFIGURE_CHARGE_POINTS)
    session = await db_session()
    form = await request.form
    try:
        profile = _profile_of(form)
        tls = certificates.hub_tls(current_app.config)
        await certificates.check_upgrade_step(session, me, team, charge_point, step, profile, tls)
    except CertificateError as error:
        return await _render(me, charge_point, team, error=str(error), status=422)
    ca_certificate = _ca_certificate()
    # The charger may take its time to answer each call: end the read transaction first, so the
    # connection goes back to the pool meanwhile (the objects read stay loaded).
    await session.commit()
    result = await gateway().security_step(
        charge_point,
        step,
        profile=profile,
        ca_pem=certificates.certificate_pem(ca_certificate) if ca_certificate is not None else None,
        csms_url=_csms_url(charge_point),
    )
    if step == "switch" and result.accepted:
        # The charger reconnects by itself (1.6) or after its next reboot (2.0.1).
        await certificates.set_security_profile(session, me, team, charge_point, profile, reconnect=False)
        await session.commit()
    return await _render(me, charge_point, team, step=step, result=result)


@blueprint.post("/charge-points/<int:cp_id>/security/certificates/<int:certificate_id>/revoke")
@login_required
async def revoke(cp_id: int, certificate_id: int) -> Response:
    me = await principal()
    charge_point, team = await charge_point_for(me, cp_id, may=Permission.CONFIGURE_CHARGE_POINTS)
    session = await db_session()
    try:
        await certificates.revoke_certificate(session, me, team, charge_point, certificate_id)
    except CertificateError as error:
        raise NotFoundError(str(error)) from error
    await session.commit()
    return await _render(me, charge_point, team)


def _profile_of(form: Any) -> int:
    text = str(form.get("profile", ""))
    if text not in ("1", "2", "3"):
        raise CertificateError("Choose security profile 1, 2 or 3.")
    return int(text)


def _csms_url(charge_point: ChargePoint) -> str:
    """Return the hub's OCPP URL without the identity (OCPP 2.0.1 ocppCsmsUrl), over TLS: profiles 2 and 3 need it."""
    url = ocpp_url(charge_point.identity).removesuffix(charge_point.identity)
    return "wss://" + url.removeprefix("ws://") if url.startswith("ws://") else url


def _ca_certificate() -> Any:
    return certificates.load_ca_certificate(ca_directory(current_app.config))


async def _render(
    me: Principal,
    charge_point: ChargePoint,
    team: Team,
    *,
    step: str | None = None,
    result: Any = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    session = await db_session()
    listed = await certificates.certificates_of(session, charge_point.id or 0)
    ca_certificate = _ca_certificate()
    return await render_page(
        "charge_points/security.html",
        "charge_points/security_section.html",
        status=status,
        charge_point=charge_point,
        team=team,
        certificates=certificates.states_of(listed),
        usable=certificates.usable_certificate(listed),
        ca_expires=ca_certificate.not_valid_after_utc if ca_certificate is not None else None,
        can_configure=can_on_team(me, Permission.CONFIGURE_CHARGE_POINTS, team),
        configure_reason=denial_reason(me, Permission.CONFIGURE_CHARGE_POINTS, team),
        step=step,
        result=result,
        error=error,
    )
