"""The catch-all pages a key only when it is unlike the fleet *and* unlike its own history.

The fleet model here is replaced by one that finds every minute unlike any key seen (what a
minority of keys with a habit of their own, deep many-pass requests for example, can look like
to an isolation forest of the whole fleet), so what is tested is the key's own history.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from pipeline.detectors import Finding, MinuteView, MultivariateKeyDetector
from pipeline.detectors.base import EntityMinute

T0 = datetime(2026, 3, 2, tzinfo=UTC)


class UnlikeAnyKey:
    """A fleet model for which every minute is as unlike the others as it gets."""

    def score_one(self, x: dict[str, float]) -> float:
        return 1.0

    def learn_one(self, x: dict[str, float]) -> None:
        raise AssertionError("a minute unlike the fleet is never learned by the fleet model")


def key_minute(rng: random.Random, passes: float, reasoning: float) -> EntityMinute:
    """About 15 requests of ``passes`` passes and ``reasoning`` reasoning tokens each."""
    n = rng.randint(12, 18)
    p = max(1.0, rng.gauss(passes, 0.1 * passes))
    generated = n * (reasoning * rng.lognormvariate(0, 0.1) + 200)
    return EntityMinute(
        requests=n,
        prompt_tokens=300 * n,
        generated_tokens=int(generated),
        reasoning_tokens=int(generated - 200 * n),
        passes=round(p * n),
        token_passes=int(generated * p),
        gpu_ms=generated * p * rng.lognormvariate(0, 0.05),
        confidence_sum=n * rng.gauss(0.8, 0.02),
        confidence_count=n,
    )


def run(seed: int, changed: range = range(0)) -> list[tuple[int, Finding]]:
    """300 minutes of key ``deep``: 3 passes and 1,200 reasoning tokens per request, and 8
    passes and 4,000 tokens in the ``changed`` minutes; (minute, finding) for each finding."""
    rng = random.Random(seed)
    detector = MultivariateKeyDetector(warm_up=0, seed=seed)
    detector.model = UnlikeAnyKey()  # type: ignore[assignment]
    found = []
    for i in range(300):
        deep = key_minute(rng, 8.0, 4000.0) if i in changed else key_minute(rng, 3.0, 1200.0)
        start = T0 + timedelta(minutes=i)
        view = MinuteView(start, start + timedelta(minutes=1), {"api_key": {"deep": deep}}, deep)
        found += [(i, f) for f in detector.observe_minute(view)]
    return found


def test_a_key_unlike_the_others_but_like_itself_is_paged_only_while_it_is_young() -> None:
    for seed in range(4):
        minutes = [i for i, _ in run(seed)]
        assert minutes and max(minutes) < 30, (seed, minutes)  # OWN_WARM minutes of history


def test_the_key_is_paged_when_it_leaves_its_own_range_and_says_against_what() -> None:
    for seed in range(4):
        found = [(i, f) for i, f in run(seed, changed=range(200, 210)) if i >= 30]
        minutes = [i for i, _ in found]
        assert minutes[0] == 202 and set(minutes) <= set(range(202, 210)), (seed, minutes)
        assert "passes per request" in found[0][1].summary
        assert "usually for this key" in found[0][1].summary


def test_a_key_that_changed_for_good_is_learned_within_minutes_not_paged_for_hours() -> None:
    """A tenant that moved to harder problems: its keys' passes and reasoning rise and stay
    (default 65 and 69: a key paged as unlike its own history for four hours)."""
    for seed in range(4):
        minutes = [i for i, _ in run(seed, changed=range(200, 300)) if i >= 30]
        assert minutes[0] == 202 and max(minutes) < 215, (seed, minutes)
