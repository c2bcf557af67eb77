"""The record a serving function fills in while :meth:`TelemetryEmitter.track` times it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class RequestRecord:
    """What a serving function fills in during one request; see :meth:`TelemetryEmitter.track`.

    ``latency_ms`` is measured around the ``with`` block unless set; ``status`` becomes
    ``error`` (``timeout``, ``cancelled``) when the block raises.
    """

    tenant_id: str
    api_key_id: str
    model: str
    server_id: str
    route: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    passes: int = 1
    gpu_ms: float = 0.0
    status: str = "ok"
    confidence: float | None = None
    difficulty: float | None = None
    budget_tokens: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    gpu_type: str | None = None
    region: str | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def update(self, fields: Mapping[str, Any]) -> None:
        """Set several fields at once, e.g. ``record.update(usage_fields(response))``
        (:func:`pipeline.integrations.usage.usage_fields`); an unknown name raises."""
        for name, value in fields.items():
            if name not in self.__dataclass_fields__:
                raise TypeError(f"RequestRecord has no field {name!r}")
            setattr(self, name, value)

    def event_fields(self, ts: datetime, measured_latency_ms: float) -> dict[str, Any]:
        """The record as a contract-v1 dict, completed at ``ts``."""
        fields = dataclasses.asdict(self)
        if fields["latency_ms"] is None:
            fields["latency_ms"] = measured_latency_ms
        return {"schema_version": "1", "ts": ts, **fields}


def status_for(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(
        exc, KeyboardInterrupt | asyncio.CancelledError | concurrent.futures.CancelledError
    ):
        return "cancelled"
    return "error"
