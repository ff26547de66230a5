"""The last OCPP frames in and out of each charger, kept in memory for troubleshooting.

The OCPP connections write to it and the charge point page reads it (through the dispatch
gateway): neither imports the other.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

# A frame longer than this is cut: the log is for reading, and memory is per charger.
MAX_SHOWN_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Frame:
    at: datetime
    outgoing: bool
    text: str

    @property
    def direction(self) -> str:
        return "out" if self.outgoing else "in"


class _Kept:
    """One charger's frames: the newest as strings, older ones in compressed blocks of ``BLOCK``."""

    __slots__ = ("newest", "blocks")

    def __init__(self) -> None:
        self.newest: list[str] = []
        # Lists, not deques: a deque takes 600 bytes before it holds anything, per charger.
        self.blocks: list[bytes] = []


# Frames compressed together. A block of a charger's frames is repetitive (the same actions and
# keys over and over): zlib keeps 100 MeterValues and Heartbeats in about a sixth of their size.
BLOCK = 16


class FrameLog:
    """Keep the newest ``size`` frames per charger identity.

    Each frame is kept as one string, "<" or ">" and the time before the text, not as objects;
    once ``BLOCK`` of them are kept as strings they are compressed into one block. 20,000 chargers
    × 100 frames is two million frames: as strings they would hold ~330 MB, compressed ~70 MB.
    """

    def __init__(self, size: int = 100) -> None:
        self.size = size
        self._block = max(1, min(BLOCK, size))
        # Enough blocks that the newest ``size`` frames are always kept (up to a block more).
        self._blocks_kept = -(-size // self._block)
        self._frames: dict[str, _Kept] = {}
        # The charge point whose connection logged an identity's frames, to forget them by charge point.
        self._owners: dict[str, int] = {}

    def add(self, identity: str, outgoing: bool, text: str, charge_point_id: int | None = None) -> None:
        """Remember one frame sent to (``outgoing``) or received from a charger."""
        kept = self._frames.get(identity)
        if kept is None:
            kept = self._frames[identity] = _Kept()
        if charge_point_id is not None:
            self._owners[identity] = charge_point_id
        if len(text) > MAX_SHOWN_CHARS:
            text = f"{text[:MAX_SHOWN_CHARS]}… ({len(text)} characters)"
        kept.newest.append(f"{'>' if outgoing else '<'}{time.time():.3f} {text}")
        if len(kept.newest) >= self._block:
            kept.blocks.append(zlib.compress(json.dumps(kept.newest).encode(), 1))
            kept.newest = []
            if len(kept.blocks) > self._blocks_kept:
                del kept.blocks[0]

    def recent(self, identity: str) -> list[Frame]:
        """Return a charger's frames, newest first."""
        return [_unpack(packed) for packed in reversed(self.packed(identity))]

    def packed(self, identity: str) -> list[str]:
        """Return a charger's frames as kept (see the class), oldest first: what a node shares with others."""
        kept = self._frames.get(identity)
        if kept is None:
            return []
        frames: list[str] = []
        for block in kept.blocks:
            frames.extend(json.loads(zlib.decompress(block)))
        frames.extend(kept.newest)
        return frames[-self.size :]

    def forget(self, identity: str) -> None:
        """Drop a charger's frames (its charge point was deleted or renamed)."""
        self._frames.pop(identity, None)
        self._owners.pop(identity, None)

    def forget_charge_points(self, charge_point_ids: Iterable[int]) -> None:
        """Drop the frames these charge points logged, under whatever identity they had.

        For charge points deleted or renamed: another tenant may register the identity next, and
        must not see this one's frames.
        """
        gone = set(charge_point_ids)
        for identity in [identity for identity, owner in self._owners.items() if owner in gone]:
            self.forget(identity)


def unpack(packed: Iterable[str]) -> list[Frame]:
    """Return frames kept as ``FrameLog.packed`` returns them, newest first (anything malformed left out)."""
    frames: list[Frame] = []
    for item in packed:
        try:
            frames.append(_unpack(item))
        except (ValueError, OverflowError, OSError, IndexError, TypeError):
            continue
    return frames[::-1]


def _unpack(packed: str) -> Frame:
    stamp, _, text = packed[1:].partition(" ")
    return Frame(datetime.fromtimestamp(float(stamp), UTC), packed[0] == ">", text)
