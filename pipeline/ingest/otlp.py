"""OTLP/HTTP trace bodies to :class:`~pipeline.ingest.spans.Span` and back to OTLP responses.

The official ``opentelemetry-proto`` types (the ``otlp`` extra) do the decoding: protobuf
(``application/x-protobuf``) or OTLP JSON (``application/json``, whose trace and span ids are
hex, not base64), optionally gzip-compressed. Every failure is :class:`BadRequest` with a
message fit to send back; nothing here does I/O.

>>> from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
...     ExportTraceServiceRequest)
>>> body = b'''{"resourceSpans": [{"resource": {"attributes": [
...     {"key": "service.name", "value": {"stringValue": "vllm"}}]},
...   "scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c",
...     "spanId": "eee19b7ec3c1b174", "name": "llm_request",
...     "startTimeUnixNano": "1772431200000000000", "endTimeUnixNano": "1772431201000000000",
...     "attributes": [{"key": "gen_ai.usage.prompt_tokens", "value": {"intValue": "12"}}]}]}]}]}'''
>>> request = decode_request(body, "application/json", None, max_bytes=1 << 20)
>>> [(s.name, s.attributes, s.resource) for s in request_spans(request)]
[('llm_request', {'gen_ai.usage.prompt_tokens': 12}, {'service.name': 'vllm'})]
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as SpanStatus

from pipeline.ingest.spans import Span

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
_ID_FIELDS: Final = ("traceId", "spanId", "parentSpanId")


class BadRequest(ValueError):
    """A body that is not an OTLP trace export; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    @property
    def summary(self) -> str:
        """The message up to its first colon: what to log (a parser's detail may quote the
        body's values; the client gets the whole message, the log does not)."""
        return str(self).split(":", 1)[0]


def decode_request(
    body: bytes, content_type: str, encoding: str | None, *, max_bytes: int
) -> ExportTraceServiceRequest:
    """The export request in ``body`` (``encoding`` is the Content-Encoding header)."""
    if encoding not in (None, "", "identity", "gzip"):
        raise BadRequest(f"Content-Encoding {encoding!r} is not supported; use gzip", 415)
    if encoding == "gzip":
        body = _gunzip(body, max_bytes)
    if content_type == PROTOBUF:
        return _from_protobuf(body)
    if content_type == JSON:
        return _from_json(body)
    raise BadRequest(
        f"Content-Type {content_type or 'none'!r} is not supported; use {PROTOBUF} or {JSON}", 415
    )


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    """The decompressed body, refused past ``max_bytes`` (a small bomb cannot grow large)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid gzip: {exc}") from None
    if len(out) > max_bytes:
        raise BadRequest(f"decompressed body is over the limit of {max_bytes} bytes", 413)
    if not inflater.eof:
        raise BadRequest("body is not valid gzip: truncated stream")
    return out


def _from_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise BadRequest(f"body is not a protobuf ExportTraceServiceRequest: {exc}") from None
    return request


def _from_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("body is not an OTLP JSON ExportTraceServiceRequest object")
    request = ExportTraceServiceRequest()
    try:
        _hex_ids_to_base64(document)
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        message = str(exc).replace("\n", " ")[:300]
        raise BadRequest(f"body is not an OTLP JSON ExportTraceServiceRequest: {message}") from None
    return request


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """OTLP JSON writes ids as hex; protobuf's JSON mapping reads bytes as base64."""
    for resource_spans in document.get("resourceSpans") or ():
        for scope_spans in resource_spans.get("scopeSpans") or ():
            for span in scope_spans.get("spans") or ():
                for name in _ID_FIELDS:
                    if isinstance(value := span.get(name), str) and value:
                        try:
                            span[name] = base64.b64encode(bytes.fromhex(value)).decode()
                        except ValueError:
                            raise ValueError(f"{name} is not hex") from None


def request_spans(request: ExportTraceServiceRequest) -> Iterator[Span]:
    """Each span of the request with its resource's attributes."""
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield proto_span(span, resource)


def proto_span(span: ProtoSpan, resource: dict[str, Any]) -> Span:
    return Span(
        trace_id=span.trace_id,
        span_id=span.span_id,
        name=span.name,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        error=span.status.code == SpanStatus.STATUS_CODE_ERROR,
        attributes=attributes(span.attributes),
        resource=resource,
    )


def span_count(request: ExportTraceServiceRequest) -> int:
    return sum(
        len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans
    )


_SCALARS: Final = frozenset(
    {"string_value", "int_value", "double_value", "bool_value", "bytes_value"}
)


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """OTLP key-values as a dict of plain values (the last of a repeated key wins)."""
    out = {}
    for pair in pairs:  # scalars inline: most attributes are, and this runs per attribute
        value = pair.value
        kind = value.WhichOneof("value")
        out[pair.key] = getattr(value, kind) if kind in _SCALARS else plain(value)
    return out


def plain(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as str, bool, int, float, bytes, list or dict (None when empty)."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return None if kind is None else getattr(value, kind)


def export_response(rejected: int, message: str, content_type: str) -> bytes:
    """An ``ExportTraceServiceResponse``, with partial success when spans were rejected."""
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return _encode(response, content_type)


def error_body(code: int, message: str, content_type: str) -> bytes:
    """A ``google.rpc.Status`` body for a 4xx/5xx answer, as the OTLP/HTTP spec asks."""
    return _encode(Status(code=code, message=message), content_type)


def _encode(message: Any, content_type: str) -> bytes:
    if content_type == JSON:
        return json_format.MessageToJson(message, indent=None).encode()
    encoded: bytes = message.SerializeToString()
    return encoded
