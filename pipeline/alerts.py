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
from typing import Final

import msgspec

from pipeline.records import SEVERITIES, Alert, Severity


def alert_id_for(kind: str, entity_type: str, entity_id: str, detected_at: datetime) -> str:
    """A deterministic UUID, so a replay or a re-processed batch yields the same alert ids."""
    name = f"{kind}|{entity_type}|{entity_id}|{detected_at.isoformat()}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


MAGNITUDE_STEPS: Final = (2.0, 4.0, 8.0)
"""Times the entity's own normal at which a finding is medium, high, critical by magnitude."""
SCORE_STEPS: Final = (1.5, 2.5, 4.0)
"""Times its threshold at which a score is medium, high, critical by certainty."""
STAKE_STEPS: Final = (0.001, 0.01, 0.05)
"""Share of the fleet's compute at stake at which a finding's stake is small, large, huge."""


def _step(value: float, steps: tuple[float, float, float]) -> int:
    return sum(value >= s for s in steps)


def grade(
    score: float, threshold: float, magnitude: float = 1.0, stake: float | None = None
) -> Severity:
    """Severity: how unusual the finding is for its entity, tempered by what is at stake.

    *Unusual* is the larger of its certainty (``score`` at 1.5x, 2.5x, 4x ``threshold``) and
    its ``magnitude`` (2x, 4x, 8x the entity's own normal): low, medium, high, critical. The
    ``stake`` (share of the fleet's compute beyond normal: under 0.1 %, 0.1 %, 1 %, 5 %) then
    caps it at the mean of the two steps rounded up, so a sure finding about a trickle of
    compute is at most high, and a large stake never makes a marginal finding louder than
    it is. Without a stake the finding is graded by how unusual it is.

    >>> [grade(s, 2.0) for s in (2.0, 3.5, 5.0, 9.0)]
    ['low', 'medium', 'high', 'critical']
    >>> grade(2.0, 2.0, magnitude=12.0), grade(2.0, 2.0, magnitude=12.0, stake=0.0002)
    ('critical', 'high')
    >>> grade(2.1, 2.0, magnitude=1.2, stake=0.3)
    'low'
    """
    certainty = _step(score / threshold, SCORE_STEPS) if threshold > 0 else 3
    unusual = max(certainty, _step(magnitude, MAGNITUDE_STEPS))
    if stake is not None:
        unusual = min(unusual, -(-(unusual + _step(stake, STAKE_STEPS)) // 2))
    return SEVERITIES[unusual]  # type: ignore[return-value]


def at_least(severity: str, minimum: str) -> bool:
    """Whether ``severity`` is ``minimum`` or above.

    >>> at_least("high", "medium"), at_least("low", "medium")
    (True, False)
    """
    return SEVERITIES.index(severity) >= SEVERITIES.index(minimum)


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
