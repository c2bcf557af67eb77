"""What one ``computewatch bench`` run measures, and how big each part is.

>>> config = BenchConfig(parts=parse_parts("replay,rss"))
>>> config.parts, config.needs_broker
(('replay', 'rss'), False)
>>> parse_parts("limit,nope")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: unknown bench part 'nope' (choose from limit, faust, worker, ..., scaleout)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

PARTS: Final = ("limit", "faust", "worker", "latency", "replay", "rss", "scaleout")
"""Every part, in the order they run and appear in the table."""
BROKER_PARTS: Final = frozenset({"limit", "faust", "worker", "latency", "scaleout"})


def parse_parts(text: str) -> tuple[str, ...]:
    """Comma-separated part names as a tuple in :data:`PARTS` order; ValueError on unknowns."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    for name in sorted(names):
        if name not in PARTS:
            raise ValueError(f"unknown bench part {name!r} (choose from {', '.join(PARTS)})")
    return tuple(p for p in PARTS if p in names)


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Sizes and switches of one bench run (defaults finish in a few minutes on 2 cores).

    ``events`` is N for the broker throughput parts (bare consumer, Faust ceiling, one worker,
    two workers),
    all on one pre-produced topic of ``partitions`` partitions. Their traffic, the replay file
    and the latency history are the simulated fleet (``tenants``, ``fleet_rate`` requests/s of
    event time, seed ``seed``). The latency part preloads ``history_minutes`` of history (so
    the detectors are warm), then produces each of ``rates`` events/s for ``live_seconds`` (one
    live run per rate, each with its own worker).
    """

    parts: tuple[str, ...] = PARTS
    bootstrap: str = "127.0.0.1:9092"
    workdir: Path | None = None
    events: int = 200_000
    partitions: int = 4
    tenants: int = 30
    fleet_rate: float = 25.0
    seed: int = 0
    rates: tuple[float, ...] = (5_000.0,)
    live_seconds: float = 150.0
    history_minutes: float = 65.0
    history_rate: float = 50.0
    spikes_per_minute: int = 4
    replay_events: int = 1_000_000
    keys: int = 100_000
    rss_events: int = 1_000_000
    worker_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        positive = {
            "events": self.events,
            "partitions": self.partitions,
            "tenants": self.tenants,
            "fleet_rate": self.fleet_rate,
            "rates": min(self.rates, default=0),
            "live_seconds": self.live_seconds,
            "history_minutes": self.history_minutes,
            "history_rate": self.history_rate,
            "spikes_per_minute": self.spikes_per_minute,
            "replay_events": self.replay_events,
            "keys": self.keys,
            "rss_events": self.rss_events,
        }
        bad = [name for name, value in positive.items() if value <= 0]
        if bad:
            raise ValueError(f"must be positive: {', '.join(bad)}")
        if self.rss_events < self.keys:
            raise ValueError("rss_events must be at least keys (every key sends an event)")
        if not self.parts:
            raise ValueError("no bench part selected")

    @property
    def needs_broker(self) -> bool:
        return any(p in BROKER_PARTS for p in self.parts)
