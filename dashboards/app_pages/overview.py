"""Overview: what the store holds, and one headline per page the viewer may open."""

from datetime import timedelta
from decimal import Decimal

import streamlit as st

import access
import components
import data
import frames
import site_map

DAY = timedelta(hours=24)

st.title("computewatch")
st.caption("Inference-time compute of your LLM fleet: anomalies, efficiency, usage and cost.")
viewer = access.current_viewer()


def headline(spec: site_map.PageSpec, status: data.StoreStatus) -> str:
    """One sentence of current numbers for a page."""
    end = components.data_end(status)
    if spec.role == "security":
        fresh = data.alerts(end - DAY, end, statuses=("new",), tenants=viewer.tenants)
        return f"{len(fresh)} new alerts in the last 24 hours of data."
    if spec.role == "engineering":
        models = data.efficiency_breakdown(end - DAY, end, "model", viewer.tenants)
        per_1k = frames.overall(models)["gpu_ms_per_1k_tokens"] if len(models) else None
        return f"{components.number(per_1k)} GPU-ms per 1k tokens over the last 24 hours of data."
    if spec.role == "finance":
        first = end.date().replace(day=1)
        report = data.usage_report(first, end.date() + timedelta(days=1), "tenant",
                                   viewer.tenants)
        cost = Decimal(frames.usage_totals(report)["cost_usd"])
        return f"{components.money(cost)} spent since {first:%B %-d}."
    return (f"{components.number(float(status.events_stored))} events stored; newest event "
            f"{components.moment(status.last_event_ts)} UTC.")


def body() -> None:
    """The cards, refreshed on the auto-refresh interval."""
    status = data.status()
    if not components.data_available(status):
        return
    for spec in site_map.pages_for(viewer)[1:]:
        with st.container(border=True):
            st.page_link(spec.path, label=spec.title, icon=spec.icon)
            st.markdown(f"{headline(spec, status)}  \n{spec.blurb}")


components.live(body)
