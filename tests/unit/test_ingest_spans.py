"""GenAI spans to allocation events: both attribute generations, status, ids, the mapping file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.events import InvalidEvent
from pipeline.ingest.mapping import MappingError, SpanMapping, load_mapping, load_mapping_text
from pipeline.ingest.spans import Span, is_genai, span_event, span_event_id

T0_NS = 1_772_431_200_000_000_000  # 2026-03-02T06:00:00Z
CURRENT = {  # semantic conventions v1.41
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-5", "gen_ai.response.model": "gpt-5-2026-01-01",
    "gen_ai.response.id": "resp-1", "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.request.max_tokens": 4096, "gen_ai.usage.input_tokens": 300,
    "gen_ai.usage.output_tokens": 1200, "gen_ai.usage.reasoning.output_tokens": 1000,
    "gen_ai.usage.cache_read.input_tokens": 128, "server.address": "api.internal",
}  # fmt: skip
VLLM = {  # vLLM's --otlp-traces-endpoint and OpenLLMetry
    "gen_ai.request.model": "meta-llama/Llama-3.1-70B-Instruct", "gen_ai.request.id": "cmpl-9",
    "gen_ai.usage.prompt_tokens": 80, "gen_ai.usage.completion_tokens": 40,
    "gen_ai.usage.num_sequences": 2, "gen_ai.usage.cached_tokens": 16,
    "gen_ai.latency.time_in_queue": 0.01, "gen_ai.latency.time_to_first_token": 0.12,
    "gen_ai.latency.e2e": 0.9, "gen_ai.latency.time_in_model_inference": 0.7,
    "gen_ai.response.finish_reasons": ["length"],
}  # fmt: skip


def span(attributes: dict[str, Any], *, resource: dict[str, Any] | None = None,
         error: bool = False, span_id: bytes = b"\x02" * 8) -> Span:  # fmt: skip
    return Span(
        trace_id=b"\x01" * 16, span_id=span_id, name="chat", start_ns=T0_NS,
        end_ns=T0_NS + 1_500_000_000, error=error, attributes=attributes,
        resource=resource if resource is not None else {"service.name": "svc"},
    )  # fmt: skip


def test_current_conventions_map_without_configuration() -> None:
    event = span_event(span(CURRENT), SpanMapping())
    assert (event.model, event.prompt_tokens, event.completion_tokens, event.reasoning_tokens) == (
        "gpt-5-2026-01-01", 300, 200, 1000,
    )  # fmt: skip
    assert (event.budget_tokens, event.status, event.route, event.server_id) == (
        4096, "ok", "chat", "api.internal",
    )  # fmt: skip
    assert (event.tenant_id, event.api_key_id, event.passes) == ("default", "unknown", 1)
    assert event.latency_ms == 1500.0 and event.gpu_ms == 1500.0  # duration x 1 GPU
    assert event.ts.isoformat() == "2026-03-02T06:00:01.500000+00:00"


def test_the_older_vllm_generation_maps_without_configuration() -> None:
    event = span_event(span(VLLM), SpanMapping())
    assert (event.prompt_tokens, event.completion_tokens, event.reasoning_tokens) == (80, 40, 0)
    assert (event.passes, event.status) == (2, "truncated")
    assert event.ttft_ms == pytest.approx(120.0)
    assert event.gpu_ms == pytest.approx(700.0)  # time_in_model_inference x 1 GPU


@pytest.mark.parametrize(
    ("extra", "error", "status"),
    [
        ({}, True, "error"),
        ({"error.type": "timeout"}, False, "timeout"),
        ({"error.type": "asyncio.CancelledError"}, False, "cancelled"),
        ({"gen_ai.response.finish_reasons": ["stop", "length"]}, False, "truncated"),
        ({"gen_ai.response.finish_reasons": ["content_filter"]}, False, "ok"),
    ],
)
def test_finish_reasons_and_errors_map_to_the_contract_status(
    extra: dict[str, Any], error: bool, status: str
) -> None:
    assert span_event(span({**CURRENT, **extra}, error=error), SpanMapping()).status == status


def test_a_failed_call_without_usage_is_still_an_event() -> None:
    attributes = {"gen_ai.request.model": "gpt-5", "error.type": "500"}
    event = span_event(span(attributes), SpanMapping())
    assert (event.status, event.prompt_tokens, event.completion_tokens) == ("error", 0, 0)


def test_the_event_id_is_the_same_for_the_same_span_and_differs_otherwise() -> None:
    first = span_event(span(CURRENT), SpanMapping())
    again = span_event(span(CURRENT), SpanMapping())
    other = span_event(span(CURRENT, span_id=b"\x03" * 8), SpanMapping())
    assert first.event_id == again.event_id != other.event_id
    with pytest.raises(InvalidEvent, match="trace_id/span_id"):
        span_event_id(bytes(16), b"\x02" * 8)


@pytest.mark.parametrize(
    ("attributes", "genai"),
    [
        ({"http.method": "POST"}, False),
        ({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}, False),
        ({"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 9}, False),
        ({"gen_ai.operation.name": "chat"}, True),
    ],
)
def test_only_inference_spans_are_genai(attributes: dict[str, Any], genai: bool) -> None:
    assert is_genai(span(attributes)) is genai


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"gen_ai.usage.output_tokens": 5}, "missing_field: gen_ai.response.model"),
        ({**CURRENT, "gen_ai.usage.output_tokens": "1200"},
         "wrong_type: gen_ai.usage.output_tokens (expected an integer, got a string)"),
        ({**CURRENT, "gen_ai.usage.input_tokens": 2.5},
         "wrong_type: gen_ai.usage.input_tokens (expected an integer, got a number)"),
        ({**CURRENT, "gen_ai.response.model": ["a", "b"]},
         "wrong_type: gen_ai.response.model (expected a string, got an array)"),
        ({**CURRENT, "gen_ai.usage.input_tokens": -3}, "out_of_range: prompt_tokens"),
        ({"gen_ai.request.model": "m"}, "missing_field: gen_ai.usage.output_tokens"),
    ],
)  # fmt: skip
def test_unmappable_spans_are_refused_by_attribute_name_never_by_value(
    attributes: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        span_event(span(attributes), SpanMapping())
    assert caught.value.reason.startswith(reason)
    assert "1200" not in caught.value.reason


def test_a_mapping_file_names_tenant_key_and_gpus_per_replica(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(
        '[tenant_id]\nattributes = ["resource:k8s.namespace.name"]\ndefault = "shared"\n'
        '[api_key_id]\nattributes = ["span:app.key"]\ndefault = "none"\n'
        '[confidence]\nattributes = ["app.confidence"]\n'
        '[gpu_ms]\nseconds_attributes = []\n'
        '[gpu_ms.gpus_per_replica_by_model]\n"meta-llama/Llama-3.1-70B-Instruct" = 4\n',
        encoding="utf-8",
    )
    mapping = load_mapping(path)
    resource = {"k8s.namespace.name": "team-a", "app.key": "not-from-the-resource"}
    event = span_event(span({**VLLM, "app.confidence": 0.9}, resource=resource), mapping)
    assert (event.tenant_id, event.api_key_id, event.confidence) == ("team-a", "none", 0.9)
    assert event.gpu_ms == pytest.approx(1500.0 * 4)  # duration x 4 GPUs: seconds not used
    assert span_event(span(VLLM, resource={}), mapping).tenant_id == "shared"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tenant_id\n", "is not valid TOML"),
        ('[tenant]\nattributes = ["x"]\ndefault = "d"\n', "tenant: Extra inputs"),
        ('[route]\nattributes = ["x"]\ndefault = ""\n', "route.default: String should have"),
        ("[gpu_ms]\ngpus_per_replica = 0\n", "gpu_ms.gpus_per_replica: Input should be"),
    ],
)
def test_a_bad_mapping_is_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(MappingError, match=message) as caught:
        load_mapping_text(text, "m.toml")
    assert "\n" not in str(caught.value)


def test_an_unreadable_mapping_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"cannot read mapping file .*absent\.toml"):
        load_mapping(tmp_path / "absent.toml")


def test_the_readme_mapping_example_loads() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    mapping = load_mapping_text(example, "README")
    assert mapping.tenant_id.attributes == ("resource:k8s.namespace.name",)
    assert mapping.gpu_ms.gpus_for("meta-llama/Llama-3.1-70B-Instruct") == 4.0
