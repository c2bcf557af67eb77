"""Every detector on hand-built streams: fires on its signature, stays quiet on its benign twin,
and honours the contract (finite scores, deterministic for a seed, pickle round-trip)."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from pipeline.alerts import Alert
from pipeline.config import Settings
from pipeline.detectors import (
    ConfidenceCollapseDetector,
    EfficiencyDriftDetector,
    MultivariateKeyDetector,
    RequestNormDetector,
    RunawayDetector,
    VolumeDetector,
    WindowDetector,
)
from pipeline.engine import Engine
from tests.unit import streams
from tests.unit.streams import Change, Request, on_key


def run(
    detector: WindowDetector, change: Change | None, seed: int = 1, per_key_per_minute: int = 10
) -> list[Alert]:
    engine = Engine(Settings(), detectors=[detector])
    events = streams.stream(seed=seed, change=change, per_key_per_minute=per_key_per_minute)
    out = engine.process_events(events)
    return out.alerts + engine.finish().alerts


def everywhere(fn: Callable[[Request], Request | list[Request]]) -> Change:
    return lambda minute, r: fn(r)


def rng_change(seed: int, fn: Callable[[random.Random, Request], Request]) -> Change:
    rng = random.Random(seed)
    return lambda minute, r: fn(rng, r)


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], WindowDetector]
    signature: Callable[[], Change]
    benign: Callable[[], Change]
    entity: tuple[str, str]
    per_key_per_minute: int = 10

    def run(self, change: Callable[[], Change] | None, seed: int = 1) -> list[Alert]:
        return run(self.make(), change() if change else None, seed, self.per_key_per_minute)

    def __str__(self) -> str:
        return self.name


def _harder(rng: random.Random, r: Request) -> Request:
    # The benign twin of inflation: k0 now asks hard questions; route and reasoning follow.
    return streams.base_request(rng, r.key, difficulty=0.75 + 0.25 * rng.random())


CASES = [
    Case(
        "reasoning_inflation",
        lambda: RequestNormDetector("reasoning_inflation", "reasoning_tokens"),
        lambda: on_key("k0", streams.inflate_reasoning(random.Random(7), share=0.4, factor=5.0)),
        lambda: rng_change(7, lambda rng, r: _harder(rng, r) if r.key == "k0" else r),
        ("api_key", "k0"),
    ),
    Case(
        "pass_explosion",
        lambda: RequestNormDetector("pass_explosion", "passes", min_sd=0.25),
        lambda: on_key("k0", lambda r: replace(r, passes=r.passes * 8)),
        lambda: rng_change(7, lambda rng, r: _harder(rng, r) if r.key == "k0" else r),
        ("api_key", "k0"),
    ),
    Case(
        "runaway_generation",
        RunawayDetector,
        lambda: rng_change(
            3,
            lambda rng, r: (
                replace(r, status="truncated") if r.key == "k0" and rng.random() < 0.5 else r
            ),
        ),
        # benign: a fleet-wide, modest rise in truncation (a new, stricter budget for everyone)
        lambda: rng_change(
            3, lambda rng, r: replace(r, status="truncated") if rng.random() < 0.02 else r
        ),
        ("api_key", "k0"),
    ),
    Case(
        "volume_spike",
        VolumeDetector,
        lambda: on_key("k0", lambda r: [r] * 6),
        lambda: everywhere(lambda r: [r] * 2),  # the daily peak lifts everyone alike
        ("api_key", "k0"),
    ),
    Case(
        "efficiency_degradation",
        EfficiencyDriftDetector,
        lambda: everywhere(lambda r: replace(r, gpu_factor=2.0) if r.server == "s0" else r),
        lambda: everywhere(
            lambda r: replace(r, gpu_factor=2.0) if r.server in ("s0", "s1", "s2", "s3") else r
        ),  # rollout of m0
        ("server", "s0"),
        per_key_per_minute=25,
    ),
    Case(
        "confidence_collapse",
        ConfidenceCollapseDetector,
        lambda: everywhere(
            lambda r: (
                replace(r, confidence=r.confidence - 0.3)
                if r.server in ("s0", "s1", "s2", "s3")
                else r
            )
        ),
        # benign: one key's harder problems cost more but keep the model's confidence
        lambda: rng_change(7, lambda rng, r: _harder(rng, r) if r.key == "k0" else r),
        ("model", "m0"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_fires_on_its_signature(case: Case) -> None:
    alerts = case.run(case.signature)
    hits = [a for a in alerts if (a.entity_type, a.entity_id) == case.entity]
    assert hits, f"{case.name} did not fire; alerts: {[a.summary for a in alerts]}"
    first = hits[0]
    assert first.kind == case.name
    assert first.detected_at >= streams.T0 + streams.timedelta(minutes=120)
    assert first.detected_at <= streams.T0 + streams.timedelta(minutes=124), "slow detection"
    assert all(
        math.isfinite(e.value) and math.isfinite(e.baseline) for e in first.evidence.values()
    )
    assert case.entity[1] in first.summary
    others = [a for a in alerts if (a.entity_type, a.entity_id) != case.entity]
    assert not others, [a.summary for a in others]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_quiet_on_its_benign_twin(case: Case) -> None:
    alerts = case.run(case.benign)
    assert alerts == [], [a.summary for a in alerts]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_quiet_on_normal_traffic(case: Case) -> None:
    assert case.run(None, seed=11) == []


@pytest.mark.parametrize("case", CASES, ids=str)
def test_deterministic_for_a_seed(case: Case) -> None:
    assert case.run(case.signature) == case.run(case.signature)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_pickle_round_trip_resumes_identically(case: Case) -> None:
    events = list(
        streams.stream(seed=2, change=case.signature(), per_key_per_minute=case.per_key_per_minute)
    )
    half = len(events) // 2
    engine = Engine(Settings(), detectors=[case.make()])
    engine.process_events(events[:half])
    restored = Engine.restore(engine.snapshot())
    copy = pickle.loads(pickle.dumps(restored))
    a = engine.process_events(events[half:]).alerts + engine.finish().alerts
    b = copy.process_events(events[half:]).alerts + copy.finish().alerts
    assert a == b and a


def test_catch_all_is_quiet_on_normal_and_benign_traffic() -> None:
    for change in (None, CASES[0].benign(), CASES[3].benign()):
        assert run(MultivariateKeyDetector(warm_up=500), change) == []
