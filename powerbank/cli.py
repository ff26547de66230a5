"""The `powerbank` command: database, demo data, users, operators and roles, serving and the charger simulator."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from powerbank.config import can_send_mail, database_url

if TYPE_CHECKING:
    from powerbank.tools.simulator import Behaviour, ChargerSpec


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from powerbank.db.migrate import upgrade
    from powerbank.db.schema import UnknownRevisionError, refuse_unknown_revision

    try:
        refuse_unknown_revision(database_url())
    except UnknownRevisionError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    upgrade(database_url(), args.revision)
    print(f"Database is at the latest schema ({database_url()}).")
    return 0


def _cmd_backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from powerbank.runtime.backup import BackupError, backup

    try:
        info = backup(database_url(), Path(args.path))
    except BackupError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"Backup written to {info.path} ({info.size_bytes:,} bytes, schema {', '.join(sorted(info.revisions))}).")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from powerbank.runtime.backup import BackupError, restore

    try:
        info = restore(Path(args.path), database_url(), force=args.force)
    except BackupError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"Restored {info.path} (schema {', '.join(sorted(info.revisions))}) into {database_url()}.")
    if info.behind_code:
        print("The backup is from an older PowerBank: run `powerbank db upgrade` before serving.")
    return 0


async def _demo_data(if_empty: bool) -> int:
    from powerbank.db import standalone_session, utcnow
    from powerbank.services.api_tokens import create_token_by_names
    from powerbank.tools.demo_data import database_is_empty, load_demo_data
    from powerbank.tools.earnings_demo import load_demo_earnings

    async with standalone_session(database_url()) as session:
        if not await database_is_empty(session):
            if if_empty:
                print("The database already has data; demo data not loaded.")
                return 0
            print("The database is not empty; demo data can only be loaded into an empty database.", file=sys.stderr)
            return 1
        await load_demo_data(session)
        # A month of prices, hours and activations: Copenhagen Fleet's statements are filled.
        await load_demo_earnings(session, utcnow())
        _, demo_token = await create_token_by_names(
            session,
            operator_name="Nordic Charge",
            team_name=None,
            access="write",
            name="Demo token",
            expires_in_days=None,
            created_by_email="operator.admin@demo.test",
        )
        await session.commit()
    print("Demo data loaded.")
    print(f"Demo API token (write, all Nordic Charge teams; demo only): {demo_token}")
    return 0


def _print_demo_logins() -> None:
    from powerbank.tools.demo_data import DEMO_LOGINS, DEMO_PASSWORD

    print(f"Demo mode. Demo logins (password for all: {DEMO_PASSWORD}):")
    for email, role in DEMO_LOGINS:
        print(f"  {email:<28} {role}")


def _cmd_demo_data(args: argparse.Namespace) -> int:
    return asyncio.run(_demo_data(args.if_empty))


async def _create_user(email: str, password: str) -> int:
    from powerbank.db import standalone_session
    from powerbank.errors import ConflictError
    from powerbank.rules.validators import ValidationError
    from powerbank.services.audit import SYSTEM
    from powerbank.services.users import create_user

    async with standalone_session(database_url()) as session:
        try:
            user = await create_user(session, SYSTEM, email, password)
        except (ValidationError, ConflictError) as exc:
            print(str(exc), file=sys.stderr)
            return 1
        await session.commit()
    print(f"Created user {user.email}.")
    return 0


def _cmd_create_user(args: argparse.Namespace) -> int:
    password = args.password or os.environ.get("POWERBANK_NEW_USER_PASSWORD") or getpass.getpass("Password: ")
    return asyncio.run(_create_user(args.email, password))


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


def _env_flag(name: str) -> object:
    # The app reads POWERBANK_* values as JSON where they parse (create_app's from_prefixed_env): "0" is off.
    value = os.environ.get(name) or ""
    try:
        return json.loads(value)
    except ValueError:
        return value


def _invitation_base() -> str | None:
    """Return the address invitation links start with, or None when PowerBank cannot send email.

    Raise ValueError when email is set up without the public address that links are made from.
    """
    public_url = os.environ.get("POWERBANK_PUBLIC_URL") or ""
    config = {
        "SMTP_HOST": os.environ.get("POWERBANK_SMTP_HOST"),
        "DEMO": _env_flag("POWERBANK_DEMO"),
        "DEV": _env_flag("POWERBANK_DEV"),
    }
    if config["SMTP_HOST"] and not public_url:
        raise ValueError(
            "POWERBANK_PUBLIC_URL must be set when POWERBANK_SMTP_HOST is: links in emails are made from it."
        )
    if not public_url or not can_send_mail(config):
        return None
    return public_url.rstrip("/") + "/"


async def _operator_admin_needs_account(name: str, email: str) -> bool:
    """Check the operator can be made; return True when the admin has no account yet."""
    from powerbank.db import standalone_session
    from powerbank.errors import ConflictError
    from powerbank.rules.validators import clean_name
    from powerbank.services.teams import operator_name_taken
    from powerbank.services.users import get_user_by_email

    clean = clean_name(name, label="Operator name")
    async with standalone_session(database_url()) as session:
        if await operator_name_taken(session, clean):
            raise ConflictError(f"An operator named {clean!r} already exists.")
        return await get_user_by_email(session, email) is None


async def _create_operator(name: str, email: str, password: str | None, invitation_base: str | None) -> str:
    """Create the operator and make ``email`` its Operator Admin, in one transaction; return what was done."""
    from powerbank.db import standalone_session
    from powerbank.services.accounts import has_password
    from powerbank.services.audit import SYSTEM
    from powerbank.services.teams import create_operator
    from powerbank.services.users import MemberForm, add_member, create_user, get_user_by_email

    async with standalone_session(database_url()) as session:
        operator = await create_operator(session, SYSTEM, name)
        created = False
        if await get_user_by_email(session, email) is None and password is not None:
            await create_user(session, SYSTEM, email, password, operator_id=operator.id)
            created = True
        added = await add_member(
            session,
            SYSTEM,
            operator.id or 0,
            MemberForm(email=email, role="operator:admin", team_id=None, can_configure_charge_points=True),
            invitation_link=(lambda token: f"{invitation_base}invitations/{token}") if invitation_base else None,
            login_url=f"{invitation_base}login" if invitation_base else "",
        )
        await session.commit()
    done = f"Created operator {operator.name} with {added.user.email} as its Operator Admin"
    if created:
        return f"{done} (a new account with the password given). They log in at /login once `powerbank serve` runs."
    if added.invited:
        return (
            f"{done}. An invitation email (a single-use link to choose a password, valid for 7 days) is in the "
            "outbox: the serving process (`powerbank serve`) sends it, so it goes out once PowerBank serves."
        )
    if not has_password(added.user):
        # Invited earlier and never chose a password: without email nobody can send them a new link.
        return f"{done}. They have not chosen a password yet: send them a new invitation once PowerBank sends email."
    told = (
        " They are told by email once `powerbank serve` runs (the serving process sends it)." if invitation_base else ""
    )
    return f"{done}; they log in with their own password.{told}"


def _new_user_password() -> str:
    return os.environ.get("POWERBANK_NEW_USER_PASSWORD") or getpass.getpass("Password for the new account: ")


def _cmd_create_operator(args: argparse.Namespace) -> int:
    from powerbank.errors import ConflictError, FormErrors
    from powerbank.rules.validators import clean_email

    try:
        email = clean_email(args.admin)
        invitation_base = _invitation_base()
        # Checked before asking for a password, which nobody should type for nothing.
        needs_account = asyncio.run(_operator_admin_needs_account(args.name, email))
        password = _new_user_password() if needs_account and invitation_base is None else None
        print(asyncio.run(_create_operator(args.name, email, password, invitation_base)))
    except FormErrors as exc:
        return _fail("\n".join(exc.errors.values()))
    except (ValueError, ConflictError) as exc:
        # ValueError: an invalid email, name or password (ValidationError), or email set up without its address.
        return _fail(str(exc))
    return 0


async def _grant(args: argparse.Namespace) -> str:
    from powerbank.db import standalone_session
    from powerbank.services.audit import SYSTEM
    from powerbank.services.teams import operator_by_name, team_by_name
    from powerbank.services.users import ROLE_CHOICES, MemberForm, grant_role

    async with standalone_session(database_url()) as session:
        operator = await operator_by_name(session, args.operator)
        team = await team_by_name(session, operator, args.team) if args.team else None
        role = f"{'team' if team else 'operator'}:{args.role}"
        form = MemberForm(
            email=args.email,
            role=role,
            team_id=team.id if team else None,
            can_configure_charge_points=not args.no_configure,
        )
        user = await grant_role(session, SYSTEM, operator.id or 0, form)
        await session.commit()
    where = f"in {team.name} ({operator.name})" if team else f"of {operator.name}"
    configures = ""
    if team and args.role != "member":
        configures = ", without" if args.no_configure else ", with"
        configures += " the right to configure charge points"
    return f"{user.email} is now {ROLE_CHOICES[role]} {where}{configures}."


def _cmd_grant(args: argparse.Namespace) -> int:
    from powerbank.errors import FormErrors, NotFoundError

    if args.team and args.role == "manager":
        return _fail("manager is an operator role: leave out --team (team roles: owner, admin, member).")
    if not args.team and args.role in ("owner", "member"):
        return _fail(f"{args.role} is a team role: name the team with --team (operator roles: admin, manager).")
    if args.no_configure and not args.team:
        return _fail("--no-configure is about a team role: name the team with --team.")
    try:
        print(asyncio.run(_grant(args)))
    except NotFoundError as exc:
        hint = " Create the account first: powerbank create-user EMAIL." if str(exc).startswith("No user") else ""
        return _fail(f"{exc}{hint}")
    except FormErrors as exc:
        return _fail("\n".join(exc.errors.values()))
    return 0


def _ca_dir() -> Path:
    from powerbank.config import ca_directory

    return ca_directory({"CA_DIR": os.environ.get("POWERBANK_CA_DIR")})


def _cmd_ca_init(args: argparse.Namespace) -> int:
    from powerbank.services.certificates import init_ca

    directory = _ca_dir()
    try:
        ca = init_ca(directory, args.name)
    except FileExistsError as exc:
        return _fail(str(exc))
    print(f"Operator CA made in {directory} (key mode 0600; keep it out of backups others can read).")
    print(f"Chargers trust {directory / 'ca.pem'}; serve with POWERBANK_TLS_CLIENT_CA={directory / 'ca.pem'}.")
    print(f"Valid until {ca.certificate.not_valid_after_utc:%Y-%m-%d}.")
    return 0


def _write_key_and_certificate(out: Path, stem: str, key_pem: str, certificate_pem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    key_path = out / f"{stem}-key.pem"
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # A key file there before keeps its mode through O_CREAT: make it the owner's alone.
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key_pem)
    (out / f"{stem}.pem").write_text(certificate_pem)
    print(f"Wrote {out / f'{stem}.pem'} and {key_path} (mode 0600).")


def _cmd_ca_server_cert(args: argparse.Namespace) -> int:
    from powerbank.services import certificates

    try:
        ca = certificates.load_ca(_ca_dir())
    except FileNotFoundError:
        return _fail("No operator CA: run `powerbank ca init` first.")
    try:
        key, certificate = certificates.sign_server_certificate(ca, args.hosts)
    except certificates.CertificateError as error:
        return _fail(str(error))
    _write_key_and_certificate(
        Path(args.out), "server", certificates.key_pem(key), certificates.certificate_pem(certificate)
    )
    return 0


async def _issue_charger_certificate(identity: str) -> tuple[str, str] | str:
    from powerbank.db import standalone_session
    from powerbank.services import certificates
    from powerbank.services.charge_points import get_by_identity

    try:
        ca = certificates.load_ca(_ca_dir())
    except FileNotFoundError:
        return "No operator CA: run `powerbank ca init` first."
    async with standalone_session(database_url()) as session:
        charge_point = await get_by_identity(session, identity)
        if charge_point is None:
            return f"No charge point has the identity {identity!r}."
        key, certificate = await certificates.issue_key_and_certificate(session, ca, charge_point)
        await session.commit()
    return certificates.key_pem(key), certificates.certificate_pem(certificate)


def _cmd_ca_issue(args: argparse.Namespace) -> int:
    issued = asyncio.run(_issue_charger_certificate(args.identity))
    if isinstance(issued, str):
        return _fail(issued)
    _write_key_and_certificate(Path(args.out), args.identity, *issued)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from powerbank import ConfigurationError, create_app
    from powerbank.runtime.server import serve_app

    try:
        # A node is named by its host and port unless POWERBANK_NODE_ID names it: the same name
        # after a restart is the same node.
        node = os.environ.get("POWERBANK_NODE_ID") or f"{socket.gethostname()}:{args.port}"
        app = create_app({"NODE_ID": node})
    except ConfigurationError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    from powerbank.runtime.logging_setup import configure_logging

    try:
        configure_logging(str(app.config["LOG_FORMAT"]))
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    tls = bool(app.config.get("TLS_CERT") and app.config.get("TLS_KEY"))
    http, ws = ("https", "wss") if tls else ("http", "ws")
    print(
        f"PowerBank is serving at {http}://{args.host}:{args.port}/ (OCPP: {ws}://{args.host}:{args.port}/ocpp/<identity>)"
    )
    if app.config["DEMO"]:
        _print_demo_logins()
    asyncio.run(serve_app(app, args.host, args.port, simulate=args.simulate))
    return 0


async def _cluster_status() -> list[str]:
    from datetime import timedelta

    from powerbank.db import standalone_session, utcnow
    from powerbank.services.cluster import node_statuses

    lease = timedelta(seconds=float(os.environ.get("POWERBANK_CLUSTER_LEASE_S") or 15))
    async with standalone_session(database_url()) as session:
        statuses = await node_statuses(session, lease=lease)
    now = utcnow()
    lines = [f"{'node':<32} {'state':<8} {'chargers':>8}  {'started (UTC)':<19}  last heartbeat"]
    for node in statuses:
        ago = max(0, int((now - node.heartbeat_at).total_seconds()))
        lines.append(
            f"{node.name[:32]:<32} {node.state:<8} {node.chargers:>8,}  "
            f"{node.started_at.strftime('%Y-%m-%d %H:%M:%S')}  {ago} s ago"
        )
    return lines


def _cmd_cluster_status(args: argparse.Namespace) -> int:
    lines = asyncio.run(_cluster_status())
    print("\n".join(lines) if len(lines) > 1 else "No node has served this database yet.")
    return 0


async def _specs_from_db(protocol: str, behaviour: Callable[[str], Behaviour]) -> list[ChargerSpec]:
    from sqlmodel import select

    from powerbank.db import standalone_session
    from powerbank.models import ChargePoint
    from powerbank.tools.simulator import ChargerSpec

    async with standalone_session(database_url()) as session:
        rows = await session.exec(select(ChargePoint).order_by(ChargePoint.identity))
        # Each simulated charger reports what its charge point is registered as, so the demo's
        # compatibility stays what the register says once the chargers have booted.
        return [
            ChargerSpec(
                identity=cp.identity,
                vendor=cp.brand or "Generic",
                model=cp.model or "Charger",
                firmware=cp.firmware or "sim-1.0",
                serial=cp.serial or "",
                protocol=cp.ocpp_protocol or protocol,
                behaviour=behaviour(cp.identity),
            )
            for cp in rows
        ]


def _cmd_simulate(args: argparse.Namespace, rest: list[str]) -> int:
    from powerbank.tools import simulator

    if not args.from_db:
        return simulator.main(rest)
    options = argparse.ArgumentParser(prog="powerbank simulate --from-db")
    options.add_argument("--url", required=True)
    options.add_argument("--password", default="")
    options.add_argument("--protocol", choices=simulator.PROTOCOLS, default="ocpp1.6")
    options.add_argument("--meter-interval", type=float, default=5.0)
    options.add_argument("--connect-rate", type=float)
    # The demo's fleet (`make run`) behaves as real chargers do unless told otherwise.
    simulator.add_behaviour_options(options, default="realistic")
    simulator.add_tls_options(options)
    wanted = options.parse_args(rest)
    try:
        simulator.behaviour_from(wanted, "")
    except ValueError as error:
        options.error(str(error))
    specs = asyncio.run(_specs_from_db(wanted.protocol, lambda identity: simulator.behaviour_from(wanted, identity)))
    if not specs:
        print("No charge points in the database to simulate.", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # The ocpp library logs every frame at INFO.
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    print(f"Simulating {len(specs)} charger(s) against {wanted.url}")
    try:
        asyncio.run(
            simulator.run_simulation(
                wanted.url,
                wanted.password,
                specs,
                meter_interval=wanted.meter_interval,
                connect_rate=wanted.connect_rate,
                tls=simulator.tls_from(wanted),
            )
        )
    except KeyboardInterrupt:
        pass
    return 0


async def _create_api_token(args: argparse.Namespace) -> int:
    from powerbank.db import standalone_session
    from powerbank.errors import ForbiddenError, FormErrors, NotFoundError
    from powerbank.services.api_tokens import create_token_by_names

    async with standalone_session(database_url()) as session:
        try:
            _, secret = await create_token_by_names(
                session,
                operator_name=args.operator,
                team_name=args.team,
                access=args.scope,
                name=args.name,
                expires_in_days=args.expires_days,
                created_by_email=args.created_by,
            )
        except (NotFoundError, ForbiddenError) as exc:
            print(str(exc), file=sys.stderr)
            return 1
        except FormErrors as exc:
            print("\n".join(exc.errors.values()), file=sys.stderr)
            return 1
        await session.commit()
    # The token alone, so scripts can capture it: TOKEN=$(powerbank api-token create ...).
    print(secret)
    return 0


def _cmd_api_token_create(args: argparse.Namespace) -> int:
    return asyncio.run(_create_api_token(args))


async def _import_charge_points(args: argparse.Namespace, data: bytes) -> int:
    from powerbank.db import standalone_session
    from powerbank.errors import NotFoundError
    from powerbank.services import imports
    from powerbank.services.audit import SystemActor

    by = SystemActor(None, "powerbank command")
    async with standalone_session(database_url()) as session:
        try:
            team = await imports.find_team(session, args.team, args.operator)
            text, _encoding = imports.decode_csv(data)
            if args.dry_run:
                preview = await imports.preview_import(session, by, team, text)
                if not preview.ok:
                    raise imports.ImportRefused(preview.problems)
                print(f"The file is good: it adds {len(preview.rows):,} charge points to {team.name}; nothing saved.")
                return 0
            imported = await imports.import_charge_points(session, by, team, text)
        except NotFoundError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        except imports.ImportRefused as exc:
            print("\n".join(problem.text for problem in exc.problems), file=sys.stderr)
            print(imports.summary(exc.problems), file=sys.stderr)
            return 1
        await session.commit()
    public_url = (os.environ.get("POWERBANK_PUBLIC_URL") or "").rstrip("/")
    base = public_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    # The passwords alone on standard output, so they can go straight to a file: ... > passwords.csv
    sys.stdout.write(imports.credentials_csv(imported, lambda identity: f"{base}/ocpp/{identity}"))
    print(
        f"Imported {len(imported):,} charge points into {team.name}. Their OCPP passwords, shown only now, "
        "are the CSV on standard output.",
        file=sys.stderr,
    )
    return 0


def _cmd_import_charge_points(args: argparse.Namespace) -> int:
    from powerbank.services.imports import MAX_IMPORT_BYTES

    try:
        with open(args.file, "rb") as handle:
            # One byte more than allowed is enough to tell that the file is too large.
            data = handle.read(MAX_IMPORT_BYTES + 1)
    except OSError as exc:
        print(f"Cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    return asyncio.run(_import_charge_points(args, data))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="powerbank", description="PowerBank hub")
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    up = db_commands.add_parser("upgrade", help="migrate the database to the latest schema")
    up.add_argument("revision", nargs="?", default="heads")
    up.set_defaults(handler=_cmd_db_upgrade)

    save = commands.add_parser("backup", help="write a consistent copy of the SQLite database, while it serves")
    save.add_argument("path", help="the backup file to write (must not exist)")
    save.set_defaults(handler=_cmd_backup)
    back = commands.add_parser("restore", help="replace the SQLite database with a backup")
    back.add_argument("path", help="the backup file")
    back.add_argument("--force", action="store_true", help="even if a PowerBank node serves from the database")
    back.set_defaults(handler=_cmd_restore)

    demo = commands.add_parser("demo-data", help="load the demo operators, teams, users and charge points")
    demo.add_argument("--if-empty", action="store_true", help="do nothing (and succeed) when data exists")
    demo.set_defaults(handler=_cmd_demo_data)

    token = commands.add_parser("api-token", help="API tokens for the JSON API")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="create an API token and print it (it is shown only once)")
    create.add_argument("--operator", required=True, metavar="NAME")
    create.add_argument("--team", metavar="NAME", help="limit the token to one team (default: every team)")
    create.add_argument("--scope", required=True, choices=("read", "write"), help="read only, or read and write")
    create.add_argument("--name", default="command line", help="what uses the token (shown in lists and history)")
    create.add_argument("--expires-days", type=int, metavar="D", help="expire after D days (default: never)")
    create.add_argument(
        "--created-by",
        metavar="EMAIL",
        help="the admin or team owner the token works for; needed to accept terms and conditions",
    )
    create.set_defaults(handler=_cmd_api_token_create)

    user = commands.add_parser("create-user", help="create a user account")
    user.add_argument("email")
    user.add_argument("--password", help="(default: asked for, or POWERBANK_NEW_USER_PASSWORD)")
    user.set_defaults(handler=_cmd_create_user)

    operator = commands.add_parser("create-operator", help="create an operator and make someone its Operator Admin")
    operator.add_argument("name", metavar="NAME")
    operator.add_argument(
        "--admin",
        required=True,
        metavar="EMAIL",
        help="its first Operator Admin; a new email is invited by email when PowerBank sends email, "
        "otherwise gets an account with a password asked for (or POWERBANK_NEW_USER_PASSWORD)",
    )
    operator.set_defaults(handler=_cmd_create_operator)

    grant = commands.add_parser("grant", help="give a user a role in an operator or one of its teams")
    grant.add_argument("email", metavar="EMAIL")
    grant.add_argument("--operator", required=True, metavar="NAME")
    grant.add_argument("--team", metavar="NAME", help="a team role in this team (default: an operator role)")
    grant.add_argument(
        "--role",
        required=True,
        choices=("admin", "manager", "owner", "member"),
        help="operator: admin or manager; team (with --team): owner, admin or member",
    )
    grant.add_argument(
        "--no-configure",
        action="store_true",
        help="a team owner or admin without the right to configure charge points",
    )
    grant.set_defaults(handler=_cmd_grant)

    cps = commands.add_parser(
        "import-charge-points",
        help="import a CSV file of charge points into a team, all or none; prints their OCPP passwords as CSV",
    )
    cps.add_argument("file", metavar="FILE", help="columns Name, Identity, Brand, Model, Country, Price area, …")
    cps.add_argument("--team", required=True, metavar="NAME")
    cps.add_argument("--operator", metavar="NAME", help="the team's operator (needed when several have such a team)")
    cps.add_argument("--dry-run", action="store_true", help="only check the file; save nothing")
    cps.set_defaults(handler=_cmd_import_charge_points)

    nodes = commands.add_parser("cluster", help="the nodes serving this database")
    node_commands = nodes.add_subparsers(dest="cluster_command", required=True)
    status = node_commands.add_parser("status", help="each node: alive, dead or stopped, and the chargers it holds")
    status.set_defaults(handler=_cmd_cluster_status)

    ca = commands.add_parser("ca", help="the operator CA for chargers' TLS client certificates (POWERBANK_CA_DIR)")
    ca_commands = ca.add_subparsers(dest="ca_command", required=True)
    ca_init = ca_commands.add_parser("init", help="make the operator CA (its key readable by its owner only)")
    ca_init.add_argument("--name", default="PowerBank operator CA", help="the CA's common name")
    ca_init.set_defaults(handler=_cmd_ca_init)
    ca_server = ca_commands.add_parser("server-cert", help="make a TLS server key and certificate for the hub")
    ca_server.add_argument("hosts", nargs="+", help="host names or addresses chargers connect to")
    ca_server.add_argument("--out", required=True, help="directory for server.pem and server-key.pem")
    ca_server.set_defaults(handler=_cmd_ca_server_cert)
    ca_issue = ca_commands.add_parser(
        "issue", help="make a key and a client certificate for a charger that cannot send a CSR itself"
    )
    ca_issue.add_argument("identity", help="the charge point's OCPP identity")
    ca_issue.add_argument("--out", required=True, help="directory for IDENTITY.pem and IDENTITY-key.pem")
    ca_issue.set_defaults(handler=_cmd_ca_issue)

    serve = commands.add_parser("serve", help="serve pages, API and OCPP in one process")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--simulate", action="store_true", help="also connect simulated chargers for every charge point")
    serve.set_defaults(handler=_cmd_serve)

    simulate = commands.add_parser(
        "simulate", help="run simulated chargers (other options: see `python -m powerbank.tools.simulator --help`)"
    )
    simulate.add_argument(
        "--from-db",
        action="store_true",
        help="one charger per charge point in the database, a realistic fleet unless --behaviour ideal",
    )
    simulate.set_defaults(handler=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `powerbank` command."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "simulate":
        return _cmd_simulate(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
