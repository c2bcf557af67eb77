"""A GenAI span to an allocation event v1: pure, transport-free, one span at a time.

A span is *GenAI* when it has a ``gen_ai.*`` attribute and is not an agent or tool step
(``gen_ai.operation.name`` of ``execute_tool``, ``invoke_agent``, ``create_agent``): those carry
no inference of their own (an agent's usage would count its model calls twice). Anything else is
skipped. A GenAI span that cannot make a valid event raises
:class:`~pipeline.events.InvalidEvent` whose reason names the attribute, never its value.

>>> span = Span(trace_id=bytes(range(16)), span_id=bytes(range(8)), name="chat o4-mini",
...             start_ns=1_772_431_200_000_000_000, end_ns=1_772_431_202_500_000_000,
...             error=False, resource={"service.name": "gpu-07"},
...             attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "o4-mini",
...                         "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 900,
...                         "gen_ai.usage.reasoning.output_tokens": 700,
...                         "gen_ai.response.finish_reasons": ["length"]})
>>> event = span_event(span, SpanMapping())
>>> event.event_id, event.ts.isoformat(), event.server_id, event.route
('97eb92fe-edc8-567a-bd3f-2788b75cf499', '2026-03-02T06:00:02.500000+00:00', 'gpu-07', 'chat')
>>> event.completion_tokens, event.reasoning_tokens, event.status, event.gpu_ms
(200, 700, 'truncated', 2500.0)
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pipeline.events import SCHEMA_VERSION, AllocationEvent, InvalidEvent, encode_event, parse_event
from pipeline.ingest.mapping import NumberField, SpanMapping, TextField

# uuid5 namespace of span event ids: the same trace and span id are the same event, however
# often an exporter re-sends them.
SPAN_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "computewatch:otlp-span")
_NAMESPACE_BYTES: Final = SPAN_NAMESPACE.bytes
NOT_INFERENCE: Final = frozenset({"execute_tool", "invoke_agent", "create_agent"})
TRUNCATED: Final = frozenset({"length", "max_tokens", "max_output_tokens"})
# Both generations: the current name first, then the one vLLM and OpenLLMetry still send.
INPUT_TOKENS: Final = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT_TOKENS: Final = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
REASONING_TOKENS: Final = ("gen_ai.usage.reasoning.output_tokens",)
MODEL: Final = ("gen_ai.response.model", "gen_ai.request.model")
TTFT_S: Final = ("gen_ai.latency.time_to_first_token",)
MAX_TOKENS: Final = ("gen_ai.request.max_tokens",)


@dataclass(frozen=True, slots=True)
class Span:
    """The parts of an OTLP span the mapping reads; attribute values are plain Python values
    (str, bool, int, float, or a list of them)."""

    trace_id: bytes
    span_id: bytes
    name: str
    start_ns: int
    end_ns: int
    error: bool  # the span's status is ERROR
    attributes: Mapping[str, Any]
    resource: Mapping[str, Any]


def is_genai(span: Span) -> bool:
    """Whether the span describes an inference call the mapping should turn into an event."""
    attributes = span.attributes
    if attributes.get("gen_ai.operation.name") in NOT_INFERENCE:
        return False
    return any(name.startswith("gen_ai.") for name in attributes)


def span_event_id(trace_id: bytes, span_id: bytes) -> str:
    """The event id of a span: the name-based UUID (v5, RFC 9562) of its trace and span id.

    >>> span_event_id(b"\\x01" * 16, b"\\x02" * 8)
    '0e31b3d3-0d02-544c-b33f-296158f456e3'
    """
    if len(trace_id) != 16 or len(span_id) != 8 or not any(trace_id) or not any(span_id):
        raise InvalidEvent("bad_format: trace_id/span_id (16 and 8 bytes, not all zero)")
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + trace_id + span_id, usedforsecurity=False).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()  # what str(uuid.UUID(bytes=..., version=5)) writes, without the object
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def span_event(span: Span, mapping: SpanMapping) -> AllocationEvent:
    """The allocation event of a GenAI span, validated against contract v1."""
    return span_wire(span, mapping)[0]


def span_wire(span: Span, mapping: SpanMapping) -> tuple[AllocationEvent, bytes]:
    """The event of a GenAI span and its contract-v1 bytes: encoded once, then validated by the
    same parser as every other entry point (the receiver's hot path)."""
    raw = encode_event(_event_fields(span, _Lookup(span), mapping))
    return parse_event(raw), raw


def _event_fields(span: Span, look: _Lookup, mapping: SpanMapping) -> dict[str, Any]:
    model = look.text(MODEL)
    if model is None:
        raise InvalidEvent("missing_field: gen_ai.response.model or gen_ai.request.model")
    if span.end_ns <= 0 or span.end_ns < span.start_ns:
        raise InvalidEvent("bad_timestamp: end_time_unix_nano (missing or before the start)")
    latency_ms = (span.end_ns - span.start_ns) / 1e6
    status = _status(span, look)
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": span_event_id(span.trace_id, span.span_id),
        "ts": datetime.fromtimestamp(span.end_ns / 1e9, tz=UTC),
        "model": model,
        **_tokens(look, status),
        "tenant_id": _text(look, mapping.tenant_id),
        "api_key_id": _text(look, mapping.api_key_id),
        "route": _text(look, mapping.route),
        "server_id": _text(look, mapping.server_id),
        "passes": _whole(look, mapping.passes),
        "confidence": _number(look, mapping.confidence),
        "difficulty": _number(look, mapping.difficulty),
        "budget_tokens": look.count(MAX_TOKENS),
        "gpu_ms": _gpu_ms(look, mapping, model, latency_ms),
        "latency_ms": latency_ms,
        "ttft_ms": _ms(look.number(TTFT_S)),
        "status": status,
        "region": look.text(("resource:cloud.region",)),
    }


def _tokens(look: _Lookup, status: str) -> dict[str, int]:
    """Prompt, visible completion and reasoning tokens; reasoning is counted inside output."""
    prompt, output = look.count(INPUT_TOKENS), look.count(OUTPUT_TOKENS)
    if output is None and status != "error":
        raise InvalidEvent(f"missing_field: {OUTPUT_TOKENS[0]} or {OUTPUT_TOKENS[1]}")
    reasoning = look.count(REASONING_TOKENS) or 0
    return {
        "prompt_tokens": prompt or 0,
        "completion_tokens": max((output or 0) - reasoning, 0),
        "reasoning_tokens": reasoning,
    }


def _status(span: Span, look: _Lookup) -> str:
    """``error`` (``timeout``, ``cancelled``) for a failed span, ``truncated`` when generation
    stopped at its token limit, else ``ok``."""
    error_type = look.raw(("error.type",))
    if span.error or error_type is not None:
        kind = str(error_type or "").lower()
        return "timeout" if "timeout" in kind else "cancelled" if "cancel" in kind else "error"
    reasons = look.raw(("gen_ai.response.finish_reasons",))
    if isinstance(reasons, str):
        reasons = [reasons]
    if isinstance(reasons, list) and TRUNCATED.intersection(map(str, reasons)):
        return "truncated"
    return "ok"


def _gpu_ms(look: _Lookup, mapping: SpanMapping, model: str, latency_ms: float) -> float:
    gpu = mapping.gpu_ms
    given = look.number(gpu.ms_attributes)
    if given is not None:
        return given
    seconds = look.number(gpu.seconds_attributes)
    if seconds is not None:
        return seconds * 1000.0 * gpu.gpus_for(model)
    return latency_ms * gpu.gpus_for(model) if gpu.from_duration else 0.0


def _text(look: _Lookup, field: TextField) -> str:
    return look.text(field.attributes) or field.default


def _number(look: _Lookup, field: NumberField) -> float | None:
    found = look.number(field.attributes)
    return field.default if found is None else found


def _whole(look: _Lookup, field: NumberField) -> int:
    found = look.count(field.attributes)
    return int(field.default or 1) if found is None else found


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


class _Lookup:
    """Typed reads of the first attribute present among names (``span:``/``resource:`` or
    both); a value of the wrong type is rejected by name, never echoed."""

    __slots__ = ("_tables",)

    def __init__(self, span: Span) -> None:
        # "" (span, then resource), "span", "resource": where each kind of name looks
        both = {**span.resource, **span.attributes}
        self._tables = {"": both, "span": span.attributes, "resource": span.resource}

    def _first(self, names: tuple[str, ...]) -> tuple[str, Any]:
        tables = self._tables
        for where, bare in _sources(names):
            if (value := tables[where].get(bare)) is not None:
                return bare, value
        return "", None

    def raw(self, names: tuple[str, ...]) -> Any:
        return self._first(names)[1]

    def text(self, names: tuple[str, ...]) -> str | None:
        name, value = self._first(names)
        if value is None or isinstance(value, str):
            return value or None
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise InvalidEvent(f"wrong_type: {name} (expected a string, got {_kind(value)})")

    def number(self, names: tuple[str, ...]) -> float | None:
        name, value = self._first(names)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidEvent(f"wrong_type: {name} (expected a number, got {_kind(value)})")
        return float(value)

    def count(self, names: tuple[str, ...]) -> int | None:
        name, value = self._first(names)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidEvent(f"wrong_type: {name} (expected an integer, got {_kind(value)})")
        return value


@functools.cache
def _sources(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``(where, attribute)`` for each mapping name: ``span:x`` -> ``("span", "x")``; a bare
    name (or an unknown prefix, part of a dotted name) -> ``("", name)``."""
    out = []
    for name in names:
        where, _, bare = name.partition(":")
        out.append((where, bare) if bare and where in ("span", "resource") else ("", name))
    return tuple(out)


def _kind(value: object) -> str:
    return {bool: "a boolean", str: "a string", float: "a number", list: "an array"}.get(
        type(value), type(value).__name__
    )
