"""A young baseline reads its spread from what it has seen: a server judged from the end of its
30-minute warm-up is paged for its ordinary noise no more than a mature one is. (The plain
exponentially weighted variance, started at the first value, reads a third of the true variance
at 30 values: 44 of 100 fleets of servers with ordinary noise were paged in their first 90
minutes, 5 now.)"""

from __future__ import annotations

import random
import statistics

from pipeline.detectors import EfficiencyDriftDetector
from pipeline.detectors.baseline import EWBaseline
from tests.unit.test_efficiency_ramp import servers_minute


def test_a_young_baselines_variance_is_its_values_variance() -> None:
    rng = random.Random(7)
    young = []
    for _ in range(300):
        baseline = EWBaseline(fading=0.01, min_sd=0.0, warm_up=30)
        for _ in range(30):
            baseline.learn_one(rng.gauss(0.0, 1.0))
        young.append(baseline.variance)
    assert 0.9 < statistics.mean(young) < 1.1


def test_a_young_baseline_follows_a_lasting_change_as_a_mature_one_does() -> None:
    baseline = EWBaseline(fading=0.05, min_sd=0.001, warm_up=10)
    rng = random.Random(3)
    for _ in range(400):
        baseline.learn_one(rng.gauss(1.0, 0.1))
    for _ in range(200):
        baseline.learn_one(rng.gauss(2.0, 0.1))
    assert abs(baseline.level - 2.0) < 0.05 and 0.07 < baseline.sd < 0.14


def first_hour_paged(seed: int) -> bool:
    """Whether a model's 6 servers page anything in their first 90 minutes. Each minute's cost
    is off by a little noise (3 %) and by a skewed part, as a real token mix makes it: most
    minutes near usual, a few a fair way dearer (``1 + g**2``, ``g`` of sd 0.3)."""
    rng = random.Random(seed)
    detector = EfficiencyDriftDetector()
    for i in range(90):
        costs = [
            40_000.0 * rng.lognormvariate(0, 0.03) * (1.0 + rng.gauss(0, 0.3) ** 2)
            for _ in range(6)
        ]
        if detector.observe_minute(servers_minute(i, costs)):
            return True
    return False


def test_servers_with_ordinary_noise_are_not_paged_in_their_first_hour() -> None:
    """5 of 100 such fleets are paged in their first 90 minutes; 44 with the biased spread."""
    paged = sum(first_hour_paged(seed) for seed in range(40))
    assert paged <= 6
