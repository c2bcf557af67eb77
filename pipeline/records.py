"""The records that flow between the engine, the stream, storage and the outputs.

One module of plain data, so that storage and the stream import what they hand around without
importing the engine: a wire :class:`Message`, a rejected one (:class:`DeadLetter`), a closed
1-minute window (:class:`MetricRow`, its statistics listed in :mod:`pipeline.minute_fields`),
an :class:`Alert` (the alert contract) and what one engine step produces (:class:`StepOutput`).

>>> out = StepOutput()
>>> out.extend(StepOutput(duplicates=2))
>>> out.duplicates, Message(b"{}").partition
(2, -1)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Final, Literal

import msgspec

from pipeline.events import AllocationEvent

if TYPE_CHECKING:
    from pipeline.budgets import SpendTick
    from pipeline.detectors.norms import NormTick
    from pipeline.fleet import MinutePart

AlertKind = Literal[
    "reasoning_inflation",
    "runaway_generation",
    "pass_explosion",
    "volume_spike",
    "efficiency_degradation",
    "confidence_collapse",
    "budget_overrun",
    "other",
]
EntityType = Literal["tenant", "api_key", "server", "model", "route"]
Severity = Literal["low", "medium", "high", "critical"]
ALERT_KINDS: Final[tuple[str, ...]] = AlertKind.__args__  # type: ignore[attr-defined]
SEVERITIES: Final[tuple[str, ...]] = Severity.__args__  # type: ignore[attr-defined]


class Message(msgspec.Struct, frozen=True, gc=False):
    """One wire message and where it came from (topic/partition/offset, or file/line)."""

    value: bytes
    topic: str = ""
    partition: int = -1
    offset: int = -1


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A rejected message: the original bytes, the reason and its source."""

    reason: str
    rule: str
    payload: bytes
    topic: str
    partition: int
    offset: int


class MetricRow(msgspec.Struct, frozen=True, kw_only=True):
    """One closed 1-minute window for one (tenant, api key, model, route, server): a row of
    ``metrics_1m``. The statistics after the ids are the stored ones of
    :data:`pipeline.minute_fields.MINUTE_FIELDS`, in its order (a test holds them equal)."""

    window_start: datetime
    tenant_id: str
    api_key_id: str
    model: str
    route: str
    server_id: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    passes: int
    gpu_ms: float
    latency_ms_sum: float
    budget_tokens: int
    budgeted_generated_tokens: int
    confidence_sum: float
    confidence_count: int
    truncated: int
    timeouts: int
    errors: int
    cancelled: int
    latency_hist: dict[int, int]
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    cost_usd: float


class Evidence(msgspec.Struct, frozen=True):
    value: float
    baseline: float


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """One alert, as on ``compute.alerts``, in ClickHouse ``alerts`` and in ``--alerts-out``."""

    alert_id: str
    kind: AlertKind
    entity_type: EntityType
    entity_id: str
    window_start: datetime
    window_end: datetime
    detected_at: datetime
    score: float
    severity: Severity
    summary: str
    evidence: dict[str, Evidence]
    event_count: int


@dataclass(slots=True)
class StepOutput:
    """What one engine step made of its messages."""

    events: list[AllocationEvent] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    metrics: list[MetricRow] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    parts: list[MinutePart] = field(default_factory=list)  # for the fleet stage (stage 1 only)
    norms: list[NormTick] = field(default_factory=list)  # for the fleet stage (stage 1 only)
    spend: list[SpendTick] = field(default_factory=list)  # for the fleet stage (stage 1 only)
    duplicates: int = 0
    too_late: int = 0

    def extend(self, other: StepOutput) -> None:
        """Add another step's output to this one (several partitions' steps as one)."""
        self.events.extend(other.events)
        self.costs.extend(other.costs)
        self.metrics.extend(other.metrics)
        self.alerts.extend(other.alerts)
        self.dead_letters.extend(other.dead_letters)
        self.parts.extend(other.parts)
        self.norms.extend(other.norms)
        self.spend.extend(other.spend)
        self.duplicates += other.duplicates
        self.too_late += other.too_late
