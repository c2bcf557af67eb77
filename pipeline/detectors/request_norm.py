"""Per-request scoring against the norm of its context, aggregated per api key.

Aimed at ``reasoning_inflation`` (OverThink-style decoys: far more reasoning tokens than the
route and difficulty warrant) and ``pass_explosion`` (far more passes than the route allows).
Each request is scored against its context (model x route x difficulty band) in log space;
an api key alerts only when its requests sit far above the norm over one of its horizons (the
last minute or the last few: a blatant decoy shows at once, a steadier one adds up)
and several of its requests are outliers, so one odd request never pages anyone. With
``cusum_h0`` set, a per-key sequential test (:mod:`pipeline.detectors.cusum`) also sums each
request's residual over as long as it takes, for a decoy on a minority of requests whose shift is
too small for any few-minute window; and the same residuals' excess over the key's last few
minutes pages a shift of the whole key whose requests are not outliers one by one.

>>> import random
>>> from pipeline.events import example_event
>>> rng = random.Random(42)
>>> norm = ContextNorm()
>>> for tick in range(50):  # ten requests a tick
...     for _ in range(10):
...         norm.learn_one(rng.lognormvariate(7.0, 0.3))
...     _ = norm.settle()
>>> abs(norm.score_one(1100.0)) < 0.5, norm.score_one(5000.0) > 4
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from functools import partial
from itertools import zip_longest
from operator import attrgetter
from statistics import NormalDist
from typing import Any

from pipeline.detectors.base import (
    AdaptiveThreshold,
    BoundedStore,
    Finding,
    Horizon,
    MinuteView,
    binomial_surprise,
)
from pipeline.detectors.cusum import CUSUM_K, Excess, KeyCusum
from pipeline.detectors.norms import MAX_UNMERGED, Context, Learned, NormReport, NormState, learn
from pipeline.events import AllocationEvent

Z_CLIP = (-4.0, 10.0)
R_CLIP = 3.0  # a residual's bound in the sequential test: one request moves it little
# Requests a context has seen before its z-scores feed the sequential test: its first tick's few
# requests set its mean and variance, and at the fading of 0.01 they still weigh 13 % by then (a
# young context's z-scores run wide, and a test that sums them would drift).
MATURE = 200
# How rarely chance alone may show a window of outliers on one key or another: a window's
# outliers must be as unlikely by chance as one in (keys judged a minute x minutes in a day x
# this many days), Bonferroni's bar, which holds whatever the fleet's size (a fixed bar of 1 in
# 1,000 is passed by chance somewhere in a fleet of thousands of keys every minute).
OUTLIER_CHANCE_DAYS = 10.0
MINUTES_PER_DAY = 1_440
# Scored requests (exponentially weighted) a context has seen before its own outlier rate is
# known. Until then its requests count as no outliers: a Gaussian's rate (0.13 % beyond 3
# standard deviations) is a seventh of real tails', and young contexts' chance outliers passed
# the bar. Once known, a context's rate is at least a Gaussian's.
OUTLIER_MATURE = 200.0
# The least score of a window of a key's requests (their mean z-score, less the key's usual,
# times the root of their number; the adaptive threshold follows the fleet's normal windows
# above it): a shift of 4 standard errors, with outliers past the bar above. Chance is the
# outlier test's to bound; this says the whole window moved, not a few requests in it.
SCORE_FLOOR = 4.0
RUNAWAY_MATURE = 1_000.0  # scored requests (exponentially weighted) before its runaway rate
RUNAWAY_STATUSES = frozenset(("truncated", "timeout"))
OFFSET_FADING = 0.02  # per minute: a key's usual z and confidence follow its last ~50 minutes


class ContextNorm:
    """River-style robust baseline of ``log1p(value)``: ``score_one`` gives a z-score.

    An exponentially weighted mean and variance in log space that stands still between ticks
    (:mod:`pipeline.detectors.norms`): requests are scored against it and add to what it has
    :attr:`learned`, which moves it at the next tick (:meth:`settle` alone, or through the
    fleet stage). Learning winsorises at 4 standard deviations, so an attack barely moves the
    norm while a genuine fleet-wide shift is still followed. (Plain float arithmetic rather
    than river's ``EWMean``/``EWVar``: this runs twice per event on the hot path.)

    It also learns how often its requests score ``flag_z`` or more (:attr:`outlier_rate`): real
    token counts have heavier tails than a Gaussian, about 1 % beyond 3 standard deviations
    rather than 0.13 %, and how many outliers a key's requests may show by chance is the
    context's own rate.
    """

    __slots__ = (
        "flag_z",
        "learned",
        "mean",
        "min_sd",
        "n",
        "outliers",
        "peer_z",
        "reported",
        "runaway",
        "runaway_scored",
        "scored",
        "sd",
        "unmerged",
        "var",
        "warm_up",
    )

    def __init__(self, min_sd: float = 0.1, warm_up: int = 30, flag_z: float = 3.0) -> None:
        self.mean = 0.0
        self.var = 0.0
        self.sd = min_sd
        self.min_sd = min_sd
        self.warm_up = warm_up
        self.flag_z = flag_z
        self.n = 0
        self.peer_z = 0.0  # recent mean (clipped) z of the context's requests
        self.outliers = 0.0  # exponentially weighted: requests scoring flag_z or more ...
        self.scored = 0.0  # ... of those scored against a warm norm
        self.runaway = 0.0  # over a longer memory: requests truncated or timed out ...
        self.runaway_scored = 0.0  # ... of those scored against a warm norm
        self.learned = Learned()  # since the last tick
        # handed over at the last tick and not learned here yet: learned when the norm is next
        # read, unless the fleet's norm (which learned it) is taken first (settle_reported)
        self.reported: Learned | None = None
        # reported at these ticks, not yet in a fleet norm taken (a worker's fleet stage
        # answers a little later): learned again on top of it
        self.unmerged: list[tuple[float, Learned]] = []

    def __setstate__(self, state: tuple[None, dict[str, object]]) -> None:
        self.__init__()  # type: ignore[misc]  # fields absent from older snapshots
        for name, value in state[1].items():
            if name in self.__slots__:  # older snapshots kept a few more (base, reported)
                setattr(self, name, value)

    def state(self) -> NormState:
        return NormState(
            mean=self.mean,
            var=self.var,
            n=self.n,
            peer_z=self.peer_z,
            outliers=self.outliers,
            scored=self.scored,
            runaway=self.runaway,
            runaway_scored=self.runaway_scored,
        )

    def settle(self) -> Learned:
        """Move the norm by what it learned since the last tick; return that."""
        self.settle_reported()
        learned, self.learned = self.learned, Learned()
        self._set(learn(self.state(), learned))
        return learned

    def report(self, tick_s: float) -> Learned | None:
        """At tick ``tick_s``: hand over what was learned since the last tick, to be learned
        here when the norm is next read (:meth:`settle_reported`), and keep it until the fleet's
        norm covers it (:meth:`take`); None when there were no requests."""
        if self.learned.n == 0:
            return None
        self.settle_reported()
        learned, self.learned = self.learned, Learned()
        self.reported = learned
        self.unmerged = [*self.unmerged[-(MAX_UNMERGED - 1) :], (tick_s, learned)]
        return learned

    def settle_reported(self) -> None:
        """Learn what the last :meth:`report` handed over, if the fleet's norm has not come
        first: where the fleet stage answers at once (a replay), its norm replaces this one
        before any request is scored, so the partition never does that work."""
        if self.reported is not None:
            reported, self.reported = self.reported, None
            self._set(learn(self.state(), reported))

    def take(self, fleet: NormState, through_s: float) -> None:
        """Take the fleet's norm, which learned every tick up to ``through_s``; learn again on
        top of it what this one reported after that."""
        self.reported = None  # in the fleet's norm, or learned again below
        if self.unmerged and self.unmerged[-1][0] > through_s:  # (ticks in order)
            self.unmerged = [(t, learned) for t, learned in self.unmerged if t > through_s]
            for _, learned in self.unmerged:
                fleet = learn(fleet, learned)
        elif self.unmerged:
            self.unmerged = []
        self._set(fleet)

    def _set(self, state: NormState) -> None:
        self.mean, self.var, self.n, self.peer_z = state.mean, state.var, state.n, state.peer_z
        self.outliers, self.scored = state.outliers, state.scored
        self.runaway, self.runaway_scored = state.runaway, state.runaway_scored
        self.sd = max(self.min_sd, math.sqrt(self.var))

    def runaway_rate(self) -> float | None:
        """The share of its requests truncated or timed out (None until it has scored
        :data:`RUNAWAY_MATURE` requests, with a detector that counts them)."""
        if self.runaway_scored < RUNAWAY_MATURE:
            return None
        return self.runaway / self.runaway_scored

    def outlier_rate(self, floor: float) -> float | None:
        """The share of its requests that score ``flag_z`` or more, at least ``floor`` (None
        until it has scored :data:`OUTLIER_MATURE` requests)."""
        if self.scored < OUTLIER_MATURE:
            return None
        return max(floor, self.outliers / self.scored)

    @property
    def expected(self) -> float:
        """The context's typical value (back from log space)."""
        return math.expm1(self.mean)

    def score_one(self, value: float) -> float:
        self.settle_reported()
        if self.n < self.warm_up:
            return 0.0
        return (math.log1p(value) - self.mean) / self.sd

    def learn_one(self, value: float) -> None:
        self.score_and_learn(value)

    def score_and_learn(self, value: float) -> float:
        """``score_one`` then ``learn_one``, taking the logarithm once (the hot path)."""
        if self.reported is not None:
            self.settle_reported()
        x = math.log1p(value)
        if self.n < self.warm_up:
            self.learned.add_value(x)
            return 0.0
        z = (x - self.mean) / self.sd
        bound = 4 * self.sd
        low, high = self.mean - bound, self.mean + bound
        learned = self.learned
        learned.add_value(low if x < low else (high if x > high else x))  # min(max()), inline
        learned.scored += 1
        learned.outliers += z >= self.flag_z
        return z

    def residual(self, clipped_z: float) -> float:
        """A request's clipped z less what the context's recent requests scored; the z is
        learned for the next tick."""
        self.learned.peer_n += 1
        self.learned.peer_sum += clipped_z
        return clipped_z - self.peer_z


@dataclass(slots=True)
class KeyMinute:
    requests: int = 0
    z_sum: float = 0.0
    flagged: int = 0  # outliers (z >= flag_z) among its requests whose context's rate is known
    value_sum: float = 0.0
    expected_sum: float = 0.0
    confidence_sum: float = 0.0
    confidence_count: int = 0
    r_n: int = 0  # requests with a residual for the sequential test (informative contexts)
    r_sum: float = 0.0
    r_sq: float = 0.0
    flags_expected: float = 0.0  # outliers its requests' contexts give by chance
    # with runaway rates learned: the truncated or timed-out requests its requests' contexts
    # give, over the requests whose context has a rate
    runaway_expected: float = 0.0
    runaway_known: int = 0

    def __getstate__(self) -> list[float]:
        return [getattr(self, f.name) for f in fields(self)]

    def copy(self) -> KeyMinute:
        """A copy (an open minute's sums handed to a peek; faster than ``dataclasses.replace``,
        which a peek did for every key)."""
        return KeyMinute(*_KEY_MINUTE_VALUES(self))

    def add(self, other: KeyMinute) -> None:
        """Add another part of the same key's minute (the overflow key of two partitions)."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def __setstate__(self, state: list[float]) -> None:
        # a snapshot from before the residual fields existed holds fewer values: defaults
        for f, value in zip_longest(fields(self), state[: len(fields(self))]):
            setattr(self, f.name, f.default if value is None else value)


_KEY_MINUTE_VALUES = attrgetter(*(f.name for f in fields(KeyMinute)))


class KeyOffset:
    """A key's own usual mean z (some keys always ask harder prompts) and its usual confidence:
    each an exponentially weighted mean of its minutes' (:data:`OFFSET_FADING`), started at
    the first one. Plain floats: a river ``EWMean`` costs about 300 bytes, two per key and
    request detector (40 MiB of the engine's peak at 100,000 keys).

    >>> from pipeline.detectors.request_norm import KeyMinute
    >>> offset = KeyOffset()
    >>> for z in (1.0, 2.0):
    ...     offset.learn(KeyMinute(requests=1, z_sum=z))
    >>> offset.mean, offset.confidence_minutes  # 0.98 x 1.0 + 0.02 x 2.0; no confidence yet
    (1.02, 0)
    """

    __slots__ = ("confidence", "confidence_minutes", "mean", "minutes")

    def __init__(self) -> None:
        self.mean = 0.0
        self.confidence = 0.0
        self.minutes = 0  # minutes learned ...
        self.confidence_minutes = 0  # ... and those with a confidence

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        """Restore an offset; one saved with river's ``EWMean`` is taken at its means."""
        fields = state[1]
        self.minutes = fields["minutes"]
        mean, confidence = fields["mean"], fields["confidence"]
        if isinstance(mean, float):
            self.mean, self.confidence = mean, confidence
            self.confidence_minutes = fields["confidence_minutes"]
        else:
            self.mean, self.confidence = float(mean.get()), float(confidence.get())
            self.confidence_minutes = self.minutes if self.confidence else 0

    def learn(self, acc: KeyMinute) -> None:
        self.mean = _faded(self.mean, acc.z_sum / acc.requests, self.minutes)
        if acc.confidence_count:
            confidence = acc.confidence_sum / acc.confidence_count
            self.confidence = _faded(self.confidence, confidence, self.confidence_minutes)
            self.confidence_minutes += 1
        self.minutes += 1

    def get(self) -> float:
        return self.mean if self.minutes >= 10 else 0.0


def _faded(mean: float, x: float, learned: int) -> float:
    """An exponentially weighted mean of ``learned`` values after learning ``x`` (the first
    value is the mean)."""
    return OFFSET_FADING * x + (1.0 - OFFSET_FADING) * mean if learned else x


class RequestNormDetector:
    """Score every request of one feature (reasoning tokens or passes) against its context."""

    def __init__(
        self,
        kind: str = "reasoning_inflation",
        feature: str = "reasoning_tokens",
        horizons_min: tuple[int, ...] = (1, 2, 3),
        flag_z: float = 3.0,
        min_flagged: int = 3,
        min_requests: int = 8,
        score_floor: float = SCORE_FLOOR,
        max_entities: int = 200_000,
        min_sd: float = 0.1,
        cusum_h0: float | None = None,
        cusum_k: float = CUSUM_K,
        runaway_rates: bool = False,
        window_excess: bool = True,
    ) -> None:
        self.name = kind
        self.kind = kind
        self.feature = feature
        self.flag_z = flag_z
        self.min_flagged = min_flagged
        self.min_requests = min_requests
        self.min_sd = min_sd
        # whether its contexts learn their rate of truncated and timed-out requests, and each
        # key's minute sums what its requests' contexts give (read by the runaway detector)
        self.runaway_rates = runaway_rates
        self.threshold = AdaptiveThreshold(score_floor)
        self.horizons_min = horizons_min
        self.contexts: BoundedStore[tuple[str, str, int], ContextNorm] = BoundedStore(
            max_entries=50_000
        )
        self._new_norm = partial(ContextNorm, min_sd=min_sd, flag_z=flag_z)
        self.gaussian_rate = 1.0 - NormalDist().cdf(flag_z)  # a request's, in a Gaussian context
        self.horizons: BoundedStore[str, Horizon[KeyMinute]] = BoundedStore(max_entities)
        self.offsets: BoundedStore[str, KeyOffset] = BoundedStore(max_entities)
        self._pending: dict[tuple[int, str], KeyMinute] = {}
        self.keys_judged = 0  # in the last closed minute: how many keys chance had to play on
        # with the sequential test, a key's last minutes' residuals are also judged at once,
        # on a bar passed by chance once in OUTLIER_CHANCE_DAYS days (:mod:`.cusum`)
        window_once_in = MINUTES_PER_DAY * OUTLIER_CHANCE_DAYS if window_excess else None
        self.cusum = (
            KeyCusum(cusum_k, cusum_h0, max_entities, horizons_min, min_requests, window_once_in)
            if cusum_h0 is not None
            else None
        )

    def __setstate__(self, state: dict[str, object]) -> None:
        self.cusum = None  # absent from snapshots taken before it existed
        # ... as were runaway rates, which the reasoning detector learns (default_detectors)
        self.runaway_rates = state.get("name") == "reasoning_inflation"
        self.keys_judged = 0  # ... as was this
        self.__dict__.update(state)
        self.gaussian_rate = 1.0 - NormalDist().cdf(self.flag_z)  # ... as was this

    def entity_stores(self) -> list[BoundedStore[Any, Any]]:
        stores: list[BoundedStore[Any, Any]] = [self.horizons, self.offsets]
        return stores + ([self.cusum.states] if self.cusum is not None else [])

    def observe_event(self, e: AllocationEvent, minute: int) -> None:
        value = float(getattr(e, self.feature))
        # (the bounds below are conditional expressions rather than min() and max(): the same
        # values, NaN included, without two calls per bound; this runs twice per event)
        if e.difficulty is None:
            band = -1
        else:
            band = int(e.difficulty * 10)
            band = band if band < 9 else 9
        norm = self.contexts.get_or_create((e.model, e.route, band), self._new_norm)
        if norm.reported is not None:  # (before any of it is read)
            norm.settle_reported()
        warm = norm.n >= norm.warm_up
        expected = norm.expected if warm else value
        z = norm.score_and_learn(value)
        slot = (minute, e.api_key_id)
        acc = self._pending.get(slot)
        if acc is None:
            acc = self._pending[slot] = KeyMinute()
        acc.requests += 1
        clipped = Z_CLIP[0] if z < Z_CLIP[0] else (Z_CLIP[1] if z > Z_CLIP[1] else z)
        acc.z_sum += clipped
        if norm.n > MATURE and norm.var > 0.0 and self.cusum is not None:
            r = norm.residual(clipped)
            r = -R_CLIP if r < -R_CLIP else (R_CLIP if r > R_CLIP else r)
            acc.r_n += 1
            acc.r_sum += r
            acc.r_sq += r * r
        if warm:
            chance = norm.outlier_rate(self.gaussian_rate)
            if chance is not None:  # an outlier only against its context's own tails
                acc.flagged += z >= self.flag_z
                acc.flags_expected += chance
            if self.runaway_rates:
                rate = norm.runaway_rate()
                if rate is not None:
                    acc.runaway_expected += rate
                    acc.runaway_known += 1
                norm.learned.runaway += e.status in RUNAWAY_STATUSES
        acc.value_sum += value
        acc.expected_sum += expected
        if e.confidence is not None:
            acc.confidence_sum += e.confidence
            acc.confidence_count += 1

    def report_norms(self, tick_s: float) -> list[NormReport]:
        """At tick ``tick_s``: what each context's requests taught since the previous tick,
        which a partition hands the fleet stage (the norms move by it at once)."""
        reports = []
        for context, norm in self.contexts.items():
            learned = norm.report(tick_s)
            if learned is not None:
                reports.append(NormReport(context, learned))
        return reports

    def take_norms(self, fleet: list[tuple[Context, NormState]], through_s: float) -> None:
        """Take the fleet's norms (every partition's reports up to ``through_s`` learned)."""
        for context, state in fleet:
            self.contexts.get_or_create(context, self._new_norm).take(state, through_s)

    def hand_over(self, minute: int, *, closed: bool) -> list[tuple[str, KeyMinute]]:
        """The keys' sums of ``minute`` so far, for the view the minute is judged on
        (:attr:`MinuteView.key_minutes`). A closed minute's are handed over for good, with
        those of earlier minutes (late requests, after their minute was judged) dropped; an
        open one's are copied."""
        if not closed:
            return [
                (key, acc.copy()) for (m, key), acc in self._pending.items() if m == minute
            ]
        ready = [slot for slot in self._pending if slot[0] <= minute]
        handed = [(slot, self._pending.pop(slot)) for slot in ready]
        return [(key, acc) for (slot_minute, key), acc in handed if slot_minute == minute]

    def observe_minute(self, view: MinuteView) -> list[Finding]:
        key_minutes = view.key_minutes.get(self.name, {})
        self.keys_judged = len(key_minutes)
        fleet = _fleet_residuals(key_minutes) if self.cusum is not None else (0.0, 0)
        findings = []
        for key, acc in key_minutes.items():
            finding = self._score_key(key, acc, view, fleet)
            if finding is not None:
                findings.append(finding)
        # a key's horizon whose last minute is out of it holds nothing it would judge again (a
        # push or a peek drops it): most keys of a large fleet send less than once in 3 minutes
        self.horizons.evict_stale(lambda horizon: horizon.out_of_reach(view.start))
        return findings

    def peek_minute(self, view: MinuteView) -> list[Finding]:
        """Score each key's open minute so far with its horizon; learn nothing."""
        key_minutes = view.key_minutes.get(self.name, {})
        fleet = _fleet_residuals(key_minutes) if self.cusum is not None else (0.0, 0)
        findings = []
        for key, acc in key_minutes.items():
            best = self._peek_best(key, acc, view.start)
            if best is None or not self._alarming(best[0], best[1]):
                found = self.cusum.peek(key, acc, view.start, fleet) if self.cusum else None
                if found is not None:
                    findings.append(self._excess_finding(key, found, view))
                continue
            score, window, start = best
            offset = self.offsets.get(key)
            usual_confidence = offset.confidence if offset and offset.minutes else None
            findings.append(
                self._finding(
                    key, window, start, view, score, self.threshold.value, usual_confidence
                )
            )
        return findings

    def _peek_best(
        self, key: str, acc: KeyMinute, start: datetime
    ) -> tuple[float, list[KeyMinute], datetime] | None:
        """:meth:`_best` for a key's open minute so far, or None when no window could alarm.

        A window alarms only with ``min_flagged`` outliers in it (:meth:`_alarming`); with fewer
        in the key's whole horizon, scoring it is moot, and a peek learns nothing from the score.
        Outliers are rare, so most keys skip the scoring at most peeks.
        """
        horizon = self.horizons.get(key)
        held = horizon.recent if horizon else []
        if acc.flagged + sum(m.flagged for _, m in held) < self.min_flagged:
            return None
        recent = horizon.peek(start, acc) if horizon else [(start, acc)]
        offset = self.offsets.get(key)
        return self._best(recent, start, offset.get() if offset else 0.0)

    def _score_key(
        self, key: str, acc: KeyMinute, view: MinuteView, fleet: tuple[float, int]
    ) -> Finding | None:
        horizon = self.horizons.get_or_create(
            key, lambda: Horizon[KeyMinute](self.horizons_min[-1])
        )
        horizon.push(view.start, acc)
        offset = self.offsets.get_or_create(key, KeyOffset)
        best = self._best(horizon.recent, view.start, offset.get())
        if best is not None:
            self.threshold.update(best[0], key)
        if best is None or not self._alarming(best[0], best[1]):
            offset.learn(acc)
            found = self.cusum.observe(key, acc, view.start, fleet) if self.cusum else None
            return None if found is None else self._excess_finding(key, found, view)
        if self.cusum is not None:
            self.cusum.forget_run(key)
        score, window, start = best
        usual_confidence = offset.confidence if offset.minutes else None
        threshold = self.threshold.value
        return self._finding(key, window, start, view, score, threshold, usual_confidence)

    def _best(
        self, recent: Iterable[tuple[datetime, KeyMinute]], now: datetime, offset: float
    ) -> tuple[float, list[KeyMinute], datetime] | None:
        """The key's highest score over its horizons ending with the minute starting ``now``."""
        items = list(recent)
        best: tuple[float, list[KeyMinute], datetime] | None = None
        for minutes in self.horizons_min:
            inside = [(t, m) for t, m in items if (now - t).total_seconds() < minutes * 60]
            n = sum(m.requests for _, m in inside)
            if n < self.min_requests:
                continue
            score = (sum(m.z_sum for _, m in inside) / n - offset) * math.sqrt(n)
            if best is None or score > best[0]:
                best = (score, [m for _, m in inside], inside[0][0])
        return best

    def _alarming(self, score: float, window: list[KeyMinute]) -> bool:
        """A high enough score, with ``min_flagged`` outliers or more, and more of them than
        chance gives in that many requests at their contexts' own outlier rates (a busy key's
        3 outliers in 200 requests are not several; in 20 they are), on any of the keys judged
        in a minute (:data:`OUTLIER_CHANCE_DAYS`)."""
        flagged = sum(m.flagged for m in window)
        if score < self.threshold.value or flagged < self.min_flagged:
            return False
        requests = sum(m.requests for m in window)
        by_chance = sum(m.flags_expected for m in window) / requests
        tests_a_day = max(self.keys_judged, 1) * MINUTES_PER_DAY * OUTLIER_CHANCE_DAYS
        return binomial_surprise(flagged, requests, by_chance) >= math.log10(tests_a_day)

    def _finding(
        self,
        key: str,
        recent: list[KeyMinute],
        start: datetime,
        view: MinuteView,
        score: float,
        threshold: float,
        usual_confidence: float | None,
    ) -> Finding:
        n = sum(m.requests for m in recent)
        flagged = sum(m.flagged for m in recent)
        value = sum(m.value_sum for m in recent) / n
        expected = sum(m.expected_sum for m in recent) / n
        conf_n = sum(m.confidence_count for m in recent)
        what = "reasoning tokens" if self.feature == "reasoning_tokens" else "passes"
        tenant = view.tenant_of_key.get(key)
        who = f"api key {key}" + (f" (tenant {tenant})" if tenant else "")
        ratio = value / expected if expected > 0 else float("inf")
        summary = (
            f"{who} averaged {value:,.0f} {what} per request, {ratio:.1f}x the norm for its "
            f"model, route and difficulty ({expected:,.0f}); {flagged} of {n} requests were "
            f"outliers over {len(recent)} min"
        )
        evidence = {
            f"{self.feature}_per_request": (value, expected),
            "outlier_share": (flagged / n, 0.0),
        }
        if conf_n and usual_confidence is not None:
            conf = sum(m.confidence_sum for m in recent) / conf_n
            evidence["confidence_mean"] = (conf, usual_confidence)
        return Finding(
            kind=self.kind,
            entity_type="api_key",
            entity_id=key,
            window_start=start,
            window_end=view.end,
            score=score,
            threshold=threshold,
            summary=summary,
            evidence=evidence,
            event_count=n,
            magnitude=ratio,
            stake=_stake(n, ratio, len(recent), view),
        )

    def _excess_finding(self, key: str, found: Excess, view: MinuteView) -> Finding:
        """A finding of the key's tests of its residuals: the sequential test's steady excess,
        or its last minutes' excess at once."""
        n = max(found.requests, 1)
        value, expected = found.value / n, found.expected / n
        ratio = value / expected if expected > 0 else float("inf")
        minutes = round((view.end - found.start).total_seconds() / 60)
        what = "reasoning tokens" if self.feature == "reasoning_tokens" else "passes"
        tenant = view.tenant_of_key.get(key)
        who = f"api key {key}" + (f" (tenant {tenant})" if tenant else "")
        if found.sequential:
            test = "sequential_test"
            how = (
                f"a steady excess over {found.requests} requests (sequential test "
                f"{found.statistic:.0f}, threshold {found.bar:.0f})"
            )
        else:
            test = "window_excess"
            how = (
                f"{found.statistic:.1f} standard deviations of its own minutes above its usual "
                f"(bar {found.bar:.1f}) over {found.requests} requests"
            )
        summary = (
            f"{who} averaged {value:,.0f} {what} per request over {minutes} min, {ratio:.2f}x the "
            f"norm for its model, route and difficulty ({expected:,.0f}): {how}"
        )
        return Finding(
            kind=self.kind,
            entity_type="api_key",
            entity_id=key,
            window_start=found.start,
            window_end=view.end,
            score=found.statistic,
            threshold=found.bar,
            summary=summary,
            evidence={
                f"{self.feature}_per_request": (value, expected),
                "outlier_share": (found.flagged / n, 0.0),
                test: (found.statistic, found.bar),
            },
            event_count=found.requests,
            magnitude=ratio,
            stake=_stake(found.requests, ratio, max(minutes, 1), view),
        )


def _fleet_residuals(key_minutes: dict[str, KeyMinute]) -> tuple[float, int]:
    """Sum and count of every key's residuals in a minute (what all keys shared)."""
    accs = key_minutes.values()
    return sum(acc.r_sum for acc in accs), sum(acc.r_n for acc in accs)


def _stake(requests: int, ratio: float, minutes: int, view: MinuteView) -> float | None:
    """The share of the fleet's requests over ``minutes`` that this key's excess work equals:
    its requests times how far past the norm they went (the fleet's minute stands in for each
    minute of the window)."""
    fleet = view.fleet.requests * minutes
    if fleet <= 0 or not math.isfinite(ratio):
        return None
    return requests * max(ratio - 1.0, 0.0) / fleet
