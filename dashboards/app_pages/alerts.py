"""Alerts (security): the live feed, counts by kind, and one alert's evidence, events and triage."""

from typing import Any

import pandas as pd
import streamlit as st

import access
import charts
import components
import data
import frames
from pipeline.records import ALERT_KINDS, SEVERITIES
from pipeline.storage import TRIAGE_STATUSES
from pipeline.storage.queries import ENTITY_COLUMNS

OPEN = ("new", "acknowledged")
ANY = "any entity"

st.title("Alerts")
st.caption("Reasoning inflation, runaway generation, pass explosions, volume spikes and other "
           "compute anomalies, each with the evidence behind it.")
viewer = access.require("security")


def filters(window: components.Window) -> dict[str, Any]:
    """The feed's filters, as keyword arguments for ``data.alerts``."""
    kind, severity, status = st.columns(3)
    kinds = kind.multiselect("Kind", ALERT_KINDS, format_func=lambda k: k.replace("_", " "),
                             placeholder="all kinds")
    severities = severity.multiselect("Severity", SEVERITIES, placeholder="all severities")
    statuses = status.multiselect("Status", TRIAGE_STATUSES, default=OPEN,
                                  placeholder="any status")
    tenant, entity_type, entity_id = st.columns(3)
    tenants = tenant.multiselect(
        "Tenant", data.tenant_ids(window.start, window.end, viewer.tenants),
        placeholder="all tenants", help="Alerts on these tenants and on their api keys.",
    )
    kind_of_entity = entity_type.selectbox("Entity", [ANY, *ENTITY_COLUMNS])
    entity = entity_id.text_input("Entity id", placeholder="e.g. an api key or server id",
                                  disabled=kind_of_entity == ANY)
    return {
        "kinds": tuple(kinds) or None,
        "severities": tuple(severities) or None,
        "statuses": tuple(statuses) or None,
        "tenants": tuple(tenants) or viewer.tenants,
        "entity_type": None if kind_of_entity == ANY else kind_of_entity,
        "entity_id": (entity.strip() or None) if kind_of_entity != ANY else None,
    }


def headline(feed: pd.DataFrame) -> None:
    """Counts of the alerts in the feed."""
    row = components.metric_row()
    row.metric("Alerts shown", len(feed), width="content")
    row.metric("New", int((feed["status"] == "new").sum()), width="content")
    row.metric("High or critical", int(feed["severity"].isin(["high", "critical"]).sum()),
               width="content")
    row.metric("Events behind them", components.number(float(feed["event_count"].sum())),
               width="content")


def feed_table(feed: pd.DataFrame) -> None:
    """The feed, newest first: when, how bad, what, and the summary on up to three lines (the
    entity, score and event count are in the summary and in the detail below)."""
    st.dataframe(
        feed[["detected_at", "severity", "kind", "summary", "status", "entity_type",
              "entity_id", "score", "event_count"]],
        hide_index=True,
        column_order=["detected_at", "severity", "kind", "summary", "status"],
        row_height=components.WRAPPED_ROW_PX,
        column_config={
            "detected_at": st.column_config.DatetimeColumn("Detected", format="MM-DD HH:mm"),
            "severity": "Severity",
            "kind": st.column_config.TextColumn("Kind", width="medium"),
            "summary": st.column_config.TextColumn("Summary", width="large"),
            "status": "Status",
        },
    )


def detail(alert: pd.Series) -> None:
    """One alert: summary, facts, evidence chart, the events behind it and its triage."""
    st.markdown(f"**{alert['summary']}**")
    st.caption(f"{str(alert['kind']).replace('_', ' ')} on {alert['entity_type']} "
               f"`{alert['entity_id']}` · evidence window {alert['window_start']:%Y-%m-%d %H:%M}"
               f"–{alert['window_end']:%H:%M} UTC · alert id `{alert['alert_id']}`")
    facts = components.metric_row()
    facts.metric("Severity", str(alert["severity"]), width="content")
    facts.metric("Score", f"{alert['score']:.1f}", width="content")
    facts.metric("Events", int(alert["event_count"]), width="content")
    facts.metric("Status", str(alert["status"]), width="content")
    evidence = frames.evidence_frame(alert["evidence"])
    st.altair_chart(charts.evidence(evidence), width="content")
    st.dataframe(
        evidence.pivot(index="feature", columns="series", values="amount").assign(
            ratio=lambda d: d["value"] / d["baseline"].where(d["baseline"] != 0)
        )[["baseline", "value", "ratio"]],
        width="content",
        column_config={
            "_index": st.column_config.TextColumn("Feature"),
            "baseline": st.column_config.NumberColumn("Baseline", format="%.4g"),
            "value": st.column_config.NumberColumn("Value", format="%.4g"),
            "ratio": st.column_config.NumberColumn("Value / baseline", format="%.2f"),
        },
    )
    events = data.alert_events(str(alert["entity_type"]), str(alert["entity_id"]),
                               alert["window_start"].to_pydatetime(),
                               alert["window_end"].to_pydatetime(), viewer.tenants)
    st.markdown(f"**Events behind it** ({len(events)} of {alert['entity_type']} "
                f"`{alert['entity_id']}` in the evidence window)")
    st.dataframe(events, hide_index=True, height=240)
    triage(alert)


def record(alert_id: str) -> None:
    """Form callback: store the triage action, then report it on the next run.

    A signed-in viewer triages under their own name; only the open mode's local operator types
    one in.
    """
    state = st.session_state
    actor = viewer.name if viewer.signed_in else state["triage_actor"]
    try:
        data.triage(alert_id, state["triage_status"], actor, state["triage_note"])
    except ValueError as exc:
        state["triage_message"] = ("error", str(exc))
    else:
        state["triage_message"] = ("success", f"Alert marked {state['triage_status']}.")


def triage(alert: pd.Series) -> None:
    """Acknowledge or resolve with a note; the audit trail below."""
    alert_id = str(alert["alert_id"])
    with st.form("triage", clear_on_submit=True, border=True):
        st.markdown("**Triage**")
        status, actor = st.columns([1, 2])
        status.radio("Mark as", ["acknowledged", "resolved"], key="triage_status",
                     horizontal=True)
        actor.text_input("Your name", value=viewer.name, key="triage_actor",
                         disabled=viewer.signed_in)
        st.text_area("Note", key="triage_note", placeholder="What you found, what you did")
        st.form_submit_button("Save", type="primary", on_click=record, args=(alert_id,))
    kind, message = st.session_state.pop("triage_message", (None, ""))
    if kind == "success":
        st.success(message)
    elif kind == "error":
        st.error(message)
    history = data.triage_history(alert_id)
    if not history.empty:
        st.dataframe(history, hide_index=True)


def body() -> None:
    """Everything below the title, refreshed on the auto-refresh interval."""
    status = data.status()
    if not components.data_available(status):
        return
    window = components.window_picker("alerts", status)
    chosen = filters(window)
    feed = data.alerts(window.start, window.end, **chosen)
    headline(feed)
    counts = data.alert_counts(window.start, window.end, window.bucket_s, viewer.tenants)
    if not counts.empty:
        st.altair_chart(charts.stacked_over_time(
            counts, "bucket", "alerts", "kind", bucket_s=window.bucket_s,
            title=f"Alerts by kind ({window.label})", y_title="alerts", whole=True,
        ))
    if feed.empty:
        components.nothing_in(f"alerts match these filters in the {window.label}")
        return
    feed_table(feed)
    st.subheader("Alert detail")
    labels = {row["alert_id"]: frames.alert_label(row) for _, row in feed.iterrows()}
    chosen_id = st.selectbox("Alert", list(labels), format_func=labels.__getitem__,
                             key="alert_choice")
    with st.container(border=True):
        detail(feed[feed["alert_id"] == chosen_id].iloc[0])


components.live(body)
