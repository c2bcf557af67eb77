"""One OTLP export request to what goes to Kafka: events (keyed by the sink), dead letters, counts.

Pure: the receiver decodes, calls :func:`map_request`, then hands the batch to a sink.

>>> from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
...     ExportTraceServiceRequest)
>>> request = ExportTraceServiceRequest()
>>> span = request.resource_spans.add().scope_spans.add().spans.add(
...     trace_id=b"\\x01" * 16, span_id=b"\\x02" * 8, name="chat", start_time_unix_nano=1,
...     end_time_unix_nano=2)
>>> span.attributes.add(key="gen_ai.operation.name").value.string_value = "chat"
>>> batch = map_request(request, SpanMapping())
>>> batch.rejected, batch.message()
(1, '1 of 1 spans rejected: missing_field: gen_ai.response.model or gen_ai.request.model (1)')
>>> [name for name, value in batch.dead_letters[0].headers]
['reason', 'rule', 'source_topic', 'trace_id', 'span_id']
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.events import AllocationEvent, InvalidEvent
from pipeline.ingest.mapping import SpanMapping
from pipeline.ingest.otlp import request_spans
from pipeline.ingest.spans import Span, is_genai, span_wire

SOURCE: Final = b"otlp/v1/traces"  # the dead letters' source_topic header
_json: Final = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class DeadSpan:
    """A GenAI span that made no valid event: the span as JSON, with the DLQ's headers."""

    payload: bytes
    headers: list[tuple[str, bytes]]


@dataclass(slots=True)
class MappedBatch:
    """Events as ``(key, value)`` wire pairs, dead letters, and what was skipped or rejected."""

    events: list[tuple[AllocationEvent, bytes]] = field(default_factory=list)  # with its JSON
    dead_letters: list[DeadSpan] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    spans: int = 0

    @property
    def rejected(self) -> int:
        return len(self.dead_letters)

    def message(self) -> str:
        """The partial-success message: how many spans were rejected and why (reasons name
        attributes, never their values)."""
        if not self.rejected:
            return ""
        why = "; ".join(f"{reason} ({n})" for reason, n in self.reasons.most_common(5))
        return f"{self.rejected} of {self.spans} spans rejected: {why}"


def map_request(request: ExportTraceServiceRequest, mapping: SpanMapping) -> MappedBatch:
    """Every GenAI span of ``request`` as an event or a dead letter; other spans are skipped."""
    batch = MappedBatch()
    for span in request_spans(request):
        batch.spans += 1
        if not is_genai(span):
            batch.skipped += 1
            continue
        try:
            event, raw = span_wire(span, mapping)
        except InvalidEvent as exc:
            batch.reasons[exc.reason] += 1
            batch.dead_letters.append(dead_span(span, exc))
            continue
        batch.events.append((event, raw))
    return batch


def dead_span(span: Span, exc: InvalidEvent) -> DeadSpan:
    """The span as JSON (ids in hex, as OTLP JSON writes them) and the DLQ headers."""
    document: dict[str, Any] = {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "name": span.name,
        "start_time_unix_nano": span.start_ns,
        "end_time_unix_nano": span.end_ns,
        "error": span.error,
        "attributes": span.attributes,
        "resource": span.resource,
    }
    headers = [
        ("reason", exc.reason.encode()),
        ("rule", exc.rule.encode()),
        ("source_topic", SOURCE),
        ("trace_id", span.trace_id.hex().encode()),
        ("span_id", span.span_id.hex().encode()),
    ]
    return DeadSpan(_json.encode(document), headers)
