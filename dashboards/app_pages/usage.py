"""Usage & cost (finance): per-tenant usage and cost for a period, its trend, and exports that
match ``computewatch usage`` byte for byte (both call ``pipeline.storage.usage``)."""

from datetime import date, timedelta
from decimal import Decimal

import pyarrow as pa
import streamlit as st

import access
import charts
import components
import data
import frames

GROUPS = {"tenant": "Tenant", "api_key": "Tenant and API key", "model": "Tenant and model",
          "day": "Tenant and day"}
HOURLY_UP_TO = timedelta(days=3)
TOP_TENANTS = 8

st.title("Usage & cost")
st.caption("Requests, tokens, GPU time and cost per tenant for any period, from the daily "
           "rollup that billing uses. Days are UTC; the end date is exclusive, as in "
           "`computewatch usage --from … --to …`.")
viewer = access.require("finance")


def period(status: data.StoreStatus) -> tuple[date, date]:
    """From (inclusive) and to (exclusive) dates; by default the month of the newest event."""
    newest = components.data_end(status).date()
    start_col, end_col = st.columns(2)
    date_from = start_col.date_input("From", value=newest.replace(day=1), key="usage_from")
    date_to = end_col.date_input("To (exclusive)", value=newest + timedelta(days=1),
                                 key="usage_to")
    return date_from, date_to


def scope(date_from: date, date_to: date) -> tuple[str, tuple[str, ...] | None]:
    """Grouping and tenants (none chosen = every tenant the viewer may see)."""
    group_col, tenant_col = st.columns([1, 2])
    group_by = group_col.selectbox("Rows per", list(GROUPS), format_func=GROUPS.__getitem__,
                                   key="usage_group")
    everyone = data.usage_report(date_from, date_to, "tenant", viewer.tenants)
    tenants = tenant_col.multiselect("Tenants", everyone.column("tenant_id").to_pylist(),
                                     placeholder="all tenants", key="usage_tenants")
    return group_by, tuple(tenants) or viewer.tenants


def totals(table: pa.Table) -> None:
    """The period's totals, exact."""
    sums = frames.usage_totals(table)
    tokens = int(sums["prompt_tokens"]) + int(sums["completion_tokens"]) + int(
        sums["reasoning_tokens"])
    cells = components.metric_row()
    cells.metric("Requests", components.number(float(sums["requests"])), width="content")
    cells.metric("Tokens", components.number(float(tokens)), width="content",
                 help="Prompt + completion + reasoning tokens.")
    cells.metric("GPU hours", components.number(float(sums["gpu_ms"]) / 3_600_000, 2),
                 width="content")
    cells.metric("Cost", components.money(Decimal(sums["cost_usd"])), width="content",
                 help=f"Exact: ${sums['cost_usd']} (exports keep 9 decimals).")


def report_table(table: pa.Table) -> None:
    """One row per group and a Total row; a tenant without requests in the period has none."""
    st.dataframe(
        frames.usage_display(table),
        hide_index=True,
        column_config={
            "tenant_id": "Tenant", "api_key_id": "API key", "model": "Model", "day": "Day",
            "requests": st.column_config.NumberColumn("Requests", format="localized"),
            "prompt_tokens": st.column_config.NumberColumn("Prompt tokens", format="localized"),
            "completion_tokens": st.column_config.NumberColumn("Completion tokens",
                                                               format="localized"),
            "reasoning_tokens": st.column_config.NumberColumn("Reasoning tokens",
                                                              format="localized"),
            "passes": st.column_config.NumberColumn("Passes", format="localized"),
            "gpu_ms": st.column_config.NumberColumn("GPU-ms", format="localized"),
            "cost_usd": st.column_config.NumberColumn("Cost (USD)", format="$%.2f"),
        },
    )
    st.caption("Only tenants with requests in the period have a row (a tenant that starts "
               "sending later, such as the demo's new tenant, appears from its first request).")


def downloads(table: pa.Table, date_from: date, date_to: date, group_by: str,
              tenants: tuple[str, ...] | None) -> None:
    """CSV and Parquet exports and the equivalent command line."""
    stem = f"usage_{date_from}_{date_to}_{group_by}"
    buttons = st.container(horizontal=True)
    buttons.download_button("Download CSV", frames.usage_export(table, "csv"),
                            file_name=f"{stem}.csv", mime="text/csv", on_click="ignore",
                            icon=":material/download:")
    buttons.download_button("Download Parquet", frames.usage_export(table, "parquet"),
                                file_name=f"{stem}.parquet",
                                mime="application/vnd.apache.parquet", on_click="ignore",
                                icon=":material/download:")
    if tenants is None or len(tenants) == 1:
        tenant = f" --tenant {tenants[0]}" if tenants else ""
        st.caption("Same file from the command line:")
        st.code(f"computewatch usage --from {date_from} --to {date_to}{tenant} "
                f"--group-by {group_by} --format csv --output {stem}.csv", language="bash",
                wrap_lines=True)


def trend(date_from: date, date_to: date, tenants: tuple[str, ...] | None) -> None:
    """Cost per hour (up to three days of data) or per day (one bar a day), stacked by tenant:
    the biggest spenders by name, the others together."""
    hourly = data.usage_hourly(components.midnight(date_from), components.midnight(date_to),
                               tenants)
    if hourly.empty:
        return
    per = "hour" if hourly["hour"].max() - hourly["hour"].min() <= HOURLY_UP_TO else "day"
    costs = frames.usage_trend(hourly, per, top=TOP_TENANTS)
    title = f"Cost per {per} by tenant"
    if per == "hour":
        st.altair_chart(charts.stacked_over_time(
            costs, "period", "cost_usd", "tenant_id", bucket_s=3600, title=title,
            y_title="cost (USD)", y_format="$,.2f", height=260,
        ))
    else:
        st.altair_chart(charts.stacked_per_day(
            costs, "period", "cost_usd", "tenant_id", title=title, y_title="cost (USD)",
            y_format="$,.2f", height=260,
        ))


def body() -> None:
    """Everything below the title, refreshed on the auto-refresh interval."""
    status = data.status()
    if not components.data_available(status):
        return
    date_from, date_to = period(status)
    if date_to <= date_from:
        st.error("The end date must be after the start date (the end date is exclusive).")
        return
    group_by, tenants = scope(date_from, date_to)
    table = data.usage_report(date_from, date_to, group_by, tenants)
    if table.num_rows == 0:
        components.nothing_in(f"usage from {date_from} to {date_to}")
        return
    totals(table)
    trend(date_from, date_to, tenants)
    report_table(table)
    downloads(table, date_from, date_to, group_by, tenants)


components.live(body)
