"""The per-key sequential test's bar is scaled by each key's own dispersion: requests of one key
come in alike runs, so its minutes wander more than their count says, and that is no shift."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta

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
    assert found.bar < before * 1.1, "the shift taught the bar it was to cross"


def test_a_snapshot_from_before_the_dispersion_restores_with_the_plain_bar() -> None:
    test, rng = KeyCusum(h0=28.0), random.Random(5)
    alarms(test, rng, 0.0, 0.0, 0, 60)
    state = test.states.get("k")
    assert state is not None
    old = pickle.loads(pickle.dumps(state))
    del old.spread_sum, old.spread_n  # a state pickled before the fields existed
    restored = pickle.loads(pickle.dumps(old))
    assert restored.dispersion == 1.0 and restored.minutes == state.minutes



def test_one_wild_minute_of_a_busy_key_is_no_steady_shift_but_a_lasting_one_is() -> None:
    test, rng = KeyCusum(h0=28.0), random.Random(11)
    quiet = [minute(rng, 0.0, 0.0, n=100) for _ in range(300)]
    assert not any(test.observe("k", m, T0 + timedelta(minutes=i), QUIET) for i, m in
                   enumerate(quiet))  # fmt: skip
    wild = minute(rng, 0.6, 0.0, n=100)  # 6 of its standard deviations in one minute
    assert test.observe("k", wild, T0 + timedelta(minutes=300), QUIET) is None
    found = alarms(test, rng, 0.35, 0.0, 301, 10)
    assert found and found[0] - 301 <= 5
