"""Every detector on hand-built streams: fires on its signature, stays quiet on its benign twin,
and honours the contract (finite scores, deterministic for a seed, pickle round-trip)."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import cast

import pytest
from river import stats

from pipeline.config import Settings
from pipeline.detectors import (
    ConfidenceCollapseDetector,
    EfficiencyDriftDetector,
    EntityMinute,
    Finding,
    MinuteView,
    MultivariateKeyDetector,
    PeekingDetector,
    RequestNormDetector,
    RunawayDetector,
    VolumeDetector,
    WindowDetector,
    default_detectors,
)
from pipeline.detectors.base import BoundedStore
from pipeline.detectors.cusum import CUSUM_H0
from pipeline.detectors.norms import Learned, learn
from pipeline.detectors.request_norm import ContextNorm, KeyMinute, KeyOffset
from pipeline.engine import Engine
from pipeline.minute_view import build_minute_view, groups_of
from pipeline.records import Alert
from tests.unit import streams
from tests.unit.streams import Change, Request, on_key


def run(
    detector: WindowDetector,
    change: Change | None,
    seed: int = 1,
    per_key_per_minute: int = 10,
    **stream: int,
) -> list[Alert]:
    engine = Engine(Settings(), detectors=[detector])
    events = streams.stream(
        seed=seed, change=change, per_key_per_minute=per_key_per_minute, **stream
    )
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
    restored = Engine.restore(engine.snapshot(), Settings())
    copy = pickle.loads(pickle.dumps(restored))
    a = engine.process_events(events[half:]).alerts + engine.finish().alerts
    b = copy.process_events(events[half:]).alerts + copy.finish().alerts
    assert a == b and a


def test_catch_all_is_quiet_on_normal_and_benign_traffic() -> None:
    for change in (None, CASES[0].benign(), CASES[3].benign()):
        assert run(MultivariateKeyDetector(warm_up=500), change) == []


PEEKING = [c for c in CASES if isinstance(c.make(), PeekingDetector)]
_REQUEST_NORM = ("reasoning_inflation", "pass_explosion")


def test_the_minute_detectors_that_can_judge_part_of_a_minute_peek() -> None:
    assert {c.name for c in PEEKING} == {
        "reasoning_inflation",
        "pass_explosion",
        "runaway_generation",
        "volume_spike",
        "confidence_collapse",
    }


@pytest.mark.parametrize("case", PEEKING, ids=str)
def test_a_peek_learns_nothing(case: Case) -> None:
    events = list(streams.stream(seed=2, change=case.signature(), minutes=150))
    cut = next(i for i, e in enumerate(events) if e.ts >= streams.T0 + timedelta(minutes=140.5))
    detector = case.make()
    engine = Engine(Settings(), detectors=[detector])
    engine.process_events(events[:cut])
    before = pickle.dumps(detector)
    minute = int((streams.T0 + timedelta(minutes=140)).timestamp())
    view = build_minute_view(minute, groups_of(engine.aggregator.open_groups(minute)), minute + 30)
    assert view.fleet.requests > 0
    cast(PeekingDetector, detector).peek_minute(view)
    assert pickle.dumps(detector) == before


class _PeekRecorder:
    """Records what each peek saw."""

    name = "recorder"

    def __init__(self) -> None:
        self.peeks: list[tuple[datetime, datetime, int]] = []

    def observe_minute(self, view: MinuteView) -> list[Finding]:
        return []

    def peek_minute(self, view: MinuteView) -> list[Finding]:
        self.peeks.append((view.start, view.end, view.fleet.requests))
        return []


def test_a_peek_sees_the_open_minute_up_to_its_tick_and_nothing_later() -> None:
    events = list(streams.stream(seed=3, minutes=20))
    recorder = _PeekRecorder()
    engine = Engine(Settings(), detectors=[recorder])
    for i in range(0, len(events), 97):  # batches do not line up with ticks
        engine.process_events(events[i : i + 97])
    ticks = [(end - start).total_seconds() for start, end, _ in recorder.peeks]
    assert len(set(recorder.peeks)) == len(recorder.peeks) == 20 * 3 and set(ticks) == {
        15.0,
        30.0,
        45.0,
    }
    for start, end, requests in recorder.peeks:
        assert requests == sum(start <= e.ts < end for e in events)


@pytest.mark.parametrize("case", PEEKING, ids=str)
def test_alerts_do_not_depend_on_batching(case: Case) -> None:
    events = list(streams.stream(seed=2, change=case.signature()))
    whole = Engine(Settings(), detectors=[case.make()])
    a = whole.process_events(events).alerts + whole.finish().alerts
    batched = Engine(Settings(), detectors=[case.make()])
    b = [
        x
        for i in range(0, len(events), 131)
        for x in batched.process_events(events[i : i + 131]).alerts
    ]
    assert a == b + batched.finish().alerts and a


@pytest.mark.parametrize("case", PEEKING, ids=str)
def test_a_peek_alert_is_detected_at_its_tick(case: Case) -> None:
    alerts = case.run(case.signature)
    assert alerts
    for alert in alerts:  # a minute's end or a tick inside it, where the evidence ends
        assert alert.detected_at.second in (0, 15, 30, 45) and alert.detected_at.microsecond == 0
        assert alert.window_end == alert.detected_at


@pytest.mark.parametrize("name", ["pass_explosion", "confidence_collapse"])
def test_a_strong_signature_alerts_before_its_first_minute_closes(name: str) -> None:
    case = next(c for c in PEEKING if c.name == name)
    first = min(a.detected_at for a in case.run(case.signature))
    assert first < streams.T0 + timedelta(minutes=121)


def _reasoning_detector() -> RequestNormDetector:
    return default_detectors()[0]  # type: ignore[return-value]


def _subtle_inflation() -> Change:
    """The suite's subtle variant: 2x reasoning on 30 % of k0's requests."""
    return on_key("k0", streams.inflate_reasoning(random.Random(7), share=0.3, factor=2.0))


def test_the_sequential_test_catches_a_steady_minority_of_inflated_requests() -> None:
    """The sequential test adds up the excess on its own (the windows kept from alarming
    here); with its windows the detector pages the key no later (here by a window of 4
    outliers in 14 requests, 1.2x)."""
    sequential_only = RequestNormDetector(
        "reasoning_inflation",
        "reasoning_tokens",
        cusum_h0=CUSUM_H0,
        min_flagged=10**9,
        window_excess=False,
    )
    alerts = run(sequential_only, _subtle_inflation(), seed=5)
    assert alerts and {(a.kind, a.entity_id) for a in alerts} == {("reasoning_inflation", "k0")}
    first = alerts[0]
    assert first.detected_at <= streams.T0 + timedelta(minutes=135)
    assert "sequential_test" in first.evidence and "k0" in first.summary
    both = run(_reasoning_detector(), _subtle_inflation(), seed=5)
    assert {(a.kind, a.entity_id) for a in both} == {("reasoning_inflation", "k0")}
    assert both[0].detected_at <= first.detected_at


def _subtle_pass_explosion() -> Change:
    """The suite's subtle variant, 2.5x passes on 30 % of k0's requests, on its one-pass
    routes (1 pass to 3)."""
    rng = random.Random(7)

    def multiply(r: Request) -> Request:
        return replace(r, passes=3) if r.passes == 1 and rng.random() < 0.3 else r

    return on_key("k0", multiply)


def test_a_steady_minority_of_multiplied_passes_is_caught_by_the_sequential_test() -> None:
    """The multiplied requests are not outliers of their contexts, so windows of a few minutes
    do not see them; their excess, added up, does."""
    alerts = run(default_detectors()[1], _subtle_pass_explosion(), seed=5)
    assert alerts and {(a.kind, a.entity_id) for a in alerts} == {("pass_explosion", "k0")}
    assert "sequential_test" in alerts[0].evidence
    horizons_only = RequestNormDetector("pass_explosion", "passes", min_sd=0.25)
    assert run(horizons_only, _subtle_pass_explosion(), seed=5) == []


def test_the_sequential_test_is_deterministic_and_resumes_from_a_snapshot() -> None:
    events = list(streams.stream(seed=5, change=_subtle_inflation()))
    half = next(i for i, e in enumerate(events) if e.ts >= streams.T0 + timedelta(minutes=121))
    engine = Engine(Settings(), detectors=[_reasoning_detector()])
    engine.process_events(events[:half])
    copy = pickle.loads(pickle.dumps(Engine.restore(engine.snapshot(), Settings())))
    a = engine.process_events(events[half:]).alerts + engine.finish().alerts
    b = copy.process_events(events[half:]).alerts + copy.finish().alerts
    assert a == b and any("sequential_test" in x.evidence for x in a)
    assert a == run(_reasoning_detector(), _subtle_inflation(), seed=5)[-len(a) :]


def test_a_context_learns_its_own_outlier_rate_the_same_however_its_requests_are_split() -> None:
    """Token counts have heavier tails than a Gaussian: here 1 % of requests think 5x longer,
    so about 1.1 % score 3 standard deviations or more, not 0.13 %."""
    rng = random.Random(3)
    whole, parts = ContextNorm(), [ContextNorm(), ContextNorm()]
    fleet = None
    for tick in range(400):
        reports = [Learned(), Learned()]
        for i in range(50):
            value = rng.lognormvariate(7.0, 0.3) * (5.0 if rng.random() < 0.01 else 1.0)
            whole.learn_one(value)
            parts[i % 2].learn_one(value)
        whole.settle()
        for part, report in zip(parts, reports, strict=True):
            report.add(part.settle())
        pooled = Learned()
        for report in reports:
            pooled.add(report)
        fleet = learn(fleet, pooled)  # what the fleet stage does
        for part in parts:
            part.take(fleet, through_s=float(tick))
    gaussian = 1.0 - NormalDist().cdf(3.0)
    assert 0.007 < whole.outlier_rate(gaussian) < 0.02
    assert parts[0].outlier_rate(gaussian) == pytest.approx(whole.outlier_rate(gaussian))
    assert ContextNorm().outlier_rate(gaussian) is None  # too few scored: not known yet


def test_outliers_are_counted_against_their_contexts_own_rate() -> None:
    """3 outliers in a key's 14 requests are 1 in 100,000 where 0.13 % of requests are
    outliers, and about 1 in 1,000 where 1 % are: an everyday sight among thousands of keys."""
    detector = _reasoning_detector()
    gaussian = detector.gaussian_rate
    window = [KeyMinute(requests=14, flagged=3, flags_expected=14 * gaussian)]
    assert detector._alarming(detector.threshold.value, window)
    window = [KeyMinute(requests=14, flagged=3, flags_expected=14 * 0.01)]
    assert not detector._alarming(detector.threshold.value, window)
    window = [KeyMinute(requests=14, flagged=6, flags_expected=14 * 0.01)]  # 6 are several
    assert detector._alarming(detector.threshold.value, window)


def test_a_young_contexts_requests_are_no_outliers() -> None:
    """On this normal stream a key's 3 outliers in 15 requests, 17 minutes in, were 1 in a
    million at a Gaussian's rate, which its young contexts stood in for, and scored 4.6 (1.3x):
    a page at the score floor of 4. Until a context's own rate is known its requests count as
    no outliers, so the stream is quiet."""
    assert [(a.entity_id, a.detected_at) for a in run(_reasoning_detector(), None, seed=5)] == []


@pytest.mark.parametrize(("z_mean", "paged"), [(1.2, True), (0.9, False)])
def test_a_window_alarms_from_a_shift_of_four_standard_errors(z_mean: float, paged: bool) -> None:
    """5 outliers in 16 requests are far past chance; the window alarms once its mean z-score
    times the root of its requests reaches the floor of 4 (4.8 does, 3.6 does not)."""
    detector = _reasoning_detector()
    start = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    odd = KeyMinute(requests=16, flagged=5, flags_expected=16 * 0.01, z_sum=16 * z_mean)
    view = MinuteView(
        start, start + timedelta(minutes=1), {}, EntityMinute(requests=16),
        key_minutes={detector.name: {"odd": odd}},
    )  # fmt: skip
    assert [f.entity_id for f in detector.observe_minute(view)] == (["odd"] if paged else [])


@pytest.mark.parametrize(("quiet_keys", "paged"), [(1, True), (9_999, False)])
def test_how_unlikely_outliers_must_be_grows_with_the_keys_judged(
    quiet_keys: int, paged: bool
) -> None:
    """4 outliers in a key's 9 requests, where 1 % of requests are outliers, come about once in
    200,000 windows by chance: a finding where two keys are judged each minute, and what chance
    shows on one key or another dozens of times a day among 10,000 of them."""
    detector = _reasoning_detector()
    start = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    odd = KeyMinute(requests=9, flagged=4, flags_expected=9 * 0.01, z_sum=9 * 3.0)
    quiet = {f"k{i}": KeyMinute(requests=9, flags_expected=0.09) for i in range(quiet_keys)}
    view = MinuteView(
        start, start + timedelta(minutes=1), {}, EntityMinute(requests=9 * (quiet_keys + 1)),
        key_minutes={detector.name: {"odd": odd, **quiet}},
    )  # fmt: skip
    findings = detector.observe_minute(view)
    assert [f.entity_id for f in findings] == (["odd"] if paged else [])


@pytest.mark.parametrize(
    "change",
    [
        # a whole route thinks longer for everyone (a new model version)
        lambda: everywhere(
            lambda r: replace(r, reasoning=int(r.reasoning * 1.6)) if r.route == "deep" else r
        ),
        # the whole fleet thinks longer
        lambda: everywhere(lambda r: replace(r, reasoning=int(r.reasoning * 1.4))),
        # one key moves to harder problems; route and reasoning follow
        lambda: rng_change(7, lambda rng, r: _harder(rng, r) if r.key == "k0" else r),
        # the deep route runs twice its passes for everyone (a new sampling policy)
        lambda: everywhere(lambda r: replace(r, passes=2 * r.passes) if r.route == "deep" else r),
    ],
    ids=["route", "fleet", "harder", "route passes"],
)
@pytest.mark.parametrize("detector", [0, 1], ids=["reasoning", "passes"])
def test_the_sequential_test_is_quiet_on_shifts_everyone_shares(
    change: Callable[[], Change], detector: int
) -> None:
    assert run(default_detectors()[detector], change(), seed=4) == []


@pytest.mark.parametrize("case", [c for c in PEEKING if c.name in _REQUEST_NORM], ids=str)
def test_a_peek_leaves_out_only_keys_that_could_not_alarm(case: Case) -> None:
    """A request-norm peek skips scoring keys with too few outliers in their horizon: scoring
    them would not have alarmed either, and the signature still alerts."""
    detector = cast(RequestNormDetector, case.make())
    skipped, scored = 0, 0
    peek_best = detector._peek_best

    def checked(
        key: str, acc: KeyMinute, start: datetime
    ) -> tuple[float, list[KeyMinute], datetime] | None:
        nonlocal skipped, scored
        best = peek_best(key, acc, start)
        horizon = detector.horizons.get(key)
        recent = horizon.peek(start, acc) if horizon else [(start, acc)]
        offset = detector.offsets.get(key)
        full = detector._best(recent, start, offset.get() if offset else 0.0)
        if best is None:
            skipped += 1
            assert full is None or not detector._alarming(full[0], full[1])
        else:
            scored += 1
            assert best == full
        return best

    detector._peek_best = checked  # type: ignore[method-assign]
    assert run(detector, case.signature()) and skipped and scored


def _river_offset(minutes: list[KeyMinute]) -> tuple[stats.EWMean, stats.EWMean]:
    """A key's usual z and confidence as river's ``EWMean`` learned them (the offset's state
    before it was plain floats)."""
    mean, confidence = stats.EWMean(fading_factor=0.02), stats.EWMean(fading_factor=0.02)
    for m in minutes:
        mean.update(m.z_sum / m.requests)
        if m.confidence_count:
            confidence.update(m.confidence_sum / m.confidence_count)
    return mean, confidence


def _key_minutes(rng: random.Random, n: int) -> list[KeyMinute]:
    return [
        KeyMinute(requests=k, z_sum=rng.gauss(0.3, 1.0) * k, confidence_sum=0.7 * c,
                  confidence_count=c)
        for k, c in ((rng.randint(1, 40), rng.choice((0, 0, 3, 12))) for _ in range(n))
    ]  # fmt: skip


def test_a_keys_offset_learns_as_rivers_ewmean_did_and_restores_from_it() -> None:
    """The offset's plain floats give river's ``EWMean`` to the last bit (alerts do not move),
    and a snapshot holding river's means restores into them and learns on the same way."""
    rng = random.Random(7)
    before, after = _key_minutes(rng, 300), _key_minutes(rng, 300)
    offset = KeyOffset()
    for m in before:
        offset.learn(m)
    mean, confidence = _river_offset(before)
    assert (offset.mean, offset.confidence) == (mean.get(), confidence.get())

    restored = KeyOffset.__new__(KeyOffset)
    restored.__setstate__((None, {"mean": mean, "confidence": confidence, "minutes": 300}))
    for m in after:
        offset.learn(m)
        restored.learn(m)
    mean, confidence = _river_offset(before + after)
    assert offset.get() == restored.get() == mean.get()
    assert offset.confidence == restored.confidence == confidence.get()
    assert pickle.loads(pickle.dumps(offset)).get() == offset.get()


def test_a_keys_horizon_is_dropped_once_it_holds_nothing_to_judge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key that has sent nothing for its horizon's span keeps no horizon (most keys of a large
    fleet send less than once in 3 minutes), and the alerts are those of a detector that keeps
    every horizon."""

    def judged() -> tuple[list[tuple[object, ...]], set[str]]:
        inflate = streams.inflate_reasoning(random.Random(7), share=0.4, factor=5.0)

        def change(minute: int, r: Request) -> Request | list[Request]:
            if r.key == "k1" and minute % 10 >= 5:
                return []  # k1 sends five minutes in every ten
            return inflate(r) if r.key == "k0" and minute >= 120 else r

        detector = RequestNormDetector("reasoning_inflation", "reasoning_tokens")
        out = run(detector, change, per_key_per_minute=10, start=0, minutes=178)
        alerts = [(a.kind, a.entity_id, a.window_start, a.detected_at, a.score, a.summary)
                  for a in out]  # fmt: skip
        return alerts, set(detector.horizons.keys())

    alerts, kept = judged()
    assert alerts and "k0" in kept and "k1" not in kept  # k1's last minute was 174 of 0-177
    monkeypatch.setattr(BoundedStore, "evict_stale", lambda store, stale: None)
    every_alert, every_key = judged()
    assert "k1" in every_key and every_alert == alerts
