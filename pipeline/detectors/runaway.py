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

Part of a minute can be judged too, learning nothing from it (``peek_minute``):

>>> start = t0 + timedelta(minutes=61)
>>> half = EntityMinute(requests=50, runaway=20)
>>> view = MinuteView(start, start + timedelta(seconds=30), {"api_key": {"k": half}}, half)
>>> [(f.kind, f.window_end == view.end) for f in det.peek_minute(view)]
[('runaway_generation', True)]
"""

from __future__ import annotations

import math
from datetime import datetime

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
        return self._judge(view, peek=False)

    def peek_minute(self, view: MinuteView) -> list[Finding]:
        """The open minute so far with the horizon before it; nothing is learned."""
        return self._judge(view, peek=True)

    def _judge(self, view: MinuteView, *, peek: bool) -> list[Finding]:
        findings: list[Finding] = []
        for entity_type in self.entity_types:
            # A model is judged without the keys already named: one runaway key is not a
            # broken model.
            keys = {f.entity_id for f in findings if f.entity_type == "api_key"}
            for entity_id, minute in view.entities(entity_type).items():
                if entity_type == "model" and keys:
                    minute = view.without_keys(entity_id, keys)
                if peek:
                    finding = self._peek(entity_type, entity_id, minute, view)
                else:
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
        recent = state.horizon.push(view.start, minute)
        if not state.baseline.warm:
            if minute.requests:
                state.baseline.learn_one(minute.runaway / minute.requests)
            return None
        total = EntityMinute.total(recent)
        base = max(state.baseline.level, MIN_RATE)
        score = binomial_surprise(total.runaway, total.requests, base)
        self.threshold.update(score, (entity_type, entity_id))
        if not self._alarming(score, total, base):
            if minute.requests:
                state.baseline.learn_one(minute.runaway / minute.requests)
            return None
        return self._finding(entity_type, entity_id, state.horizon.start, total, base, score, view)

    def _peek(
        self, entity_type: str, entity_id: str, minute: EntityMinute, view: MinuteView
    ) -> Finding | None:
        state = self.states.get(f"{entity_type}:{entity_id}")
        if state is None or not state.baseline.warm:
            return None
        recent = state.horizon.peek(view.start, minute)
        total = EntityMinute.total([m for _, m in recent])
        base = max(state.baseline.level, MIN_RATE)
        score = binomial_surprise(total.runaway, total.requests, base)
        if not self._alarming(score, total, base):
            return None
        return self._finding(entity_type, entity_id, recent[0][0], total, base, score, view)

    def _alarming(self, score: float, total: EntityMinute, base: float) -> bool:
        rate = total.runaway / total.requests if total.requests else 0.0
        return (
            score >= self.threshold.value
            and rate >= self.min_ratio * base
            and total.runaway >= self.min_count
        )

    def _finding(
        self,
        entity_type: str,
        entity_id: str,
        start: datetime,
        total: EntityMinute,
        base: float,
        score: float,
        view: MinuteView,
    ) -> Finding:
        rate = total.runaway / total.requests
        minutes = math.ceil((view.end - start).total_seconds() / 60)
        summary = (
            f"{entity_type.replace('_', ' ')} {entity_id}: {rate:.0%} of {total.requests} requests "
            f"were truncated or timed out over {minutes} min, "
            f"{rate / base:.1f}x the usual {base:.1%}"
        )
        return Finding(
            kind="runaway_generation",
            entity_type=entity_type,
            entity_id=entity_id,
            window_start=start,
            window_end=view.end,
            score=score,
            threshold=self.threshold.value,
            summary=summary,
            evidence={"truncated_or_timeout_rate": (rate, base)},
            event_count=total.requests,
            magnitude=rate / base,
            stake=(
                (total.runaway - base * total.requests) / (view.fleet.requests * minutes)
                if view.fleet.requests
                else None
            ),
        )
