"""``python -m pipeline.bench.rss_child KEYS EVENTS TENANTS SEED``: the memory bench's child.

Feeds one engine and prints an :class:`~pipeline.bench.rss.RssResult` as JSON (see
:mod:`pipeline.bench.rss`). A module of its own, so that running it does not import the
bench package's runner first.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from pipeline.bench.rss import PERIOD_HOURS, RssResult
from pipeline.bench.traffic import many_keys_lines
from pipeline.config import Settings
from pipeline.engine import Engine
from pipeline.records import Message
from pipeline.simulate import FleetConfig

BATCH = 10_000


def peak_rss_bytes(status: Path = Path("/proc/self/status")) -> int:
    """This process's peak resident set size so far.

    Linux's ``VmHWM`` (the high-water mark of this process's own memory map) where there is
    one: ``ru_maxrss`` of a child started with fork and exec carries the *parent's* peak over
    the exec, so a bench process holding a few hundred MB of pre-encoded events would show
    in it. Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def feed_engine(keys: int, events: int, tenants: int, seed: int) -> RssResult:
    """Run the engine over the re-keyed events in this process and report its peak RSS."""
    config = FleetConfig(
        tenants=tenants,
        rate=events / (PERIOD_HOURS * 3600.0),
        hours=PERIOD_HOURS * 1.2,
        seed=seed,
        diurnal_amplitude=0.0,
    )
    engine = Engine(Settings())
    baseline = peak_rss_bytes()
    started = time.perf_counter()
    batch: list[Message] = []
    fed = 0
    for line in many_keys_lines(config, keys=keys, limit=events, seed=seed):
        batch.append(Message(line))
        if len(batch) >= BATCH:
            engine.process(batch)
            fed += len(batch)
            batch = []
    engine.process(batch)
    engine.finish()
    fed += len(batch)
    return RssResult(
        keys=keys,
        events=fed,
        baseline_bytes=baseline,
        peak_bytes=peak_rss_bytes(),
        seconds=time.perf_counter() - started,
        alerts=engine.counters["alerts"],
    )


def main(argv: Sequence[str]) -> None:
    keys, events, tenants, seed = (int(a) for a in argv)
    result = feed_engine(keys, events, tenants, seed)
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
