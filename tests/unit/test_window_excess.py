"""A key's last minutes judged at once by their residuals' excess over its usual, on a bar read
off the fleet's own tail of that statistic (:mod:`pipeline.detectors.cusum`,
:mod:`pipeline.detectors.exceedance`)."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.detectors import EntityMinute, MinuteView, adopt_new_tests, default_detectors
from pipeline.detectors.cusum import CusumState, KeyCusum
from pipeline.detectors.request_norm import KeyMinute, RequestNormDetector

T0 = datetime(2026, 3, 2, tzinfo=UTC)
QUIET = (0.0, 0)  # no shift shared by every key
TEN_DAYS = 14_400.0  # minutes


def minute(rng: random.Random, shift: float, n: int = 20, clump: float = 0.0) -> KeyMinute:
    """``n`` unit-variance residuals around ``shift``, all moved by ``clump`` (a session of
    alike requests)."""
    m = KeyMinute()
    for _ in range(n):
        r = rng.gauss(shift + clump, 1.0)
        m.requests += 1
        m.r_n += 1
        m.r_sum += r
        m.r_sq += r * r
    return m


def heavy_clump(rng: random.Random) -> float:
    """One minute in 20 of alike requests: moved together by an exponential amount (a quarter
    of a standard deviation on average)."""
    return rng.expovariate(4.0) if rng.random() < 0.05 else 0.0


def run_fleet(test: KeyCusum, rng: random.Random, minutes: int, keys: int = 200,
              heavy: bool = False) -> list[tuple[str, int]]:  # fmt: skip
    found = []
    for i in range(minutes):
        for key in range(keys):
            acc = minute(rng, 0.0, clump=heavy_clump(rng) if heavy else 0.0)
            if test.observe(str(key), acc, T0 + timedelta(minutes=i), QUIET) is not None:
                found.append((str(key), i))
    return found


def test_a_shift_of_a_whole_key_is_paged_in_its_first_minute_by_the_window_test() -> None:
    rng = random.Random(1)
    test = KeyCusum(window_once_in=TEN_DAYS)
    assert run_fleet(test, rng, 150) == []
    assert test.window_bar is not None
    # 2 standard deviations on every request (a sixth of them past 3): 8.9 of the minute's
    found = test.observe("7", minute(rng, 2.0), T0 + timedelta(minutes=150), QUIET)
    assert found is not None and not found.sequential
    assert found.statistic >= found.bar and found.requests == 20
    without = KeyCusum()  # the sequential test alone counts the minute for 3 deviations at most
    run_fleet(without, random.Random(1), 150)
    assert without.observe("7", minute(rng, 2.0), T0 + timedelta(minutes=150), QUIET) is None


def test_the_bar_is_the_fleets_own_tail_and_heavy_clumps_are_not_paged() -> None:
    rng = random.Random(2)
    test = KeyCusum(window_once_in=TEN_DAYS)
    found = run_fleet(test, rng, 600, heavy=True)
    assert found == [], found
    gaussian = KeyCusum(window_once_in=TEN_DAYS)
    run_fleet(gaussian, random.Random(2), 300)
    assert test.window_bar is not None and gaussian.window_bar is not None
    assert test.window_bar > gaussian.window_bar + 1.0
    # a Gaussian's bar for these tests (5.0) is passed by the clumps
    gaussian_bar = 5.0
    passed = 0
    for _ in range(600 * 200):
        acc = minute(rng, 0.0, clump=heavy_clump(rng))
        passed += acc.r_sum / acc.r_n**0.5 >= gaussian_bar
    assert passed > 0


def test_no_window_test_before_the_fleets_tail_is_learned() -> None:
    rng = random.Random(3)
    test = KeyCusum(window_once_in=TEN_DAYS)
    run_fleet(test, rng, 60, keys=20)  # 1,200 minutes of keys: a tail not yet learned
    assert test.window_bar is None
    assert test.observe("3", minute(rng, 2.0), T0 + timedelta(minutes=60), QUIET) is None


def test_a_snapshot_from_before_the_window_test_restores_and_is_given_it() -> None:
    detector = default_detectors()[0]
    assert isinstance(detector, RequestNormDetector) and detector.cusum is not None
    old = detector.cusum
    for name in ("window_once_in", "tail", "window_bar", "_minute", "windows_min", "min_requests"):
        del old.__dict__[name]  # a test pickled before these existed
    restored = pickle.loads(pickle.dumps(detector))
    assert restored.cusum.window_once_in is None and restored.cusum.window_bar is None
    adopt_new_tests([restored], max_entities=1_000)
    assert restored.cusum.window_once_in == TEN_DAYS
    assert restored.cusum.windows_min == (1, 2, 3) and restored.cusum.min_requests == 8


def test_the_detector_pages_a_window_excess_and_says_what_is_unusual() -> None:
    detector = default_detectors()[0]
    assert isinstance(detector, RequestNormDetector)
    rng = random.Random(4)

    def view(i: int, shifted: str | None = None) -> MinuteView:
        start = T0 + timedelta(minutes=i)
        keys = {}
        for key in range(200):
            m = minute(rng, 2.0 if str(key) == shifted else 0.0)
            m.value_sum, m.expected_sum = 2_000.0 * m.requests, 1_000.0 * m.requests
            keys[str(key)] = m
        return MinuteView(start, start + timedelta(minutes=1), {}, EntityMinute(),
                          key_minutes={detector.name: keys})  # fmt: skip

    assert all(detector.observe_minute(view(i)) == [] for i in range(150))
    findings = detector.observe_minute(view(150, shifted="7"))
    assert [f.entity_id for f in findings] == ["7"]
    found = findings[0]
    assert "window_excess" in found.evidence and found.score >= found.threshold
    assert "standard deviations of its own minutes above its usual" in found.summary


def test_a_keys_excursion_counts_once_in_the_tail_by_its_peak() -> None:
    """Overlapping windows of one excursion are one event of the tail (runs declustering)."""
    test = KeyCusum(window_once_in=TEN_DAYS)
    state = CusumState()
    for z in (3.5, 4.2, 3.9, 3.1):  # one key's run of minutes past 3
        test._learn_tail(state, z)
    assert test.tail.over == 0.0  # not until it ends
    test._learn_tail(state, 1.0)
    assert test.tail.over == pytest.approx(1.0) and test.tail.excess == pytest.approx(1.2)
    assert test.tail.judged == pytest.approx(5.0, rel=1e-3)
