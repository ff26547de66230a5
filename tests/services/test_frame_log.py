"""The in-memory frame log keeps exactly the newest frames per charger, in order, compressed or not."""

from __future__ import annotations

import pytest

from powerbank.services.frame_log import BLOCK, FrameLog, unpack


@pytest.mark.parametrize("size", [1, 5, BLOCK, BLOCK + 1, 100])
@pytest.mark.parametrize("written", [0, 1, 7, BLOCK, 3 * BLOCK + 5, 250])
def test_the_newest_frames_are_kept_in_order(size: int, written: int) -> None:
    log = FrameLog(size)
    for n in range(written):
        log.add("CP-1", n % 2 == 0, f'[2,"{n}","Heartbeat",{{}}]')
    frames = log.recent("CP-1")
    expected = list(range(written))[-size:][::-1]
    assert [frame.text for frame in frames] == [f'[2,"{n}","Heartbeat",{{}}]' for n in expected]
    assert [frame.outgoing for frame in frames] == [n % 2 == 0 for n in expected]
    # What a node shares with another reads back to the same frames.
    assert unpack(log.packed("CP-1")) == frames


def test_text_of_any_kind_reads_back_as_written() -> None:
    log = FrameLog(100)
    odd = ["line\nbreak", 'quote " and \\ backslash', "æøå ✓ 🚗", "\x00 nul", "", "[not json"]
    for text in odd * 10:
        log.add("CP-1", False, text)
    assert [frame.text for frame in log.recent("CP-1")][::-1] == (odd * 10)[-100:]


def test_chargers_are_kept_apart_and_forgotten_by_charge_point() -> None:
    log = FrameLog(10)
    for n in range(3 * BLOCK):
        log.add("CP-1", False, f"one {n}", charge_point_id=1)
        log.add("CP-2", True, f"two {n}", charge_point_id=2)
    assert {frame.text.split()[0] for frame in log.recent("CP-1")} == {"one"}
    log.forget_charge_points([1])
    assert log.recent("CP-1") == []
    assert len(log.recent("CP-2")) == 10


def test_a_long_frame_is_cut() -> None:
    log = FrameLog(10)
    log.add("CP-1", False, "x" * 5000)
    (frame,) = log.recent("CP-1")
    assert frame.text.startswith("x" * 2000) and frame.text.endswith("(5000 characters)")
