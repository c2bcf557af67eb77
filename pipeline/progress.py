"""Progress of long work (simulate, replay, evaluate): events done, events/s, event time reached.

On a terminal the line is rewritten in place at most four times a second and cleared at the
end; elsewhere nothing is written, except an INFO log line every 10 s when ``-v`` enabled INFO.
Library functions take a :data:`ProgressFn` and call it once per batch, so the check costs a
clock read per few thousand events.

>>> import io
>>> class Tty(io.StringIO):
...     def isatty(self) -> bool:
...         return True
>>> clock = iter([0.0, 0.1, 2.0]).__next__
>>> out = Tty()
>>> with progress_line(out, clock=clock) as progress:
...     progress("replaying", 5_000, 1772409600.0)  # at 0.1 s: shown
...     progress("replaying", 10_000, 1772409660.0)  # at 2.0 s: shown, 5 000 events/s
>>> out.getvalue().split("\\r")[2]
'replaying: 10,000 events, 5,000 events/s, event time 2026-03-02 00:01 UTC\\x1b[K'
>>> out.getvalue().endswith("\\r\\x1b[K")  # cleared: what follows starts on a clean line
True
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TextIO

__all__ = ["Progress", "ProgressFn", "progress_line"]

ProgressFn = Callable[[str, int, float], None]
"""``(stage, events done in it, event time reached as epoch seconds)``."""

log = logging.getLogger(__name__)


class Progress:
    """A :data:`ProgressFn` that shows a line on ``terminal`` (None: logs at INFO instead)."""

    def __init__(
        self,
        terminal: TextIO | None,
        *,
        interval_s: float = 0.25,
        log_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.terminal = terminal
        self.interval_s = interval_s if terminal is not None else log_interval_s
        self.clock = clock
        self.started = self.last = clock()
        self.stage = ""
        self.due = -math.inf
        self.shown = False

    def __call__(self, stage: str, events: int, event_time_s: float) -> None:
        now = self.clock()
        if stage != self.stage:  # a new stage counts from the end of the one before
            self.stage, self.started, self.due = stage, self.last, -math.inf
        self.last = now
        if now < self.due:
            return
        self.due = now + self.interval_s
        elapsed = now - self.started
        rate = f"{events / elapsed:,.0f}" if elapsed > 0 else "-"
        reached = (
            datetime.fromtimestamp(event_time_s, UTC).strftime("%Y-%m-%d %H:%M UTC")
            if math.isfinite(event_time_s)
            else "-"
        )
        line = f"{stage}: {events:,} events, {rate} events/s, event time {reached}"
        if self.terminal is None:
            log.info("%s", line)
            return
        self.terminal.write(f"\r{line}\x1b[K")
        self.terminal.flush()
        self.shown = True

    def close(self) -> None:
        """Clear the line, so that what is printed next starts on a clean one."""
        if self.terminal is not None and self.shown:
            self.terminal.write("\r\x1b[K")
            self.terminal.flush()
            self.shown = False


@contextmanager
def progress_line(
    stream: TextIO | None = None, *, clock: Callable[[], float] = time.monotonic
) -> Iterator[Progress]:
    """A :class:`Progress` on ``stream`` (default stderr) if it is a terminal; cleared on exit."""
    stream = stream if stream is not None else sys.stderr
    progress = Progress(stream if stream.isatty() else None, clock=clock)
    try:
        yield progress
    finally:
        progress.close()
