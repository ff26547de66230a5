"""Simulated chargers that behave as real fleets do: ramps, ignored limits, pauses that go wrong, noisy meters.

The power over time is checked on the simulator's own computation, at given moments; what a hub sees
(answers, reports, disconnections, the meter interval it sets) over real websockets against the small
central system of test_simulator.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from powerbank import cli
from powerbank.models import ChargePoint, Participation
from powerbank.models.enrollment import ParticipationState
from powerbank.tools import simulator
from powerbank.tools.simulator import (
    IDEAL,
    Behaviour,
    ChargerSpec,
    InstalledProfile,
    SchedulePeriod,
    SimulatedCharger,
    behaviour_of,
    realistic_behaviour,
)
from tests.tools.test_simulator import (
    SLOW_METER,
    central_system,
    max_profile_16,
    max_profile_201,
    power_is,
    running,
)

START = datetime(2025, 1, 6, tzinfo=UTC)
FULL_W = 11_000.0


def _at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def _limit(profile_id: int, watts: float, at: float, *periods: tuple[float, float]) -> InstalledProfile:
    """A station maximum from `at` seconds on: `watts`, or the (start, watts) periods given."""
    return InstalledProfile(
        id=profile_id,
        stack_level=1,
        purpose="ChargePointMaxProfile",
        connector=0,
        kind="Absolute",
        unit="W",
        periods=tuple(SchedulePeriod(start, limit) for start, limit in periods) or (SchedulePeriod(0, watts),),
        start=_at(at),
    )


def _charging(behaviour: Behaviour = IDEAL, identity: str = "CP-B") -> SimulatedCharger:
    """A charger whose transaction started at START, not connected: only its computation runs."""
    charger = SimulatedCharger(ChargerSpec(identity, behaviour=behaviour))
    charger.start_transaction(1, START)
    return charger


def _install(charger: SimulatedCharger, profile: InstalledProfile, at: float) -> None:
    charger.install(profile, lambda installed: installed.id == profile.id, at=_at(at))


def _clear(charger: SimulatedCharger, profile_id: int, at: float) -> None:
    assert charger.clear(lambda installed: installed.id == profile_id, at=_at(at))


def _kind(behaviour: Behaviour) -> str:
    if behaviour.ignores_limits:
        return "ignores limits"
    if behaviour.offline_after_pause_s is not None:
        return "offline on a pause"
    if not behaviour.resumes_after_pause:
        return "does not resume"
    return "slow" if behaviour.ramp_s >= 20 else "good"


def test_an_ideal_charger_follows_a_limit_and_its_release_at_once() -> None:
    charger = _charging()
    _install(charger, _limit(1, 4000, 60), 60)
    assert [charger.power_at(_at(s)) for s in (60, 61)] == [4000, 4000]
    _clear(charger, 1, 90)
    assert charger.power_at(_at(90)) == FULL_W
    assert charger.energy_at(_at(120)) == pytest.approx((FULL_W * 90 + 4000 * 30) / 3600)


def test_a_ramp_delays_the_limit_its_schedule_and_the_release() -> None:
    charger = _charging(Behaviour(ramp_s=10))
    # 4 kW at once, a pause 30 s later.
    _install(charger, _limit(1, 0, 60, (0, 4000), (30, 0)), 60)
    powers = {s: charger.power_at(_at(s)) for s in (60, 69.9, 70, 99.9, 100, 110)}
    assert powers == {60: FULL_W, 69.9: FULL_W, 70: 4000, 99.9: 4000, 100: 0, 110: 0}
    _clear(charger, 1, 120)
    assert charger.power_at(_at(129.9)) == 0
    assert charger.power_at(_at(130)) == FULL_W
    assert charger.energy_at(_at(140)) == pytest.approx((FULL_W * 70 + 4000 * 30 + FULL_W * 10) / 3600)


def test_a_ramp_follows_a_limit_replaced_before_the_power_followed_the_first() -> None:
    charger = _charging(Behaviour(ramp_s=20))
    _install(charger, _limit(1, 6000, 0), 0)
    _install(charger, _limit(1, 2000, 5), 5)
    assert [charger.power_at(_at(s)) for s in (19, 20, 24, 25)] == [FULL_W, 6000, 6000, 2000]


def test_a_charger_that_ignores_limits_keeps_full_power() -> None:
    charger = _charging(Behaviour(ignores_limits=True))
    _install(charger, _limit(1, 0, 10), 10)
    assert [charger.power_at(_at(s)) for s in (10, 60)] == [FULL_W, FULL_W]
    assert [profile.id for profile in charger.profiles] == [1]
    assert charger.energy_at(_at(60)) == pytest.approx(FULL_W * 60 / 3600)


@pytest.mark.parametrize(("resumes", "after_release"), [(True, FULL_W), (False, 0.0)])
def test_a_car_that_does_not_resume_stays_at_zero_after_the_pause(resumes: bool, after_release: float) -> None:
    charger = _charging(Behaviour(ramp_s=5, resumes_after_pause=resumes))
    # A pause of 10 s by the profile's own schedule, then a release.
    _install(charger, _limit(1, 0, 60, (0, 0), (10, 3000)), 60)
    assert charger.power_at(_at(70)) == 0
    assert charger.power_at(_at(80)) == (3000 if resumes else 0)
    _clear(charger, 1, 90)
    assert charger.power_at(_at(200)) == after_release


def test_a_car_that_does_not_resume_charges_on_under_a_limit_that_is_not_a_pause() -> None:
    charger = _charging(Behaviour(resumes_after_pause=False))
    _install(charger, _limit(1, 1000, 10), 10)
    _clear(charger, 1, 20)
    assert charger.power_at(_at(30)) == FULL_W


def test_meter_noise_is_bounded_never_negative_and_the_same_per_identity() -> None:
    behaviour = Behaviour(meter_noise=0.05)

    def reported(charger: SimulatedCharger, power_w: float) -> float:
        return next(
            value for measurand, _, value, _ in charger._readings(power_w) if measurand == "Power.Active.Import"
        )

    first, again = _charging(behaviour, "CP-N"), _charging(behaviour, "CP-N")
    values = [reported(first, 10_000) for _ in range(200)]
    assert all(9500 <= value <= 10_500 for value in values)
    assert len(set(values)) > 50
    assert values == [reported(again, 10_000) for _ in range(200)]
    assert {reported(first, 0) for _ in range(20)} == {0}
    assert {reported(_charging(), 10_000) for _ in range(20)} == {10_000}


@pytest.mark.parametrize(
    "fields",
    [
        {"ramp_s": -1},
        {"meter_noise": 1},
        {"meter_noise": -0.1},
        {"offline_after_pause_s": -1},
        {"min_meter_interval_s": 0},
    ],
)
def test_a_behaviour_out_of_range_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Behaviour(**fields)


def test_the_realistic_mix_is_fixed_per_identity_and_mostly_good() -> None:
    identities = [f"SIM-{number:04d}" for number in range(1000)]
    mix = [realistic_behaviour(identity) for identity in identities]
    assert mix == [realistic_behaviour(identity) for identity in identities]
    assert behaviour_of("ideal", "SIM-0001") == IDEAL
    assert behaviour_of("realistic", "SIM-0001") == mix[1]
    kinds = Counter(_kind(behaviour) for behaviour in mix)
    assert kinds["good"] > 550
    assert all(kinds[kind] >= 30 for kind in ("slow", "ignores limits", "offline on a pause", "does not resume"))
    good = [behaviour.ramp_s for behaviour in mix if _kind(behaviour) == "good"]
    slow = [behaviour.ramp_s for behaviour in mix if _kind(behaviour) == "slow"]
    assert 2 <= min(good) and max(good) <= 10 and 20 <= min(slow) and max(slow) <= 30
    assert all(0 < behaviour.meter_noise <= 0.03 for behaviour in mix)


async def test_the_demo_dk2_fleet_shows_every_misbehaviour(session: AsyncSession, demo: list[ChargePoint]) -> None:
    rows = await session.exec(
        select(ChargePoint.identity, ChargePoint.price_area)
        .join(Participation, col(Participation.charge_point_id) == col(ChargePoint.id))
        .where(Participation.state == ParticipationState.SIGNED_UP)
    )
    signed_up_dk2 = sorted(identity for identity, area in rows if area == "DK2")
    # A Test activation of DK2 then shows a charger delivering, and one of each way of not delivering
    # (demo_data.py names them).
    assert {identity: _kind(realistic_behaviour(identity)) for identity in signed_up_dk2} == {
        "CPH-001": "good",
        "CPH-002": "does not resume",
        "CPH-003": "ignores limits",
        "CPH-004": "offline on a pause",
    }
    everyone = Counter(_kind(realistic_behaviour(cp.identity)) for cp in demo)
    assert everyone["slow"] >= 1 and everyone["good"] > len(demo) / 2, everyone


async def test_v16_ramp_reports_the_new_power_only_after_the_delay() -> None:
    ramp_s = 0.3
    charger = SimulatedCharger(ChargerSpec("CP-16", behaviour=Behaviour(ramp_s=ramp_s)), meter_interval=SLOW_METER)
    async with central_system() as system, running(charger, system.url):
        inbox = system.inbox
        await inbox.expect("MeterValues", power_is(FULL_W))
        hub = system.stations["CP-16"]
        for request, watts in (
            (call16.SetChargingProfile(connector_id=0, cs_charging_profiles=max_profile_16(1, 1, "W", 4000)), 4000),
            (call16.ClearChargingProfile(id=1), FULL_W),
        ):
            since = inbox.mark()
            asked_at = datetime.now(UTC)
            assert (await hub.call(request)).status == "Accepted"
            report = await inbox.expect("MeterValues", power_is(watts), since=since)
            # Timestamps are in whole milliseconds.
            reported_at = datetime.fromisoformat(report["meter_value"][0]["timestamp"])
            assert reported_at >= asked_at + timedelta(seconds=ramp_s, milliseconds=-1)


async def test_v16_a_charger_that_ignores_limits_accepts_and_reports_full_power() -> None:
    charger = SimulatedCharger(
        ChargerSpec("CP-16", behaviour=Behaviour(ignores_limits=True)), meter_interval=SLOW_METER
    )
    async with central_system() as system, running(charger, system.url):
        inbox = system.inbox
        await inbox.expect("MeterValues", power_is(FULL_W))
        since = inbox.mark()
        hub = system.stations["CP-16"]
        result = await hub.call(
            call16.SetChargingProfile(connector_id=0, cs_charging_profiles=max_profile_16(1, 1, "W", 0))
        )
        assert result.status == "Accepted" and charger.limit_w == 0
        assert (await hub.call(call16.TriggerMessage(requested_message="MeterValues"))).status == "Accepted"
        triggered = await inbox.expect(
            "MeterValues", lambda p: p["meter_value"][0]["sampled_value"][0]["context"] == "Trigger", since=since
        )
        assert power_is(FULL_W)(triggered)
        assert not any(action == "StatusNotification" for action, _ in inbox.messages[since:])


async def test_v16_a_charger_goes_offline_when_paused_and_comes_back_paused_until_released() -> None:
    behaviour = Behaviour(offline_after_pause_s=0.2)
    charger = SimulatedCharger(ChargerSpec("CP-16", behaviour=behaviour), meter_interval=SLOW_METER)
    async with central_system() as system, running(charger, system.url):
        inbox = system.inbox
        await inbox.expect("MeterValues", power_is(FULL_W))
        since = inbox.mark()
        hub = system.stations["CP-16"]
        result = await hub.call(
            call16.SetChargingProfile(connector_id=0, cs_charging_profiles=max_profile_16(1, 1, "W", 0))
        )
        assert result.status == "Accepted"
        # It drops the connection before reporting the pause, and reports it once back.
        await inbox.expect("BootNotification", since=since)
        back = inbox.mark()
        await inbox.expect("MeterValues", power_is(0), since=back)
        assert not any(action == "MeterValues" for action, _ in inbox.messages[since:back])
        assert charger.connections == 2

        # It stays connected through the rest of the pause, and charges again once released.
        hub = system.stations["CP-16"]
        assert (await hub.call(call16.ClearChargingProfile(id=1))).status == "Accepted"
        await inbox.expect("MeterValues", power_is(FULL_W), since=back)
        assert charger.connections == 2 and charger.transaction_id == 42


async def test_v201_a_car_that_does_not_resume_reports_suspended_ev_after_the_release() -> None:
    spec = ChargerSpec("CP-201", protocol="ocpp2.0.1", behaviour=Behaviour(resumes_after_pause=False))
    charger = SimulatedCharger(spec, meter_interval=SLOW_METER)
    async with central_system() as system, running(charger, system.url):
        inbox = system.inbox
        await inbox.expect("TransactionEvent", power_is(FULL_W))
        hub = system.stations["CP-201"]
        since = inbox.mark()
        await hub.call(call201.SetChargingProfile(evse_id=0, charging_profile=max_profile_201(1, 1, "W", 0)))
        paused = await inbox.expect("TransactionEvent", power_is(0), since=since)
        assert paused["transaction_info"]["charging_state"] == "SuspendedEVSE"
        since = inbox.mark()
        assert (await hub.call(call201.ClearChargingProfile(charging_profile_id=1))).status == "Accepted"
        stopped = await inbox.expect("TransactionEvent", since=since)
        assert power_is(0)(stopped)
        assert stopped["transaction_info"]["charging_state"] == "SuspendedEV"
        assert charger.power_w == 0 and charger.limit_w is None


async def test_v16_the_hub_sets_the_meter_interval_down_to_the_minimum_and_triggers_a_report() -> None:
    spec = ChargerSpec("CP-16", behaviour=Behaviour(min_meter_interval_s=0.2))
    charger = SimulatedCharger(spec, meter_interval=SLOW_METER)
    async with central_system() as system, running(charger, system.url):
        inbox = system.inbox
        await inbox.expect("MeterValues", power_is(FULL_W))
        hub = system.stations["CP-16"]
        answers = {}
        for key, value in (
            ("MeterValueSampleInterval", "0.1"),
            ("MeterValueSampleInterval", "soon"),
            ("NumberOfConnectors", "2"),
            ("NoSuchKey", "1"),
        ):
            answers[key, value] = (await hub.call(call16.ChangeConfiguration(key=key, value=value))).status
        assert answers == {
            ("MeterValueSampleInterval", "0.1"): "Rejected",
            ("MeterValueSampleInterval", "soon"): "Rejected",
            ("NumberOfConnectors", "2"): "Rejected",
            ("NoSuchKey", "1"): "NotSupported",
        }
        assert charger.meter_interval == SLOW_METER

        since = inbox.mark()
        changed = await hub.call(call16.ChangeConfiguration(key="MeterValueSampleInterval", value="0.2"))
        assert changed.status == "Accepted"
        configuration = await hub.call(call16.GetConfiguration(key=["MeterValueSampleInterval"]))
        assert configuration.configuration_key == [
            {"key": "MeterValueSampleInterval", "readonly": False, "value": "0.2"}
        ]
        # The next periodic report would be a minute away at the old interval.
        await inbox.expect(
            "MeterValues",
            lambda p: p["meter_value"][0]["sampled_value"][0]["context"] == "Sample.Periodic",
            since=since,
        )

        assert (await hub.call(call16.TriggerMessage(requested_message="Heartbeat"))).status == "NotImplemented"
        assert (
            await hub.call(call16.TriggerMessage(requested_message="MeterValues", connector_id=2))
        ).status == "Rejected"


async def test_v201_the_hub_sets_the_meter_interval_down_to_the_minimum_and_triggers_a_report() -> None:
    spec = ChargerSpec("CP-201", protocol="ocpp2.0.1", behaviour=Behaviour(min_meter_interval_s=0.2))
    charger = SimulatedCharger(spec, meter_interval=SLOW_METER)

    def variable(component: str, name: str, value: str, **extra: Any) -> dict[str, Any]:
        return {"component": {"name": component}, "variable": {"name": name}, "attribute_value": value, **extra}

    async with central_system() as system, running(charger, system.url):
        inbox = system.inbox
        await inbox.expect("TransactionEvent", power_is(FULL_W))
        hub = system.stations["CP-201"]
        since = inbox.mark()
        result = await hub.call(
            call201.SetVariables(
                set_variable_data=[
                    variable("SampledDataCtrlr", "TxUpdatedInterval", "0.1"),
                    variable("SmartChargingCtrlr", "Enabled", "false"),
                    variable("SampledDataCtrlr", "NoSuchVariable", "1"),
                    variable("NoSuchCtrlr", "TxUpdatedInterval", "1"),
                    variable("SampledDataCtrlr", "TxUpdatedInterval", "1", attribute_type="MaxSet"),
                    variable("SampledDataCtrlr", "TxUpdatedInterval", "0.2"),
                ]
            )
        )
        assert [answer["attribute_status"] for answer in result.set_variable_result] == [
            "Rejected",
            "Rejected",
            "UnknownVariable",
            "UnknownComponent",
            "NotSupportedAttributeType",
            "Accepted",
        ]
        probe = await hub.call(
            call201.GetVariables(
                get_variable_data=[
                    {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"}},
                    {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "Enabled"}},
                ]
            )
        )
        assert [answer["attribute_value"] for answer in probe.get_variable_result] == ["0.2", "true"]
        await inbox.expect("TransactionEvent", lambda p: p["trigger_reason"] == "MeterValuePeriodic", since=since)

        since = inbox.mark()
        assert (await hub.call(call201.TriggerMessage(requested_message="MeterValues"))).status == "Accepted"
        triggered = await inbox.expect("MeterValues", since=since)
        assert triggered["evse_id"] == 1
        assert triggered["meter_value"][0]["sampled_value"][0]["context"] == "Trigger"
        assert power_is(FULL_W)(triggered)
        assert (await hub.call(call201.TriggerMessage(requested_message="Heartbeat"))).status == "NotImplemented"


@pytest.fixture
def simulated_runs(monkeypatch: pytest.MonkeyPatch) -> list[list[ChargerSpec]]:
    """Collect the specs each `powerbank simulate` run would simulate, instead of connecting them."""
    runs: list[list[ChargerSpec]] = []

    async def run_simulation(url: str, password: str, specs: list[ChargerSpec], **_: Any) -> None:
        runs.append(specs)

    monkeypatch.setattr(simulator, "run_simulation", run_simulation)
    return runs


def test_simulate_picks_ideal_or_realistic_and_overrides_a_behaviour(simulated_runs: list[list[ChargerSpec]]) -> None:
    url = ["--url", "ws://127.0.0.1:1/ocpp", "--identities", "SIM-A,SIM-B"]
    assert simulator.main(url) == 0
    assert simulator.main([*url, "--behaviour", "realistic"]) == 0
    assert (
        simulator.main([*url, "--behaviour", "realistic", "--ramp-s", "25", "--no-resume", "--meter-noise", "0"]) == 0
    )
    assert simulator.main([*url, "--ignore-limits", "--offline-after-pause-s", "30", "--min-meter-interval", "10"]) == 0
    ideal, realistic, overridden, misbehaving = [[spec.behaviour for spec in run] for run in simulated_runs]
    assert ideal == [IDEAL, IDEAL]
    assert realistic == [realistic_behaviour("SIM-A"), realistic_behaviour("SIM-B")]
    assert overridden == [
        replace(behaviour, ramp_s=25, resumes_after_pause=False, meter_noise=0) for behaviour in realistic
    ]
    assert set(misbehaving) == {Behaviour(ignores_limits=True, offline_after_pause_s=30, min_meter_interval_s=10)}
    with pytest.raises(SystemExit):
        simulator.main([*url, "--meter-noise", "1.5"])


def test_simulate_from_the_database_is_a_realistic_fleet_unless_told_otherwise(
    simulated_runs: list[list[ChargerSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def specs_from_db(protocol: str, behaviour: Any) -> list[ChargerSpec]:
        return [ChargerSpec(identity, protocol=protocol, behaviour=behaviour(identity)) for identity in ("CPH-1", "X")]

    monkeypatch.setattr(cli, "_specs_from_db", specs_from_db)
    hub = ["simulate", "--from-db", "--url", "ws://127.0.0.1:1/ocpp"]
    assert cli.main(hub) == 0
    assert cli.main([*hub, "--behaviour", "ideal", "--ramp-s", "5"]) == 0
    realistic, ideal = [[spec.behaviour for spec in run] for run in simulated_runs]
    assert realistic == [realistic_behaviour("CPH-1"), realistic_behaviour("X")]
    assert ideal == [Behaviour(ramp_s=5)] * 2
    with pytest.raises(SystemExit):
        cli.main([*hub, "--ramp-s", "-1"])
