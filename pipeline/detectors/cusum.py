"""A per-key sequential test (one-sided CUSUM) for a steady, modest shift of request scores.

The request-norm horizons catch what shows within a few minutes. A decoy on a minority of a
key's requests (2x reasoning on 30 % of them) shifts each request by less than its context's
spread, which no few-minute window can tell from noise; summed over tens of minutes it can.
Each request's residual ``r`` (its z-score against its context, minus what that context's
recent requests scored, so a shift of a whole route or model for everyone cancels out) feeds
one CUSUM per key::

    S <- max(0, S + sum(r - mean_key - k))

``mean_key`` is the key's own usual residual (learned slowly, from minutes that leave ``S``
under the threshold); ``k`` is half the per-request shift worth finding. The test alerts at
``S >= h`` and starts again from 0.

``h`` is ``h0`` scaled by the larger of the fleet's variance of ``r`` and the key's own
*dispersion* (never by less than 1): with noisier residuals a benign walk wanders further. The
dispersion is the variance of the key's minute excess per request,
``E[(sum(r) - n * mean_key)^2] / E[n]`` over its minutes (fading like ``mean_key``, starting
from 1): one key's requests are not independent (its users send alike prompts in sessions), so
its minutes wander more than their count of requests would say, and by how much is the key's
own. A walk of per-request variance ``d`` crosses about ``exp(-2kh / d)`` as often, so a bar
scaled with ``d`` keeps a clumpy key's false-alarm rate where a quiet key's is. The minutes of a
run of ``S`` join the dispersion once the run is over without an alert (as
:mod:`pipeline.detectors.tails` learns excursions): a benign key's wanders all count, while a
shift building up never raises the bar it is to cross. Each minute's excess counts for at most
3 of its own standard deviations (``sqrt(n * dispersion)``): the test adds up small shifts over
many minutes, and one wild minute of a busy key is not one.

>>> from datetime import UTC, datetime, timedelta
>>> from pipeline.detectors.request_norm import KeyMinute
>>> import random
>>> rng = random.Random(42)
>>> test = KeyCusum(h0=28.0)
>>> t0 = datetime(2026, 3, 2, tzinfo=UTC)
>>> def minute(shift):
...     m = KeyMinute()
...     for _ in range(20):
...         r = rng.gauss(shift, 1.0)
...         m.requests += 1; m.r_n += 1; m.r_sum += r; m.r_sq += r * r
...     return m
>>> quiet = (0.0, 0)  # no other keys this minute
>>> any(test.observe("k", minute(0.0), t0 + timedelta(minutes=i), quiet) for i in range(300))
False
>>> hits = [test.observe("k", minute(0.5), t0 + timedelta(minutes=300 + i), quiet)
...         for i in range(15)]
>>> first = next(i for i, h in enumerate(hits) if h); 2 <= first <= 10
True

A key whose requests come in alike runs (each minute's residuals share a draw) is judged on
its own dispersion, and a run of its ordinary minutes is not a shift:

>>> clumpy = KeyCusum(h0=28.0)
>>> def clumped(shift):
...     m, common = KeyMinute(), rng.gauss(0.0, 0.45)
...     for _ in range(20):
...         r = rng.gauss(shift + common, 0.9)
...         m.requests += 1; m.r_n += 1; m.r_sum += r; m.r_sq += r * r
...     return m
>>> any(clumpy.observe("k", clumped(0.0), t0 + timedelta(minutes=i), quiet) for i in range(600))
False
>>> 3 < clumpy.bar(clumpy.states.get("k")) / 28.0 < 6
True

The same usual residual and dispersion also judge a key's last few minutes at once (with
``window_once_in``): their excess over the key's usual, in standard deviations of its own
minutes (``sum(r - mean_key) / sqrt(n * dispersion)``, the dispersion at least 1). A shift of
the whole key that is plain within a minute or three (5x reasoning on most of its requests, each
a little over its context's spread and few of them outliers) is found there, where the
sequential test, which counts a minute for at most 3 of its deviations, takes many minutes. Its
bar is the value this statistic passes by chance once in ``window_once_in`` minutes on one key
or another, read off its tail as learned over every key's minutes
(:mod:`pipeline.detectors.exceedance`; a key's run of minutes past the tail's threshold counts
once, by its peak; the bar never under a Gaussian's), and the test waits until that tail is
learned:

>>> fleet = KeyCusum(h0=28.0, window_once_in=14_400)  # once in ten days
>>> for i in range(150):
...     for key in range(200):
...         _ = fleet.observe(str(key), minute(0.0), t0 + timedelta(minutes=i), quiet)
>>> found = fleet.observe("7", minute(2.0), t0 + timedelta(minutes=150), quiet)
>>> found.sequential, found.statistic > found.bar > 5.0
(False, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from statistics import NormalDist
from typing import TYPE_CHECKING

from river import stats

from pipeline.detectors.base import BoundedStore
from pipeline.detectors.exceedance import TAIL_FROM, ExceedanceTail

if TYPE_CHECKING:
    from pipeline.detectors.request_norm import KeyMinute

Deviation = tuple[datetime, float, "KeyMinute"]  # a minute's start, excess over usual, sums

# Half the per-request shift worth finding, in standard deviations. With unit-variance residuals
# a benign key's walk crosses h = 28 about once per (exp(2kh) - 2kh - 1) / (2k^2) requests
# (Siegmund): 0.9 million at k = 0.2, which a fleet at 25 requests/s sends in 10 hours. A drift
# of 0.25 (9.6 million) took away sequential-test false alarms on development seeds but missed
# the subtle variant (2x reasoning on 30 % of a key's requests) on 4 of 10 held-out seeds.
CUSUM_K = 0.2
# The bar before scaling (README: from seeds 0-2 of the default suite, about 5 above the highest
# walk any benign key reached there)
CUSUM_H0 = 28.0
WARM_MINUTES = 30  # minutes of a key's traffic before its usual residual is trusted
WARM_REQUESTS = 100.0  # ... and (weighted) requests behind it
MIN_PEERS = 30  # other keys' requests in a minute needed to take off what they shared
USUAL_FADING = 0.02  # per minute: the key's usual residual follows over about an hour
FLEET_WARM = 1_000  # key-minutes before the fleet's variance may raise the threshold
DISPERSION_PRIOR = WARM_REQUESTS  # requests' worth of dispersion 1 a key's own starts from
# A minute's excess counts for at most this many of its own standard deviations: one minute that
# far out is for the request-norm windows to judge, the test is for shifts too small to show in
# any one minute (a busy key's one wild minute would otherwise carry it past its bar at once).
MINUTE_CLIP = 3.0
_STANDARD = NormalDist()


@dataclass(frozen=True, slots=True)
class Excess:
    """What a key's test found: its statistic over its bar, for the requests since ``start``."""

    sequential: bool  # the sequential test's; else the excess of the key's last few minutes
    statistic: float
    bar: float
    start: datetime
    requests: int
    flagged: int
    value: float  # the requests' summed feature ...
    expected: float  # ... and their contexts' norms


class CusumState:
    """One key: the statistic, its usual residual, the excursion since ``S`` left 0, and its
    last closed minutes' deviations from the usual (for the window test)."""

    __slots__ = (
        "expected", "flagged", "minutes", "peak", "pending", "recent", "requests", "s",
        "spread_n", "spread_sum", "start", "usual_n", "usual_sum", "value",
    )  # fmt: skip

    def __init__(self) -> None:
        self.s = 0.0
        self.usual_sum = 0.0  # the key's usual residual: exponentially weighted by minute,
        self.usual_n = 0.0  # each minute weighted by its requests (no start-up bias)
        self.spread_sum = self.spread_n = DISPERSION_PRIOR  # its dispersion, at first 1
        self.pending = (0.0, 0.0, 0)  # the run's (squared deviations, requests, minutes)
        self.recent: tuple[Deviation, ...] = ()  # the last closed minutes', oldest first
        self.peak = 0.0  # the highest window of its run past TAIL_FROM (0: no run)
        self.minutes = 0
        self.start: datetime | None = None
        self.requests = 0
        self.flagged = 0
        self.value = 0.0
        self.expected = 0.0

    def __setstate__(self, state: tuple[None, dict[str, object]]) -> None:
        self.spread_sum = self.spread_n = DISPERSION_PRIOR  # absent from older snapshots
        self.pending = (0.0, 0.0, 0)
        self.recent = ()
        self.peak = 0.0
        for name, value in state[1].items():
            setattr(self, name, value)

    @property
    def usual(self) -> float:
        """Its usual residual per request (once it has learned any)."""
        return self.usual_sum / self.usual_n

    @property
    def dispersion(self) -> float:
        """The variance of its minutes' excess per request."""
        return self.spread_sum / self.spread_n

    def wait(self, deviation: float, requests: float) -> None:
        """Hold a minute's deviation from the key's usual until its run is over."""
        squares, n, minutes = self.pending
        fade = 1 - USUAL_FADING
        self.pending = (fade * squares + deviation * deviation, fade * n + requests, minutes + 1)

    def settle(self) -> None:
        """The run is over without an alert: its minutes join the dispersion."""
        squares, n, minutes = self.pending
        kept = (1 - USUAL_FADING) ** minutes
        self.spread_sum = kept * self.spread_sum + squares
        self.spread_n = kept * self.spread_n + n
        self.pending = (0.0, 0.0, 0)

    def restart(self, *, alerted: bool = True) -> None:
        """A new run. After an alert (``alerted``) its minutes are neither learned nor judged
        again."""
        self.pending = (0.0, 0.0, 0)
        if alerted:
            self.recent = ()
            self.peak = 0.0
        self.s, self.start = 0.0, None
        self.requests = self.flagged = 0
        self.value = self.expected = 0.0


class KeyCusum:
    """One-sided CUSUM of request residuals per key, fed one closed minute at a time; with
    ``window_once_in``, also the excess of the key's last ``windows_min`` minutes at once (over
    at least ``min_requests`` requests)."""

    def __init__(
        self,
        k: float = CUSUM_K,
        h0: float = CUSUM_H0,
        max_entities: int = 200_000,
        windows_min: tuple[int, ...] = (1, 2, 3),
        min_requests: int = 8,
        window_once_in: float | None = None,
    ) -> None:
        self.k = k
        self.h0 = h0
        self.states: BoundedStore[str, CusumState] = BoundedStore(max_entities)
        self.fleet_var = stats.EWMean(fading_factor=0.001)
        self.fleet_minutes = 0
        self.windows_min = windows_min
        self.min_requests = min_requests
        self.window_once_in = window_once_in  # minutes; None: no window test
        self.tail = ExceedanceTail()  # of every key's closed windows, their best excess
        self.window_bar: float | None = None  # for the minute under way (None: not learned)
        self._minute: tuple[datetime | None, int] = (None, 0)  # being closed; keys so far

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()  # type: ignore[misc]  # fields absent from older snapshots
        self.__dict__.update(state)

    @property
    def threshold(self) -> float:
        """``h0``, raised in proportion to the fleet's variance of residuals when over 1."""
        if self.fleet_minutes < FLEET_WARM:
            return self.h0
        return self.h0 * max(1.0, self.fleet_var.get())

    def bar(self, state: CusumState) -> float:
        """The threshold for one key: :attr:`threshold`, raised by the key's own dispersion."""
        return max(self.threshold, self.h0 * state.dispersion)

    def observe(
        self, key: str, acc: KeyMinute, start: datetime, fleet: tuple[float, int]
    ) -> Excess | None:
        """Add a closed minute of ``key``; what a test found, if anything (its last minutes
        at once first, then the sequential test).

        ``fleet`` is the sum and count of every key's residuals in the minute: what the other
        keys' requests showed at the same time is taken off (a shift for everyone).
        """
        if not acc.r_n:
            return None
        self._count_key(start)
        excess = acc.r_sum - acc.r_n * _others_mean(acc, fleet)
        state = self.states.get_or_create(key, CusumState)
        self.fleet_var.update(acc.r_sq / acc.r_n)
        self.fleet_minutes += 1
        deviation = 0.0
        if state.usual_n > 0.0:
            deviation = excess - acc.r_n * state.usual
            state.wait(deviation, acc.r_n)
        if not self._warm(state):
            state.settle()
            self._learn(state, acc, excess)
            return None
        if self.window_once_in is not None:
            minutes = (*state.recent, (start, deviation, acc))
            window = self._best_window(state, minutes, start)
            if window is not None:
                if self.window_bar is not None and window[0] >= self.window_bar:
                    state.restart()
                    return _window_excess(window, self.window_bar)
                self._learn_tail(state, window[0])
            reach = (max(self.windows_min) - 1) * 60  # the next minute's windows reach back
            state.recent = tuple(m for m in minutes if (start - m[0]).total_seconds() < reach)
        s, bar = self._next(state, acc, deviation), self.bar(state)
        if s == 0.0:
            state.settle()
            state.restart(alerted=False)
        else:
            self._extend(state, acc, start, s)
        if s < bar:
            self._learn(state, acc, excess)
            return None
        found = Excess(
            sequential=True, statistic=s, bar=bar, start=state.start or start,
            requests=state.requests, flagged=state.flagged, value=state.value,
            expected=state.expected,
        )  # fmt: skip
        state.restart()
        return found

    def peek(
        self, key: str, acc: KeyMinute, start: datetime, fleet: tuple[float, int]
    ) -> Excess | None:
        """What :meth:`observe` would say if the minute closed now; nothing changes."""
        state = self.states.get(key)
        if state is None or not self._warm(state) or not acc.r_n:
            return None
        deviation = acc.r_sum - acc.r_n * _others_mean(acc, fleet) - acc.r_n * state.usual
        if self.window_bar is not None:
            window = self._best_window(state, (*state.recent, (start, deviation, acc)), start)
            if window is not None and window[0] >= self.window_bar:
                return _window_excess(window, self.window_bar)
        s, bar = self._next(state, acc, deviation), self.bar(state)
        if s < bar:
            return None
        return Excess(
            sequential=True, statistic=s, bar=bar, start=state.start or start,
            requests=state.requests + acc.requests, flagged=state.flagged + acc.flagged,
            value=state.value + acc.value_sum, expected=state.expected + acc.expected_sum,
        )  # fmt: skip

    def _count_key(self, start: datetime) -> None:
        """Count the keys judged in each closed minute; at a new one, set :attr:`window_bar`
        for the number judged in the last."""
        minute, keys = self._minute
        if start == minute:
            self._minute = (minute, keys + 1)
            return
        self._minute = (start, 1)
        if self.window_once_in is not None and minute is not None:
            tests = keys * self.window_once_in
            learned = self.tail.once_in(tests)
            gaussian = -_STANDARD.inv_cdf(1.0 / tests)
            self.window_bar = None if learned is None else max(learned, gaussian)

    def _learn_tail(self, state: CusumState, z: float) -> None:
        """Learn a key's window into the fleet's tail, declustered: a run of its minutes past
        TAIL_FROM (one excursion, its windows overlapping) counts once, by its peak, when it
        ends; an excursion that pages is not learned (:meth:`CusumState.restart`)."""
        if z > TAIL_FROM:
            state.peak = max(state.peak, z)
            self.tail.learn(0.0)
        else:
            self.tail.learn(state.peak or z)
            state.peak = 0.0

    def _best_window(
        self, state: CusumState, minutes: tuple[Deviation, ...], now: datetime
    ) -> tuple[float, list[Deviation]] | None:
        """The key's highest excess over its windows of its last minutes up to ``now``, in
        standard deviations of its own minutes (their dispersion, at least 1)."""
        spread = max(1.0, state.dispersion)
        best: tuple[float, list[Deviation]] | None = None
        for span in self.windows_min:
            inside = [m for m in minutes if (now - m[0]).total_seconds() < span * 60]
            n = sum(m[2].r_n for m in inside)
            if n < self.min_requests:
                continue
            z = sum(m[1] for m in inside) / math.sqrt(n * spread)
            if best is None or z > best[0]:
                best = (z, inside)
        return best

    def forget_run(self, key: str) -> None:
        """Another test alerted for ``key``: this excursion is the same incident."""
        state = self.states.get(key)
        if state is not None:
            state.restart()

    @staticmethod
    def _warm(state: CusumState) -> bool:
        return state.minutes >= WARM_MINUTES and state.usual_n >= WARM_REQUESTS

    def _next(self, state: CusumState, acc: KeyMinute, deviation: float) -> float:
        """``S`` after the minute; its ``deviation`` (excess over the key's usual) counts for at
        most MINUTE_CLIP of its own standard deviations."""
        most = MINUTE_CLIP * math.sqrt(acc.r_n * max(1.0, state.dispersion))
        return max(0.0, state.s + min(deviation, most) - acc.r_n * self.k)

    @staticmethod
    def _extend(state: CusumState, acc: KeyMinute, start: datetime, s: float) -> None:
        if state.start is None:
            state.start = start
        state.s = s
        state.requests += acc.requests
        state.flagged += acc.flagged
        state.value += acc.value_sum
        state.expected += acc.expected_sum

    @staticmethod
    def _learn(state: CusumState, acc: KeyMinute, excess: float) -> None:
        state.usual_sum = (1 - USUAL_FADING) * state.usual_sum + excess
        state.usual_n = (1 - USUAL_FADING) * state.usual_n + acc.r_n
        state.minutes += 1


def _window_excess(window: tuple[float, list[Deviation]], bar: float) -> Excess:
    z, inside = window
    sums = [m[2] for m in inside]
    return Excess(
        sequential=False, statistic=z, bar=bar, start=inside[0][0],
        requests=sum(m.requests for m in sums), flagged=sum(m.flagged for m in sums),
        value=sum(m.value_sum for m in sums), expected=sum(m.expected_sum for m in sums),
    )  # fmt: skip


def _others_mean(acc: KeyMinute, fleet: tuple[float, int]) -> float:
    """The mean residual of the other keys' requests in the minute (0 with too few of them)."""
    others = fleet[1] - acc.r_n
    return (fleet[0] - acc.r_sum) / others if others >= MIN_PEERS else 0.0
