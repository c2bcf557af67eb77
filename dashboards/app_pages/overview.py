"""Overview: the last 24 hours at a glance, one card per page the viewer may open, each with a
headline and a picture; a note while history is still being loaded."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import streamlit as st

import access
import charts
import components
import data
import frames
import site_map
from pipeline.records import SEVERITIES

DAY = timedelta(hours=24)
LAST_DAY = "last 24 hours of data"
SEVERITY_COLOURS = dict(zip(SEVERITIES, ("#fdd49e", "#fc8d59", "#d7301f", "#7f0000"),
                            strict=True))
SPENDERS = 4
FIRST_RUN = "overview_shown"  # session key: this session's overview has been drawn

st.title("computewatch")
st.caption("Inference-time compute of your LLM fleet: anomalies, efficiency, usage and cost.")
viewer = access.current_viewer()


def headline(spec: site_map.PageSpec, status: data.StoreStatus) -> str:
    """One sentence of current numbers for a page."""
    end = components.data_end(status)
    if spec.url_path == "allocation":
        advice = data.allocation_advice(end.date() - timedelta(days=6),
                                        end.date() + timedelta(days=1), 0.01, None,
                                        viewer.tenants)  # fmt: skip
        caps = [r for r in advice.recommendations if r.action == "cap"]
        saved = Decimal(repr(sum(r.usd_per_day for r in caps)))
        return (f"{len(caps)} routing caps found, saving {components.money(saved)}/day, over "
                "the last 7 days of data.")
    if spec.role == "security":
        fresh = data.alerts(end - DAY, end, statuses=("new",), tenants=viewer.tenants)
        return f"{len(fresh)} new alerts in the {LAST_DAY}."
    if spec.role == "engineering":
        models = data.efficiency_breakdown(end - DAY, end, "model", viewer.tenants)
        per_1k = frames.overall(models)["gpu_ms_per_1k_tokens"] if len(models) else None
        return f"{components.number(per_1k)} GPU-ms per 1k tokens over the {LAST_DAY}."
    if spec.url_path == "budgets":
        budgets = data.budgets(viewer.tenants)
        return f"{len(budgets)} budgets set (tenants and API keys)."
    if spec.role == "finance":
        first = end.date().replace(day=1)
        report = data.usage_report(first, end.date() + timedelta(days=1), "tenant",
                                   viewer.tenants)
        cost = Decimal(frames.usage_totals(report)["cost_usd"])
        return f"{components.money(cost)} spent since {first:%B %-d}."
    return (f"{components.number(float(status.events_stored))} events stored; newest event "
            f"{components.moment(status.last_event_ts)} UTC.")


def picture(spec: site_map.PageSpec, status: data.StoreStatus) -> None:
    """The page's last 24 hours in one chart: alerts by severity, GPU time per 1k tokens, or
    spend per hour (the pipeline's, the allocation's and the budgets' cards have their numbers
    only)."""
    end = components.data_end(status)
    day = (end - DAY, end)
    if spec.role == "security":
        feed = data.alerts(*day, tenants=viewer.tenants)
        if feed.empty:
            st.caption(f"No alerts in the {LAST_DAY}.")
            return
        st.altair_chart(charts.stacked_over_time(
            frames.alert_counts(feed, 3600, by="severity"), "bucket", "alerts", "severity",
            bucket_s=3600, title=f"Alerts per hour by severity, {LAST_DAY}", y_title="alerts",
            height=220, domain=day, whole=True, palette=SEVERITY_COLOURS,
        ))
    elif spec.url_path == "efficiency":
        series = data.efficiency_series(*day, 900, None, viewer.tenants)
        st.altair_chart(charts.over_time(
            series, "gpu_ms_per_1k_tokens", title=f"GPU-ms per 1k tokens, {LAST_DAY}",
            y_title="GPU-ms / 1k tokens", y_format=",.0f", height=220,
        ))
    elif spec.url_path == "usage":
        hourly = data.usage_hourly(*day, viewer.tenants)
        if hourly.empty:
            st.caption(f"No usage in the {LAST_DAY}.")
            return
        st.altair_chart(charts.stacked_over_time(
            frames.usage_trend(hourly, "hour", top=SPENDERS), "period", "cost_usd",
            "tenant_id", bucket_s=3600, title=f"Spend per hour by tenant, {LAST_DAY}",
            y_title="cost (USD)", y_format="$,.2f", height=220, domain=day,
        ))


def cards(status: data.StoreStatus) -> None:
    """A note while history is being loaded, then one card per page."""
    if components.history_loading(status, datetime.now(UTC)):
        st.info(components.loading_note(status))
    for spec in site_map.pages_for(viewer)[1:]:
        with st.container(border=True):
            st.page_link(spec.path, label=spec.title, icon=spec.icon)
            st.markdown(f"{headline(spec, status)}  \n{spec.blurb}")
            picture(spec, status)


def body() -> None:
    """The cards, refreshed on the auto-refresh interval. On this session's first run a note
    stands above them until they are all drawn (the demo's fast-forward keeps the store
    busy, so that can take a while)."""
    waiting = st.empty()
    if FIRST_RUN not in st.session_state:
        waiting.info("**Loading history…** Reading the store; the cards appear as it answers.")
    status = data.status()
    if components.data_available(status):
        cards(status)
    waiting.empty()
    st.session_state[FIRST_RUN] = True


components.live(body)
