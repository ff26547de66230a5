"""The README's "Running it for real", followed as written on an empty database, without demo mode.

The commands are read from the README's code block, so the README and this walk cannot drift apart:
the `powerbank` commands run as subprocesses (as a self-hoster types them), then the hub serves on a
socket, the Operator Admin they made logs in, adds a team and a charge point, and a charger connects
with the password shown.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from powerbank.cli import build_parser
from powerbank.config import PROJECT_ROOT
from tests.conftest import csrf_of
from tests.helpers import SERVED_CONFIG, eventually, served
from tests.ocpp.support import boot16, charger

if TYPE_CHECKING:
    # Not imported at run time: pytest would take a class named Test... for a test.
    from quart.typing import TestClientProtocol

README = PROJECT_ROOT / "README.md"
POWERBANK = Path(sys.executable).parent / "powerbank"
PASSWORD = "the first admin's own password"


def production_steps() -> list[list[str]]:
    """Return the commands of the README's "Running it for real" code block, split as a shell would."""
    section = README.read_text(encoding="utf-8").split("## Running it for real", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    steps = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [step for step in steps if step]


def test_the_readme_names_commands_that_exist() -> None:
    parser = build_parser()
    commands = [step[1:] for step in production_steps() if step[0] == "powerbank"]
    assert [argv[0] for argv in commands] == ["db", "create-user", "create-operator", "serve"]
    for argv in commands:
        parser.parse_args(argv)  # an unknown command or option exits with status 2


def _shell_environment(database_url: str, secret_key: str) -> dict[str, str]:
    # A clean shell: no demo or development mode, no email, whatever the test run has set.
    env = {name: value for name, value in os.environ.items() if not name.startswith("POWERBANK_")}
    env.update(
        POWERBANK_DATABASE_URL=database_url,
        POWERBANK_SECRET_KEY=secret_key,
        # What `create-user` would ask for at the terminal.
        POWERBANK_NEW_USER_PASSWORD=PASSWORD,
    )
    return env


async def _run(argv: list[str], env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        str(POWERBANK), *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, f"powerbank {shlex.join(argv)}: {err.decode()}"
    return out.decode()


async def _post(client: TestClientProtocol, path: str, form: dict[str, str]) -> Any:
    token = await csrf_of(client, "/")  # type: ignore[arg-type]
    return await client.post(path, form={"csrf_token": token, **form})


async def test_the_readme_production_steps_lead_to_a_team_with_a_connected_charger(tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'powerbank.db'}"
    secret_key = "a long random secret for this test only"
    env = _shell_environment(database_url, secret_key)
    exported: set[str] = set()
    admin = operator_name = ""
    serve: list[str] = []
    for step in production_steps():
        if step[:2] == ["pip", "install"]:
            # This test runs in the environment `pip install -e .` made: its `powerbank` is the one to use.
            assert step == ["pip", "install", "-e", "."] and POWERBANK.exists()
        elif step[0] == "export":
            exported.add(step[1].split("=", 1)[0])
        elif step[:2] == ["powerbank", "serve"]:
            serve = step[2:]
        elif step[0] == "powerbank":
            assert not serve, "every command runs before `powerbank serve`"
            output = await _run(step[1:], env)
            if step[1] == "create-operator":
                options = build_parser().parse_args(step[1:])
                admin, operator_name = options.admin, options.name
                assert f"Created operator {operator_name}" in output
        else:
            raise AssertionError(f"a README step this walk does not know: {shlex.join(step)}")
    assert exported == {"POWERBANK_SECRET_KEY", "POWERBANK_DATABASE_URL"}
    assert admin and serve

    # `powerbank serve` as configured above, on a free port of this machine rather than 0.0.0.0:8000.
    config = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": secret_key,
        "DEMO": False,
        "DEV": False,
        **SERVED_CONFIG,
        # Behind the TLS proxy the README asks for, cookies are Secure; the test client speaks plain HTTP.
        "QUART_AUTH_COOKIE_SECURE": False,
        "SESSION_COOKIE_SECURE": False,
    }
    async with served(config) as hub:
        client = hub.test_client()
        token = await csrf_of(client)  # type: ignore[arg-type]
        login = await client.post("/login", form={"email": admin, "password": PASSWORD, "csrf_token": token})
        assert login.status_code == 303, await login.get_data(as_text=True)
        home = await (await client.get("/")).get_data(as_text=True)
        assert operator_name in home and "demo" not in home.lower()
        manage = re.search(r'<a href="(/operators/\d+/teams)">Manage teams</a>', home)
        assert manage, "the Operator Admin sees Manage teams"

        created_team = await _post(client, manage.group(1), {"name": "Harbour"})
        assert created_team.status_code == 303
        teams_page = await (await client.get(manage.group(1))).get_data(as_text=True)
        team = re.search(r'<a href="(/teams/\d+/charge-points)">Harbour</a>', teams_page)
        assert team, teams_page

        tab = await (await client.get(team.group(1))).get_data(as_text=True)
        add = re.search(r'<a href="(/teams/\d+/charge-points/new)">Add charge point</a>', tab)
        assert add, "the Operator Admin may add a charge point"
        assert (await client.get(add.group(1))).status_code == 200
        form = {
            "name": "Harbour 1",
            "identity": "HARBOUR-1",
            "brand": "Easee",
            "model": "Home",
            "firmware": "",
            "serial": "",
            "country": "DK",
            "price_area": "DK2",
            "facility_id": "",
        }
        added = await _post(client, add.group(1), form)
        credentials = await added.get_data(as_text=True)
        assert added.status_code == 201, credentials
        url = re.search(r"<dt>OCPP URL</dt><dd><code>([^<]+)</code>", credentials)
        password = re.search(r'<code class="secret">([^<]+)</code>', credentials)
        assert url and password
        assert url.group(1).endswith("/ocpp/HARBOUR-1")

        async with charger(hub, "HARBOUR-1", password.group(1)) as station:
            booted = await boot16(station, vendor="Easee", model="Home")
            assert booted.status == "Accepted"

            async def shown_online() -> bool:
                row = await (await client.get(team.group(1))).get_data(as_text=True)
                return 'status-online">Online</span>' in row

            await eventually(shown_online, message="the charge point is not shown Online")
