"""The per-key sequential test's bar: from the fleet's budget of false alarms a day, scaled by
each key's own dispersion (requests of one key come in alike runs, so its minutes wander more
than their count says, and that is no shift)."""

from __future__ import annotations

import math
import pickle
import random
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.detectors.cusum import KeyCusum
from pipeline.detectors.request_norm import KeyMinute

T0 = datetime(2026, 3, 2, tzinfo=UTC)
QUIET = (0.0, 0)  # no other keys in the minute


def minute(rng: random.Random, shift: float, shared_sd: float, n: int = 20) -> KeyMinute:
    """A key's minute of ``n`` residuals sharing one draw of spread ``shared_sd`` (its session)."""
    m, common = KeyMinute(), rng.gauss(0.0, shared_sd)
    own_sd = (1.0 - shared_sd**2) ** 0.5  # each request's residual still has variance 1
    for _ in range(n):
        r = rng.gauss(shift + common, own_sd)
        m.requests += 1
        m.r_n += 1
        m.r_sum += r
        m.r_sq += r * r
    return m


def alarms(test: KeyCusum, rng: random.Random, shift: float, shared_sd: float, first: int,
           minutes: int) -> list[int]:  # fmt: skip
    found = []
    for i in range(first, first + minutes):
        if test.observe("k", minute(rng, shift, shared_sd), T0 + timedelta(minutes=i), QUIET):
            found.append(i)
    return found


def test_a_clumpy_benign_key_is_not_paged_and_its_bar_says_why() -> None:
    false_alarms = 0
    for seed in range(6):
        test, rng = KeyCusum(h0=28.0), random.Random(seed)
        false_alarms += len(alarms(test, rng, 0.0, 0.45, 0, 600))
        state = test.states.get("k")
        assert state is not None and 3.0 < test.bar(state) / 28.0 < 7.0
    assert false_alarms == 0


def test_a_key_of_independent_requests_keeps_the_plain_bar_and_finds_a_shift_as_before() -> None:
    test, rng = KeyCusum(h0=28.0), random.Random(7)
    assert alarms(test, rng, 0.0, 0.0, 0, 300) == []
    state = test.states.get("k")
    assert state is not None and test.bar(state) < 28.0 * 1.5
    found = alarms(test, rng, 0.5, 0.0, 300, 15)
    assert found and found[0] - 300 <= 10


def test_a_clear_shift_of_a_clumpy_key_is_still_found_on_the_bar_it_had_before() -> None:
    test, rng = KeyCusum(h0=28.0), random.Random(3)
    alarms(test, rng, 0.0, 0.45, 0, 300)
    state = test.states.get("k")
    assert state is not None
    before = test.bar(state)
    for i in range(300, 310):
        found = test.observe("k", minute(rng, 1.5, 0.45), T0 + timedelta(minutes=i), QUIET)
        if found is not None:
            break
    assert found is not None, "a 1.5-spread shift of a clumpy key went unfound for 10 minutes"
    assert test.bar(found) < before * 1.1, "the shift taught the bar it was to cross"


def test_a_snapshot_from_before_the_budget_restores_on_h0_until_it_learns_the_rate() -> None:
    test = KeyCusum(h0=28.0)
    for _ in range(10):
        test.minute((0.0, 1500))
    old = pickle.loads(pickle.dumps(test))
    for name in ("false_alarms_per_day", "fleet_rate", "budget_h"):
        delattr(old, name)  # a test pickled before they existed
    restored = pickle.loads(pickle.dumps(old))
    assert restored.threshold == 28.0
    restored.minute((0.0, 1500))
    assert restored.threshold == pytest.approx(test.threshold)


def test_a_snapshot_from_before_the_dispersion_restores_with_the_plain_bar() -> None:
    test, rng = KeyCusum(h0=28.0), random.Random(5)
    alarms(test, rng, 0.0, 0.0, 0, 60)
    state = test.states.get("k")
    assert state is not None
    old = pickle.loads(pickle.dumps(state))
    del old.spread_sum, old.spread_n  # a state pickled before the fields existed
    restored = pickle.loads(pickle.dumps(old))
    assert restored.dispersion == 1.0 and restored.minutes == state.minutes


def test_the_bar_keeps_the_fleet_within_its_budget_of_false_alarms_a_day() -> None:
    def bar_at(requests_a_minute: int, budget: float = 0.25) -> float:
        test = KeyCusum(h0=28.0, false_alarms_per_day=budget)
        for _ in range(300):
            test.minute((0.0, requests_a_minute))
        return test.threshold

    assert bar_at(60) == 28.0  # a quiet fleet: h0 is the floor
    at_25_per_s, at_250_per_s = bar_at(1500), bar_at(15_000)
    assert 32.0 < at_25_per_s < 35.0
    # ten times the requests: the bar rises by about ln(10) / 2k, not tenfold
    assert 5.0 < at_250_per_s - at_25_per_s < 6.5
    # a walk crosses h about once per (exp(2kh) - 2kh - 1) / 2k^2 requests (Siegmund)
    k, h = 0.2, at_25_per_s
    per_crossing = (math.exp(2 * k * h) - 2 * k * h - 1) / (2 * k * k)
    assert 1500 * 24 * 60 / per_crossing == pytest.approx(0.25, rel=0.01)
    assert bar_at(1500, budget=1.0) < at_25_per_s
