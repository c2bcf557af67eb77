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

import msgspec
import pytest
from kafka.partitioner.default import murmur2

from pipeline.config import Settings
from pipeline.detectors import EntityMinute, Finding, MinuteView
from pipeline.detectors.norms import FleetNorms, Learned, NormReport, NormTick, learn
from pipeline.detectors.request_norm import ContextNorm, KeyMinute, RequestNormDetector
from pipeline.engine import Engine
from pipeline.events import encode_event
from pipeline.fleet import (
    FleetInput,
    FleetStage,
    MinutePart,
    decode_fleet_input,
    decode_norms,
    encode_fleet_input,
    encode_norms,
    fleet_inputs,
)
from pipeline.records import Alert, Message
from pipeline.simulate import FleetConfig, simulate
from pipeline.topology import ROUTED_KEYS, Topology, partition_of
from tests.fixtures.fleet import slowed_server

SETTINGS = Settings()
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# Kafka's own vectors for its murmur2 (the Java client's UtilsTest.testMurmur2), signed.
KAFKA_MURMUR2 = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


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


def _without_evidence(alert: Alert) -> Alert:
    return msgspec.structs.replace(alert, evidence={})


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


@pytest.mark.parametrize("partitions", [4, 16])
def test_every_partition_count_scores_every_request_against_the_same_norms(
    stream: tuple[list[Message], str], partitions: int
) -> None:
    """The context norms learn per tick from the pooled sums of every partition's requests,
    so split or not, each request meets the same norm: same alerts, same norms at the end."""
    messages, _ = stream
    alone, split = Engine(SETTINGS), Topology(SETTINGS, partitions)
    expected, alerts = _run(alone, messages), _run(split, messages)
    assert [_without_evidence(a) for a in alerts] == [_without_evidence(a) for a in expected]
    for a, b in zip(alerts, expected, strict=True):  # sums of a different order of groups
        for name, evidence in a.evidence.items():
            assert math.isclose(evidence.value, b.evidence[name].value, rel_tol=1e-12)
            assert math.isclose(evidence.baseline, b.evidence[name].baseline, rel_tol=1e-12)

    def norms(engine: Engine) -> dict[tuple[str, str, int], ContextNorm]:
        detector = engine._request_detectors[0]
        assert isinstance(detector, RequestNormDetector)
        return dict(detector.contexts.items())

    whole = norms(alone)
    assert len(whole) > 10
    for engine in split.engines:
        for context, norm in norms(engine).items():
            assert norm.n == whole[context].n
            assert math.isclose(norm.mean, whole[context].mean, rel_tol=1e-9)
            assert math.isclose(norm.var, whole[context].var, rel_tol=1e-6)


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
    )
    taught = NormReport(("m", "r", 3), Learned(n=2, x_sum=14.0, x_sq=98.5))
    norms = NormTick(partition=3, tick_s=45.0, reports={"reasoning_inflation": [taught]})
    message = FleetInput(
        partition=3, partitions=4, clock_s=-math.inf, parts=[part], norms=[norms]
    )
    assert decode_fleet_input(encode_fleet_input(message)) == message


def test_pooled_reports_learn_what_one_norm_learns_from_all_requests() -> None:
    """Four partitions' reports of each tick, pooled, move the fleet's norm exactly as one
    norm learning every request moves, through a shift of the whole fleet."""
    rng = random.Random(1)
    one, parts = ContextNorm(), [ContextNorm() for _ in range(4)]
    fleet = None
    for tick in range(160):
        level = 5.0 if tick < 80 else 5.5
        for _ in range(50):
            value = rng.lognormvariate(level, 0.3)
            z = parts[rng.randrange(4)].score_and_learn(value)
            assert math.isclose(z, one.score_and_learn(value), rel_tol=1e-9, abs_tol=1e-9)
        one.settle()
        pooled = Learned()
        for part in parts:
            pooled.add(part.report(tick * 15.0) or Learned())
        fleet = learn(fleet, pooled)
        for part in parts:
            part.take(fleet, tick * 15.0)
        assert fleet.n == one.n and math.isclose(fleet.mean, one.mean, rel_tol=1e-12)
    assert fleet is not None and math.isclose(fleet.var, one.var, rel_tol=1e-9)
    assert abs(fleet.mean - 5.5) < 0.05  # it followed the shift


def test_a_partition_ahead_of_the_fleets_answer_learns_its_own_ticks_again_on_top() -> None:
    """In a worker the fleet's norms come back a little later: a partition that reported
    ticks 15 and 30 and takes a norm that learned through 15 keeps what it taught at 30."""
    norm = ContextNorm()
    reported = []
    for tick in (15.0, 30.0):
        for value in (1_000.0, 1_100.0, 1_200.0):
            norm.learn_one(value)
        reported.append(norm.report(tick))
    fleet = learn(None, reported[0])  # the fleet stage, through tick 15 (this partition only)
    norm.take(fleet, 15.0)
    assert norm.state() == learn(fleet, reported[1])
    norm.take(learn(fleet, reported[1]), 30.0)
    assert norm.unmerged == [] and norm.state() == learn(fleet, reported[1])


def test_the_fleet_stage_learns_a_tick_once_every_partition_has_passed_it() -> None:
    """A tick's reports are pooled once all clocks passed it; a report sent again after a
    restart, for a tick already learned, is not learned twice."""
    fleet = FleetStage(SETTINGS, [], partitions=2)
    report = NormReport(("m", "r", 1), Learned(n=1, x_sum=7.0, x_sq=49.0))
    tick = NormTick(partition=0, tick_s=15.0, reports={"reasoning_inflation": [report]})
    fleet.add([], {0: 20.0}, [tick])
    assert fleet.merged_norms() is None, "partition 1 has not passed the tick"
    other = NormTick(partition=1, tick_s=15.0, reports={"reasoning_inflation": [report]})
    fleet.add([], {1: 16.0}, [other])
    merged = fleet.merged_norms()
    assert merged is not None and merged.through_s == 15.0
    [(context, state)] = merged.by_detector["reasoning_inflation"]
    assert context == ("m", "r", 1) and state.n == 2 and state.mean == 7.0
    fleet.add([], {0: 40.0, 1: 40.0}, [tick])
    assert fleet.merged_norms() is None


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
    for name in ("clock_s", "partition", "_peeked_s", "_norms_s", "_request_detectors"):
        del state[name]
    state.update(detectors=fleet.detectors, gate=fleet.gate, _peekers=[])
    old = Engine.restore(pickle.dumps(state), SETTINGS)
    again = Engine.restore(engine.snapshot(), SETTINGS)
    alerts = _run(old, messages[half:])
    assert alerts and alerts == _run(again, messages[half:])


def test_merged_norms_travel_in_messages_under_the_brokers_limit() -> None:
    """A catch-up merges many contexts at once; they go out in messages of a bounded size."""
    state = ContextNorm().state()
    entries = [(("m", "r", i), state) for i in range(5_000)]
    norms = FleetNorms(through_s=45.0, by_detector={"reasoning_inflation": entries})
    messages = encode_norms(norms)
    assert len(messages) > 1 and max(map(len, messages)) < 1_000_000
    chunks = [decode_norms(m) for m in messages]
    assert {chunk.through_s for chunk in chunks} == {45.0}
    assert [e for chunk in chunks for e in chunk.by_detector["reasoning_inflation"]] == entries


def test_a_catch_up_sends_its_norm_reports_in_messages_under_the_brokers_limit() -> None:
    """A partition catching up reports many ticks in one step (the worker once failed to send
    1.2 MB); split into messages, they teach the fleet what they would have taught whole."""
    reports = [
        NormReport(("reasoner-large", "deep", i % 10), Learned(n=3, x_sum=21.0 + i, x_sq=150.0))
        for i in range(4_000)
    ]
    ticks = [
        NormTick(partition=1, tick_s=15.0 * t, reports={"reasoning_inflation": reports})
        for t in range(1, 7)
    ]
    messages = fleet_inputs(1, 2, 50.0, [], ticks)
    encoded = [encode_fleet_input(m) for m in messages]
    assert len(encoded) > 3 and max(map(len, encoded)) < 1_000_000
    assert [m.clock_s for m in messages[:-1]] == [-math.inf] * (len(messages) - 1)
    split, whole = FleetStage(SETTINGS, [], 2), FleetStage(SETTINGS, [], 2)
    for raw in encoded:
        split.take(decode_fleet_input(raw))
    whole.add([], {1: 50.0}, ticks)
    for stage in (split, whole):
        stage.add([], {0: 50.0})
    assert split.norms == whole.norms and len(split.norms["reasoning_inflation"]) == 10


def test_an_event_dated_far_ahead_moves_no_partitions_clock(
    stream: tuple[list[Message], str],
) -> None:
    """One event stamped in the year 2300 is a dead letter; it used to move every partition's
    clock there first, and the fleet stage then took every real minute as long judged."""
    messages, _ = stream
    config = FleetConfig(tenants=8, rate=10.0, hours=0.1, seed=8, start=T0)
    [stray, *_] = [e for batch in simulate(config, []) for e in batch.to_events()]
    far = Message(encode_event(msgspec.structs.replace(stray, ts=datetime(2300, 1, 1, tzinfo=UTC))))
    half = len(messages) // 2
    clean = _run(Topology(SETTINGS, partitions=4), messages)
    topology = Topology(SETTINGS, partitions=4)
    dirty = _run(topology, [*messages[:half], far, *messages[half:]])
    assert clean and dirty == clean
    assert topology.counters["dead_letters"] == 1


def test_routing_is_kafkas_default_partitioner() -> None:
    for key, signed in KAFKA_MURMUR2.items():
        for partitions in (1, 3, 4, 12):
            assert partition_of(key, partitions) == (signed & 0x7FFFFFFF) % partitions


def test_remembered_routes_equal_murmur2_for_more_keys_than_are_remembered() -> None:
    """Routing remembers recent keys; every answer, remembered, forgotten or asked again at
    another partition count, is murmur2's, for keys of every length and alphabet."""
    rng = random.Random(19)
    alphabet = "abcdef0123456789-_é漢🙂"
    expected: dict[str, int] = {}
    while len(expected) < ROUTED_KEYS // 2 + 2_000:  # two counts each: more than remembered
        key = "".join(rng.choices(alphabet, k=rng.randint(1, 24)))
        expected[key] = murmur2(key.encode("utf-8")) & 0x7FFFFFFF
    for _ in range(2):  # the second pass asks again after the first filled the memory
        for key in expected:
            for partitions in (4, 7):
                assert partition_of(key, partitions) == expected[key] % partitions
    assert partition_of.cache_info().currsize == ROUTED_KEYS


def test_without_metric_rows_the_topology_alerts_and_counts_alike(
    stream: tuple[list[Message], str],
) -> None:
    """A replay that stores nothing closes its windows without building metric rows; that
    changes nothing else: the same alerts, events and counters, and windows still close."""
    messages, _ = stream
    with_rows, without = Topology(SETTINGS, partitions=4), Topology(
        SETTINGS, partitions=4, metric_rows=False
    )
    steps = [(with_rows.process(batch), without.process(batch)) for batch in _batches(messages)]
    steps.append((with_rows.finish(), without.finish()))
    assert sum(len(a.metrics) for a, _ in steps) > 0
    assert all(not b.metrics for _, b in steps)
    assert [a.alerts for a, _ in steps] == [b.alerts for _, b in steps]
    assert [a.events for a, _ in steps] == [b.events for _, b in steps]
    assert with_rows.counters == without.counters
    assert all(engine.aggregator.open_group_count == 0 for engine in without.engines)


def _batches(messages: list[Message]) -> list[list[Message]]:
    return [messages[start : start + 5_000] for start in range(0, len(messages), 5_000)]
