"""The garbage collector set for a long run over recorded events (a replay, and its fleet judge).

What is alive at the start (the imported modules: river, numpy, ...) lives as long as the
process; frozen, it is left out of the collector's full collections, which otherwise walk it
dozens of times per million events (1M-event file: 11 % less CPU). Garbage is collected first,
so that none of it (an earlier replay's engine) is frozen with it. The engine makes few cycles
and many objects that live for minutes of event time (window groups, each key's minute), so the
youngest generation is collected after :data:`YOUNG_OBJECTS` net allocations instead of 700:
over 4.5 h of the default suite, 1,961 young collections (and 17 full ones, 0.6 s of 12 CPU s)
became 2 (and 1, 0.04 s).

>>> import gc
>>> before = gc.get_threshold()
>>> with long_run_collector():
...     gc.get_threshold()[0] == YOUNG_OBJECTS
True
>>> gc.get_threshold() == before
True
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Final

YOUNG_OBJECTS: Final = 20_000  # the collector's first threshold during a long run


def freeze_what_lives() -> None:
    """Collect the garbage, then leave what is alive now (the imported modules, an app) out
    of the collector's full collections for good (a long-running worker's, as a replay's)."""
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def long_run_collector() -> Iterator[None]:
    """The collector set as the module docstring says; its thresholds are given back after."""
    freeze_what_lives()
    before = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
