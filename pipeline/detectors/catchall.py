"""Catch-all: river's HalfSpaceTrees on each api key's per-minute feature vector (kind ``other``).

It sees what the targeted detectors were not written for (odd mixes of volume, reasoning,
passes, failures and confidence) and stays quiet for keys another detector already named.
An alert needs the score past an adaptive threshold for ``persistence`` minutes in a row.

>>> from datetime import UTC, datetime, timedelta
>>> from pipeline.detectors.base import EntityMinute, MinuteView
>>> det = MultivariateKeyDetector(warm_up=100, seed=42)
>>> t0 = datetime(2026, 3, 2, tzinfo=UTC)
>>> def minute(i, m):
...     start = t0 + timedelta(minutes=i)
...     return MinuteView(start, start + timedelta(minutes=1), {"api_key": {"k": m}}, m)
>>> normal = EntityMinute(requests=20, prompt_tokens=10_000, generated_tokens=20_000,
...                       token_passes=20_000, reasoning_tokens=15_000, passes=20, gpu_ms=2e4,
...                       confidence_sum=16.0, confidence_count=20)
>>> any(det.observe_minute(minute(i, normal)) for i in range(300))
False
"""

from __future__ import annotations

import math

from river import anomaly, preprocessing, stats

from pipeline.detectors.base import (
    AdaptiveThreshold,
    BoundedStore,
    EntityMinute,
    Finding,
    MinuteView,
)

FEATURES = (
    "traffic_share",
    "log_reasoning_per_request",
    "passes_per_request",
    "runaway_rate",
    "log_gpu_ms_per_token",
    "confidence_mean",
)


def key_features(m: EntityMinute, fleet: EntityMinute) -> dict[str, float]:
    """Scale-free features, so the daily cycle (which moves every key alike) is no anomaly."""
    n = m.requests
    per_token = m.gpu_ms_per_token or 0.0
    return {
        "traffic_share": n / fleet.requests if fleet.requests else 0.0,
        "log_reasoning_per_request": math.log1p(m.reasoning_tokens / n),
        "passes_per_request": m.passes / n,
        "runaway_rate": m.runaway / n,
        "log_gpu_ms_per_token": math.log1p(per_token),
        "confidence_mean": m.confidence_mean if m.confidence_mean is not None else 0.5,
    }


class MultivariateKeyDetector:
    def __init__(
        self,
        warm_up: int = 5_000,
        min_requests: int = 10,
        persistence: int = 3,
        score_floor: float = 0.97,
        seed: int = 42,
        max_entities: int = 200_000,
    ) -> None:
        self.name = "other"
        self.warm_up = warm_up
        self.min_requests = min_requests
        self.persistence = persistence
        self.model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(
            n_trees=15, height=8, window_size=250, seed=seed
        )
        self.threshold = AdaptiveThreshold(score_floor, q=0.9995)
        self.means = {f: stats.Mean() for f in FEATURES}
        self.streaks: BoundedStore[str, list[int]] = BoundedStore(max_entities)
        self.seen = 0

    def observe_minute(self, view: MinuteView) -> list[Finding]:
        findings = []
        for key, minute in view.entities("api_key").items():
            if minute.requests < self.min_requests:
                continue
            finding = self._observe(key, minute, view)
            if finding is not None:
                findings.append(finding)
        return findings

    def _observe(self, key: str, minute: EntityMinute, view: MinuteView) -> Finding | None:
        x = key_features(minute, view.fleet)
        score = self.model.score_one(x)
        self.seen += 1
        streak = self.streaks.get_or_create(key, lambda: [0])
        threshold = self.threshold.value
        anomalous = self.seen > self.warm_up and score >= threshold
        streak[0] = streak[0] + 1 if anomalous else 0
        self.threshold.update(score)
        if not anomalous:
            self.model.learn_one(x)
            for f in FEATURES:
                self.means[f].update(x[f])
            return None
        if streak[0] < self.persistence or ("api_key", key) in view.named:
            return None
        evidence = {f: (x[f], self.means[f].get()) for f in FEATURES}
        top = max(FEATURES, key=lambda f: abs(x[f] - self.means[f].get()))
        summary = (
            f"api key {key} behaves unlike any key seen so far for {streak[0]} min "
            f"(isolation score {score:.2f}); largest deviation: {top.replace('_', ' ')} "
            f"{x[top]:.2f} vs {self.means[top].get():.2f} on average"
        )
        return Finding(
            kind="other",
            entity_type="api_key",
            entity_id=key,
            window_start=view.start,
            window_end=view.end,
            score=score,
            threshold=threshold,
            summary=summary,
            evidence=evidence,
            event_count=minute.requests,
        )
