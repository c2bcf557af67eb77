"""OTLP/HTTP bodies: protobuf and JSON, gzip, and bodies that are not export requests."""

from __future__ import annotations

import gzip
import json

import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from pipeline.ingest.batch import map_request
from pipeline.ingest.mapping import SpanMapping
from pipeline.ingest.otlp import (
    JSON,
    PROTOBUF,
    BadRequest,
    decode_request,
    error_body,
    export_response,
    request_spans,
)
from tests.fixtures.otlp import export_request

LIMIT = 1 << 20
TRACE, SPAN = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"


def export(*span_attributes: dict[str, int | str]) -> ExportTraceServiceRequest:
    resource = {"service.name": "vllm"}
    return export_request(
        *span_attributes, resource=resource, trace_id=bytes.fromhex(TRACE), name="llm"
    )


GENAI = {"gen_ai.request.model": "m", "gen_ai.usage.prompt_tokens": 5,
         "gen_ai.usage.completion_tokens": 7}  # fmt: skip


def test_protobuf_json_and_gzip_decode_to_the_same_spans() -> None:
    request = export(GENAI, {"http.route": "/health"})
    protobuf = request.SerializeToString()
    document = json_format.MessageToDict(request)
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for i, span in enumerate(spans):  # OTLP JSON writes ids in hex, not base64
        span["traceId"], span["spanId"] = TRACE, (i + 1).to_bytes(8, "big").hex()
    as_json = json.dumps(document).encode()
    decoded = [
        decode_request(protobuf, PROTOBUF, None, max_bytes=LIMIT),
        decode_request(gzip.compress(protobuf), PROTOBUF, "gzip", max_bytes=LIMIT),
        decode_request(as_json, JSON, None, max_bytes=LIMIT),
        decode_request(gzip.compress(as_json), JSON, "gzip", max_bytes=LIMIT),
    ]
    assert all(d == request for d in decoded)
    spans = list(request_spans(decoded[2]))
    assert spans[0].trace_id.hex() == TRACE and spans[0].attributes == GENAI
    assert spans[0].resource == {"service.name": "vllm"}


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "status", "message"),
    [
        (b"\xff\xff\xff\xff", PROTOBUF, None, 400, "not a protobuf ExportTraceServiceRequest"),
        (b"{not json", JSON, None, 400, "body is not JSON"),
        (b"[1, 2]", JSON, None, 400, "not an OTLP JSON ExportTraceServiceRequest object"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', JSON, None,
         400, "traceId is not hex"),
        (b'{"resourceSpans": 7}', JSON, None, 400, "not an OTLP JSON ExportTraceServiceRequest"),
        (b"plain", PROTOBUF, "gzip", 400, "not valid gzip"),
        (gzip.compress(b"x")[:-6], PROTOBUF, "gzip", 400, "truncated"),
        (gzip.compress(bytes(LIMIT + 1)), PROTOBUF, "gzip", 413, "decompressed body is over"),
        (b"", "text/plain", None, 415, "use application/x-protobuf or application/json"),
        (b"", PROTOBUF, "br", 415, "Content-Encoding 'br' is not supported"),
    ],
)  # fmt: skip
def test_bodies_that_are_not_export_requests_are_refused_with_a_status_and_reason(
    body: bytes, content_type: str, encoding: str | None, status: int, message: str
) -> None:
    with pytest.raises(BadRequest, match=message) as caught:
        decode_request(body, content_type, encoding, max_bytes=LIMIT)
    assert caught.value.status == status


def test_a_gzip_bomb_is_stopped_at_the_limit_without_inflating_it_all() -> None:
    bomb = gzip.compress(bytes(200 * LIMIT))  # 200 MiB of zeros in about 200 KB
    with pytest.raises(BadRequest, match="over the limit") as caught:
        decode_request(bomb, PROTOBUF, "gzip", max_bytes=LIMIT)
    assert caught.value.status == 413


def test_partial_success_counts_rejected_genai_spans_and_skips_the_rest() -> None:
    request = export(GENAI, {"gen_ai.request.model": "m", "gen_ai.usage.completion_tokens": "7"},
                     {"http.route": "/health"})  # fmt: skip
    batch = map_request(request, SpanMapping())
    assert (len(batch.events), batch.rejected, batch.skipped) == (1, 1, 1)
    assert batch.message() == (
        "1 of 3 spans rejected: wrong_type: gen_ai.usage.completion_tokens "
        "(expected an integer, got a string) (1)"
    )
    reply = ExportTraceServiceResponse.FromString(
        export_response(batch.rejected, batch.message(), PROTOBUF)
    )
    assert reply.partial_success.rejected_spans == 1
    as_json = json.loads(export_response(batch.rejected, batch.message(), JSON))
    assert as_json["partialSuccess"]["rejectedSpans"] == "1"
    assert export_response(0, "", PROTOBUF) == b""  # full success: an empty response


def test_errors_are_google_rpc_status_in_the_request_encoding() -> None:
    assert Status.FromString(error_body(3, "bad", PROTOBUF)).message == "bad"
    assert json.loads(error_body(3, "bad", JSON)) == {"code": 3, "message": "bad"}
