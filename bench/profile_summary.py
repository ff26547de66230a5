"""Summarise py-spy's collapsed stacks: where the server spent its samples, by function.

python -m bench.profile_summary /tmp/prof/powerbank-1000-0.txt [--top 40] [--grep powerbank]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

FRAME_RE = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def summarise(path: Path, top: int, pattern: str | None) -> str:
    """Return the functions with the most inclusive and self samples."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = []
        for frame in stack.split(";"):
            match = FRAME_RE.match(frame)
            frames.append(f"{match['function']} ({match['file'].split('site-packages/')[-1]})" if match else frame)
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    lines = [f"{total} samples"]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        lines.append(f"-- {title}")
        shown = 0
        for frame, count in counter.most_common():
            if pattern and not re.search(pattern, frame):
                continue
            lines.append(f"{100 * count / max(total, 1):5.1f}%  {frame}")
            shown += 1
            if shown >= top:
                break
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the summary of one py-spy output."""
    parser = argparse.ArgumentParser(description="Summarise py-spy collapsed stacks")
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--grep", help="only frames matching this regular expression")
    args = parser.parse_args(argv)
    print(summarise(args.path, args.top, args.grep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
