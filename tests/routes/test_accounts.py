"""Accounts no operator can take over: invitations, password change, log out everywhere (issue 13 finding 3)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank import ConfigurationError, create_app
from powerbank.db import utcnow
from powerbank.models import MailMessage, Operator, User
from powerbank.services import accounts
from powerbank.services.audit import SYSTEM
from powerbank.services.passwords import verify_password
from tests.conftest import TEST_PASSWORD, Factory, LoginAs, csrf_of, post_form
from tests.helpers import TEST_CONFIG

pytestmark = pytest.mark.usefixtures("fast_hashing")

LINK = re.compile(r"http://localhost/invitations/(\S+)")


async def mail_to(session: AsyncSession, email: str) -> list[MailMessage]:
    return list(
        await session.exec(select(MailMessage).where(MailMessage.to_address == email).order_by(col(MailMessage.id)))
    )


async def admin_of(factory: Factory, login_as: LoginAs, name: str) -> tuple[Operator, int, QuartClient]:
    operator = await factory.operator(name)
    team = await factory.team(operator, f"{name} team")
    admin = await factory.user(operator=operator, operator_role="admin", email=f"admin@{name.lower()}.example")
    return operator, team.id or 0, await login_as(admin)


async def add(client: QuartClient, operator: Operator, team_id: int, email: str) -> Any:
    return await post_form(
        client,
        f"/operators/{operator.id}/members",
        {"email": email, "role": "team:admin", "team_id": str(team_id), "can_configure_charge_points": "1"},
    )


async def accept(app: Quart, token: str, password: str, confirm: str | None = None) -> tuple[Any, QuartClient]:
    client = app.test_client()
    csrf = await csrf_of(client)
    response = await client.post(
        f"/invitations/{token}",
        form={"csrf_token": csrf, "password": password, "confirm": password if confirm is None else confirm},
    )
    return response, client


async def signed_in(client: QuartClient) -> bool:
    return (await client.get("/")).status_code == 200


async def test_another_operators_admin_never_holds_a_credential_for_an_account(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    """The pre-takeover: operator A's admin adds x@b.example, operator B later grants x a role."""
    operator_a, team_a, admin_a = await admin_of(factory, login_as, "Alpha")
    operator_b, team_b, admin_b = await admin_of(factory, login_as, "Bravo")

    seen_by_a = await (await add(admin_a, operator_a, team_a, "x@b.example")).get_data(as_text=True)
    seen_by_a += await (await admin_a.get(f"/operators/{operator_a.id}/members")).get_data(as_text=True)
    user = (await session.exec(select(User).where(User.email == "x@b.example"))).one()
    assert user.password_hash == ""
    # No password signs in an account whose person has not chosen one (not even the dummy hash's).
    for guess in ("", "not a real password", TEST_PASSWORD):
        assert not verify_password(user.password_hash, guess)
    failed = await app.test_client().post(
        "/login",
        form={
            "email": "x@b.example",
            "password": "not a real password",
            "csrf_token": await csrf_of(app.test_client()),
        },
    )
    assert failed.status_code in (400, 401)

    seen_by_b = await (await add(admin_b, operator_b, team_b, "x@b.example")).get_data(as_text=True)
    seen_by_b += await (await admin_b.get(f"/operators/{operator_b.id}/members")).get_data(as_text=True)
    first, second = await mail_to(session, "x@b.example")
    link_a, link_b = LINK.search(first.body), LINK.search(second.body)
    assert link_a and link_b and "Alpha" in first.body and "Bravo" in second.body
    for token in (link_a.group(1), link_b.group(1)):
        assert token not in seen_by_a + seen_by_b
    # A's link stopped working when B's was sent; only the newest works, once.
    response, _ = await accept(app, link_a.group(1), "chosen by x alone")
    assert response.status_code == 404
    response, x_client = await accept(app, link_b.group(1), "chosen by x alone")
    assert response.status_code == 303 and await signed_in(x_client)
    page = await (await x_client.get("/")).get_data(as_text=True)
    assert "Alpha team" in page and "Bravo team" in page
    response, _ = await accept(app, link_b.group(1), "another password")
    assert response.status_code == 404
    assert verify_password(
        (await session.get(User, user.id, populate_existing=True)).password_hash, "chosen by x alone"
    )  # type: ignore[union-attr]


async def test_a_person_with_an_account_is_told_never_re_passworded(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    operator, team_id, admin = await admin_of(factory, login_as, "Alpha")
    person = await factory.user(email="known@example.test")
    before = person.password_hash
    response = await add(admin, operator, team_id, "known@example.test")
    assert response.status_code == 303
    (notice,) = await mail_to(session, "known@example.test")
    assert "Team Admin in Alpha team" in notice.body and "/invitations/" not in notice.body
    assert "http://localhost/login" in notice.body
    assert (await session.get(User, person.id, populate_existing=True)).password_hash == before  # type: ignore[union-attr]
    assert await signed_in(await login_as(person))


async def test_invitation_form_refuses_bad_passwords_and_saves_nothing(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    operator, team_id, admin = await admin_of(factory, login_as, "Alpha")
    await add(admin, operator, team_id, "new@example.test")
    (invitation,) = await mail_to(session, "new@example.test")
    token = LINK.search(invitation.body).group(1)  # type: ignore[union-attr]
    page = await (await app.test_client().get(f"/invitations/{token}")).get_data(as_text=True)
    assert "new@example.test" in page and "Choose the password" in page
    short, _ = await accept(app, token, "short")
    assert short.status_code == 422 and "at least 10 characters" in await short.get_data(as_text=True)
    different, _ = await accept(app, token, "long enough one", "long enough two")
    assert different.status_code == 422 and "not the same" in await different.get_data(as_text=True)
    assert (
        await session.exec(
            select(User).where(User.email == "new@example.test").execution_options(populate_existing=True)
        )
    ).one().password_hash == ""
    # The link still works after refused attempts.
    accepted, client = await accept(app, token, "long enough one")
    assert accepted.status_code == 303 and await signed_in(client)


async def test_expired_and_unknown_invitation_links_are_refused(app: Quart, session: AsyncSession) -> None:
    user = User(email="late@example.test", password_hash="")
    session.add(user)
    await session.flush()
    tokens: list[str] = []
    await accounts.invite(
        session,
        SYSTEM,
        user,
        lambda token: tokens.append(token) or token,  # type: ignore[func-returns-value]
        operator=None,
        what="Team Member",
        now=utcnow() - accounts.INVITATION_VALID_FOR - timedelta(seconds=1),
    )
    await session.commit()
    for token in (tokens[0], "no-such-token", "x" * 5000):
        response = await app.test_client().get(f"/invitations/{token}")
        assert response.status_code == 404
        assert "cannot be used" in await response.get_data(as_text=True)
    client = app.test_client()
    csrf = await csrf_of(client)
    refused = await client.post(
        f"/invitations/{tokens[0]}", form={"csrf_token": csrf, "password": "long enough", "confirm": "long enough"}
    )
    assert refused.status_code == 404
    assert (await session.get(User, user.id, populate_existing=True)).password_hash == ""  # type: ignore[union-attr]


async def test_change_password_ends_every_other_session(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    person = await factory.user(email="me@example.test")
    here, elsewhere = await login_as(person), await login_as(person)
    wrong = await post_form(
        here,
        "/account/password",
        {"current": "wrong password", "password": "a new password", "confirm": "a new password"},
    )
    assert wrong.status_code == 422 and "not your current password" in await wrong.get_data(as_text=True)
    assert await signed_in(elsewhere)
    changed = await post_form(
        here, "/account/password", {"current": TEST_PASSWORD, "password": "a new password", "confirm": "a new password"}
    )
    assert changed.status_code == 303
    assert "Your password is changed" in await (await here.get(changed.headers["Location"])).get_data(as_text=True)
    assert await signed_in(here)
    assert not await signed_in(elsewhere)
    assert await signed_in(await login_as(person, "a new password"))
    refused = await app.test_client().post(
        "/login",
        form={"email": "me@example.test", "password": TEST_PASSWORD, "csrf_token": await csrf_of(app.test_client())},
    )
    assert refused.status_code != 303


async def test_log_out_everywhere_ends_every_session(app: Quart, factory: Factory, login_as: LoginAs) -> None:
    person = await factory.user(email="me@example.test")
    here, elsewhere = await login_as(person), await login_as(person)
    page = await (await here.get("/account")).get_data(as_text=True)
    assert "Log out everywhere" in page and "me@example.test" in page
    response = await post_form(here, "/account/logout-everywhere")
    assert response.status_code == 303 and "/login" in response.headers["Location"]
    assert not await signed_in(here) and not await signed_in(elsewhere)
    assert await signed_in(await login_as(person))


async def test_without_email_an_unknown_person_cannot_be_added(database_url: str, fast_hashing: None) -> None:
    app = create_app({**TEST_CONFIG, "DEMO": False, "DATABASE_URL": database_url})
    async with app.test_app():
        from powerbank.web import state

        async with state.sessionmaker(app)() as session:
            factory = Factory(session)
            operator = await factory.operator("Alpha")
            team = await factory.team(operator, "Alpha team")
            admin = await factory.user(operator=operator, operator_role="admin", email="admin@alpha.example")
            known = await factory.user(email="known@example.test")
            await session.commit()
        client = app.test_client()
        csrf = await csrf_of(client)
        await client.post("/login", form={"email": admin.email, "password": TEST_PASSWORD, "csrf_token": csrf})
        client.csrf_token = await csrf_of(client, "/")  # type: ignore[attr-defined]
        members = await (await client.get(f"/operators/{operator.id}/members")).get_data(as_text=True)
        assert "cannot invite someone new" in members
        refused = await add(client, operator, team.id or 0, "new@example.test")
        assert refused.status_code == 422 and "POWERBANK_SMTP_HOST" in await refused.get_data(as_text=True)
        assert (await add(client, operator, team.id or 0, known.email)).status_code == 303
        assert (await client.get("/dev/mail")).status_code == 404
        async with state.sessionmaker(app)() as session:
            assert (await session.exec(select(User).where(User.email == "new@example.test"))).first() is None
            assert (await session.exec(select(MailMessage))).all() == []


async def test_development_mailbox_shows_mail_in_demo_mode(
    app: Quart, session: AsyncSession, factory: Factory, login_as: LoginAs
) -> None:
    operator, team_id, admin = await admin_of(factory, login_as, "Alpha")
    await add(admin, operator, team_id, "new@example.test")
    page = await (await app.test_client().get("/dev/mail")).get_data(as_text=True)
    assert "new@example.test" in page and "You are invited to PowerBank" in page and "/invitations/" in page


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"SMTP_HOST": "mail.example"}, "POWERBANK_PUBLIC_URL must be set"),
        ({"SMTP_SECURITY": "ssl"}, "POWERBANK_SMTP_SECURITY must be one of"),
    ],
)
def test_mail_configuration_is_checked_at_start(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_app({**TEST_CONFIG, **config})


async def test_a_session_without_the_users_session_version_is_signed_out(app: Quart, factory: Factory) -> None:
    from quart_auth import authenticated_client

    person = await factory.user(email="me@example.test")
    await factory.session.commit()
    client = app.test_client()
    # A cookie of the form PowerBank wrote before session versions existed, and one of a wrong version.
    for auth_id in (str(person.id), f"{person.id}:{person.session_version + 1}", f"{person.id}:x"):
        async with authenticated_client(client, auth_id):
            assert (await client.get("/")).status_code == 302
    async with authenticated_client(client, f"{person.id}:{person.session_version}"):
        assert (await client.get("/")).status_code == 200
