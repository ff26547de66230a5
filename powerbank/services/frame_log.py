"""The last OCPP frames in and out of each charger, kept in memory for troubleshooting.

The OCPP endpoint writes to it and the charge point page reads it; neither imports the other.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime

from powerbank.db import utcnow

# Where the app keeps its FrameLog (app.extensions).
FRAME_LOG_KEY = "powerbank.frame_log"
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


class FrameLog:
    """Keep the newest ``size`` frames per charger identity."""

    def __init__(self, size: int = 100) -> None:
        self.size = size
        self._frames: dict[str, deque[Frame]] = {}

    def add(self, identity: str, outgoing: bool, text: str) -> None:
        """Remember one frame sent to (``outgoing``) or received from a charger."""
        frames = self._frames.get(identity)
        if frames is None:
            frames = self._frames[identity] = deque(maxlen=self.size)
        if len(text) > MAX_SHOWN_CHARS:
            text = f"{text[:MAX_SHOWN_CHARS]}… ({len(text)} characters)"
        frames.append(Frame(utcnow(), outgoing, text))

    def recent(self, identity: str) -> list[Frame]:
        """Return a charger's frames, newest first."""
        return list(reversed(self._frames.get(identity, ())))

    def forget(self, identity: str) -> None:
        """Drop a charger's frames (its charge point was deleted or renamed)."""
        self._frames.pop(identity, None)
