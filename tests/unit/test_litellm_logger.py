"""The LiteLLM logger's mapping of a standard logging object, and that it never raises."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download in tests

from pipeline.config import KafkaSettings
from pipeline.integrations.litellm import ComputewatchLogger
from pipeline.producer import MemoryProducer, TelemetryEmitter


def call(**overrides: Any) -> dict[str, Any]:
    logging_object: dict[str, Any] = {
        "id": "chatcmpl-1", "status": "success", "model": "gpt-5", "model_group": None,
        "api_base": None, "prompt_tokens": 30, "completion_tokens": 70,
        "startTime": 1772431200.0, "endTime": 1772431201.0, "completionStartTime": 1772431200.2,
        "cache_hit": None, "stream": True,
        "metadata": {"user_api_key_org_id": "org-9", "usage_object": None},
    }  # fmt: skip
    logging_object.update(overrides)
    return {"standard_logging_object": logging_object}


@pytest.fixture
def logger() -> ComputewatchLogger:
    emitter = TelemetryEmitter(KafkaSettings(), producer_factory=lambda options: MemoryProducer())
    return ComputewatchLogger(emitter, server_id="proxy-1", gpus_per_request=2.0)


def test_without_a_team_the_tenant_is_the_organisation_and_defaults_fill_the_rest(
    logger: ComputewatchLogger,
) -> None:
    event = logger.event(call(), None)
    assert (event["tenant_id"], event["api_key_id"], event["server_id"]) == (
        "org-9", "unknown", "proxy-1",
    )  # fmt: skip
    assert (event["prompt_tokens"], event["completion_tokens"], event["reasoning_tokens"]) == (
        30, 70, 0,
    )  # fmt: skip
    assert event["gpu_ms"] == 2000.0 and event["ttft_ms"] == pytest.approx(200.0)


def test_a_cache_hit_used_no_gpu_and_a_failure_is_an_error(logger: ComputewatchLogger) -> None:
    assert logger.event(call(cache_hit=True), None)["gpu_ms"] == 0.0
    failed = call(status="failure", error_information={"error_class": "APIConnectionError"})
    assert logger.event(failed, None)["status"] == "error"
    timed_out = call(status="failure", error_information={"error_class": "Timeout"})
    assert logger.event(timed_out, None)["status"] == "timeout"


def test_the_same_call_logged_twice_is_one_event_id(logger: ComputewatchLogger) -> None:
    assert logger.event(call(), None)["event_id"] == logger.event(call(), None)["event_id"]
    assert logger.event(call(), None)["event_id"] != logger.event(call(id="x"), None)["event_id"]


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [({}, "KeyError"), (call(prompt_tokens=-1), "ValueError"),
     (call(model="m" * 200), "bad_length: model")],
)
def test_a_call_that_makes_no_event_is_logged_by_reason_and_never_raises(
    logger: ComputewatchLogger, caplog: pytest.LogCaptureFixture, kwargs: dict[str, Any],
    reason: str,
) -> None:  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="pipeline.integrations.litellm"):
        logger.log_success_event(kwargs, None, None, None)
    assert reason in caplog.text
    assert logger.emitter.stats.emitted == 0
