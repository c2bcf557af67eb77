"""Real clients all the way: the OpenTelemetry SDK's OTLP/HTTP exporter -> `computewatch ingest
otlp` -> the real broker -> `computewatch worker` -> embedded ClickHouse, counted by event id.

Spans of both GenAI attribute generations are exported; half of them twice, as an exporter does
when it retries a batch. Each span must be one row, none lost, none doubled.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from pipeline.events import parse_event
from pipeline.ingest.spans import span_event_id
from tests.fixtures.kafka import consume_all, unique_topic_name
from tests.integration.test_worker_kafka import (
    query,
    start_worker,
    stop_worker,
    wait_consumed,
    worker_env,
)

pytestmark = pytest.mark.kafka

TOKEN = "e2e-token"
SPANS = 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_receiver(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    receiver = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "ingest", "otlp", "--port", str(port)],
        env={**env, "COMPUTEWATCH_INGEST_TOKEN": TOKEN},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if receiver.poll() is not None:
            raise AssertionError("receiver exited:\n" + log.read_text()[-3000:])
        try:
            requests.post(f"http://127.0.0.1:{port}/v1/traces", timeout=2)
            return receiver
        except requests.ConnectionError:
            time.sleep(0.2)
    receiver.kill()
    raise AssertionError("receiver did not listen within 60 s:\n" + log.read_text()[-3000:])


def genai_spans() -> InMemorySpanExporter:
    """SPANS finished GenAI spans (alternating attribute generations) and one HTTP span."""
    memory = InMemorySpanExporter()
    resource = Resource.create({"service.name": "vllm", "host.name": "gpu-07"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("computewatch-test")
    end = time.time_ns()
    for i in range(SPANS):
        current = i % 2 == 0
        attributes: dict[str, str | int | list[str]] = (
            {"gen_ai.operation.name": "chat", "gen_ai.request.model": "reasoner-large",
             "gen_ai.usage.input_tokens": 100 + i, "gen_ai.usage.output_tokens": 900,
             "gen_ai.usage.reasoning.output_tokens": 600,
             "gen_ai.response.finish_reasons": ["length" if i % 10 == 0 else "stop"]}
            if current else
            {"gen_ai.request.model": "llama-70b", "gen_ai.usage.prompt_tokens": 100 + i,
             "gen_ai.usage.completion_tokens": 50, "gen_ai.usage.num_sequences": 2}
        )  # fmt: skip
        attributes["tenant.id"] = f"tenant-{i % 3}"
        span = tracer.start_span("chat", start_time=end - 2_000_000_000, attributes=attributes)
        if i == 1:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end)
    tracer.start_span("GET /health", attributes={"http.route": "/health"}).end()
    provider.shutdown()
    return memory


def test_sdk_exports_of_both_generations_reach_clickhouse_once_each(
    kafka_bootstrap: str, kafka_topic: str, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, tmp_path, kafka_topic, unique_topic_name("group"))
    port = free_port()
    receiver_log = tmp_path / "receiver.log"
    receiver = start_receiver(env, port, receiver_log)
    spans = genai_spans().get_finished_spans()
    exporter = OTLPSpanExporter(
        endpoint=f"http://127.0.0.1:{port}/v1/traces", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        assert exporter.export(spans[: SPANS // 2]) == SpanExportResult.SUCCESS
        assert exporter.export(spans) == SpanExportResult.SUCCESS  # a retry re-sends the first half
    finally:
        exporter.shutdown()
        receiver.terminate()
        receiver.wait(timeout=30)
    assert receiver.returncode == 0, receiver_log.read_text()[-3000:]
    expected = {
        span_event_id(s.context.trace_id.to_bytes(16, "big"), s.context.span_id.to_bytes(8, "big"))
        for s in spans[:SPANS]
    }
    on_topic = [parse_event(r.value) for r in consume_all(kafka_bootstrap, kafka_topic)]
    assert len(on_topic) == SPANS + SPANS // 2 and {e.event_id for e in on_topic} == expected
    assert {e.status for e in on_topic} == {"ok", "truncated", "error"}

    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        group = env["COMPUTEWATCH_KAFKA_CONSUMER_GROUP"]
        wait_consumed(worker, kafka_bootstrap, group, kafka_topic)
    finally:
        stop_worker(worker, log)
    rows = query(env, "SELECT toString(event_id), count() FROM events GROUP BY event_id")
    assert {event_id for event_id, _ in rows} == expected
    assert all(count == 1 for _, count in rows), "a re-sent span was stored twice"
    [[reasoning, passes]] = query(
        env, "SELECT sum(reasoning_tokens), max(passes) FROM events WHERE server_id = 'gpu-07'"
    )
    assert (reasoning, passes) == (600 * SPANS // 2, 2)
