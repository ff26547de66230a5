"""Users, log-in checks and the roles users hold in operators and teams."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.errors import ConflictError, FormErrors, NotFoundError
from powerbank.i18n import gettext as _
from powerbank.models import Operator, OperatorMembership, OperatorRole, Team, TeamMembership, TeamRole, User
from powerbank.rules.demo_credentials import DEMO_PASSWORD
from powerbank.rules.permissions import Permission
from powerbank.rules.validators import ValidationError, clean_email
from powerbank.services.access import Acting, actor_of, require_on_operator
from powerbank.services.accounts import InvitationLink, check_password, has_password, invite, tell_of_new_role
from powerbank.services.audit import Actor, record
from powerbank.services.passwords import hash_password, in_password_thread, verify_password

# What the members page offers: "operator:admin", "team:owner", ... (scope:role).
ROLE_CHOICES: dict[str, str] = {
    "operator:admin": "Operator Admin",
    "operator:manager": "Operator Manager",
    "team:owner": "Team Owner",
    "team:admin": "Team Admin",
    "team:member": "Team Member",
}


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    """Return the user with this email (case-insensitive)."""
    return (await session.exec(select(User).where(User.email == email.strip().lower()))).first()


async def authenticate(session: AsyncSession, email: str, password: str, *, demo_mode: bool = False) -> User | None:
    """Return the user if the email and password match; verify even for unknown emails.

    The published demo password only works in demo mode, so a demo database put into
    production by mistake cannot be entered with it.
    """
    user = await get_user_by_email(session, email) if email else None
    ok = await in_password_thread(verify_password, user.password_hash if user else None, password)
    if ok and password == DEMO_PASSWORD and not demo_mode:
        return None
    return user if ok and user else None


async def create_user(
    session: AsyncSession,
    actor: Actor,
    email: str,
    password: str | None,
    *,
    display_name: str = "",
    operator_id: int | None = None,
) -> User:
    """Create a user; emails are unique whatever their case.

    ``password`` None: the person sets it themselves from an invitation (``accounts.invite``);
    until then no password signs them in.
    """
    clean = clean_email(email)
    if await get_user_by_email(session, clean) is not None:
        raise ConflictError(_("A user with this email already exists."))
    password_hash = "" if password is None else await in_password_thread(hash_password, check_password(password))
    user = User(email=clean, display_name=display_name.strip(), password_hash=password_hash)
    session.add(user)
    await session.flush()
    record(session, actor, "user.create", user, operator_id=operator_id, after={"email": clean})
    return user


@dataclass
class MemberRow:
    """One role a user holds in an operator or one of its teams (the members page)."""

    membership_id: int
    scope: str  # "operator" or "team"
    user: User
    role: str
    team: Team | None = None
    can_configure_charge_points: bool = False

    @property
    def role_label(self) -> str:
        return ROLE_CHOICES[f"{self.scope}:{self.role}"]


async def list_members(session: AsyncSession, operator_id: int) -> list[MemberRow]:
    """Return every role held in an operator and its teams (two queries)."""
    rows: list[MemberRow] = []
    for membership, user in await session.exec(
        select(OperatorMembership, User)
        .join(User, col(User.id) == col(OperatorMembership.user_id))
        .where(OperatorMembership.operator_id == operator_id)
        .order_by(col(User.email))
    ):
        rows.append(MemberRow(membership.id or 0, "operator", user, membership.role))
    for team_membership, user, team in await session.exec(
        select(TeamMembership, User, Team)
        .join(User, col(User.id) == col(TeamMembership.user_id))
        .join(Team, col(Team.id) == col(TeamMembership.team_id))
        .where(Team.operator_id == operator_id)
        .order_by(col(Team.name), col(User.email))
    ):
        rows.append(
            MemberRow(
                team_membership.id or 0,
                "team",
                user,
                team_membership.role,
                team,
                team_membership.can_configure_charge_points,
            )
        )
    return rows


@dataclass
class MemberForm:
    email: str
    role: str
    team_id: int | None
    can_configure_charge_points: bool


@dataclass
class MemberAdded:
    """What adding a member did: the user, and whether they were sent an invitation to set a password."""

    user: User
    invited: bool


async def add_member(
    session: AsyncSession,
    by: Acting,
    operator_id: int,
    form: MemberForm,
    *,
    invitation_link: InvitationLink | None,
    login_url: str,
) -> MemberAdded:
    """Give a person a role, by email; nobody but that person ever learns a password.

    A new email gets an account without a password and an invitation link sent to it; a person
    who has an account is told of the role by email. ``invitation_link`` None: PowerBank cannot
    send email, so only people who have an account can be added.
    """
    require_on_operator(by, Permission.MANAGE_MEMBERS, operator_id)
    actor = actor_of(by)
    errors: dict[str, str] = {}
    try:
        email = clean_email(form.email)
    except ValidationError as exc:
        errors["email"] = str(exc)
    if form.role not in ROLE_CHOICES:
        errors["role"] = _("Choose a role.")
    team: Team | None = None
    if form.role.startswith("team:"):
        team = await session.get(Team, form.team_id) if form.team_id else None
        if team is None or team.operator_id != operator_id:
            errors["team_id"] = _("Choose a team of this operator.")
    if errors:
        raise FormErrors(errors)
    operator = await session.get(Operator, operator_id)
    if operator is None:
        raise NotFoundError(_("No such operator."))
    user = await get_user_by_email(session, email)
    if user is None:
        if invitation_link is None:
            raise FormErrors(
                {
                    "email": "PowerBank cannot send email (POWERBANK_SMTP_HOST is not set), so it cannot invite "
                    "someone new. Add a person who already has an account, or ask whoever runs PowerBank "
                    "to set up email."
                }
            )
        user = await create_user(session, actor, email, None, operator_id=operator_id)
    scope, role = form.role.split(":")
    if scope == "operator":
        existing = (
            await session.exec(
                select(OperatorMembership).where(
                    OperatorMembership.operator_id == operator_id, OperatorMembership.user_id == user.id
                )
            )
        ).first()
        if existing is not None:
            raise FormErrors({"email": _("This user already has an operator role; change it in the list.")})
        membership: OperatorMembership | TeamMembership = OperatorMembership(
            operator_id=operator_id, user_id=user.id or 0, role=OperatorRole(role)
        )
    else:
        assert team is not None
        existing_team = (
            await session.exec(
                select(TeamMembership).where(TeamMembership.team_id == team.id, TeamMembership.user_id == user.id)
            )
        ).first()
        if existing_team is not None:
            raise FormErrors(
                {"email": _("This user already has a role in %(team)s; change it in the list.", team=team.name)}
            )
        membership = TeamMembership(
            team_id=team.id or 0,
            user_id=user.id or 0,
            role=TeamRole(role),
            can_configure_charge_points=form.can_configure_charge_points and role != TeamRole.MEMBER,
        )
    session.add(membership)
    await session.flush()
    what = f"{ROLE_CHOICES[form.role]} in {team.name}" if team else f"{ROLE_CHOICES[form.role]} of {operator.name}"
    # Someone who never set a password gets a fresh link, whoever added them first; everyone else
    # is only told. No credential is ever made for, or shown to, whoever adds them.
    invited = not has_password(user) and invitation_link is not None
    if invited:
        assert invitation_link is not None
        await invite(session, actor, user, invitation_link, operator=operator, what=what)
    elif invitation_link is not None:
        tell_of_new_role(session, actor, user, operator, what, login_url)
    record(
        session,
        actor,
        "member.add",
        user,
        operator_id=operator_id,
        after={
            "role": ROLE_CHOICES[form.role],
            "team": team.name if team else None,
            "can_configure_charge_points": getattr(membership, "can_configure_charge_points", None),
        },
    )
    return MemberAdded(user, invited)


async def grant_role(session: AsyncSession, by: Acting, operator_id: int, form: MemberForm) -> User:
    """Give a person who has an account a role, or change the one they hold at that level.

    The rules are the members page's: ``add_member`` for a new role, ``change_member`` for one the
    person holds already in the operator (or in that team), so the last Operator Admin stays.
    """
    require_on_operator(by, Permission.MANAGE_MEMBERS, operator_id)
    try:
        email = clean_email(form.email)
    except ValidationError as exc:
        raise FormErrors({"email": str(exc)}) from exc
    user = await get_user_by_email(session, email)
    if user is None:
        raise NotFoundError(_("No user has the email %(email)s.", email=email))
    held: OperatorMembership | TeamMembership | None
    if form.role.startswith("operator:"):
        held = (
            await session.exec(
                select(OperatorMembership).where(
                    OperatorMembership.operator_id == operator_id, OperatorMembership.user_id == user.id
                )
            )
        ).first()
    else:
        held = (
            await session.exec(
                select(TeamMembership).where(
                    TeamMembership.team_id == (form.team_id or 0), TeamMembership.user_id == user.id
                )
            )
        ).first()
    if held is None:
        await add_member(session, by, operator_id, form, invitation_link=None, login_url="")
    else:
        scope, role = form.role.split(":")
        await change_member(session, by, operator_id, scope, held.id or 0, role, form.can_configure_charge_points)
    return user


async def _get_membership(
    session: AsyncSession, operator_id: int, scope: str, membership_id: int
) -> OperatorMembership | TeamMembership:
    if scope == "operator":
        membership = await session.get(OperatorMembership, membership_id)
        if membership is None or membership.operator_id != operator_id:
            raise NotFoundError(_("No such member."))
        return membership
    if scope == "team":
        team_membership = await session.get(TeamMembership, membership_id)
        team = await session.get(Team, team_membership.team_id) if team_membership else None
        if team_membership is None or team is None or team.operator_id != operator_id:
            raise NotFoundError(_("No such member."))
        return team_membership
    raise NotFoundError(_("No such member."))


async def _keep_an_admin(session: AsyncSession, membership: OperatorMembership | TeamMembership) -> None:
    """Refuse to take away the last Operator Admin role: nobody could manage the operator any more."""
    if not isinstance(membership, OperatorMembership) or membership.role != OperatorRole.ADMIN:
        return
    admins = await session.exec(
        select(OperatorMembership.id).where(
            OperatorMembership.operator_id == membership.operator_id, OperatorMembership.role == OperatorRole.ADMIN
        )
    )
    if len(admins.all()) <= 1:
        raise FormErrors({"role": _("An operator needs at least one Operator Admin; make someone else admin first.")})


async def change_member(
    session: AsyncSession,
    by: Acting,
    operator_id: int,
    scope: str,
    membership_id: int,
    role: str,
    can_configure_charge_points: bool,
) -> None:
    """Change the role (and configure right) a user holds."""
    require_on_operator(by, Permission.MANAGE_MEMBERS, operator_id)
    membership = await _get_membership(session, operator_id, scope, membership_id)
    if f"{scope}:{role}" not in ROLE_CHOICES:
        raise FormErrors({"role": _("Choose a role of the same kind (operator or team).")})
    if role != membership.role:
        await _keep_an_admin(session, membership)
    before = {"role": membership.role}
    membership.role = role
    if isinstance(membership, TeamMembership):
        before["can_configure_charge_points"] = membership.can_configure_charge_points  # type: ignore[assignment]
        membership.can_configure_charge_points = can_configure_charge_points and role != TeamRole.MEMBER
    session.add(membership)
    user = await session.get(User, membership.user_id)
    record(
        session,
        actor_of(by),
        "member.change",
        user,
        operator_id=operator_id,
        before=before,
        after={"role": role, "can_configure_charge_points": getattr(membership, "can_configure_charge_points", None)},
    )


async def remove_member(session: AsyncSession, by: Acting, operator_id: int, scope: str, membership_id: int) -> None:
    """Remove a role from a user (the user account stays)."""
    require_on_operator(by, Permission.MANAGE_MEMBERS, operator_id)
    membership = await _get_membership(session, operator_id, scope, membership_id)
    await _keep_an_admin(session, membership)
    user = await session.get(User, membership.user_id)
    record(
        session,
        actor_of(by),
        "member.remove",
        user,
        operator_id=operator_id,
        before={"scope": scope, "role": membership.role},
    )
    await session.delete(membership)


async def reinvite_member(
    session: AsyncSession,
    by: Acting,
    operator_id: int,
    scope: str,
    membership_id: int,
    invitation_link: InvitationLink | None,
) -> User:
    """Send a member who has not set a password yet a new invitation link (the earlier one stops working)."""
    require_on_operator(by, Permission.MANAGE_MEMBERS, operator_id)
    membership = await _get_membership(session, operator_id, scope, membership_id)
    user = await session.get(User, membership.user_id)
    operator = await session.get(Operator, operator_id)
    if user is None or operator is None:
        raise NotFoundError(_("No such member."))
    if has_password(user):
        raise FormErrors({"email": _("They have set their password already; they log in with it.")})
    if invitation_link is None:
        raise FormErrors({"email": _("PowerBank cannot send email (POWERBANK_SMTP_HOST is not set).")})
    if isinstance(membership, TeamMembership):
        team = await session.get(Team, membership.team_id)
        what = f"{ROLE_CHOICES['team:' + membership.role]} in {team.name if team else ''}"
    else:
        what = f"{ROLE_CHOICES['operator:' + membership.role]} of {operator.name}"
    await invite(session, actor_of(by), user, invitation_link, operator=operator, what=what)
    return user
