"""LiteLLM with the computewatch logger registered: real `litellm.acompletion` calls (answered
by LiteLLM's own mock_response, no provider) put the expected events on the real broker."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download in tests

import litellm
from litellm.types.utils import ModelResponse, Usage

from pipeline.config import KafkaSettings
from pipeline.events import parse_event
from pipeline.integrations.litellm import ComputewatchLogger
from pipeline.producer import TelemetryEmitter
from tests.fixtures.kafka import consume_all

pytestmark = pytest.mark.kafka
MESSAGES = [{"role": "user", "content": "How many primes are below 100?"}]
KEY = {"user_api_key_hash": "88dc28d0", "user_api_key_team_id": "team-a"}


@pytest.fixture
def logger(kafka_bootstrap: str, kafka_topic: str) -> Iterator[ComputewatchLogger]:
    emitter = TelemetryEmitter(KafkaSettings(bootstrap=kafka_bootstrap, events_topic=kafka_topic))
    logger = ComputewatchLogger(emitter, route="chat")
    saved = litellm.callbacks
    litellm.callbacks = [logger]
    try:
        yield logger
    finally:
        litellm.callbacks = saved
        emitter.close()


def reasoning_answer(finish_reason: str) -> ModelResponse:
    return ModelResponse(
        model="o4-mini",
        choices=[{"index": 0, "finish_reason": finish_reason,
                  "message": {"role": "assistant", "content": "25"}}],
        usage=Usage(prompt_tokens=12, completion_tokens=900, total_tokens=912,
                    completion_tokens_details={"reasoning_tokens": 700}),
    )  # fmt: skip


async def calls(logger: ComputewatchLogger) -> None:
    """Three calls; returns once LiteLLM ran the logger for each (its callbacks are tasks)."""
    await litellm.acompletion(model="openai/o4-mini", messages=MESSAGES, metadata=KEY,
                              mock_response=reasoning_answer("stop"))  # fmt: skip
    await litellm.acompletion(model="openai/o4-mini", messages=MESSAGES, metadata=KEY,
                              mock_response=reasoning_answer("length"))  # fmt: skip
    with pytest.raises(litellm.Timeout):
        await litellm.acompletion(
            model="openai/o4-mini", messages=MESSAGES, metadata=KEY,
            mock_response=litellm.Timeout(message="upstream", model="o4-mini",
                                          llm_provider="openai"),
        )  # fmt: skip
    async with asyncio.timeout(30):
        while logger.emitter.stats.emitted < 3:
            await asyncio.sleep(0.05)


def test_each_call_success_or_failure_is_one_event_on_the_broker(
    logger: ComputewatchLogger, kafka_bootstrap: str, kafka_topic: str
) -> None:
    asyncio.run(calls(logger))
    assert logger.emitter.flush(30)
    assert logger.emitter.stats.sent == 3
    records = consume_all(kafka_bootstrap, kafka_topic)
    events = sorted((parse_event(r.value) for r in records), key=lambda e: e.status)
    assert {r.key for r in records} == {b"team-a"}
    assert [e.status for e in events] == ["ok", "timeout", "truncated"]
    ok, timeout, truncated = events
    assert (ok.prompt_tokens, ok.completion_tokens, ok.reasoning_tokens) == (12, 200, 700)
    assert (ok.api_key_id, ok.model, ok.route) == ("88dc28d0", "o4-mini", "chat")
    assert truncated.reasoning_tokens == 700
    assert timeout.reasoning_tokens == 0 and timeout.latency_ms >= 0
    assert len({e.event_id for e in events}) == 3
