"""Engine snapshots in ClickHouse: the latest per key wins and restores the same engine."""

from __future__ import annotations

from functools import partial

from pipeline.config import PriceSettings, Settings
from pipeline.detectors import EntityMinute, Finding, MinuteView
from pipeline.engine import Engine
from pipeline.fleet import FleetInput, FleetStage, MinutePart, encode_fleet_input
from pipeline.records import Message
from pipeline.storage import open_store
from pipeline.stream import PartitionEngines
from pipeline.stream_fleet import StoredFleet
from tests.fixtures.clickhouse import synthetic_events
from tests.unit.test_restore_settings import FIXTURES, event_at, first_events, messages


def test_latest_snapshot_per_key_round_trips(storage_settings: Settings) -> None:
    engine = Engine(storage_settings)
    engine.process_events(synthetic_events(500))
    with open_store(storage_settings) as store:
        assert store.load_snapshot("group/topic/0") is None
        store.save_snapshots([("group/topic/0", 41, b"old")])
        latest = [("group/topic/0", 99, engine.snapshot()), ("group/topic/1", 7, b"p1")]
        store.save_snapshots(latest)
        offset, blob = store.load_snapshot("group/topic/0")  # type: ignore[misc]
        assert store.load_snapshot("group/topic/1") == (7, b"p1")
    assert offset == 99
    restored = Engine.restore(blob, storage_settings)
    assert restored.counters == engine.counters
    tail = synthetic_events(200, seed=7)
    assert restored.process_events(tail).alerts == engine.process_events(tail).alerts
    assert restored.finish().metrics == engine.finish().metrics


def test_snapshots_are_stored_with_the_cheap_codec(storage_settings: Settings) -> None:
    """Snapshots of megabytes are written every batch: LZ4, not ZSTD(3) (005_engine_state_lz4)."""
    with open_store(storage_settings) as store:
        codec = store.client.query(
            "SELECT compression_codec FROM system.columns"
            " WHERE database = currentDatabase() AND table = 'engine_state' AND name = 'state'"
        ).result_rows[0][0]
        blob = bytes(range(256)) * 40_000  # 10 MB
        store.save_snapshots([("k", 1, blob)])
        assert store.load_snapshot("k") == (1, blob)
    assert codec == "CODEC(LZ4)"


def test_the_fleet_stage_gets_back_the_parts_still_waiting(storage_settings: Settings) -> None:
    """Its snapshot leaves out the parts waiting for a partition's clock (saved apart, each
    once); restored, it judges them with the part that was missing."""
    part = partial(MinutePart, minute=0, end_s=60.0, groups=[])
    group = (("t", "k", "m", "r", "s"), EntityMinute(requests=5))
    waiting = FleetInput(
        partition=0, partitions=2, clock_s=70.0, parts=[part(partition=0, groups=[group])]
    )
    late = FleetInput(partition=1, partitions=2, clock_s=70.0, parts=[part(partition=1)])
    with open_store(storage_settings) as store:
        stored = StoredFleet(storage_settings, store)
        stored.stage = FleetStage(storage_settings, [], partitions=2)
        stored.step([Message(encode_fleet_input(waiting), offset=0)])
        stored.commit()
        again = StoredFleet(storage_settings, store)
        stage = again.restore()
    assert (again.offset, stage.pending) == (0, 1)
    recorder = _Recorder()
    stage.detectors.append(recorder)
    again.step([Message(encode_fleet_input(late), offset=1)])
    assert recorder.requests == [5]


def test_the_worker_restores_its_stages_under_the_settings_it_runs_with(
    storage_settings: Settings,
) -> None:
    """Saved by a worker with one lateness, price and cooldown, restored by one with others
    (as the worker restores, from the store): the new ones apply, the seen ids are kept; a
    snapshot saved before formats were numbered restores the same way."""
    now = storage_settings.model_copy(update={
        "worker": storage_settings.worker.model_copy(
            update={"allowed_lateness_s": 300.0, "alert_cooldown_s": 60.0}),
        "prices": {"reasoner-large": PriceSettings(gpu_hour_usd=36.0)},
    })  # fmt: skip
    fixture = (FIXTURES / "engine_state_format0.pickle").read_bytes()
    with open_store(storage_settings) as store:
        before = PartitionEngines(storage_settings, store)
        batch = [Message(m.value, partition=0, offset=n) for n, m in enumerate(first_events())]
        before.process(0, batch)
        before.commit([0])
        store.save_snapshots([(before.key(1), 9, fixture)])
        stored = StoredFleet(storage_settings, store)
        stored.restore()
        stored.commit()
        after, fleet = PartitionEngines(now, store), StoredFleet(now, store)
        engines = [after.restore(0), after.restore(1)]
        stage = fleet.restore()
    assert stage.gate.cooldown_s == 60.0
    for engine in engines:
        assert engine.aggregator.allowed_lateness_s == 300.0
        out = engine.process([*first_events()[:1], *messages(event_at(20, gpu_ms=1000.0))])
        assert (out.duplicates, out.costs) == (1, [0.01])


class _Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.requests: list[int] = []

    def observe_minute(self, view: MinuteView) -> list[Finding]:
        self.requests.append(view.fleet.requests)
        return []
