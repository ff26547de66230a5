"""Tenant isolation over every route that takes an id: another tenant's id answers 404, never data.

The routes come from the app's url_map, so a new route is tested as soon as it exists; a route
with an id argument this module does not know fails `test_every_id_route_is_covered`.

The walk also covers ids that were deleted (never handed out again, 404 to either tenant, and the
past they had never shown to the tenant that creates objects afterwards) and the OCPP frame log
(another tenant's frames on no page, fragment or API read, also after it gives up the identity).
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from websockets.exceptions import ConnectionClosed

from powerbank.db import utcnow
from powerbank.models import (
    Activation,
    ChargePoint,
    CompatibleModel,
    Dispatch,
    OperatorMembership,
    Team,
    TeamMembership,
    TokenAccess,
)
from powerbank.rules.permissions import load_principal
from powerbank.services import api_tokens, catalogue, enrollment, teams, users, webhooks
from powerbank.services import charge_points as cp_service
from powerbank.services.audit import SYSTEM
from tests.conftest import Factory, LoginAs, post_form
from tests.ocpp.support import EDIT_FORM, raw_socket
from tests.routes.rules import ARGUMENT_RE, RULES, arguments
from tests.routes.world import World, build_world

pytestmark = pytest.mark.usefixtures("fast_hashing")

# Every id a route may take, by argument name, and the kind of object it names.
ID_ARGUMENTS = {
    "operator_id": "operator",
    "team_id": "team",
    "cp_id": "charge_point",
    "entry_id": "catalogue_entry",
    "membership_id": "membership",
    "token_id": "api_token",
    "activation_id": "activation",
    "webhook_id": "webhook",
    "certificate_id": "certificate",
}
# Values for the other (non-id) arguments of routes that take an id.
OTHER_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "scope": ("operator", "team"),
    "month": ("2026-11",),
    "step": ("install_ca", "request_certificate", "switch"),
}
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Values a browser could send to any form; a route that wrongly accepts a foreign id would use them.
FORM = {
    "name": "Hijacked",
    "identity": "HIJACKED-1",
    "country": "DK",
    "price_area": "DK2",
    "brand": "Acme",
    "model": "X",
    "role": "admin",
    "remove": "1",
    "email": "x@example.test",
    "confirm": "1",
}
NOT_FOUND_MARKERS = ("Secret",)


ID_RULES = [rule for rule in RULES if any(converter == "int" for converter, _ in arguments(rule))]


def methods(rule: Any) -> list[str]:
    return sorted(method for method in rule.methods if method not in ("HEAD", "OPTIONS"))


def test_every_id_route_is_covered() -> None:
    uncovered = [
        f"{rule.rule} ({name})"
        for rule in ID_RULES
        for converter, name in arguments(rule)
        if (converter == "int" and name not in ID_ARGUMENTS) or (converter != "int" and name not in OTHER_ARGUMENTS)
    ]
    assert not uncovered, f"add these route arguments to the tenant isolation test: {uncovered}"
    assert {"teams.charge_points", "charge_points.detail", "admin.catalogue_remove"} <= {r.endpoint for r in ID_RULES}


Ids = dict[str, Any]


async def tenant_ids(session: AsyncSession, operator_id: int, team: Team, charge_point: ChargePoint) -> Ids:
    """Return the ids of one tenant's objects by kind (memberships by scope), and an API token's secret."""
    from powerbank.models import Activation, ChargerCertificate, TokenAccess
    from powerbank.services.api_tokens import TokenRequest, create_token

    entry = (await session.exec(select(CompatibleModel.id).where(CompatibleModel.operator_id == operator_id))).first()
    operator_membership = (
        await session.exec(select(OperatorMembership.id).where(OperatorMembership.operator_id == operator_id))
    ).first()
    team_membership = (await session.exec(select(TeamMembership.id).where(TeamMembership.team_id == team.id))).first()
    token, secret = await create_token(
        session, SYSTEM, operator_id, TokenRequest("Tenancy test", TokenAccess.WRITE, None, None)
    )
    start = utcnow() + timedelta(hours=1)
    activation = Activation(
        operator_id=operator_id,
        price_area="DK2",
        market="FCR-D",
        action="pause",
        start_at=start,
        duration_s=600,
        end_at=start + timedelta(seconds=600),
        created_by="tenancy test",
    )
    session.add(activation)
    webhook = await webhooks.create_webhook(
        session, SYSTEM, operator_id, team, webhooks.WebhookForm("https://hooks.example.com/t", "", "", True)
    )
    certificate = ChargerCertificate(
        charge_point_id=charge_point.id or 0,
        serial=f"{operator_id:040x}",
        common_name=charge_point.identity[:48],
        fingerprint_sha256=f"{operator_id:064x}",
        not_before=utcnow() - timedelta(days=1),
        not_after=utcnow() + timedelta(days=365),
    )
    session.add(certificate)
    await session.commit()
    assert entry and operator_membership and team_membership
    return {
        "operator": operator_id,
        "team": team.id,
        "charge_point": charge_point.id,
        "catalogue_entry": entry,
        "membership": {"operator": operator_membership, "team": team_membership},
        "api_token": token.id,
        "activation": activation.id,
        "webhook": webhook.id,
        "certificate": certificate.id,
        "secret": secret,
    }


def id_value(ids: Ids, kind: str, values: dict[str, str]) -> int:
    if kind == "membership":
        return ids[kind][values["scope"]]
    return ids[kind]


def paths_with_a_foreign_id(rule: Any, own: Ids, foreign: Ids) -> Iterator[str]:
    """Yield the rule's paths with one id argument foreign (or unknown) and everything else the caller's own."""
    args = arguments(rule)
    other_names = [name for converter, name in args if converter != "int"]
    combos: list[dict[str, str]] = [{}]
    for name in other_names:
        combos = [{**combo, name: value} for combo in combos for value in OTHER_ARGUMENTS[name]]
    for combo in combos:
        for _, target in (arg for arg in args if arg[0] == "int"):
            # Huge and malformed ids: test_malformed_ids_answer_404.
            for guessed in ("foreign", 987654):
                values: dict[str, Any] = dict(combo)
                for converter, name in args:
                    if converter != "int":
                        continue
                    kind = ID_ARGUMENTS[name]
                    if name != target:
                        values[name] = id_value(own, kind, combo)
                    elif guessed == "foreign":
                        values[name] = id_value(foreign, kind, combo)
                    else:
                        values[name] = guessed
                yield ARGUMENT_RE.sub(lambda m: str(values[m.group(2)]), rule.rule)


async def request(client: QuartClient, method: str, path: str, bearer: str | None = None) -> Any:
    """Send what a page would (session cookie and CSRF token), or with ``bearer``, what an API client would."""
    if bearer is not None:
        headers = {"Authorization": f"Bearer {bearer}"}
        if method == "GET":
            return await client.get(path, headers=headers)
        return await client.open(path, method=method, json=FORM, headers=headers)
    token = client.csrf_token  # type: ignore[attr-defined]
    if method == "GET":
        return await client.get(path)
    return await client.open(path, method=method, form={"csrf_token": token, **FORM}, headers={"X-CSRF-Token": token})


def bearer_for(app: Quart, rule: Any, ids: Ids) -> str | None:
    """Return the API token to call a token-authenticated (CSRF-exempt) route with, else None."""
    blueprint = rule.endpoint.rsplit(".", 1)[0] if "." in rule.endpoint else ""
    return ids["secret"] if blueprint in app.config.get("CSRF_EXEMPT_BLUEPRINTS", ()) else None


async def snapshot(session: AsyncSession, world: World) -> tuple[Any, ...]:
    """Return what the other tenant has (columns, read afresh), to prove nothing of it changed."""
    team = (await session.exec(select(Team.name).where(Team.id == world.other_team.id))).all()
    charge_point = (
        await session.exec(
            select(ChargePoint.name, ChargePoint.identity, ChargePoint.ocpp_password_hash).where(
                ChargePoint.id == world.other_charge_point.id
            )
        )
    ).all()
    entries = (
        await session.exec(select(CompatibleModel.id).where(CompatibleModel.operator_id == world.other_operator.id))
    ).all()
    members = (await session.exec(select(OperatorMembership.id, OperatorMembership.role))).all()
    team_members = (
        await session.exec(select(TeamMembership.id, TeamMembership.role, TeamMembership.can_configure_charge_points))
    ).all()
    return tuple(team), tuple(charge_point), sorted(entries), sorted(members), sorted(team_members)


async def give_foreign_tenant_members(factory: Factory, world: World) -> None:
    await factory.user(operator=world.other_operator, operator_role="admin", email="secret.admin@example.test")
    await factory.user(team=world.other_team, team_role="owner", email="secret.owner@example.test")


@pytest.mark.parametrize("rule", ID_RULES, ids=[f"{rule.endpoint}" for rule in ID_RULES])
async def test_foreign_ids_answer_404(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs, rule: Any
) -> None:
    world = await build_world(factory, ["operator admin"])
    await factory.user(team=world.team, team_role="member", email="our.member@example.test")
    await give_foreign_tenant_members(factory, world)
    own = await tenant_ids(session, world.operator.id or 0, world.team, world.charge_point)
    foreign = await tenant_ids(session, world.other_operator.id or 0, world.other_team, world.other_charge_point)
    before = await snapshot(session, world)
    client = await login_as(world.users["operator admin"])
    for path in paths_with_a_foreign_id(rule, own, foreign):
        for method in methods(rule):
            bearer = bearer_for(app, rule, own)
            response = await request(client, method, path, bearer)
            body = await response.get_data(as_text=True)
            # The JSON API checks a body's schema before looking anything up; that 422 reveals nothing.
            allowed = {404, 422} if bearer and method != "GET" else {404}
            assert response.status_code in allowed, f"{method} {path} answered {response.status_code}"
            assert not any(marker in body for marker in NOT_FOUND_MARKERS), f"{method} {path} leaked data"
    assert await snapshot(session, world) == before


SIBLING_RULES = [
    rule
    for rule in ID_RULES
    if rule.endpoint.split(".")[0] != "api"
    and {name for c, name in arguments(rule) if c == "int"} <= {"team_id", "cp_id"}
]


@pytest.mark.parametrize("rule", SIBLING_RULES, ids=[f"{rule.endpoint}" for rule in SIBLING_RULES])
async def test_team_roles_do_not_reach_sibling_teams(
    session: AsyncSession, factory: Factory, login_as: LoginAs, rule: Any
) -> None:
    """A Team Owner of one team cannot reach another team of the same operator."""
    world = await build_world(factory, ["team owner"])
    sibling = await factory.team(world.operator, "Secret Sibling")
    sibling_cp = await factory.charge_point(sibling, name="Secret Sibling Charger")
    client = await login_as(world.users["team owner"])
    values: dict[str, Any] = {"team_id": sibling.id, "cp_id": sibling_cp.id}
    values.update({name: OTHER_ARGUMENTS[name][0] for c, name in arguments(rule) if c != "int"})
    path = ARGUMENT_RE.sub(lambda m: str(values[m.group(2)]), rule.rule)
    for method in methods(rule):
        response = await request(client, method, path)
        assert response.status_code == 404, f"{method} {path} answered {response.status_code}"
        assert "Secret" not in await response.get_data(as_text=True)
    assert (await session.exec(select(ChargePoint.name).where(ChargePoint.id == sibling_cp.id))).all() == [
        "Secret Sibling Charger"
    ]
    assert (await session.exec(select(Team.name).where(Team.id == sibling.id))).all() == ["Secret Sibling"]


@pytest.mark.parametrize(
    "path",
    [
        "/teams/abc/charge-points",
        "/charge-points/-1",
        "/charge-points/1.5",
        "/operators/%F0%9F%92%A5/teams",
        "/teams/99999999999999999999999999/charge-points",
    ],
)
async def test_malformed_ids_answer_404(factory: Factory, login_as: LoginAs, path: str) -> None:
    world = await build_world(factory, ["operator admin"])
    client = await login_as(world.users["operator admin"])
    assert (await client.get(path)).status_code == 404


async def test_home_lists_only_own_tenant(app: Quart, factory: Factory, login_as: LoginAs) -> None:
    world = await build_world(factory, ["operator admin", "team member"])
    for role in ("operator admin", "team member"):
        client = await login_as(world.users[role])
        body = await (await client.get("/")).get_data(as_text=True)
        assert "Our Team" in body and "Secret" not in body


# ---- ids that were deleted, and the objects made after them (issue 13, close the class) ----

# Names that mark each tenant's data in the other's answers.
GONE, OTHER = "vanished", "bravo"


def other_argument_combinations(rule: Any) -> list[dict[str, str]]:
    """Return every combination of values of the rule's non-id arguments."""
    combos: list[dict[str, str]] = [{}]
    for name in (name for converter, name in arguments(rule) if converter != "int"):
        combos = [{**combo, name: value} for combo in combos for value in OTHER_ARGUMENTS[name]]
    return combos


def path_of(rule: Any, combo: dict[str, str], ids_by_argument: dict[str, Ids]) -> str:
    """Return the rule's path with ``combo`` and each id argument taken from its entry of ``ids_by_argument``."""
    values: dict[str, Any] = dict(combo)
    for converter, name in arguments(rule):
        if converter == "int":
            values[name] = id_value(ids_by_argument[name], ID_ARGUMENTS[name], combo)
    return ARGUMENT_RE.sub(lambda m: str(values[m.group(2)]), rule.rule)


def own_paths(rule: Any, ids: Ids) -> Iterator[str]:
    """Yield the rule's paths with every id the caller's own (one per value of its other arguments)."""
    names = [name for converter, name in arguments(rule) if converter == "int"]
    for combo in other_argument_combinations(rule):
        yield path_of(rule, combo, dict.fromkeys(names, ids))


def paths_with_a_stale_id(rule: Any, own: Ids, stale: Ids) -> Iterator[str]:
    """Yield the rule's paths with one id a deleted one (of a kind in ``stale``), the others the caller's own."""
    names = [name for converter, name in arguments(rule) if converter == "int"]
    for combo in other_argument_combinations(rule):
        for target in (name for name in names if ID_ARGUMENTS[name] in stale):
            yield path_of(rule, combo, {name: stale if name == target else own for name in names})


# The GET rules a tenant's users can fill with their own ids: every page, fragment and API read they have.
WALKABLE_GET_RULES = [
    rule
    for rule in RULES
    if "GET" in rule.methods
    and all(
        (c == "int" and name in ID_ARGUMENTS) or (c != "int" and name in OTHER_ARGUMENTS) for c, name in arguments(rule)
    )
]


async def walk_reads(app: Quart, client: QuartClient, ids: Ids, *, bearer: str | None, absent: str) -> int:
    """GET every walkable rule with the caller's own ids (pages also as htmx); fail if ``absent`` shows.

    Return how many answers were read, so a caller can tell the walk reached something.
    """
    read = 0
    for rule in WALKABLE_GET_RULES:
        # A token walks the token-authenticated routes, a browser the others.
        if (bearer_for(app, rule, {"secret": "API"}) is None) != (bearer is None):
            continue
        for path in own_paths(rule, ids):
            for htmx in (False, True) if bearer is None else (False,):
                headers = {"HX-Request": "true"} if htmx else {}
                if bearer is not None:
                    headers["Authorization"] = f"Bearer {bearer}"
                response = await client.get(path, headers=headers)
                # A PDF statement is binary (its text is the CSV's, which is read as text).
                body = (await response.get_data()).decode("utf-8", "replace").lower()
                assert response.status_code < 500, f"GET {path} answered {response.status_code}"
                assert absent not in body, f"GET {path}{' (htmx)' if htmx else ''} shows the other tenant's {absent}"
                read += response.status_code == 200
    return read


async def test_deleted_ids_are_never_handed_out_again_nor_show_anything_to_either_tenant(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    """Tenant A deletes its newest objects; tenant B, creating objects after, never gets their ids or their past."""
    bravo = await factory.operator("Bravo Operator")
    bravo_admin = await factory.user(operator=bravo, operator_role="admin", email="bravo.admin@example.test")
    vanished = await factory.operator("Vanished Operator")
    gone_admin = await factory.user(operator=vanished, operator_role="admin", email="vanished.admin@example.test")
    depot = await factory.team(vanished, "Vanished Depot")
    await factory.user(team=depot, team_role="member", email="vanished.member@example.test")
    gone_live = await tenant_ids(
        session, vanished.id or 0, depot, await factory.charge_point(depot, name="Vanished Spare")
    )

    # A's newest objects, each with a past: a signed-up charge point (history, terms acceptance, audit),
    # an activation that reached it, a catalogue entry, a team role and an operator role.
    admin_a = await load_principal(session, gone_admin)
    team = await factory.team(vanished, "Vanished Team")
    await factory.user(team=team, team_role="member", email="vanished.teammate@example.test")
    await factory.user(operator=vanished, operator_role="manager", email="vanished.manager@example.test")
    charge_point = await factory.charge_point(
        team, name="Vanished Charger", identity="SHARED-1", country="DK", price_area="DK2"
    )
    await enrollment.bulk_sign_up(
        session,
        admin_a,
        team,
        accept_terms_version="demo-v1",
        charge_point_ids=[charge_point.id or 0],
        sign_up_all=False,
        facility_ids={},
    )
    entry = await catalogue.add_model(session, admin_a, vanished.id or 0, "Vanished Brand", "Gone")
    await session.commit()
    start = utcnow() - timedelta(minutes=5)
    activation = Activation(
        operator_id=vanished.id or 0,
        price_area="DK2",
        market="FCR-D",
        action="pause",
        start_at=start,
        duration_s=60,
        end_at=start + timedelta(seconds=60),
        state="ended",
        created_by=gone_admin.email,
    )
    session.add(activation)
    await session.flush()
    session.add(
        Dispatch(
            activation_id=activation.id or 0,
            charge_point_id=charge_point.id,
            identity="SHARED-1",
            status="Accepted",
            detail="vanished dispatch",
            sent_at=start,
            answered_at=start,
        )
    )
    await session.commit()
    memberships = {
        "operator": (
            await session.exec(
                select(OperatorMembership.id).where(
                    OperatorMembership.operator_id == vanished.id, OperatorMembership.role == "manager"
                )
            )
        ).one(),
        "team": (await session.exec(select(TeamMembership.id).where(TeamMembership.team_id == team.id))).one(),
    }
    stale: Ids = {
        "team": team.id,
        "charge_point": charge_point.id,
        "catalogue_entry": entry.id,
        "membership": memberships,
    }

    # A deletes them all: the charge point, its team (with the team role), the entry, the manager's role.
    await cp_service.delete_charge_point(session, admin_a, team, charge_point)
    await session.commit()
    await teams.delete_team(session, admin_a, team)
    await catalogue.remove_model(session, admin_a, vanished.id or 0, entry.id or 0)
    await users.remove_member(session, admin_a, vanished.id or 0, "operator", memberships["operator"] or 0)
    await session.commit()
    session.expunge_all()

    # B makes one object of each kind afterwards; none of them gets a deleted id.
    admin_b = await load_principal(session, bravo_admin)
    bravo_team = await teams.create_team(session, admin_b, bravo.id or 0, "Bravo Team")
    await session.commit()
    bravo_member = await factory.user(team=bravo_team, team_role="member", email="bravo.member@example.test")
    await factory.user(operator=bravo, operator_role="manager", email="bravo.manager@example.test")
    bravo_cp = await factory.charge_point(bravo_team, name="Bravo Charger", identity="SHARED-1", price_area="DK2")
    bravo_entry = await catalogue.add_model(session, admin_b, bravo.id or 0, "Bravo Brand", "New")
    await session.commit()
    bravo_ids = await tenant_ids(session, bravo.id or 0, bravo_team, bravo_cp)
    bravo_ids["catalogue_entry"] = bravo_entry.id
    bravo_ids["membership"] = {
        "operator": (
            await session.exec(
                select(OperatorMembership.id).where(
                    OperatorMembership.operator_id == bravo.id, OperatorMembership.role == "manager"
                )
            )
        ).one(),
        "team": bravo_ids["membership"]["team"],
    }
    for kind, old in stale.items():
        pairs = (
            [(old[scope], bravo_ids[kind][scope]) for scope in old]
            if kind == "membership"
            else [(old, bravo_ids[kind])]
        )
        assert all(new > deleted for deleted, new in pairs), f"{kind}: A deleted {pairs[0][0]}, B got {pairs[0][1]}"

    # A deleted id answers 404 on every route, to either tenant, by page or by token.
    _, bravo_read = await api_tokens.create_token(
        session, admin_b, bravo.id or 0, api_tokens.TokenRequest("Bravo read", TokenAccess.READ, None, None)
    )
    await session.commit()
    for user, own in ((gone_admin, gone_live), (bravo_admin, bravo_ids)):
        client = await login_as(user)
        for rule in ID_RULES:
            bearer = bearer_for(app, rule, own)
            for path in paths_with_a_stale_id(rule, own, stale):
                for method in methods(rule):
                    response = await request(client, method, path, bearer)
                    allowed = {404, 422} if bearer and method != "GET" else {404}
                    assert response.status_code in allowed, f"{user.email}: {method} {path} {response.status_code}"
        # And A never reaches what B made after the deletion.
        if user is gone_admin:
            for rule in ID_RULES:
                for path in paths_with_a_foreign_id(rule, own, bravo_ids):
                    for method in methods(rule):
                        response = await request(client, method, path, bearer_for(app, rule, own))
                        assert response.status_code in {404, 422}, f"{method} {path} {response.status_code}"
                        assert OTHER not in (await response.get_data(as_text=True)).lower()

    # Nothing of A's deleted objects, nor of A at all, shows on any page, fragment or API read of B's.
    for user in (bravo_admin, bravo_member):
        assert await walk_reads(app, await login_as(user), bravo_ids, bearer=None, absent=GONE) > 10
    assert await walk_reads(app, app.test_client(), bravo_ids, bearer=bravo_ids["secret"], absent=GONE) > 3
    assert await walk_reads(app, app.test_client(), bravo_ids, bearer=bravo_read, absent=GONE) > 3
    # While A's own pages still show its past, for its operator's audit.
    audit = await (await (await login_as(gone_admin)).get(f"/operators/{vanished.id}/audit")).get_data(as_text=True)
    assert "Vanished Charger" in audit


FRAME_SECRET = "vanished-vendor-frame"
PASSWORD_RE = re.compile(r'<code class="secret">([^<]+)</code>')


async def frames_shown(client: QuartClient, cp_id: int) -> str:
    """Return the live OCPP fragment of a charge point (the frame log is in it), as htmx polls it."""
    response = await client.get(f"/charge-points/{cp_id}/ocpp", headers={"HX-Request": "true"})
    assert response.status_code == 200
    return await response.get_data(as_text=True)


@pytest.mark.served
async def test_no_route_shows_another_tenants_ocpp_frames_before_or_after_it_deletes_the_charge_point(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    """Tenant A's charger talks; B's admin, member and tokens never see a frame of it, even under its identity."""
    world = await build_world(factory, [])
    world.operator.name, world.other_operator.name = "Bravo Operator", "Vanished Operator"
    session.add_all([world.operator, world.other_operator])
    await session.commit()
    admin_b = await factory.user(operator=world.operator, operator_role="admin", email="bravo.admin@example.test")
    member_b = await factory.user(team=world.team, team_role="member", email="bravo.member@example.test")
    admin_a = await factory.user(operator=world.other_operator, operator_role="admin", email="vanished.a@example.test")
    await factory.user(team=world.other_team, team_role="member", email="vanished.m@example.test")
    cp_a = await factory.charge_point(world.other_team, name="Vanished Charger", identity="SHARED-2")
    ids_b = await tenant_ids(session, world.operator.id or 0, world.team, world.charge_point)
    _, read_b = await api_tokens.create_token(
        session, SYSTEM, world.operator.id or 0, api_tokens.TokenRequest("Bravo read", TokenAccess.READ, None, None)
    )
    await session.commit()
    browser_a, browsers_b = await login_as(admin_a), [await login_as(admin_b), await login_as(member_b)]

    async def b_sees_no_frame_of_a() -> None:
        for browser in browsers_b:
            assert await walk_reads(app, browser, ids_b, bearer=None, absent=FRAME_SECRET) > 10
            for path in (f"/charge-points/{cp_a.id}", f"/charge-points/{cp_a.id}/ocpp"):
                assert (await browser.get(path, headers={"HX-Request": "true"})).status_code == 404
        for secret in (ids_b["secret"], read_b):
            assert await walk_reads(app, app.test_client(), ids_b, bearer=secret, absent=FRAME_SECRET) > 3

    async with raw_socket(app, "SHARED-2") as websocket:
        await websocket.send(json.dumps([2, "a1", "DataTransfer", {"vendorId": FRAME_SECRET}]))
        assert json.loads(await websocket.recv())[:2] == [3, "a1"]
        # A sees its own frame (so the walk below looks where frames are shown), B nowhere.
        assert FRAME_SECRET in await frames_shown(browser_a, cp_a.id or 0)
        await b_sees_no_frame_of_a()

        response = await post_form(browser_a, f"/charge-points/{cp_a.id}/delete")
        assert response.status_code == 303
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(websocket.recv(), 5)

    # B registers the identity A's charger used, and its own charger connects under it.
    form = {**EDIT_FORM, "name": "Bravo Charger", "identity": "SHARED-2"}
    response = await post_form(browsers_b[0], f"/teams/{world.team.id}/charge-points/new", form)
    assert response.status_code == 201, await response.get_data(as_text=True)
    match = PASSWORD_RE.search(await response.get_data(as_text=True))
    assert match
    cp_b = (await session.exec(select(ChargePoint).where(ChargePoint.identity == "SHARED-2"))).one()
    assert cp_b.id != cp_a.id
    ids_b["charge_point"] = cp_b.id
    await b_sees_no_frame_of_a()
    async with raw_socket(app, "SHARED-2", password=html.unescape(match.group(1))) as websocket:
        await websocket.send(json.dumps([2, "b1", "DataTransfer", {"vendorId": "bravo-vendor-frame"}]))
        assert json.loads(await websocket.recv())[:2] == [3, "b1"]
        shown = await frames_shown(browsers_b[1], cp_b.id or 0)
        assert "bravo-vendor-frame" in shown and FRAME_SECRET not in shown
        await b_sees_no_frame_of_a()
