"""Proof of delivery computed from meter samples: baselines, verdicts, the area's curve, the exports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from powerbank.models import Activation, Dispatch, DispatchStatus
from powerbank.services import delivery
from powerbank.services.delivery import Requirement, Sample, Verdict

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
FCR_D = Requirement(5, 30)
END = T0 + timedelta(seconds=300)
LATER = END + timedelta(seconds=60)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def series(*points: tuple[float, float]) -> list[Sample]:
    return [Sample(at(seconds), power) for seconds, power in points]


def dispatch(cp_id: int = 1, status: str = DispatchStatus.ACCEPTED, limit_w: float | None = 0.0) -> Dispatch:
    return Dispatch(
        id=cp_id, activation_id=1, charge_point_id=cp_id, identity=f"CP-{cp_id}", status=status, limit_w=limit_w
    )


def judge(d: Dispatch, samples: list[Sample], now: datetime = LATER) -> delivery.ChargerDelivery:
    return delivery.judge(d, samples, T0, END, FCR_D, 0.0, now)


BEFORE = ((-50, 11_000), (-30, 10_800), (-10, 11_200))


def test_a_charger_that_ramps_down_within_the_full_activation_time_delivered() -> None:
    result = judge(dispatch(), series(*BEFORE, (2, 11_000), (8, 4_000), (12, 300), (40, 200)))
    assert result.verdict == Verdict.DELIVERED
    assert result.baseline_w == 11_000 and result.baseline_method == "mean_60s"
    assert "mean of 3 sample(s)" in result.baseline_detail
    assert result.expected_w == 11_000
    assert result.reached_s == 12
    assert result.delivered_w == 11_000 - 300  # held at 30 s: the sample of 12 s
    assert result.share is not None and result.share > 0.9


def test_accepted_but_ignored_is_not_delivered_and_a_slow_one_is_partial() -> None:
    ignored = judge(dispatch(), series(*BEFORE, *((t, 11_000 + t % 7) for t in range(5, 300, 20))))
    assert ignored.verdict == Verdict.NOT_DELIVERED and ignored.note == ""
    slow = judge(dispatch(), series(*BEFORE, (10, 8_000), (28, 6_000), (45, 0)))
    assert slow.verdict == Verdict.PARTIAL
    assert slow.delivered_w == 11_000 - 6_000 and slow.reached_s == 45


def test_before_the_full_activation_time_a_charger_not_down_yet_is_waiting() -> None:
    assert judge(dispatch(), series(*BEFORE, (5, 11_000)), now=at(10)).verdict == Verdict.WAITING
    assert judge(dispatch(), series(*BEFORE), now=at(10)).verdict == Verdict.WAITING
    assert judge(dispatch(), series(*BEFORE), now=LATER).verdict == Verdict.NO_METER_DATA


def test_a_charger_that_stops_reporting_after_accepting_is_not_judged_on_its_last_report() -> None:
    # Every 20 s before; one report at full power just after the limit, then nothing (it went offline).
    gone = judge(dispatch(), series(*BEFORE, (1, 11_100)))
    assert gone.verdict == Verdict.NO_METER_DATA
    assert gone.note == "stopped reporting 1 s after the trigger" and gone.delivered_w is None
    # One that went quiet after it paused delivered all the same.
    paused = judge(dispatch(), series(*BEFORE, (1, 11_100), (4, 0)))
    assert paused.verdict == Verdict.DELIVERED


def test_offline_refused_idle_and_unmetered_chargers_say_so() -> None:
    assert judge(dispatch(status=DispatchStatus.OFFLINE), series(*BEFORE)).verdict == Verdict.OFFLINE
    for status in (DispatchStatus.REJECTED, DispatchStatus.NOT_SUPPORTED, DispatchStatus.TIMEOUT, DispatchStatus.ERROR):
        assert judge(dispatch(status=status), series(*BEFORE)).verdict == Verdict.NOT_ACCEPTED
    assert judge(dispatch(), series((-20, 40), (10, 0))).verdict == Verdict.NOTHING_TO_REDUCE
    # A limit above what it drew: nothing to reduce either.
    assert judge(dispatch(limit_w=11_000), series(*BEFORE, (10, 11_000))).verdict == Verdict.NOTHING_TO_REDUCE
    assert judge(dispatch(), series((10, 0))).verdict == Verdict.NO_METER_DATA


def test_without_samples_in_the_minute_before_the_last_one_before_is_the_baseline() -> None:
    value, method, detail = delivery.baseline(series((-100, 7_000), (5, 0)), T0)
    assert value == 7_000 and method == "last_sample" and detail.startswith("last sample before the trigger")
    # Older than the staleness limit: no baseline.
    assert delivery.baseline(series((-500, 7_000)), T0) == (None, "", "no sample before the trigger")


def test_a_charger_clock_off_by_minutes_is_placed_at_the_hubs_receive_time() -> None:
    received = at(0)
    assert delivery.placed(at(-2), received) == (at(-2), False)
    assert delivery.placed(at(600), received) == (received, True)
    assert delivery.placed(at(-3600), received) == (received, True)


def test_the_area_curve_sums_at_one_second_shows_gaps_and_times_the_response() -> None:
    one = judge(dispatch(1), series(*BEFORE, (3, 5_000), (6, 0)))
    two = judge(dispatch(2), series((-40, 9_000), (4, 9_000), (20, 0)))
    samples = {1: series(*BEFORE, (3, 5_000), (6, 0)), 2: series((-40, 9_000), (4, 9_000), (20, 0))}
    area = delivery.area_curve([one, two], samples, T0, END, at(30), FCR_D)
    assert area.expected_w == 20_000
    by_offset = {point.offset_s: point for point in area.points}
    assert by_offset[-60].measured_w is None and by_offset[-60].reporting == 0  # nobody reported yet: a gap
    assert by_offset[-45].reporting == 1 and by_offset[-45].measured_w == 11_000
    assert by_offset[-1].measured_w == 11_200 + 9_000 and by_offset[-1].limit_w is None
    assert by_offset[3].measured_w == 5_000 + 9_000 and by_offset[3].limit_w == 0
    assert by_offset[-1].baseline_w == 20_000
    # 50 %: 10,000 W less (at 6 s, charger one at 0 W); 90 %: at 20 s, both at 0 W.
    assert (area.half_s, area.full_s) == (6, 20)
    assert (area.half_met, area.full_met) == (False, True)
    assert [p.offset_s for p in area.points] == list(range(-60, 31))


def test_a_charger_that_stops_reporting_leaves_the_curve_after_the_staleness_limit() -> None:
    alone = judge(dispatch(1), series((-30, 10_000), (5, 0)))
    area = delivery.area_curve([alone], {1: series((-30, 10_000), (5, 0))}, T0, END, at(200), FCR_D)
    by_offset = {point.offset_s: point for point in area.points}
    assert by_offset[125].reporting == 1 and by_offset[125].measured_w == 0
    assert by_offset[126].reporting == 0 and by_offset[126].measured_w is None and by_offset[126].baseline_w is None


def test_exports_have_empty_cells_for_unknowns_and_no_formula() -> None:
    rows = delivery.charger_rows([judge(dispatch(status=DispatchStatus.OFFLINE), [])])
    rows[0]["identity"] = "=HYPERLINK(1)"
    text = delivery.to_csv(delivery.CHARGER_COLUMNS, rows)
    header, line = text.splitlines()
    assert header.split(",") == list(delivery.CHARGER_COLUMNS)
    assert line.startswith("'=HYPERLINK(1),offline,offline,,")
    assert delivery.requirement_for("FCR-D up") == FCR_D and delivery.requirement_for("mFRR").full_s == 750


# A scheduled activation's baseline: the same quarter-hour on past working days ------------------


def test_the_quarter_hour_is_the_areas_local_one_on_the_last_five_working_days() -> None:
    # Monday 7 December 2026, 16:05 UTC is 17:05 in Copenhagen (CET): 17:00–17:15 on Friday back to Monday.
    quarter = delivery.quarter_hour(datetime(2026, 12, 7, 16, 5, 31, tzinfo=UTC), "DK2")
    assert quarter.label == "17:00–17:15 Europe/Copenhagen"
    assert [s.isoformat() for s in quarter.starts] == [
        f"2026-{day}T16:00:00+00:00" for day in ("12-04", "12-03", "12-02", "12-01", "11-30")
    ]
    # In summer Stockholm is UTC+2; London is UTC in winter. A Wednesday skips the weekend behind it.
    summer = delivery.quarter_hour(datetime(2026, 6, 10, 6, 59, tzinfo=UTC), "SE3")
    assert summer.label == "08:45–09:00 Europe/Stockholm"
    assert [s.date().isoformat() for s in summer.starts] == [
        "2026-06-09",
        "2026-06-08",
        "2026-06-05",
        "2026-06-04",
        "2026-06-03",
    ]
    assert all(s.hour == 6 and s.minute == 45 for s in summer.starts)
    assert delivery.quarter_hour(datetime(2026, 12, 7, 23, 59, tzinfo=UTC), "GB").label == "23:45–00:00 Europe/London"


def test_only_an_activation_made_for_a_later_start_is_scheduled() -> None:
    made = T0 - timedelta(hours=1)
    common = {"operator_id": 1, "price_area": "DK2", "market": "Test", "action": "pause", "duration_s": 60}
    scheduled = Activation(**common, start_at=T0, end_at=END, created_at=made, created_by="x")
    immediate = Activation(**common, start_at=made, end_at=END, created_at=made, created_by="x")
    assert delivery.is_scheduled(scheduled) and not delivery.is_scheduled(immediate)


def test_a_scheduled_baseline_is_the_median_of_past_days_or_the_minute_before_without_enough_of_them() -> None:
    quarter = delivery.quarter_hour(T0, "DK2")
    enough = delivery.History(quarter, 4, 7_000.0)
    result = delivery.judge(dispatch(), series(*BEFORE, (5, 0)), T0, END, FCR_D, 0.0, LATER, history=enough)
    assert (result.baseline_w, result.baseline_method) == (7_000, "quarter_hour_median")
    assert result.baseline_detail == "median of the 13:00–13:15 Europe/Copenhagen means on 4 of the last 5 working days"
    assert result.expected_w == 7_000 and result.verdict == Verdict.DELIVERED
    too_few = delivery.History(quarter, 2, None)
    fallback = delivery.judge(dispatch(), series(*BEFORE, (5, 0)), T0, END, FCR_D, 0.0, LATER, history=too_few)
    assert (fallback.baseline_w, fallback.baseline_method) == (11_000, "mean_60s")
    assert fallback.baseline_detail.startswith("2 of the last 5 working days have data in 13:00–13:15")
    row = delivery.charger_rows([fallback])[0]
    assert row["baseline_method"] == "mean_60s" and "at least 3 needed" in str(row["baseline_detail"])


def test_meter_rows_add_to_quarter_hours_without_implausible_power() -> None:
    received = at(0)
    rows = [
        {"charge_point_id": 1, "measured_at": at(-1), "received_at": received, "power_w": 6_000.0},
        {"charge_point_id": 1, "measured_at": at(-2), "received_at": received, "power_w": 8_000.0},
        {"charge_point_id": 1, "measured_at": at(-3), "received_at": received, "power_w": 1e7},  # 10 MW
        {"charge_point_id": 1, "measured_at": at(-4), "received_at": received, "power_w": -5_000.0},
        {"charge_point_id": 1, "measured_at": at(-5), "received_at": received, "power_w": -20.0},  # noise: 0
        {"charge_point_id": 1, "measured_at": at(-6), "received_at": received, "power_w": None},
        # A charger clock an hour off: counted in the quarter-hour it was received in.
        {"charge_point_id": 2, "measured_at": at(-3600), "received_at": received, "power_w": 4_000.0},
    ]
    quarters = {
        (r["charge_point_id"], r["starts_at"]): (r["power_sum_w"], r["samples"]) for r in delivery.quarter_rows(rows)
    }
    assert quarters == {(1, at(-900)): (14_000.0, 3), (2, T0): (4_000.0, 1)}
    assert delivery.quarter_of(at(899.9)) == T0 and delivery.quarter_of(at(900)) == at(900)
