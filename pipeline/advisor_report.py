"""The advisor's :class:`~pipeline.advisor.Advice` as Markdown (for people) or JSON (for tools).

>>> from pipeline.advisor import Estimate, Recommendation, Step
>>> step = Step(model="reasoner-large", band=(0.0, 0.2), cheap="standard", dear="deep",
...             requests=900, cheap_requests=800, gpu_s=(1.0, 4.1), cost_usd=(0.002, 0.0095),
...             gpu_ratio=Estimate(4.1, 3.9, 4.3), confidence_gain=Estimate(0.004, -0.003, 0.011),
...             confidence_per_gpu_s=Estimate(0.0013, -0.001, 0.0035))
>>> advice = Recommendation("cap", step, requests_per_day=41_600.0, usd_per_day=312.0)
>>> import textwrap
>>> print(textwrap.fill(summary(advice), 96))
difficulty 0.0-0.2 on reasoner-large routed `deep`: 4.1x the GPU time of `standard` for +0.004
confidence (95 % CI -0.003 to 0.011); capping it at `standard` saves $312/day
>>> print(textwrap.fill(explanation(advice), 96))
($0.009500 - $0.002000) per request, `deep` minus `standard` on the same difficulty mix, x
41,600 `deep` requests/day in this band = $312/day
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import msgspec

from pipeline.advisor import Advice, Estimate, Recommendation, RouteRow, Step

__all__ = ["band_label", "explanation", "no_recommendation", "summary", "to_json", "to_markdown"]


def band_label(band: tuple[float, float]) -> str:
    """``0.4-0.6``: a difficulty band as the report names it."""
    digits = 1 if all(float(round(b * 10, 6)).is_integer() for b in band) else 2
    return f"{band[0]:.{digits}f}-{band[1]:.{digits}f}"


def _usd(value: float) -> str:
    return f"${value:,.0f}" if abs(value) >= 100 else f"${value:,.2f}"


def _signed(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.{digits}f}"


def _ci(e: Estimate, digits: int = 3) -> str:
    if math.isnan(e.low):
        return "n/a"
    return f"{e.low:.{digits}f} to {e.high:.{digits}f}"


def _with_ci(e: Estimate, digits: int = 3) -> str:
    value = "n/a" if math.isnan(e.value) else f"{e.value:.{digits}f}"
    return f"{value} ({_ci(e, digits)})"


def summary(rec: Recommendation) -> str:
    """One sentence: the band, what the dearer route costs and buys, and what to do."""
    s = rec.step
    where = f"difficulty {band_label(s.band)} on {s.model}"
    gain = f"{_signed(s.confidence_gain.value)} confidence (95 % CI {_ci(s.confidence_gain)})"
    if rec.action == "cap":
        return (
            f"{where} routed `{s.dear}`: {s.gpu_ratio.value:.1f}x the GPU time of `{s.cheap}` "
            f"for {gain}; capping it at `{s.cheap}` saves {_usd(rec.usd_per_day)}/day"
        )
    return (
        f"{where} routed `{s.cheap}`: `{s.dear}` buys {gain} for {s.gpu_ratio.value:.1f}x the "
        f"GPU time; routing it to `{s.dear}` costs {_usd(rec.usd_per_day)}/day more"
    )


def explanation(rec: Recommendation) -> str:
    """How the money per day was computed."""
    s = rec.step
    moved = s.dear if rec.action == "cap" else s.cheap
    return (
        f"(${s.cost_usd[1]:.6f} - ${s.cost_usd[0]:.6f}) per request, `{s.dear}` minus "
        f"`{s.cheap}` on the same difficulty mix, x {rec.requests_per_day:,.0f} `{moved}` "
        f"requests/day in this band = {_usd(rec.usd_per_day)}/day"
    )


def _header(advice: Advice, period: tuple[date, date]) -> list[str]:
    span, opts = advice.span, advice.options
    seen = "no requests with a difficulty"
    if span.first is not None and span.last is not None and span.requests:
        seen = (
            f"{span.requests - span.without_difficulty:,} requests with a difficulty from "
            f"{span.first:%Y-%m-%d %H:%M} to {span.last:%Y-%m-%d %H:%M} UTC ({span.days:.3g} days "
            f"of traffic: \"per day\" below is over these)"
        )
    return [
        f"# Allocation advice, {period[0]} to {period[1]} (exclusive)",
        "",
        f"{seen}; {span.without_difficulty:,} without a difficulty left out. Tolerance: "
        f"{opts.tolerance:g} confidence. Intervals: 95 % bootstrap over {advice.bucket_s // 60}-"
        f"minute blocks ({opts.replicates} replicates). Routes are compared like for like: on "
        f"the difficulty strata (1/{opts.bands * opts.strata} wide) both serve, weighted by the "
        "dearer route's requests.",
    ]


def no_recommendation(advice: Advice) -> str:
    """Why the advice recommends nothing."""
    why = (
        f"no dearer route is within {advice.options.tolerance:g} confidence of a cheaper one, "
        "and none surely buys more"
        if advice.steps
        else "no band has two routes serving the same difficulties"
    )
    return f"None: {why}."


def _recommendations(advice: Advice) -> list[str]:
    lines = ["", "## Recommendations", ""]
    if not advice.recommendations:
        return [*lines, no_recommendation(advice)]
    for i, rec in enumerate(advice.recommendations, 1):
        lines += [f"{i}. {summary(rec)}.", f"   {explanation(rec)}."]
    return lines


def _steps(steps: list[Step]) -> list[str]:
    lines = [
        "", "## Route steps", "",
        "| model | difficulty | step | requests compared | GPU time | confidence gain (95 % CI) "
        "| confidence per extra GPU-s (95 % CI) | cost per request |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for s in steps:
        lines.append(
            f"| {s.model} | {band_label(s.band)} | `{s.cheap}` -> `{s.dear}` | "
            f"{s.cheap_requests:,} / {s.requests:,} | {s.gpu_ratio.value:.1f}x | "
            f"{_signed(s.confidence_gain.value)} ({_ci(s.confidence_gain)}) | "
            f"{_with_ci(s.confidence_per_gpu_s, 4)} | "
            f"${s.cost_usd[0]:.6f} -> ${s.cost_usd[1]:.6f} |"
        )
    return lines if steps else [*lines[:3], "No band has two routes to compare."]


def _rows(rows: list[RouteRow]) -> list[str]:
    lines = [
        "", "## By model, difficulty band and route", "",
        "| model | difficulty | route | requests | GPU-s/request (95 % CI) | cost "
        "| mean confidence (95 % CI) | truncated | latency p95 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r.model} | {band_label(r.band)} | `{r.route}` | {r.requests:,} | "
            f"{_with_ci(r.gpu_s_per_request, 2)} | {_usd(r.cost_usd)} | {_with_ci(r.confidence)} "
            f"| {r.truncation_rate:.1%} | {r.latency_p95_ms / 1000:.1f} s |"
        )
    return lines


def to_markdown(advice: Advice, period: tuple[date, date]) -> str:
    """The report: recommendations with their arithmetic, route steps, then the full table."""
    parts = [
        *_header(advice, period), *_recommendations(advice), *_steps(advice.steps),
        *_rows(advice.rows),
    ]  # fmt: skip
    return "\n".join(parts) + "\n"


def to_json(advice: Advice, period: tuple[date, date]) -> bytes:
    """The advice as one JSON object (NaN as null); recommendations carry their sentences."""
    recommendations: list[dict[str, Any]] = [
        {
            "action": rec.action, "model": rec.step.model, "band": rec.step.band,
            "from_route": rec.step.dear if rec.action == "cap" else rec.step.cheap,
            "to_route": rec.step.cheap if rec.action == "cap" else rec.step.dear,
            "requests_per_day": rec.requests_per_day, "usd_per_day": rec.usd_per_day,
            "summary": summary(rec), "explanation": explanation(rec),
        }
        for rec in advice.recommendations
    ]  # fmt: skip
    doc = {
        "period": {"from": period[0], "to": period[1]},
        "span": advice.span,
        "days": advice.span.days,
        "options": advice.options,
        "bucket_s": advice.bucket_s,
        "recommendations": recommendations,
        "steps": advice.steps,
        "rows": advice.rows,
    }
    return msgspec.json.encode(doc) + b"\n"
