"""An independent OCPP implementation against the hub: ocpp-rpc (npm) in strict mode, 1.6 and 2.0.1.

ocpp-rpc validates every frame the hub sends (answers and the capability probe's calls) against
the official OCPP JSON schemas. The package is pinned in tests/interop/package-lock.json.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
from quart import Quart
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank.models import ConnectorStatus, MeterSample
from tests.conftest import TEST_PASSWORD, Factory

pytestmark = pytest.mark.served  # The hub served over a real socket.

INTEROP = Path(__file__).parent / "interop"


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """Install the pinned ocpp-rpc once (npm ci) unless it is installed already."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the OCPP interoperability test")
    modules = INTEROP / "node_modules"
    if not (modules / "ocpp-rpc").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=INTEROP, check=True, capture_output=True, timeout=300
        )
    return modules


async def test_strict_ocpp_rpc_client_speaks_16_and_201_with_the_hub(
    node_modules: Path,
    app: Quart,
    factory: Factory,
    session: AsyncSession,
) -> None:
    team = await factory.team()
    cp16 = await factory.charge_point(team, identity="RPC-16")
    cp201 = await factory.charge_point(team, identity="RPC-201")
    process = await asyncio.create_subprocess_exec(
        "node",
        str(INTEROP / "interop.js"),
        app.config["TEST_OCPP_URL"],
        cp16.identity,
        cp201.identity,
        TEST_PASSWORD,
        cwd=INTEROP,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    report = output.decode()
    assert process.returncode == 0, report
    assert "all steps passed" in report

    for cp, protocol, vendor in ((cp16, "ocpp1.6", "ocpp-rpc"), (cp201, "ocpp2.0.1", "ocpp-rpc")):
        await session.refresh(cp)
        assert (cp.ocpp_protocol, cp.reported_vendor, cp.smart_charging) == (protocol, vendor, True)
    statuses = {(s.charge_point_id, s.status) for s in await session.exec(select(ConnectorStatus))}
    assert statuses == {(cp16.id, "Charging"), (cp201.id, "Occupied")}
    powers = {(s.charge_point_id, s.power_w) for s in await session.exec(select(MeterSample))}
    assert powers == {(cp16.id, 3680), (cp201.id, 7400)}
