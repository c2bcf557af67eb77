"""Subtle runaway generation adds up in the sequential test; its benign twins do not."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.detectors.base import EntityMinute, MinuteView
from pipeline.detectors.request_norm import KeyMinute, RequestNormDetector
from pipeline.detectors.runaway import MIN_RATE, SLOW_FADING, RunawayDetector, _EntityState
from pipeline.events import example_event

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
    assert restored.slow_rate() == pytest.approx(max(state.baseline.level, MIN_RATE))


def _paged_given_contexts(
    seed: int, rate_at: dict[range, float], context_at: dict[range, float], minutes: int
) -> list[int]:
    """Minutes at which a key of about 200 requests a minute is paged, its requests' contexts
    (what the reasoning detector's key minutes say) giving ``context_at`` (0.4 % otherwise)."""
    rng = random.Random(seed)
    detector = RunawayDetector(entity_types=("api_key",), contexts_from="reasoning_inflation")
    paged = []
    for i in range(minutes):
        rate = next((r for span, r in rate_at.items() if i in span), 0.004)
        context = next((r for span, r in context_at.items() if i in span), 0.004)
        requests = 180 + rng.randrange(41)
        m = EntityMinute(requests=requests, runaway=_binomial(rng, requests, rate))
        key = KeyMinute(requests=requests, runaway_expected=context * requests,
                        runaway_known=requests)  # fmt: skip
        start = T0 + timedelta(minutes=i)
        view = MinuteView(start, start + timedelta(minutes=1), {"api_key": {"k": m}}, m,
                          key_minutes={"reasoning_inflation": {"k": key}})  # fmt: skip
        if detector.observe_minute(view):
            paged.append(i)
    return paged


HARDER = range(QUIET, QUIET + 300)


@pytest.mark.parametrize("seed", range(5))
def test_a_key_whose_requests_move_to_harder_contexts_at_once_is_not_paged(seed: int) -> None:
    """Its tenant moves to harder problems within minutes and its truncations go from 0.4 % to
    2 % (bursty 76: difficulty 0.46 to 0.73, a key of 200 requests a minute), as its requests'
    contexts' do: judged against 5x its usual rate."""
    assert _paged_given_contexts(seed, {HARDER: 0.02}, {HARDER: 0.02}, QUIET + 300) == []


def test_without_contexts_the_same_move_is_paged() -> None:
    """The twin above judged by its own rate alone, as before contexts: paged on most seeds."""
    paged = [_findings(s, {HARDER: 0.02}, QUIET + 300, usual=0.004, per_minute=200) for s in
             range(5)]  # fmt: skip
    assert sum(bool(p) for p in paged) >= 3, paged


@pytest.mark.parametrize("seed", range(5))
def test_a_runaway_in_the_usual_contexts_is_still_paged(seed: int) -> None:
    """3 % truncated for half an hour while the key's requests stay in their usual contexts;
    paging stops within 3 minutes of its end (the binomial test's horizon)."""
    incident = range(QUIET, QUIET + 30)
    paged = _paged_given_contexts(seed, {incident: 0.03}, {}, QUIET + 60)
    assert paged and paged[0] - QUIET <= 10, paged
    assert all(QUIET <= i < QUIET + 33 for i in paged), paged


def test_a_context_learns_its_runaway_rate_and_a_key_minute_sums_it() -> None:
    """2 % of a context's requests truncated: its rate is learned from the pooled requests,
    and a key's minute sums what its requests' contexts give."""
    rng = random.Random(7)
    detector = RequestNormDetector("reasoning_inflation", "reasoning_tokens", runaway_rates=True)
    t0 = int(T0.timestamp())
    for tick in range(60):
        for n in range(100):
            status = "truncated" if rng.random() < 0.02 else "ok"
            event = example_event(event_id=str(uuid.UUID(int=tick * 100 + n)), status=status,
                                  reasoning_tokens=rng.randrange(400, 600))  # fmt: skip
            detector.observe_event(event, t0 + tick // 4 * 60)
        detector.report_norms(t0 + tick * 15.0)
    [norm] = [norm for _, norm in detector.contexts.items()]
    rate = norm.runaway_rate()
    assert rate is not None and 0.012 < rate < 0.03
    [(_, minute)] = detector.hand_over(t0 + 14 * 60, closed=True)
    assert minute.runaway_known == 400
    assert minute.runaway_expected == pytest.approx(400 * rate, rel=0.1)
