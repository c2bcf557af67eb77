"""TelemetryEmitter without a broker: validation at the call site, conversions, drops, bounds."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from kafka.errors import KafkaConnectionError
from kafka.future import Future

from pipeline.config import KafkaSettings
from pipeline.events import AllocationEvent, InvalidEvent, example_event, parse_event, to_dict
from pipeline.kafka_options import (
    KafkaConfigError,
    aiokafka_options,
    faust_credentials,
    kafka_python_options,
    kafka_python_producer_options,
)
from pipeline.producer import MemoryProducer, TelemetryEmitter, to_wire


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_emitter(memory: MemoryProducer | None = None, **kwargs: Any) -> TelemetryEmitter:
    sink = memory if memory is not None else MemoryProducer()
    return TelemetryEmitter(KafkaSettings(), producer_factory=lambda options: sink, **kwargs)


def event_dict(**overrides: Any) -> dict[str, Any]:
    return {**to_dict(example_event()), **overrides}


class Unanswered:
    """A producer whose deliveries never complete (a broker that stopped answering)."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Future:
        self.sent += 1
        return Future()

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None


class Refusing(Unanswered):
    """A producer whose every delivery fails."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Future:
        self.sent += 1
        return Future().failure(KafkaConnectionError("broker gone"))


# -- validation at the call site -------------------------------------------------------------


def test_a_dict_missing_a_field_raises_at_the_call_site() -> None:
    broken = event_dict()
    del broken["tenant_id"]
    with memory_emitter() as emitter:
        with pytest.raises(InvalidEvent, match="missing_field: tenant_id"):
            emitter.emit(broken)
        assert emitter.stats.emitted == 0


def test_an_event_struct_is_validated_too() -> None:
    with memory_emitter() as emitter, pytest.raises(InvalidEvent, match="out_of_range: passes"):
        emitter.emit(example_event(passes=0))


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("ts", datetime(2026, 3, 2, 6, 0), "bad_timestamp"),  # noqa: DTZ001 - naive on purpose
        ("gpu_ms", float("nan"), "non_finite"),
        ("status", "exploded", "unknown_value"),
        ("prompt_tokens", object(), "wrong_type"),
    ],
)
def test_bad_values_name_the_rule(field: str, value: Any, rule: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        to_wire(event_dict(**{field: value}))
    assert caught.value.rule == rule


def test_something_that_is_not_an_event_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="not_an_object"):
        to_wire([1, 2, 3])  # type: ignore[arg-type]


def test_datetimes_become_rfc3339_utc_and_uuids_strings() -> None:
    event_id = uuid.UUID("5B0E2A4C-1F3E-4C65-9F0A-2F6E4A1B7C11")
    ts = datetime(2026, 3, 2, 8, 0, 0, 251000, tzinfo=timezone(timedelta(hours=2)))
    _, wire = to_wire(event_dict(event_id=event_id, ts=ts))
    raw = msgspec.json.decode(wire)
    assert raw["ts"] == "2026-03-02T06:00:00.251000Z"
    assert raw["event_id"] == str(event_id)


def test_wire_bytes_are_canonical_contract_v1() -> None:
    parsed, wire = to_wire(event_dict(extra_field="ignored"))
    assert parse_event(wire) == parsed == example_event()
    assert b"extra_field" not in wire


# -- delivery -------------------------------------------------------------------------------


def test_events_are_keyed_by_tenant_and_sent_to_the_events_topic() -> None:
    memory = MemoryProducer()
    with memory_emitter(memory) as emitter:
        for tenant in ("acme", "globex"):
            assert emitter.emit(example_event(tenant_id=tenant, event_id=str(uuid.uuid4())))
        assert emitter.flush(timeout=5)
    assert [(topic, key) for topic, key, _ in memory.messages] == [
        ("compute.events", b"acme"),
        ("compute.events", b"globex"),
    ]
    assert emitter.stats.sent == 2


def test_events_may_be_keyed_by_api_key_to_spread_the_partitions() -> None:
    memory = MemoryProducer()
    settings = KafkaSettings(message_key="api_key_id")
    with TelemetryEmitter(settings, producer_factory=lambda options: memory) as emitter:
        assert emitter.emit(example_event(api_key_id="key-9", event_id=str(uuid.uuid4())))
        assert emitter.flush(timeout=5)
    assert [key for _, key, _ in memory.messages] == [b"key-9"]


def test_many_threads_may_emit_at_once() -> None:
    memory = MemoryProducer()
    with memory_emitter(memory) as emitter:
        threads = [
            threading.Thread(target=lambda: [emitter.emit(example_event()) for _ in range(500)])
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert emitter.flush(timeout=10)
    stats = emitter.stats
    assert (stats.emitted, stats.sent, stats.pending) == (4000, 4000, 0)
    assert len(memory.messages) == 4000


def test_delivery_failures_are_counted_not_raised() -> None:
    with memory_emitter(Refusing()) as emitter:
        assert emitter.emit(example_event())
        assert emitter.flush(timeout=5)
    assert (emitter.stats.sent, emitter.stats.failed) == (0, 1)


def test_unacknowledged_events_are_bounded_then_the_queue_fills_and_drops() -> None:
    stuck = Unanswered()
    emitter = memory_emitter(stuck, queue_size=5, max_unacked=10)  # type: ignore[arg-type]
    accepted = [emitter.emit(example_event()) for _ in range(100)]
    time.sleep(0.3)
    assert stuck.sent <= 10
    assert accepted.count(False) >= 100 - 10 - 5 - 1
    emitter.close(timeout=0.2)
    stats = emitter.stats
    assert stats.pending == 0
    assert stats.failed == stuck.sent, "unacknowledged at close count as failed"


def test_a_failing_connection_is_retried_with_backoff() -> None:
    memory = MemoryProducer()
    attempts = []

    def flaky(options: dict[str, Any]) -> MemoryProducer:
        attempts.append(options)
        if len(attempts) < 3:
            raise KafkaConnectionError("not yet")
        return memory

    emitter = TelemetryEmitter(
        KafkaSettings(), producer_factory=flaky, reconnect_backoff_s=(0.01, 0.05)
    )
    with emitter:
        emitter.emit(example_event())
        assert emitter.flush(timeout=5)
    assert len(attempts) == 3
    assert len(memory.messages) == 1


# -- broker absent ---------------------------------------------------------------------------


def unreachable_emitter(**kwargs: Any) -> TelemetryEmitter:
    settings = KafkaSettings(bootstrap=f"127.0.0.1:{closed_port()}")
    return TelemetryEmitter(settings, **kwargs)


def test_emit_never_blocks_when_the_broker_is_absent() -> None:
    started = time.perf_counter()
    emitter = unreachable_emitter(queue_size=1_000)
    event = example_event()
    for _ in range(10_000):
        emitter.emit(event)
    elapsed = time.perf_counter() - started
    emitter.close(timeout=0.2)
    assert elapsed < 1.0, f"10,000 emits took {elapsed:.2f}s"


def test_a_full_queue_drops_counts_and_reports() -> None:
    drops: list[tuple[AllocationEvent, str]] = []
    emitter = unreachable_emitter(queue_size=100, on_drop=lambda e, why: drops.append((e, why)))
    accepted = [emitter.emit(example_event()) for _ in range(1_000)]
    assert accepted.count(True) == 100
    assert emitter.stats.dropped == 900
    assert {why for _, why in drops} == {"queue_full"}
    assert drops[0][0] == example_event()
    emitter.close(timeout=0.2)


def test_flush_and_close_return_soon_without_a_broker() -> None:
    emitter = unreachable_emitter(queue_size=100)
    for _ in range(10):
        emitter.emit(example_event())
    started = time.perf_counter()
    assert emitter.flush(timeout=0.2) is False
    emitter.close(timeout=0.2)
    assert time.perf_counter() - started < 3.0
    stats = emitter.stats
    assert (stats.emitted, stats.dropped, stats.sent, stats.pending) == (10, 10, 0, 0)


def test_emit_after_close_is_dropped_not_raised() -> None:
    emitter = memory_emitter()
    emitter.close()
    assert emitter.emit(example_event()) is False
    assert emitter.stats.dropped == 1


# -- track() ---------------------------------------------------------------------------------

REQUEST = {
    "tenant_id": "acme",
    "api_key_id": "key-1",
    "model": "reasoner-large",
    "server_id": "gpu-01",
    "route": "deep",
}
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def sent_events(memory: MemoryProducer) -> list[AllocationEvent]:
    return [parse_event(value) for _, _, value in memory.messages if value is not None]


def test_track_emits_what_the_server_filled_in_with_measured_latency() -> None:
    memory = MemoryProducer()
    emitter = memory_emitter(memory, clock=lambda: NOON)
    with emitter, emitter.track(**REQUEST, budget_tokens=8192) as request:
        time.sleep(0.01)
        request.prompt_tokens, request.reasoning_tokens = 700, 4000
        request.passes, request.confidence = 3, 0.9
    [event] = sent_events(memory)
    assert (event.ts, event.route, event.passes, event.budget_tokens) == (NOON, "deep", 3, 8192)
    assert (event.status, event.reasoning_tokens, event.confidence) == ("ok", 4000, 0.9)
    assert event.latency_ms >= 10.0


@pytest.mark.parametrize(
    ("error", "status"),
    [(ValueError("boom"), "error"), (TimeoutError(), "timeout")],
)
def test_track_marks_a_raising_request_and_reraises(error: Exception, status: str) -> None:
    memory = MemoryProducer()
    emitter = memory_emitter(memory)
    with emitter, pytest.raises(type(error)), emitter.track(**REQUEST):
        raise error
    assert [e.status for e in sent_events(memory)] == [status]


def test_track_raises_for_a_record_that_breaks_the_contract() -> None:
    with memory_emitter() as emitter:
        with pytest.raises(InvalidEvent, match="passes"), emitter.track(**REQUEST) as request:
            request.passes = 0
        assert emitter.stats.emitted == 0


# -- options ---------------------------------------------------------------------------------


def test_producer_options_are_idempotent_batched_and_compressed() -> None:
    options = kafka_python_producer_options(KafkaSettings(bootstrap="a:1,b:2"))
    assert options["bootstrap_servers"] == ["a:1", "b:2"]
    assert (options["enable_idempotence"], options["acks"]) == (True, "all")
    assert options["compression_type"] in {"lz4", "gzip"}
    assert options["linger_ms"] > 0


def test_sasl_settings_map_to_both_clients_and_plaintext_ignores_them() -> None:
    sasl = {"sasl_mechanism": "scram-sha-256", "sasl_username": "u", "sasl_password": "p"}
    secure = KafkaSettings(security_protocol="SASL_PLAINTEXT", **sasl)
    for options in (kafka_python_options(secure), aiokafka_options(secure)):
        assert options["sasl_mechanism"] == "SCRAM-SHA-256"
        assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("u", "p")
    assert "sasl_mechanism" not in kafka_python_options(KafkaSettings(**sasl))


def test_ssl_settings_give_a_cafile_or_a_context() -> None:
    secure = KafkaSettings(security_protocol="SSL", ssl_cafile=None)
    assert "ssl_cafile" not in kafka_python_options(secure)
    assert aiokafka_options(secure)["ssl_context"] is not None


@pytest.mark.parametrize(
    "bad",
    [
        {"security_protocol": "TLS"},
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"},
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "GSSAPI",
            "sasl_username": "u",
            "sasl_password": "p",
        },
        {"bootstrap": " , "},
    ],
)
def test_unusable_kafka_settings_fail_when_the_emitter_is_built(bad: dict[str, Any]) -> None:
    with pytest.raises(KafkaConfigError):
        TelemetryEmitter(KafkaSettings(**bad))


def test_faust_credentials_carry_the_same_protocol() -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    assert faust_credentials(KafkaSettings()) is None
    for protocol in ("SASL_PLAINTEXT", "SASL_SSL", "SSL"):
        settings = KafkaSettings(
            security_protocol=protocol,
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="u",
            sasl_password="p",
        )
        auth = credentials_to_aiokafka_auth(faust_credentials(settings))
        assert auth["security_protocol"] == protocol
        if protocol.startswith("SASL"):
            assert (auth["sasl_mechanism"], auth["sasl_plain_password"]) == ("SCRAM-SHA-512", "p")
