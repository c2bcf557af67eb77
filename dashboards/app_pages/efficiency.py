"""Efficiency (engineers): compute per token and per request, latency, truncation and timeouts,
over time and by model, route, server, tenant or api key, with a drill-down into one of them."""

import pandas as pd
import streamlit as st

import access
import charts
import components
import data
import frames
from pipeline.storage.queries import ENTITY_COLUMNS

BREAKDOWNS = {"model": "Model", "route": "Route", "server": "Server", "tenant": "Tenant",
              "api_key": "API key"}
METRICS = {
    "gpu_ms_per_1k_tokens": ("GPU-ms per 1k tokens", ",.0f"),
    "reasoning_tokens_per_request": ("Reasoning tokens per request", ",.0f"),
    "p95_ms": ("p95 latency", ",.3~r"),
    "confidence_mean": ("Mean confidence", ".2f"),
    "truncation_rate": ("Truncation rate", ".2%"),
    "timeout_rate": ("Timeout rate", ".2%"),
}
PERCENT_COLUMNS = ("truncation_rate", "timeout_rate")
ALL = "all"

st.title("Compute efficiency")
st.caption("How much compute each model, route, server and tenant spends per token and per "
           "request, and what it gets for it.")
viewer = access.require("engineering")


def choices(window: components.Window) -> tuple[str, str, str]:
    """Breakdown dimension, the group to drill into (or ``all``) and the metric to plot."""
    by_col, focus_col, metric_col = st.columns(3)
    by = by_col.selectbox("Break down by", list(BREAKDOWNS), format_func=BREAKDOWNS.__getitem__,
                          key="eff_by")
    groups = data.efficiency_breakdown(window.start, window.end, by, viewer.tenants)
    options = [ALL, *(str(g) for g in groups[ENTITY_COLUMNS[by]])]
    focus = focus_col.selectbox(
        "Drill down into", options, key=f"eff_focus_{by}",
        format_func=lambda g: f"all {BREAKDOWNS[by].lower()}s" if g == ALL else g,
    )
    metric = metric_col.selectbox("Metric over time", list(METRICS),
                                  format_func=lambda m: METRICS[m][0], key="eff_metric")
    return by, focus, metric


def headline(numbers: dict[str, float | None]) -> None:
    """The window's headline numbers for the selection (latency in its own unit, which the
    charts below share)."""
    cells = components.metric_row()
    cells.metric("GPU-ms per 1k tokens", components.number(numbers["gpu_ms_per_1k_tokens"]),
                 width="content")
    cells.metric("Reasoning / request",
                 components.number(numbers["reasoning_tokens_per_request"]), width="content")
    cells.metric("p95 latency", components.duration(numbers["p95_ms"]), width="content")
    cells.metric("Mean confidence", components.number(numbers["confidence_mean"], 2),
                 width="content")
    cells.metric("Truncation rate", components.percent(numbers["truncation_rate"]),
                 width="content")
    cells.metric("Timeout rate", components.percent(numbers["timeout_rate"]), width="content")


def breakdown_table(groups: pd.DataFrame, by: str, unit: str, per_ms: float) -> None:
    """One row per group with its efficiency numbers; latency in the headline's unit, rates
    as percentages with two decimals, like the headline's."""
    column = ENTITY_COLUMNS[by]
    shown = groups.assign(
        **{c: groups[c] / per_ms for c in frames.PERCENTILES},
        **{c: groups[c] * 100 for c in PERCENT_COLUMNS},
    )
    latency = "%.0f" if unit == "ms" else "%.1f"
    st.dataframe(
        shown[[column, "requests", "gpu_ms_per_1k_tokens", "reasoning_tokens_per_request",
               "passes_per_request", "confidence_mean", "p50_ms", "p95_ms", "p99_ms",
               "truncation_rate", "timeout_rate", "cost_usd"]],
        hide_index=True,
        column_config={
            column: BREAKDOWNS[by],
            "requests": st.column_config.NumberColumn("Requests", format="%d"),
            "gpu_ms_per_1k_tokens": st.column_config.NumberColumn("GPU-ms / 1k tok", format="%.0f"),
            "reasoning_tokens_per_request": st.column_config.NumberColumn("Reasoning / req",
                                                                          format="%.0f"),
            "passes_per_request": st.column_config.NumberColumn("Passes / req", format="%.2f"),
            "confidence_mean": st.column_config.NumberColumn("Confidence", format="%.2f"),
            "p50_ms": st.column_config.NumberColumn(f"p50 {unit}", format=latency),
            "p95_ms": st.column_config.NumberColumn(f"p95 {unit}", format=latency),
            "p99_ms": st.column_config.NumberColumn(f"p99 {unit}", format=latency),
            "truncation_rate": st.column_config.NumberColumn("Truncated", format="%.2f%%"),
            "timeout_rate": st.column_config.NumberColumn("Timed out", format="%.2f%%"),
            "cost_usd": st.column_config.NumberColumn("Cost", format="dollar"),
        },
    )


def body() -> None:
    """Everything below the title, refreshed on the auto-refresh interval."""
    status = data.status()
    if not components.data_available(status):
        return
    window = components.window_picker("efficiency", status)
    by, focus, metric = choices(window)
    column = ENTITY_COLUMNS[by]
    groups = data.efficiency_breakdown(window.start, window.end, by, viewer.tenants)
    if groups.empty:
        components.nothing_in(f"traffic in the {window.label}")
        return
    selected = groups if focus == ALL else groups[groups[column] == focus]
    scope = "all traffic" if focus == ALL else f"{BREAKDOWNS[by].lower()} {focus}"
    st.subheader(f"{scope.capitalize()}, {window.label}")
    numbers = frames.overall(selected)
    headline(numbers)
    unit, per_ms = components.latency_unit(numbers["p95_ms"])

    series = data.efficiency_series(window.start, window.end, window.bucket_s, by,
                                    viewer.tenants)
    shown = frames.top_groups(series, column) if focus == ALL else [focus]
    label, fmt = METRICS[metric]
    plotted = series[series[column].isin(shown)]
    if metric == "p95_ms":
        plotted = plotted.assign(p95_ms=plotted["p95_ms"] / per_ms)
        label = f"{label} ({unit})"
    st.altair_chart(charts.over_time(
        plotted, metric, title=f"{label} by {by.replace('_', ' ')}", y_title=label,
        color=column, y_format=fmt,
    ))
    trend = (data.efficiency_series(window.start, window.end, window.bucket_s, None,
                                     viewer.tenants)
             if focus == ALL else series[series[column] == focus])
    st.altair_chart(charts.percentile_lines(trend, frames.PERCENTILES,
                                            title=f"Latency percentiles ({scope})",
                                            unit=unit, per_ms=per_ms))
    st.altair_chart(charts.rates_over_time(
        trend, {"truncation_rate": "truncated", "timeout_rate": "timed out"},
        title=f"Truncation and timeout rates ({scope})",
    ))

    by_tenant = by == "tenant" and focus != ALL
    routes = data.efficiency_breakdown(window.start, window.end, "route",
                                       (focus,) if by_tenant else viewer.tenants)
    st.altair_chart(charts.bars(routes, "route", "reasoning_tokens_per_request",
                                title="Reasoning tokens per request by route",
                                value_title="reasoning tokens / request", value_format=",.0f"))
    if focus != ALL and not by_tenant:
        st.caption(f"Routes over all traffic (not filtered by {by.replace('_', ' ')}).")
    sample = data.confidence_sample(window.start, window.end, viewer.tenants)
    if focus != ALL and column in sample:
        sample = sample[sample[column] == focus]
    st.altair_chart(charts.confidence_vs_compute(sample))
    if focus != ALL and column not in sample:
        st.caption(f"Sampled requests are not filtered by {by}.")

    st.subheader(f"By {BREAKDOWNS[by].lower()}")
    breakdown_table(selected, by, unit, per_ms)


components.live(body)
