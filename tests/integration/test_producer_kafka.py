"""TelemetryEmitter against the real broker: everything emitted arrives once, keyed by tenant."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest
from msgspec.structs import replace
from pydantic import SecretStr

from pipeline.config import KafkaSettings
from pipeline.events import example_event, parse_event
from pipeline.producer import TelemetryEmitter
from tests.fixtures.kafka import consume_all

pytestmark = pytest.mark.kafka

EVENTS = 100_000
TENANTS = [f"tenant-{i:02d}" for i in range(40)]


def test_every_emitted_event_arrives_exactly_once_keyed_by_tenant(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    settings = KafkaSettings(bootstrap=kafka_bootstrap, events_topic=kafka_topic)
    template = example_event()
    emitted: dict[str, str] = {}
    started = time.perf_counter()
    with TelemetryEmitter(settings, queue_size=EVENTS) as emitter:
        for i in range(EVENTS):
            event_id, tenant = str(uuid.uuid4()), TENANTS[i % len(TENANTS)]
            assert emitter.emit(replace(template, event_id=event_id, tenant_id=tenant))
            emitted[event_id] = tenant
        assert emitter.flush(timeout=120), emitter.stats
    produced_s = time.perf_counter() - started
    stats = emitter.stats
    assert (stats.emitted, stats.sent, stats.dropped, stats.failed) == (EVENTS, EVENTS, 0, 0)

    records = consume_all(kafka_bootstrap, kafka_topic, timeout=120)

    events = [parse_event(record.value) for record in records]
    counts = Counter(event.event_id for event in events)
    assert len(records) == EVENTS, f"{len(records)} records for {EVENTS} events"
    assert counts.most_common(1)[0][1] == 1, "no duplicates"
    assert set(counts) == set(emitted)
    assert all(r.key == e.tenant_id.encode() for r, e in zip(records, events, strict=True))
    assert all(emitted[e.event_id] == e.tenant_id for e in events)
    partitions = {(r.key, r.partition) for r in records}
    assert len(partitions) == len(TENANTS), "one partition per tenant"
    print(f"emitted and acknowledged {EVENTS} events in {produced_s:.1f}s")


def test_the_emitter_authenticates_with_scram(
    kafka_sasl_settings: KafkaSettings, kafka_bootstrap: str, kafka_topic: str
) -> None:
    settings = kafka_sasl_settings.model_copy(update={"events_topic": kafka_topic})
    with TelemetryEmitter(settings) as emitter:
        for _ in range(100):
            emitter.emit(replace(example_event(), event_id=str(uuid.uuid4())))
        assert emitter.flush(timeout=30), emitter.stats
    assert emitter.stats.sent == 100
    assert len(consume_all(kafka_bootstrap, kafka_topic, timeout=30)) == 100


def test_a_wrong_password_keeps_events_queued_and_never_blocks(
    kafka_sasl_settings: KafkaSettings, kafka_topic: str
) -> None:
    settings = kafka_sasl_settings.model_copy(
        update={"events_topic": kafka_topic, "sasl_password": SecretStr("wrong")}
    )
    emitter = TelemetryEmitter(settings, queue_size=10)
    started = time.perf_counter()
    accepted = [emitter.emit(example_event()) for _ in range(50)]
    assert time.perf_counter() - started < 1.0
    assert emitter.flush(timeout=1.0) is False
    emitter.close(timeout=0.5)
    assert accepted.count(True) == 10
    assert (emitter.stats.sent, emitter.stats.dropped) == (0, 50)
