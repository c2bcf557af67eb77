"""Peak memory of the engine with many distinct api keys, measured in a clean child process.

``python -m pipeline.bench.rss_child KEYS EVENTS TENANTS SEED`` feeds one engine (wire bytes
through ``Engine.process``, as the worker does) with EVENTS simulated events over one hour of
event time, re-keyed so that exactly KEYS api keys send them, and reports its peak resident
set size before the first event and at the end (``VmHWM``: see
:func:`pipeline.bench.rss_child.peak_rss_bytes`). The events are generated chunk by chunk, so
what grows is the engine's state: windows, per-key detector state (bounded by
``worker.max_entities``) and the recently seen event ids (bounded by
``worker.dedupe_max_ids``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec

from pipeline.bench.processes import run_json

PERIOD_HOURS = 1.0


@dataclass(frozen=True, slots=True)
class RssResult:
    keys: int
    events: int
    baseline_bytes: int
    peak_bytes: int
    seconds: float
    alerts: int


def measure_rss(keys: int, events: int, tenants: int, seed: int, workdir: Path) -> RssResult:
    """``feed_engine`` in a fresh child process, so nothing else counts in its peak."""
    args = [str(keys), str(events), str(tenants), str(seed)]
    found = run_json("pipeline.bench.rss_child", args, workdir)
    return msgspec.convert(found, RssResult)
