"""An entity's own normal level, learned online: exponentially weighted mean and spread.

Each value's weight fades by ``1 - fading`` per value learned after it, and the mean and
variance are those of the weighted values, with the variance corrected for how few values
carry the weight: a young baseline's is the sample variance of what it has seen, not one pulled
towards zero by its first value (the plain recursion ``v <- (1 - a) v + a (x - m)^2``, started
at the first value, puts three quarters of the weight on it after 30 values at ``a = 0.01``,
and reads the variance as a third of the truth: a young server's ordinary minute scored 1.7
times as far out as it was).

Once warm, each value is winsorised to ``level ± clip_sd · sd`` before it is learned, so a slow
ramp (a throttling GPU) cannot drag the baseline and widen its spread unnoticed, while a genuine
lasting change is still followed, a few standard deviations per step.

>>> import random
>>> rng = random.Random(42)
>>> b = EWBaseline(fading=0.05, min_sd=0.01, warm_up=20)
>>> for _ in range(200):
...     b.learn_one(rng.gauss(0.8, 0.02))
>>> abs(b.score_one(0.8)) < 1, b.score_one(0.6) < -5
(True, True)
>>> young = EWBaseline(fading=0.01, min_sd=0.001, warm_up=3)
>>> for x in (1.0, 2.0, 3.0):
...     young.learn_one(x)
>>> round(young.level, 1), round(young.sd, 2)  # about its three values' mean and deviation
(2.0, 1.0)
"""

from __future__ import annotations

import math


class EWBaseline:
    """River-style baseline: ``score_one(x)`` is the z-score of ``x``; 0 during warm-up."""

    __slots__ = (
        "clip_sd", "fading", "level", "min_sd", "n", "sq", "warm_up", "weight", "weight_sq"
    )  # fmt: skip

    def __init__(
        self, fading: float = 0.02, min_sd: float = 0.01, warm_up: int = 30, clip_sd: float = 3.0
    ) -> None:
        self.fading = fading
        self.clip_sd = clip_sd
        self.min_sd = min_sd
        self.warm_up = warm_up
        self.n = 0
        self.level = 0.0  # the weighted mean of the values learned
        self.weight = 0.0  # the sum of their weights (1 for the latest) ...
        self.weight_sq = 0.0  # ... and of their squares
        self.sq = 0.0  # their weighted sum of squared deviations from the mean

    def __setstate__(self, state: tuple[None, dict[str, object]]) -> None:
        """Restore a baseline; one saved with river's ``EWMean``/``EWVar`` (before its
        variance was corrected) is taken at its mean and variance, as if fully weighted."""
        fields = dict(state[1])
        old_mean, old_var = fields.pop("mean", None), fields.pop("var", None)
        for name, value in fields.items():
            setattr(self, name, value)
        if old_mean is not None and old_var is not None:
            self.fading = float(old_mean.fading_factor)  # type: ignore[attr-defined]
            self.level = float(old_mean.get())  # type: ignore[attr-defined]
            keep = (1.0 - self.fading) ** self.n
            self.weight = (1.0 - keep) / self.fading
            self.weight_sq = (1.0 - keep * keep) / (1.0 - (1.0 - self.fading) ** 2)
            self.sq = max(float(old_var.get()), 0.0) * self.weight  # type: ignore[attr-defined]

    @property
    def warm(self) -> bool:
        return self.n >= self.warm_up

    @property
    def variance(self) -> float:
        """The weighted variance, unbiased for the number of values its weight rests on
        (reliability weights: ``sq / (W - W2 / W)``); 0 before two values."""
        effective = self.weight - self.weight_sq / self.weight if self.weight else 0.0
        return self.sq / effective if effective > 0 else 0.0

    @property
    def sd(self) -> float:
        return max(self.min_sd, math.sqrt(self.variance))

    def fresh(self) -> EWBaseline:
        """A baseline with the same parameters that has learned nothing (warming up again)."""
        return EWBaseline(self.fading, self.min_sd, self.warm_up, self.clip_sd)

    def score_one(self, x: float) -> float:
        return (x - self.level) / self.sd if self.warm else 0.0

    def learn_one(self, x: float) -> None:
        if self.warm:
            bound = self.clip_sd * self.sd
            x = min(max(x, self.level - bound), self.level + bound)
        keep = 1.0 - self.fading
        self.weight = keep * self.weight + 1.0
        self.weight_sq = keep * keep * self.weight_sq + 1.0
        delta = x - self.level
        self.level += delta / self.weight
        self.sq = keep * self.sq + delta * (x - self.level)
        self.n += 1

    @staticmethod
    def _unit_test_params() -> dict[str, float]:
        return {"fading": 0.05, "min_sd": 0.01, "warm_up": 10}
