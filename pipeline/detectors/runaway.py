"""Runaway generation: truncation and timeout rate per api key and per model against baseline.

Requests that never converge hit their budget (``truncated``) or the deadline (``timeout``).
Over a short horizon, the count of such requests is compared with the entity's own usual rate
(learned during a warm-up, then only from minutes that did not alert) by a binomial tail bound.

>>> from datetime import UTC, datetime, timedelta
>>> from pipeline.detectors.base import EntityMinute, MinuteView
>>> det = RunawayDetector(entity_types=("api_key",))
>>> t0 = datetime(2026, 3, 2, tzinfo=UTC)
>>> def minute(i, runaway):
...     m = EntityMinute(requests=100, runaway=runaway)
...     start = t0 + timedelta(minutes=i)
...     return MinuteView(start, start + timedelta(minutes=1), {"api_key": {"k": m}}, m)
>>> quiet = [det.observe_minute(minute(i, 2)) for i in range(60)]
>>> any(quiet)
False
>>> det.observe_minute(minute(60, 40))[0].kind
'runaway_generation'
"""

from __future__ import annotations

from pipeline.detectors.base import (
    AdaptiveThreshold,
    BoundedStore,
    EntityMinute,
    Finding,
    Horizon,
    MinuteView,
    binomial_surprise,
)
from pipeline.detectors.baseline import EWBaseline

MIN_RATE = 0.005


class _EntityState:
    __slots__ = ("baseline", "horizon")

    def __init__(self, minutes: int) -> None:
        self.horizon = Horizon[EntityMinute](minutes)
        self.baseline = EWBaseline(fading=0.02, min_sd=0.001, warm_up=15)


class RunawayDetector:
    def __init__(
        self,
        entity_types: tuple[str, ...] = ("api_key", "model"),
        horizon_minutes: int = 3,
        score_floor: float = 8.0,
        min_ratio: float = 3.0,
        min_count: int = 5,
        max_entities: int = 200_000,
    ) -> None:
        self.name = "runaway_generation"
        self.entity_types = entity_types
        self.horizon_minutes = horizon_minutes
        self.min_ratio = min_ratio
        self.min_count = min_count
        self.threshold = AdaptiveThreshold(score_floor)
        self.states: BoundedStore[str, _EntityState] = BoundedStore(max_entities)

    def observe_minute(self, view: MinuteView) -> list[Finding]:
        findings: list[Finding] = []
        for entity_type in self.entity_types:
            # A model is judged without the keys already named: one runaway key is not a
            # broken model.
            keys = {f.entity_id for f in findings if f.entity_type == "api_key"}
            for entity_id, minute in view.entities(entity_type).items():
                if entity_type == "model" and keys:
                    minute = view.without_keys(entity_id, keys)
                finding = self._observe(entity_type, entity_id, minute, view)
                if finding is not None:
                    findings.append(finding)
        return findings

    def _observe(
        self, entity_type: str, entity_id: str, minute: EntityMinute, view: MinuteView
    ) -> Finding | None:
        state = self.states.get_or_create(
            f"{entity_type}:{entity_id}", lambda: _EntityState(self.horizon_minutes)
        )
        total = EntityMinute.total(state.horizon.push(view.start, minute))
        if not state.baseline.warm:
            if minute.requests:
                state.baseline.learn_one(minute.runaway / minute.requests)
            return None
        base = max(state.baseline.level, MIN_RATE)
        score = binomial_surprise(total.runaway, total.requests, base)
        self.threshold.update(score)
        threshold = self.threshold.value
        rate = total.runaway / total.requests if total.requests else 0.0
        if score < threshold or rate < self.min_ratio * base or total.runaway < self.min_count:
            if minute.requests:
                state.baseline.learn_one(minute.runaway / minute.requests)
            return None
        summary = (
            f"{entity_type.replace('_', ' ')} {entity_id}: {rate:.0%} of {total.requests} requests "
            f"were truncated or timed out over {len(state.horizon.recent)} min, "
            f"{rate / base:.1f}x the usual {base:.1%}"
        )
        return Finding(
            kind="runaway_generation",
            entity_type=entity_type,
            entity_id=entity_id,
            window_start=state.horizon.start,
            window_end=view.end,
            score=score,
            threshold=threshold,
            summary=summary,
            evidence={"truncated_or_timeout_rate": (rate, base)},
            event_count=total.requests,
        )
