"""The allocation advisor: what a deeper route's extra compute buys, per model and difficulty band.

ClickHouse does the aggregation (:func:`pipeline.storage.queries.allocation_bands` for the table,
:func:`~pipeline.storage.queries.allocation_cells` for sums per fine difficulty bin, route and
time bucket); this module only resamples and compares those sums.

* **Like for like.** Inside a band a route that gets the harder requests looks worse than it is,
  so two routes are compared only on the fine difficulty bins ("strata", ``strata`` per band)
  where each served at least ``min_stratum`` requests, every stratum weighted by the dearer
  route's requests in it: the dearer route's requests, as the cheaper route serves requests of
  the same difficulty. A router that splits a band cleanly by difficulty leaves no shared
  stratum, and then the advisor claims nothing about that pair.
* **Intervals.** A block bootstrap: the time buckets are drawn with replacement, all groups
  together, ``replicates`` times (seeded); an interval runs from the 2.5th to the 97.5th
  percentile of the replicates. Fewer than ``min_blocks`` buckets give no interval (and so no
  recommendation): a few minutes of traffic cannot say how much the numbers vary.
* **Steps.** In a band the routes are ordered by GPU-seconds per request; each is compared with
  the nearest cheaper route that shares strata with it: GPU time ratio, confidence gain, and
  the marginal confidence per extra GPU-second.
* **Recommendations.** ``cap`` when the gain's upper bound is within ``tolerance``: capping the
  band at the cheaper route saves (cost per request on the dearer route - on the cheaper one,
  same difficulty mix) x the dearer route's requests per day in the band. ``raise`` when the
  gain's lower bound exceeds ``tolerance``: the extra cost is the same difference x the cheaper
  route's requests per day. Per day means over the days of traffic seen (first to last event).
  Savings come first, largest first, then raises, cheapest first.

>>> rng = np.random.default_rng(42)
>>> w = block_weights(4, 3, rng)
>>> w.shape, w.sum(axis=1).tolist()
((4, 4), [4.0, 4.0, 4.0, 4.0])
>>> Estimate.of(np.array([1.0, 0.0, 1.0, 2.0]))
Estimate(value=1.0, low=0.05, high=1.95)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DEFAULT_OPTIONS",
    "Advice",
    "Estimate",
    "Options",
    "Recommendation",
    "RouteRow",
    "Span",
    "Step",
    "advise",
    "block_weights",
    "recommend",
]

Columns = Mapping[str, Sequence[Any]]
FloatArray = NDArray[np.float64]
MEASURES: Final = ("requests", "gpu_ms", "cost_usd", "confidence_sum", "confidence_count")
MIN_SPAN: Final = timedelta(minutes=1)


@dataclass(frozen=True, kw_only=True)
class Options:
    """How the advisor bins, resamples and judges (the defaults are the command's)."""

    bands: int = 5
    strata: int = 4
    tolerance: float = 0.01
    replicates: int = 400
    seed: int = 0
    min_stratum: int = 20
    min_compared: int = 100
    min_blocks: int = 10

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1), got {self.tolerance}")
        if self.bands < 1 or self.strata < 1 or self.replicates < 10:
            raise ValueError("bands >= 1, strata >= 1 and replicates >= 10 are required")


DEFAULT_OPTIONS: Final = Options()


@dataclass(frozen=True, slots=True)
class Estimate:
    """A value and its 95 % bootstrap interval (NaN where undefined)."""

    value: float
    low: float
    high: float

    @classmethod
    def of(cls, samples: FloatArray) -> Estimate:
        """Row 0 holds the value on the data, the rest its bootstrap replicates."""
        finite = samples[1:][np.isfinite(samples[1:])]
        low, high = np.percentile(finite, [2.5, 97.5]) if finite.size else (np.nan, np.nan)
        return cls(float(samples[0]), float(low), float(high))


@dataclass(frozen=True, slots=True)
class Span:
    """What the period held: requests, those without a difficulty, the first and last event."""

    requests: int
    without_difficulty: int
    first: datetime | None
    last: datetime | None

    @property
    def days(self) -> float:
        """Days of traffic seen (first to last event, at least a minute); 0 without any."""
        if self.first is None or self.last is None or self.requests == 0:
            return 0.0
        return max(self.last - self.first, MIN_SPAN) / timedelta(days=1)


@dataclass(frozen=True, slots=True)
class RouteRow:
    """One model x difficulty band x route over the period."""

    model: str
    band: tuple[float, float]
    route: str
    requests: int
    cost_usd: float
    truncation_rate: float
    latency_p95_ms: float
    gpu_s_per_request: Estimate
    confidence: Estimate


@dataclass(frozen=True, slots=True)
class Step:
    """A band moving from route ``cheap`` to ``dear``, on the strata both serve.

    ``gpu_s`` and ``cost_usd`` are per request, ``(cheap, dear)``, on the dearer route's
    difficulty mix; ``requests`` and ``cheap_requests`` are those compared.
    """

    model: str
    band: tuple[float, float]
    cheap: str
    dear: str
    requests: int
    cheap_requests: int
    gpu_s: tuple[float, float]
    cost_usd: tuple[float, float]
    gpu_ratio: Estimate
    confidence_gain: Estimate
    confidence_per_gpu_s: Estimate


@dataclass(frozen=True, slots=True)
class Recommendation:
    """``cap``: serve the band at ``step.cheap``, saving ``usd_per_day``; ``raise``: serve it at
    ``step.dear``, costing ``usd_per_day`` more. ``requests_per_day`` are the moved ones."""

    action: Literal["cap", "raise"]
    step: Step
    requests_per_day: float
    usd_per_day: float


@dataclass(frozen=True, slots=True)
class Advice:
    """Everything ``computewatch advise`` reports."""

    span: Span
    options: Options
    bucket_s: int
    rows: list[RouteRow]
    steps: list[Step]
    recommendations: list[Recommendation]


def block_weights(buckets: int, replicates: int, rng: np.random.Generator) -> FloatArray:
    """Bootstrap weights over time buckets: row 0 all ones (the data), then one row per
    replicate, each bucket counted as often as it was drawn (``buckets`` draws)."""
    draws = rng.multinomial(buckets, np.full(buckets, 1.0 / buckets), size=replicates)
    return np.vstack([np.ones((1, buckets)), draws]).astype(np.float64)


class _Resampled:
    """Sums per (model, stratum, route) group: ``sums[m]`` is (replicates + 1, groups)."""

    def __init__(self, cells: Columns, options: Options) -> None:
        models, model = np.unique(np.asarray(cells["model"], dtype=str), return_inverse=True)
        routes, route = np.unique(np.asarray(cells["route"], dtype=str), return_inverse=True)
        strata = options.bands * options.strata
        code = (model * strata + np.asarray(cells["stratum"], dtype=np.int64)) * len(routes) + route
        groups, group = np.unique(code, return_inverse=True)
        buckets, bucket = np.unique(np.asarray(cells["bucket"], dtype=np.int64),
                                    return_inverse=True)  # fmt: skip
        weights = block_weights(len(buckets), options.replicates,
                                np.random.default_rng(options.seed))  # fmt: skip
        if len(buckets) < options.min_blocks:
            weights[1:] = np.nan
        flat, size = bucket * len(groups) + group, len(buckets) * len(groups)
        self.sums = {
            m: weights @ np.bincount(flat, np.asarray(cells[m], dtype=np.float64), size)
            .reshape(len(buckets), len(groups))
            for m in MEASURES
        }
        self.index = {
            (str(models[g // len(routes) // strata]), int(g // len(routes) % strata),
             str(routes[g % len(routes)])): i
            for i, g in enumerate(groups.tolist())
        }  # fmt: skip

    def of(self, measure: str, columns: list[int]) -> FloatArray:
        """Sums of ``measure`` over the groups ``columns``, per replicate."""
        out: FloatArray = self.sums[measure][:, columns].sum(axis=1)
        return out


def _ratio(a: FloatArray, b: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = a / b
    return out


def _band(index: int, bands: int) -> tuple[float, float]:
    return (round(index / bands, 6), round((index + 1) / bands, 6))


def _route_rows(bands: Columns, res: _Resampled, options: Options) -> list[RouteRow]:
    rows = []
    for i, (model, band, route) in enumerate(zip(bands["model"], bands["band"], bands["route"],
                                                 strict=True)):  # fmt: skip
        strata = range(band * options.strata, (band + 1) * options.strata)
        columns = [res.index[k] for s in strata if (k := (model, s, route)) in res.index]
        requests = int(bands["requests"][i])
        rows.append(RouteRow(
            model=model, band=_band(band, options.bands), route=route, requests=requests,
            cost_usd=float(bands["cost_usd"][i]),
            truncation_rate=int(bands["truncated"][i]) / requests,
            latency_p95_ms=float(bands["latency_p95_ms"][i]),
            gpu_s_per_request=Estimate.of(
                _ratio(res.of("gpu_ms", columns), res.of("requests", columns)) / 1000),
            confidence=Estimate.of(
                _ratio(res.of("confidence_sum", columns), res.of("confidence_count", columns))),
        ))  # fmt: skip
    return rows


def _step(res: _Resampled, row: RouteRow, cheap: str, options: Options) -> Step | None:
    """``row``'s route against ``cheap`` on the strata both serve, or None if too few."""
    band = round(row.band[0] * options.bands)
    pairs = [
        (res.index[(row.model, s, cheap)], res.index[(row.model, s, row.route)])
        for s in range(band * options.strata, (band + 1) * options.strata)
        if (row.model, s, cheap) in res.index and (row.model, s, row.route) in res.index
    ]
    n = res.sums["requests"]
    pairs = [(c, d) for c, d in pairs if min(n[0, c], n[0, d]) >= options.min_stratum]
    c, d = [p[0] for p in pairs], [p[1] for p in pairs]
    if min(n[0, c].sum(), n[0, d].sum()) < options.min_compared:
        return None
    weight = _ratio(n[:, d], n[:, d].sum(axis=1, keepdims=True))

    def mixed(measure: str, per: str, columns: list[int]) -> FloatArray:
        """``measure`` per ``per`` on ``columns``' strata, averaged over the dearer mix."""
        out: FloatArray = (weight * _ratio(res.sums[measure][:, columns],
                                           res.sums[per][:, columns])).sum(axis=1)  # fmt: skip
        return out

    gpu_c, gpu_d = mixed("gpu_ms", "requests", c) / 1000, mixed("gpu_ms", "requests", d) / 1000
    gain = mixed("confidence_sum", "confidence_count", d) - mixed(
        "confidence_sum", "confidence_count", c
    )
    return Step(
        model=row.model, band=row.band, cheap=cheap, dear=row.route,
        requests=int(n[0, d].sum()), cheap_requests=int(n[0, c].sum()),
        gpu_s=(float(gpu_c[0]), float(gpu_d[0])),
        cost_usd=(float(mixed("cost_usd", "requests", c)[0]),
                  float(mixed("cost_usd", "requests", d)[0])),
        gpu_ratio=Estimate.of(_ratio(gpu_d, gpu_c)), confidence_gain=Estimate.of(gain),
        confidence_per_gpu_s=Estimate.of(_ratio(gain, gpu_d - gpu_c)),
    )  # fmt: skip


def _steps(rows: list[RouteRow], res: _Resampled, options: Options) -> list[Step]:
    """Each route of a band against the nearest cheaper route it can be compared with."""
    by_band: dict[tuple[str, tuple[float, float]], list[RouteRow]] = {}
    for row in rows:
        by_band.setdefault((row.model, row.band), []).append(row)
    steps = []
    for band_rows in by_band.values():
        ordered = sorted(band_rows, key=lambda r: r.gpu_s_per_request.value)
        for j, dear in enumerate(ordered):
            for cheap in reversed(ordered[:j]):
                if (step := _step(res, dear, cheap.route, options)) is not None:
                    steps.append(step)
                    break
    return steps


def recommend(steps: Sequence[Step], tolerance: float, days: float) -> list[Recommendation]:
    """Caps where the confidence gain is within ``tolerance`` (largest saving first), then
    raises where it surely exceeds it (cheapest first); see the module docstring.

    >>> flat = Estimate(0.002, -0.004, 0.008)
    >>> step = Step(model="m", band=(0.4, 0.6), cheap="standard", dear="deep", requests=500,
    ...             cheap_requests=500, gpu_s=(1.0, 5.0), cost_usd=(0.001, 0.005),
    ...             gpu_ratio=Estimate(5.0, 4.8, 5.2), confidence_gain=flat,
    ...             confidence_per_gpu_s=Estimate(0.0005, -0.001, 0.002))
    >>> [(r.action, round(r.usd_per_day, 2)) for r in recommend([step], 0.01, days=0.5)]
    [('cap', 4.0)]
    >>> recommend([step], 0.001, days=0.5)
    []
    """
    caps, raises = [], []
    for step in steps:
        extra = step.cost_usd[1] - step.cost_usd[0]
        gain = step.confidence_gain
        if days <= 0 or not extra > 0:
            continue
        if gain.high <= tolerance:
            per_day = step.requests / days
            caps.append(Recommendation("cap", step, per_day, extra * per_day))
        elif gain.low > tolerance:
            per_day = step.cheap_requests / days
            raises.append(Recommendation("raise", step, per_day, extra * per_day))
    caps.sort(key=lambda r: -r.usd_per_day)
    raises.sort(key=lambda r: r.usd_per_day)
    return caps + raises


def advise(
    span: Span, bands: Columns, cells: Columns, *, bucket_s: int, options: Options = DEFAULT_OPTIONS
) -> Advice:
    """The advice from the period's :class:`Span` and the columns of ``allocation_bands`` and
    ``allocation_cells`` (the latter binned into ``options.bands * options.strata`` strata and
    ``bucket_s`` buckets)."""
    if not len(cells.get("bucket", ())):
        return Advice(span, options, bucket_s, [], [], [])
    res = _Resampled(cells, options)
    rows = _route_rows(bands, res, options)
    steps = _steps(rows, res, options)
    return Advice(
        span, options, bucket_s, rows, steps, recommend(steps, options.tolerance, span.days)
    )
