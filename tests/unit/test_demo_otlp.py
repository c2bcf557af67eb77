"""`computewatch demo --otlp-port`: spans from the OpenTelemetry SDK's OTLP/HTTP exporter go
through the demo's embedded engine with the simulated fleet, no Kafka."""

from __future__ import annotations

import threading
import time

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipeline.config import IngestSettings, Settings
from pipeline.feeds import LiveFeed
from pipeline.ingest.mapping import SpanMapping
from pipeline.ingest.spans import span_event_id
from pipeline.records import StepOutput
from pipeline.serve import receive_into
from pipeline.simulate import FleetConfig


def test_received_spans_join_the_demo_feed_through_the_engine() -> None:
    seen: dict[str, str] = {}
    lock = threading.Lock()

    def handler(out: StepOutput) -> None:
        with lock:
            seen.update((e.event_id, e.tenant_id) for e in out.events)

    config = FleetConfig(tenants=12, rate=2.0, hours=24.0, seed=0)
    feed = LiveFeed(config, Settings(), handler, backfill_hours=0.02)
    feed.start()
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"tenant.id": "otel-tenant"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for i in range(5):
        attributes = {"gen_ai.request.model": "llama-70b", "gen_ai.usage.prompt_tokens": 10 + i,
                      "gen_ai.usage.completion_tokens": 20}  # fmt: skip
        provider.get_tracer("t").start_span("chat", attributes=attributes).end()
    spans = memory.get_finished_spans()
    expected = {
        span_event_id(s.context.trace_id.to_bytes(16, "big"), s.context.span_id.to_bytes(8, "big"))
        for s in spans
    }
    try:
        with receive_into(feed, IngestSettings(port=0), SpanMapping()) as url:
            assert OTLPSpanExporter(endpoint=url).export(spans) == SpanExportResult.SUCCESS
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with lock:
                    if expected <= seen.keys():
                        break
                time.sleep(0.1)
    finally:
        feed.stop()
        feed.join(10)
    assert {seen.get(event_id) for event_id in expected} == {"otel-tenant"}
    assert len(seen) > len(expected), "the simulated fleet kept flowing alongside"
