"""OpenAI-style results (Chat Completions and Responses, SDK objects and dicts) to event fields."""

from __future__ import annotations

import pytest
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from pipeline.config import KafkaSettings
from pipeline.events import parse_event
from pipeline.integrations.usage import usage_fields
from pipeline.producer import MemoryProducer, TelemetryEmitter

CHAT = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1772431200, "model": "o4-mini",
    "choices": [
        {"index": i, "finish_reason": reason,
         "message": {"role": "assistant", "content": "42"}}
        for i, reason in enumerate(["stop", "length"])
    ],
    "usage": {"prompt_tokens": 120, "completion_tokens": 900, "total_tokens": 1020,
              "completion_tokens_details": {"reasoning_tokens": 700},
              "prompt_tokens_details": {"cached_tokens": 64}},
}  # fmt: skip
RESPONSE = {
    "id": "resp_1", "object": "response", "created_at": 1772431200, "model": "o3",
    "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
    "output": [], "parallel_tool_calls": False, "tool_choice": "auto", "tools": [],
    "usage": {"input_tokens": 50, "output_tokens": 400, "total_tokens": 450,
              "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
              "output_tokens_details": {"reasoning_tokens": 350}},
}  # fmt: skip


@pytest.mark.parametrize("as_object", [False, True], ids=["dict", "sdk-object"])
def test_chat_completions_reasoning_is_taken_out_of_the_visible_output(as_object: bool) -> None:
    result = ChatCompletion.model_validate(CHAT) if as_object else CHAT
    assert usage_fields(result) == {
        "model": "o4-mini", "prompt_tokens": 120, "completion_tokens": 200,
        "reasoning_tokens": 700, "passes": 2, "status": "truncated",
    }  # fmt: skip


@pytest.mark.parametrize("as_object", [False, True], ids=["dict", "sdk-object"])
def test_responses_usage_and_an_incomplete_response_is_truncated(as_object: bool) -> None:
    result = Response.model_validate(RESPONSE) if as_object else RESPONSE
    assert usage_fields(result) == {
        "model": "o3", "prompt_tokens": 50, "completion_tokens": 50,
        "reasoning_tokens": 350, "passes": 1, "status": "truncated",
    }  # fmt: skip


def test_a_non_reasoning_model_has_zero_reasoning_tokens_and_finishes_ok() -> None:
    plain = {"model": "m", "choices": [{"finish_reason": "stop"}],
             "usage": {"prompt_tokens": 3, "completion_tokens": 4}}  # fmt: skip
    fields = usage_fields(plain)
    assert (fields["completion_tokens"], fields["reasoning_tokens"]) == (4, 0)
    assert fields["status"] == "ok"


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({"model": "m"}, "no usage"),
        ({"usage": {"prompt_tokens": "12", "completion_tokens": 1}}, "usage.prompt_tokens"),
        ({"usage": {"input_tokens": 1, "output_tokens": -5}}, "usage.output_tokens"),
    ],
)
def test_a_result_without_usable_counts_is_refused_by_name(result: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        usage_fields(result)


def test_usage_fields_fill_a_tracked_request() -> None:
    memory = MemoryProducer()
    with TelemetryEmitter(KafkaSettings(), producer_factory=lambda options: memory) as emitter:
        with emitter.track(tenant_id="acme", api_key_id="k1", model="unset", server_id="s",
                           route="deep") as record:  # fmt: skip
            record.update(usage_fields(CHAT))
        assert emitter.flush(5)
    event = parse_event(memory.messages[0][2] or b"")
    assert (event.model, event.reasoning_tokens, event.passes, event.status) == (
        "o4-mini", 700, 2, "truncated",
    )  # fmt: skip
    with pytest.raises(TypeError, match="no field 'cached'"):
        record.update({"cached": 1})
