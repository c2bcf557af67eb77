"""Benign twins with heavy tails: a server's cost and a model's confidence whose minutes go far
out more often than a Gaussian's are judged by their own tail (:mod:`pipeline.detectors.tails`),
while the fault each resembles is still found. Each benign twin pages several times a day on
the code before the tails (a Gaussian spread)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

import pytest

from pipeline.detectors import (
    ConfidenceCollapseDetector,
    EfficiencyDriftDetector,
    EntityMinute,
    MinuteView,
)
from tests.unit.test_efficiency_ramp import T0, servers_minute

LEARNED = 6 * 60  # minutes after which the tail is learned


class HeavyTail:
    """1.5 % of minutes start a run of 1-3 minutes off by ``low``-``high``."""

    def __init__(self, rng: random.Random, low: float, high: float) -> None:
        self.rng, self.low, self.high = rng, low, high
        self.left, self.size = 0, 0.0

    def next(self) -> float:
        if self.left == 0 and self.rng.random() < 0.015:
            self.left, self.size = self.rng.randint(1, 3), self.rng.uniform(self.low, self.high)
        size = self.size if self.left else 0.0
        self.left = max(0, self.left - 1)
        return size


def episodes(alarms: list[int]) -> list[int]:
    """The first minute of each run of alarms (10 minutes apart or more)."""
    return [m for n, m in enumerate(alarms) if n == 0 or m - alarms[n - 1] > 10]


def server_alarms(seed: int, minutes: int, throttle_at: int | None = None) -> list[int]:
    """Minutes at which s0 alarmed. s0's minutes are heavy-tailed, as a real token mix makes
    them (runs 1.2-1.35x dearer); from ``throttle_at`` its GPU throttles to 3x over 15
    minutes (the blatant variant of the default suite)."""
    rng = random.Random(seed)
    heavy = HeavyTail(rng, 0.2, 0.35)
    detector = EfficiencyDriftDetector()
    alarms = []
    for i in range(minutes):
        factor = 1.0 + heavy.next()
        if throttle_at is not None:
            factor *= 1.0 + 2.0 * min(1.0, max(0, i - throttle_at) / 15)
        costs = [40_000.0 * rng.lognormvariate(0, 0.04) * (factor if j == 0 else 1.0)
                 for j in range(5)]  # fmt: skip
        if any(f.entity_id == "s0" for f in detector.observe_minute(servers_minute(i, costs))):
            alarms.append(i)
    return alarms


def model_alarms(seed: int, minutes: int, collapse_at: int | None = None) -> list[int]:
    """Minutes at which the model alarmed. Its mean confidence (0.80, sd 0.01 a minute) dips
    0.05-0.08 in heavy-tailed runs; from ``collapse_at`` it falls by 0.3 over 10 minutes."""
    rng = random.Random(seed)
    dips = HeavyTail(rng, 0.05, 0.08)
    means = []
    for i in range(minutes):
        mean = 0.8 - dips.next() + rng.gauss(0, 0.01)
        if collapse_at is not None:
            mean -= 0.3 * min(1.0, max(0, i - collapse_at) / 10)
        means.append(mean)
    return confidence_alarmed(means, requests=100)


def confidence_alarmed(means: list[float], requests: int) -> list[int]:
    """Minutes at which a model whose minutes have these mean confidences alarmed."""
    detector = ConfidenceCollapseDetector()
    alarms = []
    for i, mean in enumerate(means):
        m = EntityMinute(requests=requests, confidence_sum=requests * mean,
                         confidence_count=requests, gpu_ms=1e5, generated_tokens=10**5)  # fmt: skip
        start = T0 + timedelta(minutes=i)
        if detector.observe_minute(MinuteView(start, start + timedelta(minutes=1),
                                              {"model": {"m": m}}, m)):  # fmt: skip
            alarms.append(i)
    return alarms


@pytest.mark.parametrize(
    "alarms",
    [server_alarms, model_alarms],
    ids=["server cost, then a throttle", "model confidence, then a collapse"],
)
def test_heavy_tails_are_learned_and_the_fault_is_still_found(
    alarms: Callable[[int, int, int | None], list[int]],
) -> None:
    """Paged at most once in the 18 h after it learned its tail (judged on a Gaussian spread,
    the server 2-7 times and the model 3-5 times on these seeds); the fault on the same entity
    is still found within 6 minutes of its start."""
    for seed in range(4):
        assert len(episodes([m for m in alarms(seed, 24 * 60, None) if m >= LEARNED])) <= 1
        faulty = [m for m in alarms(seed, 400, 300) if m >= 300]
        assert faulty and faulty[0] <= 306, faulty[:3]


def confidence_alarms(seed: int, drop_at: int, drop: float, lasting: int) -> list[int]:
    """Minutes at which a model alarmed whose mean confidence (0.60, sd 0.01 a minute) falls
    by ``drop`` from ``drop_at`` for ``lasting`` minutes."""
    rng = random.Random(seed)
    means = [
        0.6 + rng.gauss(0, 0.01) - (drop if drop_at <= i < drop_at + lasting else 0.0)
        for i in range(drop_at + 8 * 60)
    ]
    return confidence_alarmed(means, requests=300)


@pytest.mark.parametrize("seed", range(4))
def test_a_model_whose_confidence_falls_for_good_is_paged_for_an_hour_not_a_day(
    seed: int,
) -> None:
    """A large tenant moves to harder problems for good and the model's confidence falls from
    0.60 to 0.48 (default 76): paged within its first minutes, then, an hour on, the fall is its
    new level (the code before paged it every minute for the 8 hours)."""
    alarms = confidence_alarms(seed, 300, 0.12, 8 * 60)
    assert alarms and alarms[0] <= 302, alarms[:3]
    assert max(alarms) <= 300 + 62, alarms[-3:]


@pytest.mark.parametrize("seed", range(4))
def test_a_collapse_of_forty_minutes_is_paged_through_it(seed: int) -> None:
    alarms = confidence_alarms(seed, 300, 0.12, 40)
    assert alarms[0] <= 302 and max(alarms) >= 338, (alarms[:3], alarms[-3:])
    assert all(300 <= m < 342 for m in alarms), alarms
