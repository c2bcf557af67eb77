"""Snapshots carry their format, and a restored engine or fleet stage runs by the current
settings (issue 19): allowed lateness, prices, cooldown, and what it learned kept.

The fixtures in ``tests/fixtures/state`` are snapshots as the worker wrote them before formats
were numbered (the code at b974425): a stage-1 engine (``Engine(Settings(), partition=0)``)
and the fleet stage (``FleetStage(Settings(), default_detectors(), 1)`` given that engine's
output), after :func:`first_events`.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest

from pipeline.config import Settings
from pipeline.detectors import Finding, MinuteView, default_detectors
from pipeline.detectors.base import EntityBounded
from pipeline.detectors.request_norm import SCORE_FLOOR, RequestNormDetector
from pipeline.detectors.volume import VolumeDetector
from pipeline.engine import Engine
from pipeline.events import AllocationEvent, encode_event, example_event
from pipeline.fleet import FleetStage
from pipeline.records import Message, StepOutput
from pipeline.state_format import SnapshotError
from pipeline.stream import EXIT_STATE_REFUSED, until_stored

T0: Final = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
FIXTURES: Final = Path(__file__).parents[1] / "fixtures" / "state"


def event_at(seconds: float, **fields: Any) -> AllocationEvent:
    """The example event ``seconds`` after :data:`T0`, with an id of its own."""
    event_id = f"00000000-0000-4000-8000-{int(seconds * 1000):012d}"
    return example_event(event_id=event_id, ts=T0 + timedelta(seconds=seconds), **fields)


def messages(*events: AllocationEvent) -> list[Message]:
    return [Message(encode_event(e)) for e in events]


def first_events() -> list[Message]:
    """What the fixtures' engine was fed: 10 events 2 s apart from :data:`T0` (these ids)."""
    events = [
        example_event(event_id=f"00000000-0000-4000-8000-{n:012d}", ts=T0 + timedelta(seconds=n))
        for n in range(0, 20, 2)
    ]
    return messages(*events)


def worker(**fields: Any) -> Settings:
    return Settings(worker=fields)


@pytest.mark.parametrize(
    ("saved_under", "restored_under"), [(5, 5), (5, 300), (300, 300), (300, 5)]
)
def test_a_late_event_is_counted_by_the_current_allowed_lateness(
    saved_under: float, restored_under: float
) -> None:
    """An event 170 s behind the latest: too late for its window at 5 s of lateness, in it at
    300 s, whatever lateness the snapshot was taken with."""
    engine = Engine(worker(allowed_lateness_s=saved_under))
    engine.process(messages(event_at(10)))
    restored = Engine.restore(engine.snapshot(), worker(allowed_lateness_s=restored_under))
    out = restored.process(messages(event_at(200)))
    late = restored.process(messages(event_at(30)))
    assert len(late.events) == 1
    assert late.too_late == (1 if restored_under == 5 else 0)
    out.extend(late)
    out.extend(restored.finish())
    first_minute = [row.requests for row in out.metrics if row.window_start == T0]
    assert first_minute == [2 if restored_under == 300 else 1]


def test_a_restored_engine_costs_by_the_current_prices() -> None:
    """One GPU-second at $36 an hour is a cent; at the default $2.50, 0.069 cents."""
    engine = Engine(Settings())
    first = engine.process(messages(event_at(1, gpu_ms=1000.0)))
    new_price = Settings(default_price={"gpu_hour_usd": 36.0})
    restored = Engine.restore(engine.snapshot(), new_price)
    second = restored.process(messages(event_at(2, gpu_ms=1000.0)))
    assert (first.costs, second.costs) == ([0.000694444], [0.01])
    [row] = restored.finish().metrics
    assert row.requests == 2 and row.cost_usd == pytest.approx(0.010694444)


@dataclass
class EveryMinute:
    """Names tenant acme in every minute it judges (a finding the cooldown gate decides on)."""

    name: str = "every_minute"

    def observe_minute(self, view: MinuteView) -> list[Finding]:
        return [
            Finding(kind="other", entity_type="tenant", entity_id="acme", window_start=view.start,
                    window_end=view.end, score=1.0, threshold=1.0, summary="acme again",
                    evidence={}, event_count=1)
        ]  # fmt: skip


def minutes_alerted(out: StepOutput) -> list[float]:
    """The minutes (since :data:`T0`) whose end the alerts were detected at."""
    return [(a.detected_at - T0).total_seconds() / 60 for a in out.alerts]


@pytest.mark.parametrize(
    ("cooldown_s", "alerted"),
    [(600.0, []), (0.0, [4.0, 5.0, 6.0]), (300.0, [6.0])],
)
def test_a_restored_engine_alerts_by_the_current_cooldown(
    cooldown_s: float, alerted: list[float]
) -> None:
    """Alerted at the end of minute 1, then every minute suppressed for 600 s; restored under
    another cooldown, the repeats follow it, counted from the alert before the snapshot (the
    running cooldown is kept: at 300 s, the end of minute 4 is still within it)."""
    engine = Engine(worker(alert_cooldown_s=600.0), detectors=[EveryMinute()])
    before = engine.process(messages(*(event_at(60 * m + 1) for m in range(3))))
    before.extend(engine.process(messages(event_at(3 * 60 + 30))))
    assert minutes_alerted(before) == [1.0]
    restored = Engine.restore(engine.snapshot(), worker(alert_cooldown_s=cooldown_s))
    after = restored.process(messages(*(event_at(60 * m + 1) for m in range(4, 6))))
    after.extend(restored.finish())
    assert minutes_alerted(after) == alerted


def entity_counts(detectors: list[Any]) -> list[int]:
    """How many entities each per-entity store of ``detectors`` holds (of api keys and
    tenants: servers and models have caps of their own)."""
    bounded = [d for d in detectors if isinstance(d, EntityBounded)]
    assert len(bounded) == 5  # reasoning, passes, runaway, volume, the catch-all
    return [len(store) for d in bounded for store in d.entity_stores()]


@pytest.mark.parametrize("restored_under", [100, 1_000])
def test_a_restored_engine_holds_its_detectors_to_the_current_entity_cap(
    restored_under: int,
) -> None:
    """300 api keys of 10 tenants over 3 minutes under a cap of 1,000; restored under 100,
    every detector's per-entity state is cut to its 100 most recently used, and 150 new keys
    do not raise it; restored under 1,000, nothing is lost."""
    engine = Engine(worker(max_entities=1_000))
    batch = [event_at(60 * m + k / 10, api_key_id=f"key-{k:03d}", tenant_id=f"t{k % 10}")
             for m in range(3) for k in range(300)]  # fmt: skip
    engine.process(messages(*batch, event_at(4 * 60)))
    assert engine.fleet is not None
    before = entity_counts(engine.fleet.detectors)
    assert max(before) == 300 + 10  # the keys and tenants (volume's store holds both)
    volume = next(d for d in engine.fleet.detectors if isinstance(d, VolumeDetector))
    recent = list(volume.states.keys())[-restored_under:]
    restored = Engine.restore(engine.snapshot(), worker(max_entities=restored_under))
    assert restored.fleet is not None
    assert entity_counts(restored.fleet.detectors) == [min(n, restored_under) for n in before]
    volume = next(d for d in restored.fleet.detectors if isinstance(d, VolumeDetector))
    assert list(volume.states.keys()) == recent
    newer = [event_at(5 * 60 + k / 10, api_key_id=f"new-{k}", tenant_id=f"t{k % 10}")
             for k in range(150)]  # fmt: skip
    restored.process(messages(*newer, event_at(7 * 60)))
    held = max(entity_counts(restored.fleet.detectors))
    assert min(460, restored_under) <= held <= restored_under


def test_the_fleet_stage_restores_under_the_current_settings() -> None:
    """The worker's fleet stage: its cooldown and budget rules from the settings it restores
    under, what it judged and learned kept."""
    engine = Engine(Settings(), partition=0)
    stage = FleetStage(Settings(), default_detectors(), 1)
    out = engine.process(first_events())
    stage.add(out.parts, {0: engine.clock_s}, out.norms, out.spend)
    budgets = {"thresholds": [0.9], "forecast": False}
    now = Settings(worker={"alert_cooldown_s": 60.0, "max_entities": 500}, budgets=budgets)
    restored = FleetStage.restore(stage.snapshot(), now)
    assert restored.gate.cooldown_s == 60.0
    caps = {s.max_entries for d in restored.detectors if isinstance(d, EntityBounded)
            for s in d.entity_stores()}  # fmt: skip
    assert caps == {500}
    assert (restored.budgets.thresholds, restored.budgets.forecast) == ([0.9], False)
    assert restored.judged_s == stage.judged_s and restored.clocks == stage.clocks


def test_an_engine_snapshot_from_before_formats_restores_and_goes_on_as_a_current_one() -> None:
    """The fixture of the format-0 engine, restored under new settings, goes on exactly as the
    same engine made and saved by this code: the same events, rows and alerts, its seen ids
    kept, and the new prices and lateness applied."""
    now = Settings(default_price={"gpu_hour_usd": 36.0}, worker={"allowed_lateness_s": 300})
    old = (FIXTURES / "engine_state_format0.pickle").read_bytes()
    current = Engine(Settings(), partition=0)
    current.process(first_events())
    engines = [Engine.restore(blob, now) for blob in (old, current.snapshot())]
    tail = messages(event_at(200, gpu_ms=1000.0), event_at(30))
    outs = [engine.process([*first_events()[:2], *tail]) for engine in engines]
    for out in outs:
        assert out.duplicates == 2 and out.too_late == 0 and out.costs == [0.01, 0.0085]
    finished = [engine.finish() for engine in engines]
    assert outs[0].events == outs[1].events and outs[0].parts == outs[1].parts
    assert finished[0].metrics == finished[1].metrics and finished[0].parts == finished[1].parts


def test_a_fleet_snapshot_from_before_formats_restores_under_the_current_settings() -> None:
    now = Settings(worker={"alert_cooldown_s": 60.0})
    stage = FleetStage.restore((FIXTURES / "fleet_state_format0.pickle").read_bytes(), now)
    assert stage.gate.cooldown_s == 60.0
    assert stage.clocks == [18.0 + T0.timestamp()] and stage.pending == 0


def refusal(restore: Any, blob: bytes) -> str:
    """The message a restore of ``blob`` is refused with (one line)."""
    with pytest.raises(SnapshotError) as refused:
        restore(blob, Settings(kafka={"consumer_group": "billing"}))
    message = str(refused.value)
    assert "\n" not in message and "DELETE FROM engine_state" in message
    assert "startsWith(state_key, 'billing/')" in message
    return message


@pytest.mark.parametrize("restore", [Engine.restore, FleetStage.restore], ids=["engine", "fleet"])
def test_a_snapshot_of_a_newer_format_is_refused_with_what_to_do(restore: Any) -> None:
    blob = b"computewatch-state 2\n" + pickle.dumps({"plain": "data"})
    assert refusal(restore, blob).startswith(
        "snapshot format 2 is newer than this computewatch knows (1): upgrade computewatch, or "
        "start consumer group 'billing' from scratch"
    )


@pytest.mark.parametrize("restore", [Engine.restore, FleetStage.restore], ids=["engine", "fleet"])
def test_bytes_that_are_no_snapshot_are_refused(restore: Any) -> None:
    engine = Engine(Settings())
    engine.process(first_events())
    blob = engine.snapshot()
    assert refusal(restore, b"").startswith("not a computewatch snapshot (it begins b'')")
    assert refusal(restore, b"\x00garbage\xff").startswith("not a computewatch snapshot")
    assert refusal(restore, b"computewatch-state x\n").startswith("not a computewatch snapshot")
    assert refusal(restore, blob[: len(blob) // 2]).startswith(
        "a snapshot of format 1 cannot be read"
    )
    old = (FIXTURES / "engine_state_format0.pickle").read_bytes()
    assert refusal(restore, old[:-100]).startswith("a snapshot of format 0 cannot be read")


def test_one_stages_snapshot_is_refused_as_the_others() -> None:
    stage = FleetStage(Settings(), [], 1)
    assert refusal(FleetStage.restore, Engine(Settings()).snapshot()).startswith(
        "a snapshot of a dict, not of a FleetStage"
    )
    assert refusal(Engine.restore, stage.snapshot()).startswith(
        "a snapshot of a FleetStage, not of a dict"
    )


def test_the_worker_stops_in_one_line_on_a_snapshot_it_cannot_restore(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Restoring goes through the worker's retries of ClickHouse; a refused snapshot is not
    retried, it ends the worker (exit code 78) with the refusal as one line, no traceback."""
    exits: list[int] = []

    def exit_now(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr("os._exit", exit_now)
    monkeypatch.setattr("logging.shutdown", lambda: None)
    newer = b"computewatch-state 7\n"
    with pytest.raises(SystemExit), caplog.at_level(logging.CRITICAL):
        asyncio.run(until_stored(lambda: Engine.restore(newer, Settings()), "restoring state"))
    assert exits == [EXIT_STATE_REFUSED] == [78]
    [record] = caplog.records
    assert record.exc_info is None and "\n" not in record.getMessage()
    assert "snapshot format 7 is newer than this computewatch knows (1)" in record.getMessage()


def test_a_snapshot_from_before_the_sequential_test_of_passes_restores_with_it() -> None:
    """The format-0 fixtures were saved when only reasoning had a sequential test; restored,
    the pass detector has one too (fresh), in stage 1 (which sums the residuals) and in the
    fleet stage (which judges them)."""
    def pass_tests(detectors: Any) -> list[object]:
        return [d.cusum for d in detectors if d.name == "pass_explosion"]

    engine = Engine.restore((FIXTURES / "engine_state_format0.pickle").read_bytes(), Settings())
    stage = FleetStage.restore((FIXTURES / "fleet_state_format0.pickle").read_bytes(), Settings())
    assert engine.fleet is None
    for tests in (pass_tests(engine._request_detectors), pass_tests(stage.detectors)):
        assert len(tests) == 1 and tests[0] is not None


def test_a_restored_request_detector_judges_windows_by_the_current_score_floor() -> None:
    """The format-0 fixtures were saved when a window's score had to reach 6; restored, their
    request detectors take the code's floor (:data:`SCORE_FLOOR`), in both stages."""
    engine = Engine.restore((FIXTURES / "engine_state_format0.pickle").read_bytes(), Settings())
    stage = FleetStage.restore((FIXTURES / "fleet_state_format0.pickle").read_bytes(), Settings())
    for detectors in (engine._request_detectors, stage.detectors):
        floors = [d.threshold.floor for d in detectors if isinstance(d, RequestNormDetector)]
        assert floors == [SCORE_FLOOR, SCORE_FLOOR]
