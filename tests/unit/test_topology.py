"""The two stages over N partitions detect what one engine over the whole stream detects.

Production runs a stage-1 engine per partition of the events topic; fleet-level judgements
(a server against its model's peers, a model's confidence, a key's share of the fleet) need
every partition's part of a minute, which the fleet stage merges. These tests hold the
topology to that: one partition is exactly one engine, and at several partitions a fleet-level
incident alerts once, where engines per partition alone repeat it.
"""

from __future__ import annotations

import math
import pickle
import random
from datetime import UTC, datetime

import pytest

from pipeline.alerts import Alert
from pipeline.config import Settings
from pipeline.detectors import EntityMinute, Finding, MinuteView
from pipeline.detectors.norms import NormReport, NormState, merge_norms
from pipeline.detectors.request_norm import ContextNorm, KeyMinute
from pipeline.engine import Engine, Message
from pipeline.events import encode_event
from pipeline.fleet import (
    FleetInput,
    FleetStage,
    MinutePart,
    decode_fleet_input,
    decode_norms,
    encode_fleet_input,
    encode_norms,
)
from pipeline.simulate import FleetConfig, simulate
from pipeline.topology import Topology, partition_of
from tests.fixtures.fleet import slowed_server

SETTINGS = Settings()
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _messages() -> tuple[list[Message], str]:
    """Two hours of a small fleet whose first server slows down 3x in the second hour."""
    config = FleetConfig(tenants=8, rate=10.0, hours=2.0, seed=7, start=T0)
    events, server = slowed_server(config, 70, 110)
    return [Message(encode_event(e)) for e in events], server


@pytest.fixture(scope="module")
def stream() -> tuple[list[Message], str]:
    return _messages()


def _run(pipeline: Engine | Topology, messages: list[Message]) -> list[Alert]:
    alerts: list[Alert] = []
    for start in range(0, len(messages), 5_000):
        alerts += pipeline.process(messages[start : start + 5_000]).alerts
    return alerts + pipeline.finish().alerts


def _identity(alert: Alert) -> tuple[str, str, str, object, object]:
    return (alert.kind, alert.entity_type, alert.entity_id, alert.window_start, alert.window_end)


def test_one_partition_is_one_engine(stream: tuple[list[Message], str]) -> None:
    messages, _ = stream
    alone = _run(Engine(SETTINGS), messages)
    topology = _run(Topology(SETTINGS, partitions=1), messages)
    assert alone, "the stream must raise alerts for the comparison to mean anything"
    assert topology == alone


@pytest.mark.parametrize("partitions", [4, 16])
def test_a_fleet_incident_alerts_once_however_many_partitions(
    stream: tuple[list[Message], str], partitions: int
) -> None:
    messages, server = stream
    whole = [a for a in _run(Engine(SETTINGS), messages) if a.kind == "efficiency_degradation"]
    split = _run(Topology(SETTINGS, partitions), messages)
    slow = [a for a in split if a.kind == "efficiency_degradation"]
    assert {a.entity_id for a in whole} == {server}
    assert [(a.entity_id, a.detected_at) for a in slow] == [
        (a.entity_id, a.detected_at) for a in whole
    ]
    assert len({_identity(a) for a in split}) == len(split), "an alert was repeated"


def test_an_engine_per_partition_alone_repeats_fleet_alerts(
    stream: tuple[list[Message], str],
) -> None:
    """What the worker did before the fleet stage: the server's degradation, seen in every
    partition its traffic reaches, was alerted once per partition."""
    messages, server = stream
    engines = [Engine(SETTINGS) for _ in range(4)]
    shares: list[list[Message]] = [[] for _ in engines]
    for message in messages:
        tenant = message.value.split(b'"tenant_id":"')[1].split(b'"')[0].decode()
        shares[partition_of(tenant, 4)].append(message)
    slow = [
        a
        for engine, share in zip(engines, shares, strict=True)
        for a in _run(engine, share)
        if a.kind == "efficiency_degradation" and a.entity_id == server
    ]
    assert len(slow) > 1


def _part(partition: int, minute: int, requests: int) -> MinutePart:
    group = (("t", f"k{partition}", "m", "r", "s"), EntityMinute(requests=requests))
    return MinutePart(
        partition=partition,
        minute=minute,
        end_s=minute + 60.0,
        groups=[group],
    )


class _Recorder:
    """Records the fleet's requests in each minute it judges."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def observe_minute(self, view: MinuteView) -> list[Finding]:
        self.seen.append((int(view.start.timestamp()), view.fleet.requests))
        return []


def test_the_fleet_stage_judges_a_minute_once_every_partition_has_passed_it() -> None:
    recorder = _Recorder()
    fleet = FleetStage(SETTINGS, [recorder], partitions=2)
    fleet.add([_part(0, 0, 5)], {0: 70.0})
    assert recorder.seen == [], "partition 1 has not passed the minute yet"
    fleet.add([_part(1, 0, 7)], {1: 64.0})
    assert recorder.seen == [], "a minute is judged 5 s after its end"
    fleet.add([], {1: 65.0})
    assert recorder.seen == [(0, 12)]
    fleet.add([_part(1, 0, 100)], {1: 200.0})  # sent again after a restart: judged already
    fleet.add([_part(0, 60, 1)], {0: 200.0})
    assert recorder.seen == [(0, 12), (60, 1)]


def test_a_silent_partition_holds_the_fleet_stage_back() -> None:
    """Who never reports is waited for: the worker moves idle partitions' clocks (and the
    in-process topology moves every partition's clock together)."""
    recorder = _Recorder()
    fleet = FleetStage(SETTINGS, [recorder], partitions=3)
    fleet.add([_part(0, 0, 5), _part(1, 0, 5)], {0: 1_000.0, 1: 1_000.0})
    assert recorder.seen == [] and fleet.pending == 1


def test_minutes_travel_to_the_fleet_stage_as_they_were() -> None:
    part = MinutePart(
        partition=3,
        minute=0,
        end_s=60.0,
        groups=[(("t", "k", "m", "r", "s"), EntityMinute(requests=2, gpu_ms=1.5))],
        key_minutes={"reasoning_inflation": [("k", KeyMinute(requests=2, z_sum=7.5))]},
        norms={"reasoning_inflation": [NormReport(("m", "r", 3), None, ContextNorm().state())]},
    )
    message = FleetInput(partition=3, partitions=4, clock_s=-math.inf, parts=[part])
    assert decode_fleet_input(encode_fleet_input(message)) == message


def test_merged_norms_follow_the_fleet_as_one_norm_would() -> None:
    """Four partitions learning apart, merged each minute, track one norm learning from all
    requests, through a shift of the whole fleet (from the minute after it on)."""
    rng = random.Random(1)
    one, parts = ContextNorm(), [ContextNorm() for _ in range(4)]
    fleet = None
    for minute in range(40):
        level = 5.0 if minute < 20 else 5.5
        for _ in range(200):
            value = rng.lognormvariate(level, 0.3)
            one.learn_one(value)
            parts[rng.randrange(4)].learn_one(value)
        reports = []
        for part in parts:
            part.reported = part.state()
            reports.append(NormReport(("m", "r", 1), part.base, part.reported))
        fleet = merge_norms(fleet, reports)
        for part in parts:
            part.take(fleet)
        assert fleet.n == one.n
        if minute >= 5:  # both start from their first values, which differ
            assert abs(fleet.mean - one.mean) < 0.05, minute
    assert fleet is not None and abs(math.sqrt(fleet.var) - math.sqrt(one.var)) < 0.05


def test_a_fresh_copy_of_a_known_context_moves_the_fleet_norm_by_its_requests_only() -> None:
    """A partition whose copy of a context started afresh (a new engine, an evicted context)
    reports no base: its single request must not count as a hundredfold step from the
    fleet's norm (it once sent a norm's mean past what a float holds)."""
    fleet = NormState(mean=7.0, var=0.1, n=10_000, peer_z=0.0)
    fresh = ContextNorm()
    fresh.learn_one(2_000.0)  # log1p: 7.6
    merged = merge_norms(fleet, [NormReport(("m", "r", 1), None, fresh.state())])
    assert fleet.mean < merged.mean < fleet.mean + 0.01
    assert merged.n == fleet.n + 1


def test_a_quiet_partition_peeks_at_every_tick_it_passes() -> None:
    """Its part of each tick is what came before the tick: the fleet stage merges every
    partition's part of a tick, and one missing would shrink the fleet the tick is judged on."""
    engine = Engine(SETTINGS, partition=0)
    events = [
        e
        for batch in simulate(FleetConfig(tenants=2, rate=2.0, hours=0.5, seed=3, start=T0))
        for e in batch.to_events()
    ]
    start = events[0].ts.timestamp() // 60 * 60
    early = [e for e in events if e.ts.timestamp() < start + 10]
    late = next(e for e in events if e.ts.timestamp() >= start + 50)
    out = engine.process([Message(encode_event(e)) for e in [*early, late]])
    peeks = [(p.end_s - start, sum(g[1].requests for g in p.groups)) for p in out.parts]
    assert peeks == [(15.0, len(early)), (30.0, len(early)), (45.0, len(early))]


def test_a_snapshot_from_before_the_two_stages_restores_and_goes_on_alike(
    stream: tuple[list[Message], str],
) -> None:
    """An engine saved before the fleet stage existed held its detectors and cooldown gate
    itself; restored, they move to its fleet stage and it alerts as the engine it was."""
    messages, _ = stream
    half = len(messages) // 2
    engine = Engine(SETTINGS)
    engine.process(messages[:half])
    state = dict(vars(engine))
    fleet = state.pop("fleet")
    for name in ("clock_s", "partition", "_peeked_s", "_request_detectors"):
        del state[name]
    state.update(detectors=fleet.detectors, gate=fleet.gate, _peekers=[])
    old = Engine.restore(pickle.dumps(state))
    again = Engine.restore(engine.snapshot())
    alerts = _run(old, messages[half:])
    assert alerts and alerts == _run(again, messages[half:])


def test_merged_norms_travel_in_messages_under_the_brokers_limit() -> None:
    """A catch-up merges many contexts at once; they go out in messages of a bounded size."""
    state = ContextNorm().state()
    norms = {"reasoning_inflation": [(("m", "r", i), state) for i in range(5_000)]}
    messages = encode_norms(norms)
    assert len(messages) > 1 and max(map(len, messages)) < 1_000_000
    received = [e for m in messages for e in decode_norms(m)["reasoning_inflation"]]
    assert received == norms["reasoning_inflation"]
