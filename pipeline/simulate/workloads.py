"""Named traffic shapes to simulate and evaluate on: smooth, bursty, and a real trace.

A :class:`Workload` fixes a fleet's default size, rate and period and how its requests arrive
(:mod:`pipeline.simulate.arrivals`); the default suite of incidents is placed on top of each.

>>> sorted(WORKLOADS)
['bursty', 'default', 'trace']
>>> WORKLOADS["bursty"].tenants, WORKLOADS["trace"].source is not None
(60, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pipeline.simulate.arrivals import (
    BUILTIN_TRACE,
    ArrivalModel,
    BurstyArrivals,
    PoissonArrivals,
    TraceArrivals,
    load_trace,
)
from pipeline.simulate.fleet import Fleet


@dataclass(frozen=True, slots=True)
class Workload:
    """A traffic shape: default fleet size, rate and hours, and its arrival model.

    ``source`` is the trace file replayed (trace-driven workloads only).
    """

    name: str
    description: str
    tenants: int
    rate: float
    hours: float
    source: Path | None = None

    def arrivals(self, fleet: Fleet) -> ArrivalModel:
        """The arrival model for ``fleet``; raises ``TraceError`` for an unreadable trace."""
        if self.source is not None:
            return TraceArrivals(load_trace(self.source), fleet)
        if self.name == "bursty":
            return BurstyArrivals(fleet)
        return PoissonArrivals()

    @classmethod
    def from_trace(cls, source: Path) -> Workload:
        """The trace workload replaying ``source`` instead of the built-in trace."""
        trace = WORKLOADS["trace"]
        return cls("trace", f"arrivals and tokens of {source.name}", trace.tenants, trace.rate,
                   trace.hours, source)  # fmt: skip


WORKLOADS: Final = {
    w.name: w
    for w in (
        Workload("default", "smooth Poisson arrivals under each tenant's daily cycle", 30, 25.0,
                 24.0),
        Workload("bursty", "40 % of tenants in bursts (negative-binomial minutes, 2-5x bursts "
                 "of 1-5 min, some at the same minutes every hour)", 60, 25.0, 24.0),
        Workload("trace", "arrival times and tokens of Mooncake's production chat trace, "
                 "looped hourly, three services", 30, 25.0, 12.0, BUILTIN_TRACE),
    )
}  # fmt: skip
"""The built-in workloads by name."""
