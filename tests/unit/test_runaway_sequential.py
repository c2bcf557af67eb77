"""Subtle runaway generation adds up in the sequential test; its benign twins do not."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.detectors.base import EntityMinute, MinuteView
from pipeline.detectors.runaway import MIN_RATE, SLOW_FADING, RunawayDetector, _EntityState

T0 = datetime(2026, 3, 2, tzinfo=UTC)
QUIET = 180  # minutes of the key's usual traffic before anything changes


def _binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(n))


def _findings(
    seed: int, rate_at: dict[range, float], minutes: int, usual: float = 0.01, per_minute: int = 20
) -> list[int]:
    """Minutes (from T0) at which one key of about ``per_minute`` requests a minute is paged."""
    rng = random.Random(seed)
    detector = RunawayDetector(entity_types=("api_key",))
    paged = []
    for i in range(minutes):
        rate = next((r for span, r in rate_at.items() if i in span), usual)
        requests = per_minute - 5 + rng.randrange(11)
        m = EntityMinute(requests=requests, runaway=_binomial(rng, requests, rate))
        start = T0 + timedelta(minutes=i)
        view = MinuteView(start, start + timedelta(minutes=1), {"api_key": {"k": m}}, m)
        if detector.observe_minute(view):
            paged.append(i)
    return paged


@pytest.mark.parametrize("seed", range(5))
def test_a_few_percent_truncated_for_half_an_hour_is_paged_within_it(seed: int) -> None:
    incident = range(QUIET, QUIET + 30)
    paged = _findings(seed, {incident: 0.12}, QUIET + 60)
    assert paged, "the subtle runaway was never paged"
    assert all(i in incident for i in paged), paged
    assert paged[0] - QUIET <= 20, paged


@pytest.mark.parametrize("seed", range(5))
def test_a_key_whose_rate_doubles_for_hours_is_not_paged(seed: int) -> None:
    assert _findings(seed, {range(QUIET, QUIET + 240): 0.02}, QUIET + 240) == []


@pytest.mark.parametrize("seed", range(5))
def test_a_key_moving_to_harder_problems_for_good_is_not_paged(seed: int) -> None:
    """Its truncations rise 5x over half an hour and stay (default 63: a tenant's difficulty
    from 0.34 to 0.67, a busy key's truncations from 0.3 % to 1.5 %)."""
    ramp = {range(QUIET + i, QUIET + i + 1): 0.003 + 0.012 * i / 30 for i in range(30)}
    after = {range(QUIET + 30, QUIET + 300): 0.015}
    assert _findings(seed, ramp | after, QUIET + 300, usual=0.003, per_minute=55) == []


@pytest.mark.parametrize("seed", range(5))
def test_the_usual_rate_is_not_paged(seed: int) -> None:
    assert _findings(seed, {}, 24 * 60) == []


def test_an_entity_saved_before_the_sequential_test_restores_with_its_usual_rate() -> None:
    detector = RunawayDetector(entity_types=("api_key",))
    rng = random.Random(0)
    for i in range(QUIET):
        m = EntityMinute(requests=100, runaway=_binomial(rng, 100, 0.01))
        start = T0 + timedelta(minutes=i)
        view = MinuteView(start, start + timedelta(minutes=1), {"api_key": {"k": m}}, m)
        detector.observe_minute(view)
    state = detector.states.get("api_key:k")
    assert state is not None
    saved = {"baseline": state.baseline, "horizon": state.horizon}  # the slots of before
    restored = _EntityState.__new__(_EntityState)
    restored.__setstate__((None, saved))
    assert restored.run is None and restored.slow_requests == pytest.approx(100 / SLOW_FADING)
    assert restored.slow_rate == pytest.approx(max(state.baseline.level, MIN_RATE))
