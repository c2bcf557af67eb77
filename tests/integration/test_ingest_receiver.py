"""The OTLP/HTTP receiver in-process against the real broker: what lands on the topics, and
hostile input (malformed protobuf, a 10 MB body, too many spans, wrongly typed or missing
attributes, a wrong token) answered with the right status and message and nothing half-written.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
from collections.abc import Iterator

import pytest
import requests
from google.rpc.status_pb2 import Status
from kafka import KafkaAdminClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client import CollectorRegistry

from pipeline.config import IngestSettings, KafkaSettings
from pipeline.events import parse_event
from pipeline.ingest.mapping import SpanMapping
from pipeline.ingest.receiver import receiving
from pipeline.ingest.sink import KafkaSink
from pipeline.instruments import ReceiverInstruments
from pipeline.prometheus import ReceiverMetrics
from tests.fixtures.kafka import consume_all, unique_topic_name
from tests.fixtures.otlp import T0_NS, export_request

pytestmark = pytest.mark.kafka

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROTOBUF = {**AUTH, "Content-Type": "application/x-protobuf"}


@contextlib.contextmanager
def serving(
    kafka: KafkaSettings, ingest: IngestSettings, instruments: ReceiverInstruments | None = None
) -> Iterator[str]:
    """The receiver's app on a free port in a background thread; yields its /v1/traces URL."""
    sink = KafkaSink(kafka, timeout_s=ingest.delivery_timeout_s)
    with receiving(ingest, SpanMapping(), sink, instruments) as url:
        yield url


@pytest.fixture
def dlq_topic(kafka_admin: KafkaAdminClient) -> Iterator[str]:
    name = unique_topic_name("ingest-dlq")
    kafka_admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1}},
                              timeout_ms=30_000, wait_for_metadata=True)  # fmt: skip
    yield name
    kafka_admin.delete_topics([name], timeout_ms=30_000, raise_errors=False)


@pytest.fixture
def kafka(kafka_bootstrap: str, kafka_topic: str, dlq_topic: str) -> KafkaSettings:
    return KafkaSettings(bootstrap=kafka_bootstrap, events_topic=kafka_topic, dlq_topic=dlq_topic)


@pytest.fixture
def url(kafka: KafkaSettings) -> Iterator[str]:
    with serving(kafka, IngestSettings(port=0, token=TOKEN, max_spans=100)) as address:
        yield address


def export(*attribute_sets: dict[str, int | str]) -> ExportTraceServiceRequest:
    return export_request(
        *attribute_sets, resource={"tenant.id": "acme"}, trace_id=b"\x0a" * 16, name="chat"
    )


GOOD = {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 5,
        "gen_ai.usage.output_tokens": 9}  # fmt: skip


def status_of(response: requests.Response) -> Status:
    return Status.FromString(response.content)


def test_events_and_dead_letters_land_and_the_answer_is_a_partial_success(
    url: str, kafka: KafkaSettings
) -> None:
    body = export(GOOD, {**GOOD, "gen_ai.usage.output_tokens": "nine"}, {"http.route": "/"})
    gzipped = {**PROTOBUF, "Content-Encoding": "gzip"}
    response = requests.post(
        url, data=gzip.compress(body.SerializeToString()), headers=gzipped, timeout=30
    )
    assert response.status_code == 200
    reply = ExportTraceServiceResponse.FromString(response.content)
    assert reply.partial_success.rejected_spans == 1
    assert "wrong_type: gen_ai.usage.output_tokens" in reply.partial_success.error_message
    assert "nine" not in reply.partial_success.error_message
    events = consume_all(kafka.bootstrap, kafka.events_topic)
    assert [(r.key, parse_event(r.value).prompt_tokens) for r in events] == [(b"acme", 5)]
    dead = consume_all(kafka.bootstrap, kafka.dlq_topic)
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["rule"] == b"wrong_type" and headers["source_topic"] == b"otlp/v1/traces"
    assert json.loads(dead[0].value)["span_id"] == "0000000000000002"


def test_otlp_json_is_answered_in_json(url: str, kafka: KafkaSettings) -> None:
    span = {"traceId": "0a" * 16, "spanId": "00000000000000ff", "name": "chat",
            "startTimeUnixNano": str(T0_NS), "endTimeUnixNano": str(T0_NS + 10**9),
            "attributes": [{"key": k, "value": {"intValue": str(v)} if isinstance(v, int)
                            else {"stringValue": v}} for k, v in GOOD.items()]}  # fmt: skip
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    response = requests.post(url, json=body, headers=AUTH, timeout=30)
    assert (response.status_code, response.headers["Content-Type"]) == (200, "application/json")
    assert response.json() == {}
    [record] = consume_all(kafka.bootstrap, kafka.events_topic)
    assert (record.key, parse_event(record.value).model) == (b"default", "m")


@pytest.mark.parametrize(
    ("headers", "data", "status", "message"),
    [
        (PROTOBUF, b"\x0a\xff\xff\xff\xff\x0f", 400, "not a protobuf ExportTraceServiceRequest"),
        (PROTOBUF, bytes(10 * 1024 * 1024), 413,
         "body is over the limit of 4194304 bytes (COMPUTEWATCH_INGEST_MAX_BODY_BYTES)"),
        (PROTOBUF, export(*[GOOD] * 101).SerializeToString(), 413,
         "101 spans in one request, over the limit of 100 (COMPUTEWATCH_INGEST_MAX_SPANS)"),
        ({**PROTOBUF, "Authorization": "Bearer wrong"}, export(GOOD).SerializeToString(), 401,
         "missing or wrong bearer token"),
        ({"Content-Type": "application/x-protobuf"}, export(GOOD).SerializeToString(), 401,
         "missing or wrong bearer token"),
        ({**AUTH, "Content-Type": "text/plain"}, b"hello", 415, "is not supported"),
    ],
    ids=["malformed-protobuf", "10MB-body", "too-many-spans", "wrong-token", "no-token",
         "wrong-content-type"],
)  # fmt: skip
def test_hostile_requests_get_a_status_and_a_message_and_write_nothing(
    url: str, kafka: KafkaSettings, headers: dict[str, str], data: bytes, status: int,
    message: str,
) -> None:  # fmt: skip
    response = requests.post(url, data=data, headers=headers, timeout=60)
    assert response.status_code == status
    assert message in status_of(response).message
    assert TOKEN not in response.text
    assert consume_all(kafka.bootstrap, kafka.events_topic) == []
    assert consume_all(kafka.bootstrap, kafka.dlq_topic) == []
    after = requests.post(url, data=export(GOOD).SerializeToString(), headers=PROTOBUF, timeout=30)
    assert after.status_code == 200  # still serving


def test_other_paths_and_methods_are_not_served(url: str) -> None:
    assert requests.get(url, headers=AUTH, timeout=10).status_code == 405
    assert requests.post(url.replace("traces", "logs"), headers=AUTH, timeout=10).status_code == 404


def test_logs_carry_reasons_never_attribute_values(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.ingest")
    secret = "sk-live-4242"
    wrong_type = export({**GOOD, "gen_ai.usage.output_tokens": secret}).SerializeToString()
    assert requests.post(url, data=wrong_type, headers=PROTOBUF, timeout=30).status_code == 200
    span = {"traceId": "0a" * 16, "spanId": "00000000000000ff",
            "attributes": [{"key": "gen_ai.usage.input_tokens", "value": {"intValue": secret}}]}
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}  # fmt: skip
    refused = requests.post(url, json=body, headers=AUTH, timeout=30)
    assert refused.status_code == 400 and secret in refused.json()["message"]  # for the sender
    assert "wrong_type: gen_ai.usage.output_tokens" in caplog.text
    assert "OTLP export refused (400)" in caplog.text
    assert secret not in caplog.text


def test_the_receiver_produces_over_sasl_scram(
    kafka_sasl_settings: KafkaSettings, kafka: KafkaSettings
) -> None:
    sasl = kafka_sasl_settings.model_copy(
        update={"events_topic": kafka.events_topic, "dlq_topic": kafka.dlq_topic}
    )
    with serving(sasl, IngestSettings(port=0)) as address:
        response = requests.post(address, data=export(GOOD).SerializeToString(),
                                 headers={"Content-Type": "application/x-protobuf"}, timeout=30)
    assert response.status_code == 200
    assert len(consume_all(kafka.bootstrap, kafka.events_topic)) == 1



def test_its_metrics_count_answers_and_spans_as_they_landed(kafka: KafkaSettings) -> None:
    """Requests by status and spans by outcome (what `ingest otlp --metrics-port` serves) agree
    with what the answers said and what landed on the topics."""
    registry = CollectorRegistry()
    ingest = IngestSettings(port=0, token=TOKEN, max_spans=100)
    with serving(kafka, ingest, ReceiverMetrics(registry)) as url:
        body = export(GOOD, GOOD, {**GOOD, "gen_ai.usage.output_tokens": "nine"}, {"x": 1})
        assert requests.post(url, data=body.SerializeToString(), headers=PROTOBUF,
                             timeout=30).status_code == 200  # fmt: skip
        assert requests.post(url, data=b"", headers={}, timeout=30).status_code == 401
        assert requests.post(url, data=b"\xff", headers=PROTOBUF, timeout=30).status_code == 400

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(f"computewatch_{name}", labels)

    assert [sample("otlp_requests_total", status=s) for s in ("200", "401", "400", "503")] == [
        1.0, 1.0, 1.0, 0.0
    ]  # fmt: skip
    events = len(consume_all(kafka.bootstrap, kafka.events_topic))
    dead = len(consume_all(kafka.bootstrap, kafka.dlq_topic))
    assert (events, dead) == (2, 1)
    assert sample("otlp_spans_total", outcome="event") == events
    assert sample("otlp_spans_total", outcome="dead_letter") == dead
    assert sample("otlp_spans_total", outcome="skipped") == 1.0
    assert sample("otlp_request_seconds_count") == 3.0
