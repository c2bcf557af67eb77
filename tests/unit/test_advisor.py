"""The advisor's pure core on hand-made ClickHouse results: like-for-like strata, the choice of
steps, the tolerance rule, ranking, and what too little data cannot support."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from pipeline.advisor import Options, Span, advise
from pipeline.advisor_report import no_recommendation, to_markdown

T0 = datetime(2026, 3, 2, tzinfo=UTC)
SPAN = Span(requests=1, without_difficulty=0, first=T0, last=T0 + timedelta(days=1))


def cells(
    groups: dict[tuple[str, int, str], tuple[float, float, float]], buckets: int = 60,
    per_bucket: int = 10, seed: int = 1,
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """``allocation_cells`` and ``allocation_bands`` columns: per (model, stratum, route), a mean
    GPU-ms, cost per request and confidence, with noise, over ``buckets`` buckets."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[Any]] = {k: [] for k in (
        "model", "stratum", "route", "bucket", "requests", "gpu_ms", "cost_usd",
        "confidence_sum", "confidence_count", "truncated")}  # fmt: skip
    for (model, stratum, route), (gpu_ms, cost, confidence) in groups.items():
        for bucket in range(buckets):
            conf = np.clip(confidence + 0.05 * rng.standard_normal(per_bucket), 0, 1)
            row = (model, stratum, route, bucket, per_bucket, gpu_ms * per_bucket,
                   cost * per_bucket, float(conf.sum()), per_bucket, 0)  # fmt: skip
            for key, value in zip(out, row, strict=True):
                out[key].append(value)
    totals: dict[tuple[str, int, str], list[float]] = {}
    for model, stratum, route, requests, cost in zip(
        out["model"], out["stratum"], out["route"], out["requests"], out["cost_usd"], strict=True
    ):
        total = totals.setdefault((model, stratum // 4, route), [0, 0.0])
        total[0] += requests
        total[1] += cost
    keys = sorted(totals)
    bands: dict[str, list[Any]] = {
        "model": [k[0] for k in keys], "band": [k[1] for k in keys],
        "route": [k[2] for k in keys], "requests": [totals[k][0] for k in keys],
        "cost_usd": [totals[k][1] for k in keys], "truncated": [0] * len(keys),
        "latency_p95_ms": [1000.0] * len(keys),
    }  # fmt: skip
    return out, bands


MISROUTED = {  # band 2 (0.4-0.6) of "m": deep costs 5x standard for the same confidence
    **{("m", s, "standard"): (1000.0, 0.001, 0.70) for s in (8, 9, 10, 11)},
    **{("m", s, "deep"): (5000.0, 0.005, 0.70) for s in (8, 9, 10, 11)},
}
HELPFUL = {  # band 1 of "m": standard buys 0.1 confidence over fast
    **{("m", s, "fast"): (400.0, 0.0004, 0.70) for s in (4, 5)},
    **{("m", s, "standard"): (1000.0, 0.001, 0.80) for s in (4, 5)},
}


def test_a_band_that_buys_nothing_is_capped_and_a_helpful_one_raised_after_it() -> None:
    columns, bands = cells({**MISROUTED, **HELPFUL})
    advice = advise(SPAN, bands, columns, bucket_s=60)
    cap, more = advice.recommendations
    assert (cap.action, cap.step.band, cap.step.cheap, cap.step.dear) == (
        "cap", (0.4, 0.6), "standard", "deep")
    # (0.005 - 0.001) $/request x 2,400 deep requests over one day
    assert cap.usd_per_day == pytest.approx(0.004 * 2400)
    assert cap.step.gpu_ratio.value == pytest.approx(5.0)
    assert cap.step.confidence_gain.low < 0 < cap.step.confidence_gain.high < 0.01
    assert (more.action, more.step.band, more.step.cheap, more.step.dear) == (
        "raise", (0.2, 0.4), "fast", "standard")
    assert more.step.confidence_gain.low > 0.09
    assert more.step.confidence_per_gpu_s.value == pytest.approx(0.1 / 0.6, rel=0.05)


def test_routes_are_compared_only_on_strata_both_serve() -> None:
    # fast serves the easier half of the band, standard the harder half (less confident):
    # no stratum in common, so nothing is said, although standard looks worse
    split = {
        ("m", 4, "fast"): (400.0, 0.0004, 0.80), ("m", 5, "fast"): (400.0, 0.0004, 0.78),
        ("m", 6, "standard"): (1000.0, 0.001, 0.70), ("m", 7, "standard"): (1000.0, 0.001, 0.68),
    }
    columns, bands = cells(split)
    advice = advise(SPAN, bands, columns, bucket_s=60)
    assert advice.steps == [] and advice.recommendations == []
    assert len(advice.rows) == 2
    assert no_recommendation(advice) == (
        "None: no band has two routes serving the same difficulties.")


def test_the_tolerance_decides_and_too_few_blocks_say_nothing() -> None:
    columns, bands = cells(MISROUTED)
    assert advise(SPAN, bands, columns, bucket_s=60).recommendations
    strict = advise(SPAN, bands, columns, bucket_s=60, options=Options(tolerance=0.0))
    assert strict.recommendations == [] and len(strict.steps) == 1
    assert "no dearer route is within 0 confidence" in to_markdown(strict, (T0.date(),) * 2)
    columns, bands = cells(MISROUTED, buckets=5, per_bucket=200)
    few = advise(SPAN, bands, columns, bucket_s=60)
    assert few.recommendations == [] and np.isnan(few.steps[0].confidence_gain.high)


def test_the_same_data_and_seed_give_the_same_advice() -> None:
    columns, bands = cells({**MISROUTED, **HELPFUL})
    first = advise(SPAN, bands, columns, bucket_s=60)
    assert advise(SPAN, bands, columns, bucket_s=60) == first
    other = advise(SPAN, bands, columns, bucket_s=60, options=Options(seed=1))
    assert other.steps[0].confidence_gain != first.steps[0].confidence_gain
