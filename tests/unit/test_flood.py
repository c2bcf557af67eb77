"""A tenant flooding the stream with 300,000 distinct fake api keys (issue 9).

The fleet (6 tenants, 20 req/s, simulated) carries two blatant attacks on keys of tenant 0 from
minute 65 to 80: an 8x volume spike on one key and 5x reasoning on another. Tenant ``flooder``
sends one request from each of 300,000 new api keys. With ``max_entities=20_000``:

- memory: every per-entity store of every detector stays within ``max_entities``, the open
  metric windows within their bound (a tenant's keys past ``max_entities / 10`` in a window share
  the ``(overflow)`` group), and the engine snapshot the worker stores stays small;
- detection: a flood of 300,000 keys in 5 minutes (1,000 req/s, 50x the fleet) leaves both
  attacks detected; spread over 30 minutes (8x the fleet) it neither hides the volume spike
  while it lasts nor pages on innocent keys when it stops. (``VolumeDetector`` scores shares of
  a fleet total in which one tenant counts for at most a few times the median tenant; with
  shares of *all* traffic the long flood hid the spike and then paged on 17 innocent keys.)
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import pytest

from pipeline.config import Settings
from pipeline.detectors.base import BoundedStore
from pipeline.engine import Engine
from pipeline.events import AllocationEvent, example_event
from pipeline.metrics import OVERFLOW_ID
from pipeline.records import Alert
from pipeline.simulate import FleetConfig, ReasoningInflation, VolumeSpike, build_fleet, simulate

T0: Final = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ATTACK: Final = (T0 + timedelta(minutes=65), T0 + timedelta(minutes=80))
MAX_ENTITIES: Final = 20_000
FLOOD_KEYS: Final = 300_000
FLEET: Final = FleetConfig(tenants=6, rate=20.0, hours=1.5, seed=5, start=T0)


def victims() -> tuple[str, str]:
    """The two busiest keys at the attack (both of tenant 0; the flooder is another tenant)."""
    fleet = build_fleet(FLEET)
    order = fleet.key_rates(ATTACK[0].timestamp() * 1000).argsort()[::-1]
    return fleet.keys[int(order[0])].id, fleet.keys[int(order[1])].id


def fleet_events() -> list[AllocationEvent]:
    spiked, inflated = victims()
    attacks = [
        VolumeSpike(entity_id=spiked, start=ATTACK[0], end=ATTACK[1], intensity=8.0),
        ReasoningInflation(entity_id=inflated, start=ATTACK[0], end=ATTACK[1], intensity=5.0),
    ]
    return [e for batch in simulate(FLEET, attacks) for e in batch.to_events()]


def flood(start_minute: int, minutes: int) -> Iterator[AllocationEvent]:
    """One ordinary-looking request from each of FLOOD_KEYS new keys, evenly over the minutes."""
    rng = random.Random(1)
    step = minutes * 60.0 / FLOOD_KEYS
    start = T0 + timedelta(minutes=start_minute)
    for i in range(FLOOD_KEYS):
        yield example_event(
            event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            ts=start + timedelta(seconds=i * step),
            tenant_id="flooder",
            api_key_id=f"fake-{i:06d}",
            server_id=f"gpu-{i % 8:02d}",
            route="standard",
        )


@dataclass
class Run:
    alerts: list[Alert]
    largest_store: int
    largest_open_windows: int
    largest_snapshot_mb: float
    engine: Engine

    def first(self, kind: str, entity_id: str) -> datetime | None:
        hits = [a.detected_at for a in self.alerts if (a.kind, a.entity_id) == (kind, entity_id)]
        return min(hits, default=None)


def stores(engine: Engine) -> Iterator[BoundedStore[object, object]]:
    for detector in engine.detectors:
        for value in vars(detector).values():
            if isinstance(value, BoundedStore):
                yield value
            elif hasattr(value, "__dict__"):  # a part of a detector (e.g. its sequential test)
                yield from (v for v in vars(value).values() if isinstance(v, BoundedStore))


def run(events: list[AllocationEvent], batch: int = 5_000) -> Run:
    events.sort(key=lambda e: e.ts)
    engine = Engine(Settings(worker={"max_entities": MAX_ENTITIES}))
    alerts: list[Alert] = []
    largest_store = largest_open = 0
    largest_snapshot = 0.0
    for i in range(0, len(events), batch):
        alerts += engine.process_events(events[i : i + batch]).alerts
        largest_store = max(largest_store, *(len(s) for s in stores(engine)))
        largest_open = max(largest_open, engine.aggregator.open_group_count)
        if i % (batch * 20) == 0:
            largest_snapshot = max(largest_snapshot, len(engine.snapshot()) / 1e6)
    alerts += engine.finish().alerts
    return Run(alerts, largest_store, largest_open, largest_snapshot, engine)


@pytest.fixture(scope="module")
def fleet() -> list[AllocationEvent]:
    return fleet_events()


@pytest.fixture(scope="module")
def fast_flood(fleet: list[AllocationEvent]) -> Run:
    """300,000 keys from minute 62 to 67: the attacks start in the middle of it."""
    return run([*fleet, *flood(62, 5)])


@pytest.fixture(scope="module")
def long_flood(fleet: list[AllocationEvent]) -> Run:
    """300,000 keys from minute 50 to 80: the whole attack happens during it."""
    return run([*fleet, *flood(50, 30)])


def test_the_flood_cannot_exhaust_memory(fast_flood: Run) -> None:
    assert fast_flood.largest_store <= MAX_ENTITIES
    # a tenant's keys past max_entities / 10 in one window share its (overflow) group
    assert fast_flood.largest_open_windows <= 8_000
    assert fast_flood.largest_snapshot_mb < 64
    engine = fast_flood.engine
    assert len(engine.seen) <= engine.seen.max_ids
    volume = next(d for d in engine.detectors if d.name == "volume_spike")
    assert volume.states.get(f"api_key:{OVERFLOW_ID}") is not None  # the flood, counted


def test_a_fast_flood_does_not_starve_other_tenants_detection(fast_flood: Run) -> None:
    spiked, inflated = victims()
    inflation_at = fast_flood.first("reasoning_inflation", inflated)
    assert inflation_at is not None and inflation_at <= ATTACK[0] + timedelta(minutes=2)
    spike_at = fast_flood.first("volume_spike", spiked)
    assert spike_at is not None and spike_at <= ATTACK[0] + timedelta(minutes=5)


def test_a_long_flood_does_not_starve_per_request_detection(long_flood: Run) -> None:
    _, inflated = victims()
    inflation_at = long_flood.first("reasoning_inflation", inflated)
    assert inflation_at is not None and inflation_at <= ATTACK[0] + timedelta(minutes=2)
    assert long_flood.largest_store <= MAX_ENTITIES


def test_a_long_flood_does_not_hide_a_volume_spike(long_flood: Run) -> None:
    spiked, _ = victims()
    spike_at = long_flood.first("volume_spike", spiked)
    assert spike_at is not None and spike_at <= ATTACK[1]


def test_the_end_of_a_long_flood_pages_no_innocent_key(long_flood: Run) -> None:
    spiked, inflated = victims()
    innocent = {a.entity_id for a in long_flood.alerts} - {spiked, inflated}
    assert innocent == set()
