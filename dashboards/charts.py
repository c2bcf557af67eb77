"""Altair charts used by the pages: small functions from a DataFrame to a chart, no Streamlit.

Every chart has a title and axis titles in words, tooltips with the exact numbers, and
``width="container"`` so it fills its column. Times are drawn in UTC whatever the browser's
time zone (they are handed to Vega-Lite as naive UTC wall times).

>>> import pandas as pd
>>> chart = over_time(pd.DataFrame({"bucket": [pd.Timestamp("2026-03-02", tz="UTC")],
...     "p95_ms": [1.0]}), "p95_ms", title="p95 latency", y_title="ms")
>>> chart.to_dict()["mark"]["type"]
'line'
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import altair as alt
import pandas as pd

TIME_TITLE = "time (UTC)"
TOOLTIP_TIME = "%Y-%m-%d %H:%M"
EVIDENCE_COLUMNS: Final = 3
"""Evidence panels per row: three fit beside the sidebar in an 800 px window."""
EVIDENCE_TITLE_CHARS: Final = 14


def _naive_utc(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """A copy with tz-aware time ``columns`` as naive UTC (Vega-Lite shows them unshifted)."""
    out = df.copy()
    for column in columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = out[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def _time_axis(times: pd.Series, domain: tuple[datetime, datetime] | None = None) -> alt.Axis:
    """Hours and minutes for windows up to a day (the first tick and midnight with their date,
    so that no label shows twice), else one tick a day with its date."""
    if domain is not None:
        span = pd.Timestamp(domain[1]) - pd.Timestamp(domain[0])
    else:
        span = times.max() - times.min() if len(times) else pd.Timedelta(0)
    if span > pd.Timedelta(hours=24):
        return alt.Axis(format="%b %d", tickCount="day", labelOverlap=True)
    return alt.Axis(labelOverlap=True, labelExpr=(
        "datum.index == 0 ? timeFormat(datum.value, '%b %d %H:%M') : "
        "hours(datum.value) == 0 && minutes(datum.value) == 0 ? timeFormat(datum.value, '%b %d')"
        " : timeFormat(datum.value, '%H:%M')"))


def _time_scale(domain: tuple[datetime, datetime] | None) -> alt.Scale | Any:
    """A time scale fixed to ``domain`` (UTC), or Altair's default (the data's extent)."""
    if domain is None:
        return alt.Undefined
    ends = [pd.Timestamp(t).tz_convert("UTC") for t in domain]
    return alt.Scale(domain=[
        alt.DateTime(year=t.year, month=t.month, date=t.day, hours=t.hour, minutes=t.minute)
        for t in ends
    ])


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
    df = _naive_utc(df[[c for c in (x, y, color) if c]], [x])
    tooltip: list[Any] = [alt.Tooltip(f"{x}:T", title="UTC", format=TOOLTIP_TIME),
                          alt.Tooltip(f"{y}:Q", title=y_title, format=y_format)]
    encoding: dict[str, Any] = {
        "x": alt.X(f"{x}:T", title=TIME_TITLE, axis=_time_axis(df[x])),
        "y": alt.Y(f"{y}:Q", title=y_title, axis=alt.Axis(format=y_format)),
    }
    if color:
        encoding["color"] = alt.Color(f"{color}:N", title=None)
        tooltip.insert(0, alt.Tooltip(f"{color}:N"))
    return (
        alt.Chart(df, title=title, height=height, width="container")
        .mark_line(point=len(df) < 40)
        .encode(**encoding, tooltip=tooltip)
    )


def percentile_lines(
    df: pd.DataFrame, columns: Sequence[str], *, title: str, unit: str, per_ms: float
) -> alt.Chart:
    """Latency columns of ``df`` in milliseconds (p50/p95/p99) as lines over ``bucket``, in
    ``unit`` (``per_ms`` milliseconds each, as the page's latency numbers); a ``_ms`` suffix
    is left out of the legend."""
    long = df[["bucket", *columns]].melt(id_vars=["bucket"], var_name="series")
    long["series"] = long["series"].str.removesuffix("_ms")
    long["value"] = long["value"] / per_ms
    return over_time(long, "value", title=title, y_title=f"latency ({unit})", color="series",
                     y_format=",.3~r")


def rates_over_time(df: pd.DataFrame, columns: dict[str, str], *, title: str) -> alt.Chart:
    """Rates (0..1) named by ``columns`` (column -> label) as percentage lines over ``bucket``."""
    long = (df[["bucket", *columns]].rename(columns=columns)
            .melt(id_vars=["bucket"], var_name="rate"))
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
            x=alt.X(f"{value}:Q", title=value_title, axis=alt.Axis(format=value_format)),
            tooltip=[alt.Tooltip(f"{category}:N"),
                     alt.Tooltip(f"{value}:Q", title=value_title, format=value_format)],
        )
    )


def stacked_over_time(
    df: pd.DataFrame, x: str, y: str, color: str, *, bucket_s: int, title: str, y_title: str,
    y_format: str = ",.0f", height: int = 220, domain: tuple[datetime, datetime] | None = None,
    whole: bool = False, y_max: float | None = None, palette: dict[str, str] | None = None,
) -> alt.Chart:
    """Stacked bars of ``y`` per time bucket starting at ``x`` (``bucket_s`` wide), one colour
    per ``color`` group; the time axis spans ``domain`` when given, else the data. ``whole``
    counts get whole-number ticks only; ``y_max`` cuts taller bars at the top of the chart
    (the page says which); ``palette`` fixes each group's colour, in legend order."""
    df = _naive_utc(df[[x, y, color]], [x])
    df["bucket_end"] = df[x] + pd.Timedelta(seconds=bucket_s)
    y_axis = (alt.Axis(format="d", tickMinStep=1) if whole else alt.Axis(format=y_format))
    y_scale = alt.Undefined if y_max is None else alt.Scale(domain=[0, y_max], nice=False)
    colors = (alt.Undefined if palette is None
              else alt.Scale(domain=list(palette), range=list(palette.values())))
    return (
        alt.Chart(df, title=title, height=height, width="container")
        .mark_bar(clip=y_max is not None)
        .encode(
            x=alt.X(f"{x}:T", title=TIME_TITLE, axis=_time_axis(df[x], domain),
                    scale=_time_scale(domain)),
            x2="bucket_end:T",
            y=alt.Y(f"sum({y}):Q", title=y_title, stack="zero", axis=y_axis, scale=y_scale),
            color=alt.Color(f"{color}:N", title=None, sort=None, scale=colors),
            tooltip=[alt.Tooltip(f"{x}:T", title="UTC from", format=TOOLTIP_TIME),
                     alt.Tooltip(f"{color}:N"),
                     alt.Tooltip(f"sum({y}):Q", title=y_title, format=y_format)],
        )
    )


def stacked_per_day(
    df: pd.DataFrame, x: str, y: str, color: str, *, title: str, y_title: str,
    y_format: str = ",.0f", height: int = 220,
) -> alt.Chart:
    """Stacked bars of ``y`` per UTC day starting at ``x``, one bar per day labelled with its
    date (so that one day is one bar, not a band over its hours)."""
    df = df[[x, y, color]].assign(day=pd.to_datetime(df[x], utc=True).dt.strftime("%Y-%m-%d"))
    return (
        alt.Chart(df, title=title, height=height, width="container")
        .mark_bar()
        .encode(
            x=alt.X("day:O", title="day (UTC)", axis=alt.Axis(labelAngle=0)),
            y=alt.Y(f"sum({y}):Q", title=y_title, stack="zero", axis=alt.Axis(format=y_format)),
            color=alt.Color(f"{color}:N", title=None, sort=None),
            tooltip=[alt.Tooltip("day:O", title="UTC day"), alt.Tooltip(f"{color}:N"),
                     alt.Tooltip(f"sum({y}):Q", title=y_title, format=y_format)],
        )
    )


def evidence_format(feature: str) -> str:
    """The number format of an evidence feature: shares and rates as percentages, confidence
    with two decimals, anything else with three significant digits (never an SI suffix).

    >>> [evidence_format(f) for f in ("outlier_share", "confidence_mean", "gpu_ms")]
    ['.1~%', '.2~f', ',.3~r']
    """
    if feature.endswith(("_share", "_rate")):
        return ".1~%"
    return ".2~f" if feature.startswith("confidence") else ",.3~r"


def evidence(df: pd.DataFrame) -> alt.ConcatChart:
    """Value vs baseline per evidence feature: one small panel per feature, each with its own
    scale and number format, titled with the feature's words on as many lines as they need."""
    panels = []
    for feature, rows in df.groupby("feature", sort=False):
        fmt = evidence_format(str(feature))
        words = textwrap.wrap(str(feature).replace("_", " "), EVIDENCE_TITLE_CHARS)
        panels.append(
            alt.Chart(rows, height=110, width=100,
                      title=alt.TitleParams(words, fontSize=12, fontWeight="normal"))
            .mark_bar()
            .encode(
                x=alt.X("series:N", title=None, sort=["baseline", "value"],
                        axis=alt.Axis(labelAngle=0)),
                y=alt.Y("amount:Q", title=None, axis=alt.Axis(format=fmt)),
                color=alt.Color("series:N", legend=None, sort=["baseline", "value"],
                                scale=alt.Scale(range=["#9e9e9e", "#e6550d"])),
                tooltip=[alt.Tooltip("feature:N"), alt.Tooltip("series:N"),
                         alt.Tooltip("amount:Q", format=fmt),
                         alt.Tooltip("ratio:Q", title="value / baseline", format=".2f")],
            )
        )
    return alt.concat(*panels, columns=EVIDENCE_COLUMNS).properties(
        title="Evidence: value vs baseline"
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
        .properties(usermeta={"embedOptions": {"renderer": "svg"}})
    )
