"""Altair charts used by the pages: small functions from a DataFrame to a chart, no Streamlit.

Every chart has a title and axis titles in words, tooltips with the exact numbers, and
``width="container"`` so it fills its column.

>>> import pandas as pd
>>> chart = over_time(pd.DataFrame({"bucket": [pd.Timestamp("2026-03-02", tz="UTC")],
...     "p95_ms": [1.0]}), "p95_ms", title="p95 latency", y_title="ms")
>>> chart.to_dict()["mark"]["type"]
'line'
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

SEVERITY_COLOURS = {"low": "#9ecae1", "medium": "#fdae6b", "high": "#e6550d", "critical": "#a50f15"}


def over_time(
    df: pd.DataFrame,
    y: str,
    *,
    title: str,
    y_title: str,
    x: str = "bucket",
    color: str | None = None,
    y_format: str = ",.2f",
    height: int = 240,
) -> alt.Chart:
    """A line per ``color`` group (or one line) of ``y`` over time."""
    tooltip = [
        alt.Tooltip(f"{x}:T", title="time", format="%Y-%m-%d %H:%M"),
        alt.Tooltip(f"{y}:Q", title=y_title, format=y_format),
    ]
    encoding = {
        "x": alt.X(f"{x}:T", title=None),
        "y": alt.Y(f"{y}:Q", title=y_title, axis=alt.Axis(format=y_format.lstrip(","))),
    }
    if color:
        encoding["color"] = alt.Color(f"{color}:N", title=None)
        tooltip.insert(0, alt.Tooltip(f"{color}:N"))
    df = df[[c for c in (x, y, color) if c]]
    return (
        alt.Chart(df, title=title, height=height, width="container")
        .mark_line(point=len(df) < 40)
        .encode(**encoding, tooltip=tooltip)
    )


def percentile_lines(df: pd.DataFrame, columns: Sequence[str], *, title: str) -> alt.Chart:
    """Several columns of ``df`` (e.g. p50/p95/p99 latency) as lines over ``bucket``."""
    long = df.melt(id_vars=["bucket"], value_vars=list(columns), var_name="series")
    return over_time(long, "value", title=title, y_title="ms", color="series", y_format=",.0f")


def rates_over_time(df: pd.DataFrame, columns: dict[str, str], *, title: str) -> alt.Chart:
    """Rates (0..1) named by ``columns`` (column -> label) as percentage lines over ``bucket``."""
    long = df.rename(columns=columns).melt(
        id_vars=["bucket"], value_vars=list(columns.values()), var_name="rate"
    )
    return over_time(long, "value", title=title, y_title="share of requests", color="rate",
                     y_format=".1%")


def bars(
    df: pd.DataFrame, category: str, value: str, *, title: str, value_title: str,
    value_format: str = ",.2f", height: int = 240,
) -> alt.Chart:
    """Horizontal bars of ``value`` per ``category``, largest first."""
    return (
        alt.Chart(df[[category, value]], title=title, height=height, width="container")
        .mark_bar()
        .encode(
            y=alt.Y(f"{category}:N", title=None, sort="-x"),
            x=alt.X(f"{value}:Q", title=value_title,
                    axis=alt.Axis(format=value_format.lstrip(","))),
            tooltip=[alt.Tooltip(f"{category}:N"),
                     alt.Tooltip(f"{value}:Q", title=value_title, format=value_format)],
        )
    )


def stacked_over_time(
    df: pd.DataFrame, x: str, y: str, color: str, *, title: str, y_title: str,
    y_format: str = ",.0f", height: int = 220,
) -> alt.Chart:
    """Stacked bars of ``y`` per time ``x``, one colour per ``color`` group."""
    return (
        alt.Chart(df[[x, y, color]], title=title, height=height, width="container")
        .mark_bar()
        .encode(
            x=alt.X(f"{x}:T", title=None),
            y=alt.Y(f"sum({y}):Q", title=y_title, stack="zero"),
            color=alt.Color(f"{color}:N", title=None),
            tooltip=[alt.Tooltip(f"{x}:T", title="time", format="%Y-%m-%d %H:%M"),
                     alt.Tooltip(f"{color}:N"),
                     alt.Tooltip(f"sum({y}):Q", title=y_title, format=y_format)],
        )
    )


def evidence(df: pd.DataFrame) -> alt.Chart:
    """Value vs baseline per evidence feature: one small panel per feature, own scale each."""
    base = alt.Chart(df, height=110, width=120).encode(
        x=alt.X("series:N", title=None, sort=["baseline", "value"],
                axis=alt.Axis(labelAngle=0)),
        y=alt.Y("amount:Q", title=None, axis=alt.Axis(format="~s")),
        color=alt.Color("series:N", legend=None, sort=["baseline", "value"],
                        scale=alt.Scale(range=["#9e9e9e", "#e6550d"])),
        tooltip=[alt.Tooltip("feature:N"), alt.Tooltip("series:N"),
                 alt.Tooltip("amount:Q", format=",.3~f"),
                 alt.Tooltip("ratio:Q", title="value / baseline", format=".2f")],
    )
    return (
        base.mark_bar()
        .facet(column=alt.Column("feature:N", title=None, header=alt.Header(labelFontSize=12)))
        .resolve_scale(y="independent")
        .properties(title="Evidence: value vs baseline")
    )


def confidence_vs_compute(df: pd.DataFrame, *, color: str = "route") -> alt.Chart:
    """Each sampled request: GPU-ms spent (log scale) against the confidence it reached;
    requests without GPU time are left out (the log scale has no zero)."""
    columns = ["tenant_id", "model", "route", "passes", "reasoning_tokens", "status", "gpu_ms",
               "confidence"]
    return (
        alt.Chart(df.loc[df["gpu_ms"] > 0, columns],
                  title="Confidence vs compute (sampled requests)", height=300, width="container")
        .mark_circle(size=18, opacity=0.5)
        .encode(
            x=alt.X("gpu_ms:Q", title="GPU-ms per request", scale=alt.Scale(type="log")),
            y=alt.Y("confidence:Q", title="final confidence", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(f"{color}:N", title=color),
            tooltip=["tenant_id", "model", "route", "passes", "reasoning_tokens", "status",
                     alt.Tooltip("gpu_ms:Q", format=",.0f"),
                     alt.Tooltip("confidence:Q", format=".2f")],
        )
    )
