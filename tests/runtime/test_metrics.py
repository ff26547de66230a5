"""`/metrics`: Prometheus's text format, only for the configured bearer token, with what the hub did."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank import create_app
from tests.conftest import Factory
from tests.dispatch.support import HUB_CONFIG, activate, connect_all, dk2_fleet, running, simulated, write_token
from tests.helpers import TEST_CONFIG, eventually

TOKEN = "scrape-me-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    return {**HUB_CONFIG, "METRICS_TOKEN": TOKEN}


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(app: Quart) -> Samples:
    response = await app.test_client().get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.get_data(as_text=True)):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"}],
    ids=["no token", "wrong token", "not bearer", "empty"],
)
async def test_metrics_are_refused_without_the_token(app: Quart, headers: dict[str, str]) -> None:
    response = await app.test_client().get("/metrics", headers=headers)
    assert response.status_code == 401
    assert "powerbank_" not in await response.get_data(as_text=True)


async def test_without_a_configured_token_there_is_no_metrics_endpoint(database_url: str) -> None:
    app = create_app({**TEST_CONFIG, "DATABASE_URL": database_url})
    async with app.test_app():
        for headers in ({}, AUTH, {"Authorization": "Bearer "}):
            response = await app.test_client().get("/metrics", headers=headers)
            assert response.status_code == 404


@pytest.mark.served
async def test_metrics_show_chargers_messages_fanout_batches_loop_and_gc(
    app: Quart, factory: Factory, session: AsyncSession
) -> None:
    before = await scrape(app)
    operator = await factory.operator()
    team = await factory.team(operator)
    fleet = await dk2_fleet(factory, session, team, 3)
    chargers = {
        fleet[0].identity: simulated(fleet[0].identity),
        fleet[1].identity: simulated(fleet[1].identity),
        fleet[2].identity: simulated(fleet[2].identity, protocol="ocpp2.0.1"),
    }
    headers = await write_token(session, operator)
    async with running(app.config["TEST_OCPP_URL"], chargers.values()):
        await connect_all(app, session, [(cp, chargers[cp.identity]) for cp in fleet])
        created = await activate(app, headers, price_area="DK2", action="pause", duration_s=30, market="FCR-D up")
        activation = str(created["id"])

        async def fanout_recorded() -> bool:
            samples = await scrape(app)
            return value(samples, "powerbank_activation_fanout_answers", activation=activation) == 3

        await eventually(fanout_recorded, message="the activation's fan-out is not in /metrics")
        gc.collect()
        samples = await scrape(app)

        def grew(name: str, **labels: str) -> float:
            return value(samples, name, **labels) - value(before, name, **labels)

        assert value(samples, "powerbank_chargers_connected", protocol="ocpp1.6") == 2
        assert value(samples, "powerbank_chargers_connected", protocol="ocpp2.0.1") == 1
        assert grew("powerbank_ocpp_messages_total", direction="in", kind="call", action="BootNotification") == 3
        assert grew("powerbank_ocpp_messages_total", direction="out", kind="result", action="BootNotification") == 3
        # The activation's frame, counted once per charger it was written to.
        assert grew("powerbank_ocpp_messages_total", direction="out", kind="call", action="SetChargingProfile") >= 3
        assert grew("powerbank_ocpp_reply_seconds_count", action="BootNotification") == 3
        assert grew("powerbank_dispatch_answers_total", status="Accepted") >= 3
        assert grew("powerbank_fanout_answer_seconds_count") >= 3
        last = value(samples, "powerbank_activation_fanout_seconds", activation=activation, stage="last_answer")
        median = value(samples, "powerbank_activation_fanout_seconds", activation=activation, stage="median_answer")
        assert 0 < median <= last
        # Boots and meter values were stored in write batches, each batch counted with its size.
        assert grew("powerbank_db_write_batch_items_count", what="boot notifications") >= 1
        assert grew("powerbank_db_write_batch_items_sum", what="boot notifications") == 3
        assert grew("powerbank_db_write_batch_seconds_count", what="OCPP reports") >= 1
        assert grew("powerbank_gc_pause_seconds_count", generation="2") >= 1
        assert value(samples, "process_resident_memory_bytes") > 0

    async def loop_measured() -> bool:
        return value(await scrape(app), "powerbank_event_loop_lag_seconds_count") > 0

    await eventually(loop_measured, timeout=5, message="the event loop's lag is never measured")
