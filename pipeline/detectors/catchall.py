"""Catch-all: river's HalfSpaceTrees on each api key's per-minute feature vector (kind ``other``).

It sees what the targeted detectors were not written for (odd mixes of volume, reasoning,
passes, failures and confidence) and stays quiet for keys another detector already named.
An alert needs the score past an adaptive threshold for ``persistence`` minutes in a row, each
of them also unusual for the key itself once it has a history (:class:`OwnProfile`): a key
that always sends deep, many-pass requests is unlike most keys, which is no news about it.

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

A key's own history (the mean and spread of each feature over its past minutes):

>>> own = OwnProfile()
>>> for i in range(60):
...     own.learn([0.1, 7.0, 2.5 + 0.1 * (i % 3), 0.0, 0.0, 0.8])
>>> own.outside([0.1, 7.0, 2.7, 0.0, 0.0, 0.8]), own.outside([0.1, 7.0, 4.0, 0.0, 0.0, 0.8])
(False, True)
"""

from __future__ import annotations

import math
from typing import Any

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


# A key's own history: minutes learned before it may clear a key (until then the fleet alone
# judges), how fast it follows (per minute: about an hour), and how far out of it, in its own
# standard deviations, a feature must be for the minute to be unusual for the key.
OWN_WARM = 30
OWN_FADING = 0.02
OWN_Z = 4.0
OWN_MIN_SD = 1e-3  # a feature that never moved (passes always 1) still has a spread


class OwnProfile:
    """One key's features over its past minutes: exponentially weighted mean and variance."""

    __slots__ = ("mean", "minutes", "var")

    def __init__(self) -> None:
        self.mean = [0.0] * len(FEATURES)
        self.var = [0.0] * len(FEATURES)
        self.minutes = 0

    def learn(self, x: list[float]) -> None:
        """Learn a minute; once the key has a history, each feature held to within ``OWN_Z``
        spreads of its mean: an odd minute moves the profile little, while a key that changed
        for good (harder problems: more passes, lower confidence) widens and moves it within
        minutes, instead of staying outside it, and paged, for hours."""
        if self.minutes == 0:
            self.mean = list(x)
        else:
            for i, value in enumerate(x):
                delta = value - self.mean[i]
                if not self.young:
                    bound = OWN_Z * max(OWN_MIN_SD, math.sqrt(self.var[i]))
                    delta = min(max(delta, -bound), bound)
                self.mean[i] += OWN_FADING * delta
                self.var[i] = (1 - OWN_FADING) * (self.var[i] + OWN_FADING * delta * delta)
        self.minutes += 1

    def z(self, x: list[float]) -> list[float]:
        """How many of the key's own standard deviations each feature is from its mean."""
        return [
            abs(value - mean) / max(OWN_MIN_SD, math.sqrt(var))
            for value, mean, var in zip(x, self.mean, self.var, strict=True)
        ]

    @property
    def young(self) -> bool:
        return self.minutes < OWN_WARM

    def outside(self, x: list[float]) -> bool:
        """Whether the minute is out of the key's own range (never, while it is young)."""
        return not self.young and max(self.z(x)) >= OWN_Z


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
        self.profiles: BoundedStore[str, OwnProfile] = BoundedStore(max_entities)
        self.seen = 0

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        if "profiles" not in state:  # a snapshot from before keys had their own history
            self.profiles = BoundedStore(self.streaks.max_entries)

    def entity_stores(self) -> list[BoundedStore[Any, Any]]:
        return [self.streaks, self.profiles]

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
        values = [x[f] for f in FEATURES]
        score = self.model.score_one(x)
        self.seen += 1
        streak = self.streaks.get_or_create(key, lambda: [0])
        own = self.profiles.get_or_create(key, OwnProfile)
        threshold = self.threshold.value
        unlike_the_fleet = self.seen > self.warm_up and score >= threshold
        outside = own.outside(values)
        anomalous = unlike_the_fleet and (outside or own.young)
        streak[0] = streak[0] + 1 if anomalous else 0
        self.threshold.update(score, key)
        own.learn(values)
        if not unlike_the_fleet:
            self.model.learn_one(x)
            for f in FEATURES:
                self.means[f].update(x[f])
        if not anomalous or streak[0] < self.persistence or ("api_key", key) in view.named:
            return None
        evidence = {f: (x[f], self.means[f].get()) for f in FEATURES}
        summary = (
            f"api key {key} behaves unlike any key seen so far"
            f"{'' if own.young else ' and unlike its own history'} for {streak[0]} min "
            f"(isolation score {score:.2f}); {_largest_deviation(values, own, self.means)}"
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


def _largest_deviation(values: list[float], own: OwnProfile, fleet: dict[str, stats.Mean]) -> str:
    """The feature furthest out: of the key's own history when it has one, else of all keys'."""
    if own.young:
        usual = [fleet[f].get() for f in FEATURES]
        far = [abs(value - mean) for value, mean in zip(values, usual, strict=True)]
        whose = "on average"
    else:
        usual, far, whose = own.mean, own.z(values), "usually for this key"
    i = max(range(len(FEATURES)), key=far.__getitem__)
    name = FEATURES[i].replace("_", " ")
    return f"largest deviation: {name} {values[i]:.2f} vs {usual[i]:.2f} {whose}"
