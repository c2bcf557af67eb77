"""Shaping query results for the pages: pure pandas/pyarrow functions, no Streamlit, no SQL.

>>> evidence_frame('{"requests": {"value": 57.0, "baseline": 9.5}}')[["series", "amount", "ratio"]]
     series  amount  ratio
0     value    57.0    6.0
1  baseline     9.5    6.0
>>> overall(pd.DataFrame({"requests": [3, 1], "truncated": [1, 0], "timeouts": [0, 1],
...     "gpu_ms": [10.0, 30.0], "completion_tokens": [10, 0], "reasoning_tokens": [30, 0],
...     "confidence_sum": [1.5, 0.5], "confidence_count": [2, 1],
...     "latency_hist": [{100: 3}, {200: 1}]}))["truncation_rate"]
0.25
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.advisor import Advice, Estimate
from pipeline.advisor_report import band_label
from pipeline.storage.queries import latency_percentiles
from pipeline.storage.usage import write_usage

PERCENTILES: Final = ("p50_ms", "p95_ms", "p99_ms")
USAGE_NUMBERS: Final = (
    "requests", "prompt_tokens", "completion_tokens", "reasoning_tokens", "passes", "gpu_ms",
    "cost_usd",
)
TOTAL_LABEL: Final = "Total"


# -- efficiency ---------------------------------------------------------------------------------

def merge_histograms(hists: Any) -> dict[int, int]:
    """Sum ``{bucket: count}`` latency histograms (the sketch is mergeable by addition)."""
    merged: dict[int, int] = {}
    for hist in hists:
        for index, count in (hist or {}).items():
            merged[int(index)] = merged.get(int(index), 0) + int(count)
    return merged


def with_percentiles(df: pd.DataFrame, *, keep_hist: bool = False) -> pd.DataFrame:
    """``df`` with p50/p95/p99 latency columns computed from each row's ``latency_hist``."""
    out = df.copy()
    rows = [latency_percentiles(merge_histograms([h])) for h in out.get("latency_hist", [])]
    for name in PERCENTILES:
        out[name] = pd.Series([r[name] for r in rows], index=out.index, dtype="float64")
    if "cost_usd" in out:
        out["cost_usd"] = out["cost_usd"].astype(float)
    return out if keep_hist else out.drop(columns=["latency_hist"], errors="ignore")


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def overall(df: pd.DataFrame) -> dict[str, float | None]:
    """Headline efficiency numbers of several groups together (sums first, then ratios)."""
    s = {c: float(df[c].sum()) for c in (
        "requests", "truncated", "timeouts", "gpu_ms", "completion_tokens", "reasoning_tokens",
        "confidence_sum", "confidence_count",
    )}
    return {
        "requests": s["requests"],
        "gpu_ms_per_1k_tokens": _ratio(
            s["gpu_ms"] * 1000, s["completion_tokens"] + s["reasoning_tokens"]
        ),
        "reasoning_tokens_per_request": _ratio(s["reasoning_tokens"], s["requests"]),
        "confidence_mean": _ratio(s["confidence_sum"], s["confidence_count"]),
        "truncation_rate": _ratio(s["truncated"], s["requests"]),
        "timeout_rate": _ratio(s["timeouts"], s["requests"]),
        **latency_percentiles(merge_histograms(df["latency_hist"])),
    }


def cut_above(values: pd.Series, times: float = 3.0) -> float | None:
    """Where a bar chart of ``values`` should be cut so that one outlier (a backfill minute)
    does not flatten the rest: ``times`` the median, or None when no value is above that.

    >>> cut_above(pd.Series([700, 650, 720, 280_000]))
    2130.0
    >>> cut_above(pd.Series([700, 650, 720])) is None
    True
    """
    limit = float(values.median()) * times if len(values) else 0.0
    return limit if limit and float(values.max()) > limit else None


def top_groups(df: pd.DataFrame, column: str, n: int = 8) -> list[str]:
    """The ``n`` groups of ``column`` that used the most GPU time (to keep charts legible)."""
    if df.empty:
        return []
    totals = df.groupby(column, observed=True)["gpu_ms"].sum().sort_values(ascending=False)
    return [str(g) for g in totals.index[:n]]


# -- alerts -------------------------------------------------------------------------------------

def evidence_frame(evidence: str | Mapping[str, Any]) -> pd.DataFrame:
    """An alert's evidence as rows ``feature, series (value|baseline), amount, ratio``."""
    parsed = json.loads(evidence) if isinstance(evidence, str) else evidence
    rows = []
    for feature, pair in parsed.items():
        value, baseline = float(pair["value"]), float(pair["baseline"])
        ratio = value / baseline if baseline else None
        rows.append({"feature": feature, "series": "value", "amount": value, "ratio": ratio})
        rows.append({"feature": feature, "series": "baseline", "amount": baseline, "ratio": ratio})
    return pd.DataFrame(rows, columns=["feature", "series", "amount", "ratio"])


def alert_label(row: Mapping[str, Any]) -> str:
    """One line naming an alert in a picker: time, severity, kind, entity."""
    when = pd.Timestamp(row["detected_at"]).strftime("%Y-%m-%d %H:%M")
    kind = str(row["kind"]).replace("_", " ")
    return f"{when} · {row['severity']} · {kind} · {row['entity_type']} {row['entity_id']}"


def alert_counts(feed: pd.DataFrame, bucket_s: int, by: str = "kind") -> pd.DataFrame:
    """Alerts per ``by`` (kind or severity) per ``bucket_s`` bucket (``bucket, <by>, alerts``)
    counted from a feed, with buckets aligned to the epoch as ClickHouse's
    ``toStartOfInterval`` aligns them.

    >>> feed = pd.DataFrame({"detected_at": pd.to_datetime(
    ...     ["2026-03-02 10:05", "2026-03-02 10:55", "2026-03-02 11:10"], utc=True),
    ...     "kind": ["volume_spike", "volume_spike", "other"]})
    >>> alert_counts(feed, 3600).values.tolist()  # doctest: +NORMALIZE_WHITESPACE
    [[Timestamp('2026-03-02 10:00:00+0000', tz='UTC'), 'volume_spike', 2],
     [Timestamp('2026-03-02 11:00:00+0000', tz='UTC'), 'other', 1]]
    """
    if feed.empty:
        return pd.DataFrame(columns=["bucket", by, "alerts"])
    buckets = pd.to_datetime(feed["detected_at"], utc=True).dt.floor(f"{int(bucket_s)}s")
    counts = feed.assign(bucket=buckets).groupby(["bucket", by]).size()
    return counts.rename("alerts").reset_index().sort_values(["bucket", by], ignore_index=True)


# -- usage --------------------------------------------------------------------------------------

def usage_totals(table: pa.Table) -> dict[str, int | Decimal]:
    """Exact column totals of a usage report (integers and Decimals, no float rounding)."""
    totals: dict[str, int | Decimal] = {}
    for name in USAGE_NUMBERS:
        value = pc.sum(table.column(name)).as_py() if table.num_rows else None
        zero: int | Decimal = Decimal(0) if name in ("gpu_ms", "cost_usd") else 0
        totals[name] = zero if value is None else value
    return totals


def usage_display(table: pa.Table) -> pd.DataFrame:
    """The usage report as shown: one row per group, then a ``Total`` row; money as Decimal."""
    df = table.to_pandas()
    if "day" in df:
        df["day"] = df["day"].astype(str)
    if df.empty:
        return df
    totals = usage_totals(table)
    keys = [c for c in df.columns if c not in USAGE_NUMBERS]
    total_row: dict[str, object] = {k: (TOTAL_LABEL if i == 0 else "") for i, k in enumerate(keys)}
    total_row.update(totals)
    return pd.concat([df, pd.DataFrame([total_row])], ignore_index=True)


def usage_export(table: pa.Table, format: str) -> bytes:
    """The usage report in ``format`` (csv or parquet), byte for byte what the CLI writes."""
    buffer = io.BytesIO()
    write_usage(table, format, buffer)
    return buffer.getvalue()


def usage_trend(df: pd.DataFrame, per: str = "hour", top: int = 8) -> pd.DataFrame:
    """Hourly usage rows regrouped per ``hour`` or ``day`` and tenant, for the trend chart:
    the ``top`` tenants by cost by name, the rest together as ``other (N tenants)``; rows are
    ordered by tenant, largest cost first (the legend's order).

    >>> hourly = pd.DataFrame({"hour": pd.to_datetime(["2026-03-02 10:00"] * 3, utc=True),
    ...     "tenant_id": ["a", "b", "c"], "cost_usd": [1.0, 3.0, 2.0]})
    >>> usage_trend(hourly, "day", top=1)[["tenant_id", "cost_usd"]].values.tolist()
    [['b', 3.0], ['other (2 tenants)', 3.0]]
    """
    if df.empty:
        return df.rename(columns={"hour": "period"})
    totals = df.groupby("tenant_id", observed=True)["cost_usd"].sum().sort_values(
        ascending=False, kind="stable")
    named = list(totals.index[:top])
    rest = len(totals) - len(named)
    others = f"other ({rest} tenants)" if rest > 1 else (str(totals.index[-1]) if rest else "")
    tenant = df["tenant_id"].where(df["tenant_id"].isin(named), others)
    period = df["hour"].dt.floor("D") if per == "day" else df["hour"]
    numbers = [c for c in USAGE_NUMBERS if c in df]
    out = (df.assign(period=period, tenant_id=tenant)
           .groupby(["period", "tenant_id"], as_index=False, observed=True)[numbers].sum())
    order = {t: i for i, t in enumerate([*named, others])}
    return out.sort_values(["tenant_id", "period"], key=lambda c: c.map(order)
                           if c.name == "tenant_id" else c, ignore_index=True)


# -- allocation ---------------------------------------------------------------------------------

ALLOCATION_COLUMNS: Final = (
    "model", "difficulty", "route", "requests", "gpu_s_per_request", "gpu_s_ci", "cost_usd",
    "confidence", "confidence_ci", "truncation_rate", "latency_p95_s",
)
STEP_COLUMNS: Final = (
    "model", "difficulty", "step", "requests", "gpu_ratio", "confidence_gain",
    "confidence_gain_ci", "confidence_per_gpu_s", "confidence_per_gpu_s_ci", "cost_cheap_usd",
    "cost_dear_usd",
)


def interval(e: Estimate, digits: int = 3) -> str:
    """A 95 % interval as ``0.012 to 0.034`` (a dash when undefined).

    >>> interval(Estimate(0.02, 0.012, 0.034)), interval(Estimate(1.0, float("nan"), 2.0), 1)
    ('0.012 to 0.034', '-')
    """
    if pd.isna(e.low) or pd.isna(e.high):
        return "-"
    return f"{e.low:.{digits}f} to {e.high:.{digits}f}"


def allocation_rows(advice: Advice) -> pd.DataFrame:
    """The advisor's table: one row per model, difficulty band and route."""
    return pd.DataFrame(
        [{
            "model": r.model, "difficulty": band_label(r.band), "route": r.route,
            "requests": r.requests, "gpu_s_per_request": r.gpu_s_per_request.value,
            "gpu_s_ci": interval(r.gpu_s_per_request, 2), "cost_usd": r.cost_usd,
            "confidence": r.confidence.value, "confidence_ci": interval(r.confidence),
            "truncation_rate": r.truncation_rate, "latency_p95_s": r.latency_p95_ms / 1000,
        } for r in advice.rows],
        columns=list(ALLOCATION_COLUMNS),
    )  # fmt: skip


def allocation_steps(advice: Advice) -> pd.DataFrame:
    """Each compared step from a cheaper route to a dearer one, with its intervals."""
    return pd.DataFrame(
        [{
            "model": s.model, "difficulty": band_label(s.band), "step": f"{s.cheap} -> {s.dear}",
            "requests": s.cheap_requests + s.requests, "gpu_ratio": s.gpu_ratio.value,
            "confidence_gain": s.confidence_gain.value,
            "confidence_gain_ci": interval(s.confidence_gain),
            "confidence_per_gpu_s": s.confidence_per_gpu_s.value,
            "confidence_per_gpu_s_ci": interval(s.confidence_per_gpu_s, 4),
            "cost_cheap_usd": s.cost_usd[0], "cost_dear_usd": s.cost_usd[1],
        } for s in advice.steps],
        columns=list(STEP_COLUMNS),
    )  # fmt: skip

