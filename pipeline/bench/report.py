"""What one bench run measured, and the number formats of its table.

>>> fmt_rate(4621.4), fmt_seconds(0.0425), fmt_seconds(12.34), fmt_bytes(700 * 2**20)
('4,621 events/s', '0.0425 s', '12.3 s', '700 MiB')
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.bench.config import BenchConfig
from pipeline.bench.latency import LatencyResult
from pipeline.bench.limit import ConsumeResult
from pipeline.bench.machine import Machine
from pipeline.bench.replay import ReplayResult
from pipeline.bench.rss import RssResult
from pipeline.bench.worker import WorkerRun


def fmt_rate(value: float) -> str:
    return f"{value:,.0f} events/s"


def fmt_seconds(value: float) -> str:
    return f"{value:.3g} s" if value < 10 else f"{value:,.1f} s"


def fmt_bytes(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def percentile(values: tuple[float, ...], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass(frozen=True, slots=True)
class Row:
    measurement: str
    result: str
    how: str


@dataclass(frozen=True, slots=True)
class Verdict:
    target: str
    met: bool | None  # None: not judged (part skipped or run off-target)
    detail: str


@dataclass
class BenchReport:
    """Everything one run measured (a part left out or failed stays None or empty)."""

    machine: Machine
    config: BenchConfig
    limit: ConsumeResult | None = None
    faust: ConsumeResult | None = None
    worker: WorkerRun | None = None
    latency: list[LatencyResult] = field(default_factory=list)
    replay: ReplayResult | None = None
    rss: RssResult | None = None
    scaleout: WorkerRun | None = None
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    command: str = "computewatch bench"
