"""Online detectors for adversarial and runaway compute, one module per family.

:func:`default_detectors` is the registry the engine uses; each detector is also usable alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.detectors.base import (
    EntityMinute,
    Finding,
    MinuteView,
    PeekingDetector,
    RequestDetector,
    WindowDetector,
)
from pipeline.detectors.catchall import MultivariateKeyDetector
from pipeline.detectors.cusum import CUSUM_H0
from pipeline.detectors.drift import ConfidenceCollapseDetector, EfficiencyDriftDetector
from pipeline.detectors.request_norm import RequestNormDetector
from pipeline.detectors.runaway import RunawayDetector
from pipeline.detectors.volume import VolumeDetector

__all__ = [
    "ConfidenceCollapseDetector",
    "EfficiencyDriftDetector",
    "EntityMinute",
    "Finding",
    "MinuteView",
    "MultivariateKeyDetector",
    "PeekingDetector",
    "RequestDetector",
    "RequestNormDetector",
    "RunawayDetector",
    "VolumeDetector",
    "WindowDetector",
    "adopt_new_tests",
    "default_detectors",
]


def default_detectors(max_entities: int = 200_000, seed: int = 42) -> list[WindowDetector]:
    """Every detector family, targeted ones first and the catch-all last."""
    return [
        RequestNormDetector(
            "reasoning_inflation",
            "reasoning_tokens",
            max_entities=max_entities,
            cusum_h0=CUSUM_H0,
            runaway_rates=True,
        ),
        RequestNormDetector(
            "pass_explosion", "passes", max_entities=max_entities, min_sd=0.25, cusum_h0=CUSUM_H0
        ),
        RunawayDetector(max_entities=max_entities, contexts_from="reasoning_inflation"),
        VolumeDetector(max_entities=max_entities),
        EfficiencyDriftDetector(),
        ConfidenceCollapseDetector(),
        MultivariateKeyDetector(seed=seed, max_entities=max_entities),
    ]


def adopt_new_tests(detectors: Iterable[object], max_entities: int) -> None:
    """Give request-norm detectors restored from a snapshot what :func:`default_detectors`
    gives their kind now: the sequential test, if they were saved without one (fresh: it
    learns from the restore on), the test of a key's last minutes' residuals (its tail learned
    from the restore on), and the window test's score floor (what their threshold learned is
    kept), so an upgrade reaches a restarted worker."""
    fresh = {d.name: d for d in default_detectors(max_entities)
             if isinstance(d, RequestNormDetector)}  # fmt: skip
    for detector in detectors:
        if isinstance(detector, RequestNormDetector) and detector.name in fresh:
            now = fresh[detector.name]
            detector.threshold.floor = now.threshold.floor
            if detector.cusum is None:
                detector.cusum = now.cusum
            elif now.cusum is not None:
                detector.cusum.window_once_in = now.cusum.window_once_in
