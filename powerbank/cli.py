"""The `powerbank` command: database, demo data, users, serving and the charger simulator."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import socket
import sys
from collections.abc import Callable

from powerbank.config import database_url


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from powerbank.db.migrate import upgrade

    upgrade(database_url(), args.revision)
    print(f"Database is at the latest schema ({database_url()}).")
    return 0


async def _demo_data(if_empty: bool) -> int:
    from powerbank.db import standalone_session
    from powerbank.services.api_tokens import create_token_by_names
    from powerbank.tools.demo_data import database_is_empty, load_demo_data

    async with standalone_session(database_url()) as session:
        if not await database_is_empty(session):
            if if_empty:
                print("The database already has data; demo data not loaded.")
                return 0
            print("The database is not empty; demo data can only be loaded into an empty database.", file=sys.stderr)
            return 1
        await load_demo_data(session)
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
    print(
        f"PowerBank is serving at http://{args.host}:{args.port}/ (OCPP: ws://{args.host}:{args.port}/ocpp/<identity>)"
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


async def _specs_from_db(protocol: str) -> list:
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
    wanted = options.parse_args(rest)
    specs = asyncio.run(_specs_from_db(wanted.protocol))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="powerbank", description="PowerBank hub")
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    up = db_commands.add_parser("upgrade", help="migrate the database to the latest schema")
    up.add_argument("revision", nargs="?", default="heads")
    up.set_defaults(handler=_cmd_db_upgrade)

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

    nodes = commands.add_parser("cluster", help="the nodes serving this database")
    node_commands = nodes.add_subparsers(dest="cluster_command", required=True)
    status = node_commands.add_parser("status", help="each node: alive, dead or stopped, and the chargers it holds")
    status.set_defaults(handler=_cmd_cluster_status)

    serve = commands.add_parser("serve", help="serve pages, API and OCPP in one process")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--simulate", action="store_true", help="also connect simulated chargers for every charge point")
    serve.set_defaults(handler=_cmd_serve)

    simulate = commands.add_parser(
        "simulate", help="run simulated chargers (other options: see `python -m powerbank.simulator --help`)"
    )
    simulate.add_argument("--from-db", action="store_true", help="one charger per charge point in the database")
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
