"""The alert contract: model, severity grading, summaries and de-duplication with a cooldown.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
>>> gate = CooldownGate(cooldown_s=600)
>>> gate.admit("volume_spike", "api_key", "k1", t0)
True
>>> gate.admit("volume_spike", "api_key", "k1", t0 + timedelta(minutes=5))
False
>>> gate.admit("volume_spike", "api_key", "k1", t0 + timedelta(minutes=11))
True
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from datetime import datetime
from typing import Final, Literal

import msgspec

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


def alert_id_for(kind: str, entity_type: str, entity_id: str, detected_at: datetime) -> str:
    """A deterministic UUID, so a replay or a re-processed batch yields the same alert ids."""
    name = f"{kind}|{entity_type}|{entity_id}|{detected_at.isoformat()}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def grade(score: float, threshold: float) -> Severity:
    """Severity from how far ``score`` is past ``threshold`` (1x low ... 4x critical).

    >>> [grade(s, 2.0) for s in (2.0, 3.5, 5.0, 9.0)]
    ['low', 'medium', 'high', 'critical']
    """
    ratio = score / threshold if threshold > 0 else float("inf")
    if ratio >= 4:
        return "critical"
    if ratio >= 2.5:
        return "high"
    if ratio >= 1.5:
        return "medium"
    return "low"


class CooldownGate:
    """Admit at most one alert per (kind, entity) per cooldown, in event time; bounded memory."""

    def __init__(self, cooldown_s: float = 600.0, max_entries: int = 100_000) -> None:
        self.cooldown_s = cooldown_s
        self.max_entries = max_entries
        self._last: OrderedDict[tuple[str, str, str], datetime] = OrderedDict()

    def admit(self, kind: str, entity_type: str, entity_id: str, at: datetime) -> bool:
        key = (kind, entity_type, entity_id)
        last = self._last.get(key)
        if last is not None and (at - last).total_seconds() < self.cooldown_s:
            return False
        self._last[key] = at
        self._last.move_to_end(key)
        while len(self._last) > self.max_entries:
            self._last.popitem(last=False)
        return True


def encode_alert(alert: Alert) -> bytes:
    """The alert as one line of JSON (RFC 3339 times)."""
    return msgspec.json.encode(alert)


def decode_alert(raw: bytes) -> Alert:
    return msgspec.json.decode(raw, type=Alert)
