"""Real-time pacing: hand out items at a fixed rate, with an injected clock and sleep.

>>> now = [0.0]
>>> def clock() -> float:
...     return now[0]
>>> def sleep(seconds: float) -> None:
...     now[0] += seconds
>>> [(item, now[0]) for item in paced("abc", 2.0, clock=clock, sleep=sleep)]
[('a', 0.0), ('b', 0.5), ('c', 1.0)]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def paced(
    items: Iterable[T],
    rate: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    max_lag_s: float = 1.0,
) -> Iterator[T]:
    """Yield ``items`` at ``rate`` per second: item ``i`` no earlier than ``i / rate`` s in.

    Parameters
    ----------
    items
        Anything iterable, e.g. :func:`~pipeline.simulate.iter_events`.
    rate
        Items per second (> 0).
    clock, sleep
        Monotonic seconds and a sleeper; inject fakes to test without waiting.
    max_lag_s
        When the consumer falls further behind schedule, the schedule restarts from now
        instead of bursting to catch up.
    """
    if rate <= 0:
        raise ValueError("rate must be > 0")
    interval = 1.0 / rate
    due = clock()
    for item in items:
        wait = due - clock()
        if wait > 0:
            sleep(wait)
        elif -wait > max_lag_s:
            due = clock()
        yield item
        due += interval
