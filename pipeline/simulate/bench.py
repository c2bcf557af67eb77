"""Throughput check: fast-forward a fleet (with the default suite) to a JSONL file and time it.

Run ``python -m pipeline.simulate.bench [HOURS] [TENANTS] [RATE]`` (default 24 h, 30 tenants,
25 requests/s); it prints events, seconds and events/s. Not a timed assertion.

>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as tmp:
...     result = run_benchmark(pathlib.Path(tmp) / "e.jsonl", hours=0.05, tenants=3, rate=5.0)
>>> result.events > 0 and result.events_per_s > 0
True
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.simulate.fleet import FleetConfig
from pipeline.simulate.generate import simulate, write_jsonl
from pipeline.simulate.suite import default_suite


@dataclass(frozen=True, slots=True)
class BenchResult:
    events: int
    seconds: float
    bytes: int

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def run_benchmark(
    path: Path, *, hours: float = 24.0, tenants: int = 30, rate: float = 25.0, seed: int = 0
) -> BenchResult:
    """Generate ``hours`` of traffic (default suite when it fits) into ``path`` and time it."""
    config = FleetConfig(hours=hours, tenants=tenants, rate=rate, seed=seed)
    began = time.perf_counter()
    try:
        scenarios = default_suite(config)
    except ValueError:  # horizon too short for the suite: plain traffic
        scenarios = []
    events = write_jsonl(path, simulate(config, scenarios))
    return BenchResult(events, time.perf_counter() - began, path.stat().st_size)


def main(argv: list[str]) -> None:
    hours, tenants, rate = (float(argv[0]) if argv else 24.0,
                            int(argv[1]) if len(argv) > 1 else 30,
                            float(argv[2]) if len(argv) > 2 else 25.0)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        r = run_benchmark(Path(tmp) / "events.jsonl", hours=hours, tenants=tenants, rate=rate)
    sys.stdout.write(
        f"hours={hours:g} tenants={tenants} rate={rate:g} events={r.events} "
        f"seconds={r.seconds:.2f} events_per_s={r.events_per_s:,.0f} "
        f"mb={r.bytes / 1e6:.0f}\n"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
