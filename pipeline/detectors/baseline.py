"""An entity's own normal level, learned online: exponentially weighted mean and spread.

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
"""

from __future__ import annotations

import math

from river import stats


class EWBaseline:
    """River-style baseline: ``score_one(x)`` is the z-score of ``x``; 0 during warm-up."""

    __slots__ = ("clip_sd", "mean", "min_sd", "n", "var", "warm_up")

    def __init__(
        self, fading: float = 0.02, min_sd: float = 0.01, warm_up: int = 30, clip_sd: float = 3.0
    ) -> None:
        self.clip_sd = clip_sd
        self.mean = stats.EWMean(fading_factor=fading)
        self.var = stats.EWVar(fading_factor=fading)
        self.min_sd = min_sd
        self.warm_up = warm_up
        self.n = 0

    @property
    def warm(self) -> bool:
        return self.n >= self.warm_up

    @property
    def level(self) -> float:
        return self.mean.get()

    @property
    def sd(self) -> float:
        return max(self.min_sd, math.sqrt(max(self.var.get(), 0.0)))

    def fresh(self) -> EWBaseline:
        """A baseline with the same parameters that has learned nothing (warming up again)."""
        return EWBaseline(self.mean.fading_factor, self.min_sd, self.warm_up, self.clip_sd)

    def score_one(self, x: float) -> float:
        return (x - self.mean.get()) / self.sd if self.warm else 0.0

    def learn_one(self, x: float) -> None:
        if self.warm:
            bound = self.clip_sd * self.sd
            x = min(max(x, self.level - bound), self.level + bound)
        self.mean.update(x)
        self.var.update(x)
        self.n += 1

    @staticmethod
    def _unit_test_params() -> dict[str, float]:
        return {"fading": 0.05, "min_sd": 0.01, "warm_up": 10}
