"""A LiteLLM ``CustomLogger`` that sends one allocation event per call, success or failure.

For the LiteLLM proxy, name the ready-made instance in its ``config.yaml`` (settings come from
``COMPUTEWATCH_*`` as everywhere else; ``pip install 'computewatch[litellm]'``)::

    litellm_settings:
      callbacks: pipeline.integrations.litellm.proxy_logger

With the SDK, register an instance: ``litellm.callbacks = [ComputewatchLogger()]``.

Each event comes from LiteLLM's ``standard_logging_object``: tenant from the key's team (else
its organisation), api key from the key hash, model from the model group (else the model),
server from the API base's host, tokens from the usage object (reasoning taken out of the
visible completion), latency from start and end, status from the outcome and finish reason.
GPU time is estimated as latency × ``gpus_per_request`` (0 for a cache hit). The event id is
derived from LiteLLM's call id, so a callback run twice is one event. Sending goes through
:class:`~pipeline.producer.TelemetryEmitter`: it never blocks the proxy, and a call that cannot
make a valid event is logged (by reason, never by value) and skipped.

>>> from pipeline.config import KafkaSettings
>>> from pipeline.producer import MemoryProducer
>>> memory = MemoryProducer()
>>> emitter = TelemetryEmitter(KafkaSettings(), producer_factory=lambda options: memory)
>>> logger = ComputewatchLogger(emitter, route="chat")
>>> logging_object = {"id": "chatcmpl-1", "status": "success", "model": "o4-mini",
...     "model_group": "reasoner", "api_base": "https://api.openai.com/v1",
...     "prompt_tokens": 12, "completion_tokens": 900, "startTime": 1772431200.0,
...     "endTime": 1772431202.5, "completionStartTime": 1772431202.5, "cache_hit": None,
...     "metadata": {"user_api_key_hash": "88dc28d0", "user_api_key_team_id": "team-a",
...                  "usage_object": {"prompt_tokens": 12, "completion_tokens": 900,
...                      "completion_tokens_details": {"reasoning_tokens": 700}}}}
>>> event = logger.event({"standard_logging_object": logging_object}, None)
>>> (event["tenant_id"], event["api_key_id"], event["model"], event["server_id"])
('team-a', '88dc28d0', 'reasoner', 'api.openai.com')
>>> (event["completion_tokens"], event["reasoning_tokens"], event["latency_ms"], event["status"])
(200, 700, 2500.0, 'ok')
>>> emitter.close()
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from litellm.integrations.custom_logger import CustomLogger

from pipeline.config import Settings
from pipeline.events import SCHEMA_VERSION, InvalidEvent
from pipeline.integrations.usage import finish_status, token_fields
from pipeline.producer import TelemetryEmitter

log = logging.getLogger(__name__)

CALL_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "computewatch:litellm-call")


class ComputewatchLogger(CustomLogger):
    """Emits an allocation event for every LiteLLM call (sync and async, success and failure).

    Parameters
    ----------
    emitter
        Where events go; default a :class:`TelemetryEmitter` on ``Settings().kafka``.
    route
        The event's ``route`` (LiteLLM knows no compute policy).
    server_id
        The event's ``server_id`` when a call has no API base.
    default_tenant, default_api_key
        For calls without a team, organisation or key hash (the SDK without the proxy).
    gpus_per_request
        GPU time is estimated as latency × this; 0 records none.
    """

    def __init__(
        self,
        emitter: TelemetryEmitter | None = None,
        *,
        route: str = "default",
        server_id: str = "litellm",
        default_tenant: str = "default",
        default_api_key: str = "unknown",
        gpus_per_request: float = 1.0,
    ) -> None:
        super().__init__()
        self.emitter = emitter or TelemetryEmitter(Settings().kafka)
        self._route, self._server_id = route, server_id
        self._tenant, self._api_key = default_tenant, default_api_key
        self._gpus = gpus_per_request

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                          end_time: Any) -> None:  # fmt: skip
        self._emit(kwargs, response_obj)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                          end_time: Any) -> None:  # fmt: skip
        self._emit(kwargs, response_obj)

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:  # fmt: skip
        self._emit(kwargs, response_obj)

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:  # fmt: skip
        self._emit(kwargs, response_obj)

    def _emit(self, kwargs: Any, response_obj: Any) -> None:
        try:
            self.emitter.emit(self.event(kwargs, response_obj))
        except (InvalidEvent, KeyError, TypeError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, InvalidEvent) else type(exc).__name__
            log.warning("LiteLLM call not sent to computewatch: %s", reason)

    def event(self, kwargs: Any, response_obj: Any) -> dict[str, Any]:
        """The allocation event (a contract-v1 dict) of one call's ``kwargs``."""
        call = kwargs["standard_logging_object"]
        metadata = call.get("metadata") or {}
        started, ended = float(call["startTime"]), float(call["endTime"])
        latency_ms = max(ended - started, 0.0) * 1000.0
        usage = metadata.get("usage_object") or {
            "prompt_tokens": call.get("prompt_tokens") or 0,
            "completion_tokens": call.get("completion_tokens") or 0,
        }
        first_token = call.get("completionStartTime")
        return {
            "schema_version": SCHEMA_VERSION,
            "event_id": str(uuid.uuid5(CALL_NAMESPACE, str(call["id"]))),
            "ts": datetime.fromtimestamp(ended, tz=UTC),
            "tenant_id": metadata.get("user_api_key_team_id")
            or metadata.get("user_api_key_org_id") or self._tenant,
            "api_key_id": metadata.get("user_api_key_hash") or self._api_key,
            "model": call.get("model_group") or call["model"],
            "server_id": urlsplit(call.get("api_base") or "").hostname or self._server_id,
            "route": self._route,
            "difficulty": None,
            **token_fields(usage),
            "passes": 1,
            "budget_tokens": None,
            "gpu_ms": 0.0 if call.get("cache_hit") else latency_ms * self._gpus,
            "latency_ms": latency_ms,
            "ttft_ms": (float(first_token) - started) * 1000.0
            if call.get("stream") and first_token else None,
            "status": _status(call, response_obj),
            "confidence": None,
        }  # fmt: skip


def _status(call: dict[str, Any], response_obj: Any) -> str:
    if call.get("status") == "failure":
        error_class = str((call.get("error_information") or {}).get("error_class") or "")
        return "timeout" if "Timeout" in error_class else "error"
    return finish_status(response_obj)


def __getattr__(name: str) -> ComputewatchLogger:
    """``proxy_logger``: one logger on ``Settings().kafka``, made when the proxy first asks."""
    global proxy_logger
    if name != "proxy_logger":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    proxy_logger = ComputewatchLogger()
    return proxy_logger


proxy_logger: ComputewatchLogger
