"""Where a budget period's spend is heading, from the spender's own hourly history.

Pure and transport-free: the worker's fleet stage (budget forecast alerts) and
``computewatch forecast`` (history read from ClickHouse) call :func:`project` on an array of
spend per UTC hour, oldest first, whose last entry is the last complete hour.

How, all from that history, no tuned level:

- **pattern**: each hour's expected share of a normal hour, by hour of day (its mean over the
  history's days against the mean hour) and, once 14 days are there, by day of week too;
- **burn rate**: the spend of the last ``R`` hours over what the pattern expected of them;
  ``R`` (3, 6, 12 or 24 h) is the one that predicted the following day best over the history
  (median absolute log error, over at least a day of backtests);
- **projection**: spend to date plus the rate times the pattern of the hours left, times the
  median of actual / predicted over the same backtest (the predictor's own bias);
- **interval**: the 10th and 90th percentiles of that ratio, applied to what is left (an 80 %
  interval); none (a point) without enough backtests.

Three days of history at least: with two, the backtests all fall on the second day, and on
simulated fleets a third of the small tenants then looked like burning when they were not.

>>> import numpy as np
>>> day = np.array([1.0] * 12 + [3.0] * 12)            # quiet mornings, busy afternoons
>>> history = np.tile(day, 5)                            # 5 days, ending at midnight
>>> p = project(history, hours_left=24, spend_to_date=0.0)
>>> round(p.total, 6), round(p.low, 6), round(p.high, 6), p.window_hours, p.rate
(48.0, 48.0, 48.0, 3, 1.0)
>>> round(p.exhaustion_hours(36.0), 2)                   # 12 h at 1, then 8 h at 3 (of 12)
20.0
>>> p.exhaustion_hours(100.0) is None
True
>>> project(history[:70], hours_left=24, spend_to_date=0.0) is None   # under three days
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

MIN_HISTORY_H: Final = 72  # three days: a pattern, and a day of backtests of it
WEEKLY_AFTER_H: Final = 14 * 24  # two weeks before the day of week counts
WINDOWS_H: Final = (3, 6, 12, 24)  # candidate burn-rate windows, chosen per spender
BACKTEST_H: Final = 24  # the backtest predicts a day ahead (the pattern's cycle)
MIN_BACKTESTS: Final = 24  # a window needs a day of backtests to be chosen
QUANTILES: Final = (0.1, 0.5, 0.9)  # the interval's ends, and the middle that corrects bias

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Projection:
    """A period's spend: to date, projected total with an interval, and the path ahead."""

    spend_to_date: float
    total: float  # projected period total
    low: float  # 10th percentile
    high: float  # 90th percentile
    rate: float  # burn rate as a multiple of the spender's usual (1 = usual)
    window_hours: int  # the burn-rate window chosen from the history
    history_hours: int
    path: tuple[float, ...]  # expected spend of each hour left

    def exhaustion_hours(self, budget: float) -> float | None:
        """Hours from now at which the expected spend reaches ``budget`` (0 if it has), or
        None if not before the period ends."""
        need = budget - self.spend_to_date
        if need <= 0:
            return 0.0
        total = 0.0
        for hour, spend in enumerate(self.path):
            if spend > 0 and total + spend >= need:
                return hour + (need - total) / spend
            total += spend
        return None


def pattern(history: FloatArray, first_hour: int) -> FloatArray:
    """Each hour's expected spend as a multiple of the mean hour, for hours ``first_hour``
    onwards (absolute UTC hours since the epoch), over one week, from ``history`` (ending at the
    hour before ``first_hour``): hour of day, times day of week from two weeks of history.

    >>> pattern(np.tile([1.0, 3.0] * 12, 2), first_hour=0)[:4].tolist()
    [0.5, 1.5, 0.5, 1.5]
    """
    n = len(history)
    hours = np.arange(first_hour - n, first_hour)
    mean = history.mean()
    week = np.arange(first_hour, first_hour + 7 * 24)
    if mean <= 0:
        return np.ones(len(week))
    by_hod = np.bincount(hours % 24, weights=history, minlength=24)
    count = np.bincount(hours % 24, minlength=24)
    hod = np.where(count > 0, by_hod / np.maximum(count, 1) / mean, 1.0)
    shape = hod[week % 24]
    if n >= WEEKLY_AFTER_H:
        days = (hours // 24 + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
        by_dow = np.bincount(days, weights=history, minlength=7)
        dow_count = np.bincount(days, minlength=7)
        dow = np.where(dow_count > 0, by_dow / np.maximum(dow_count, 1) / mean, 1.0)
        shape = shape * dow[(week // 24 + 3) % 7]
    return np.asarray(shape, dtype=np.float64)


def project(
    history: FloatArray, hours_left: int, spend_to_date: float, *, end_hour: int | None = None
) -> Projection | None:
    """The period's projected spend: ``spend_to_date`` plus the next ``hours_left`` hours at
    the recent burn rate and the spender's pattern. ``history`` is spend per hour, its last
    entry the hour just before now; ``end_hour`` the absolute UTC hour (since the epoch) at
    which it ends (default: a multiple of a week, for hour-of-day-only tests). None with less
    than :data:`MIN_HISTORY_H` hours or no spend in them."""
    history = np.asarray(history, dtype=np.float64)
    n = len(history)
    if n < MIN_HISTORY_H or history.sum() <= 0:
        return None
    now = end_hour if end_hour is not None else n + (-n) % (7 * 24)
    weights = _weights(history, now)
    window, ratios = _choose_window(history, weights)
    rate = _rate(history, weights, n, window)
    if len(ratios) >= MIN_BACKTESTS:
        q_low, q_mid, q_high = (float(q) for q in np.quantile(ratios, QUANTILES))
    else:
        q_low = q_mid = q_high = 1.0
    ahead = np.resize(pattern(history, now), max(hours_left, 0))
    path = rate * float(history.mean()) * ahead
    remaining = float(path.sum())
    return Projection(
        spend_to_date=spend_to_date,
        total=spend_to_date + remaining * q_mid,
        low=spend_to_date + remaining * q_low,
        high=spend_to_date + remaining * q_high,
        rate=rate,
        window_hours=window,
        history_hours=n,
        path=tuple(float(x) * q_mid for x in path),
    )


def _weights(history: FloatArray, now: int) -> FloatArray:
    """The pattern's expected share of each hour of the history itself."""
    n = len(history)
    week = pattern(history, now - n)  # the same profile, laid from the history's first hour
    return np.resize(week, n) * float(history.mean())


def _rate(history: FloatArray, weights: FloatArray, end: int, window: int) -> float:
    """The burn rate as a multiple of the usual: spend over the ``window`` hours before ``end``
    over what the pattern expected of them."""
    expected = float(weights[end - window : end].sum())
    actual = float(history[end - window : end].sum())
    return actual / expected if expected > 0 else 0.0


def _choose_window(history: FloatArray, weights: FloatArray) -> tuple[int, FloatArray]:
    """The burn-rate window that predicted the next :data:`BACKTEST_H` hours best over the
    history (median absolute log error, over at least :data:`MIN_BACKTESTS` origins), and its
    actual / predicted ratios; the longest window that fits, with no ratios, when none has."""
    n = len(history)
    spent = np.concatenate([[0.0], np.cumsum(history)])
    expected = np.concatenate([[0.0], np.cumsum(weights)])
    best: tuple[float, int, FloatArray] | None = None
    for window in WINDOWS_H:
        origins = np.arange(window, n - BACKTEST_H + 1)
        if len(origins) < MIN_BACKTESTS:
            continue
        base = expected[origins] - expected[origins - window]
        rate = np.divide(spent[origins] - spent[origins - window], base,
                         out=np.zeros(len(origins)), where=base > 0)  # fmt: skip
        predicted = rate * (expected[origins + BACKTEST_H] - expected[origins])
        actual = spent[origins + BACKTEST_H] - spent[origins]
        ok = (predicted > 0) & (actual > 0)
        if ok.sum() < MIN_BACKTESTS:
            continue
        ratios = actual[ok] / predicted[ok]
        error = float(np.median(np.abs(np.log(ratios))))
        if best is None or error < best[0]:
            best = (error, window, ratios)
    if best is None:
        return max(w for w in WINDOWS_H if w <= n), np.empty(0)
    return best[1], best[2]
