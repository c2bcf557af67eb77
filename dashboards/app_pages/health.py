"""Pipeline health: is data arriving, how fast, what is being rejected, and where it is stored."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

import access
import charts
import components
import data
import frames

RATE_WINDOW = timedelta(minutes=5)
CLOSING = timedelta(minutes=1)  # the newest minute's metrics are stored once it closes
LOOKBACK = {"Last hour": timedelta(hours=1), "Last 24 hours": timedelta(hours=24),
            "Last 7 days": timedelta(days=7)}

st.title("Pipeline health")
st.caption("Ingest rate, freshness, dead letters and the ClickHouse sink, on the wall clock.")
viewer = access.require("operations")


def sink(status: data.StoreStatus) -> None:
    """Where the pipeline writes and whether the dashboard can read it."""
    mode = "embedded engine (chDB)" if status.embedded else "ClickHouse server"
    with st.container(border=True):
        st.markdown(f"**Sink:** {mode} at `{status.target}`, database `{status.database}`")
        if status.problem:
            st.error(f"Unreachable or not ready: {status.problem}")
        else:
            st.markdown(f"Schema version {status.schema_version} · reachable")
        lag = ("n/a in embedded mode (no Kafka consumer)" if status.embedded
               else "not shown: no lag query yet (see the Faust worker's metrics)")
        st.markdown(f"**Consumer lag:** {lag}")


def freshness(status: data.StoreStatus, now: datetime) -> None:
    """Ingest rate, stored counts and the newest event."""
    end = now.replace(second=0, microsecond=0) - CLOSING
    start = end - RATE_WINDOW
    rate = data.events_per_second(start, end)
    counts = components.metric_row()
    counts.metric("Events/s in", components.number(rate, 1), width="content",
                  help=f"Live traffic: events per second whose event time is in {start:%H:%M}–"
                       f"{end:%H:%M} UTC (the five whole minutes before the last). History "
                       "stored late (a replay, the demo's fast-forward) is not counted.")
    counts.metric("Events stored", components.number(float(status.events_stored)),
                  width="content")
    counts.metric("Dead letters stored", components.number(float(status.dead_letters_stored)),
                  width="content")
    times = components.metric_row()
    times.metric("Last event time (UTC)", components.moment(status.last_event_ts),
                 width="content", help="Event time (ts) of the newest stored event.")
    times.metric("Last ingest", components.age(status.last_ingested_at, now), width="content",
                 help=f"{components.moment(status.last_ingested_at)} UTC")


def dead_letter_details(letters: pd.DataFrame) -> None:
    """Dead letters per rule, then each rule's commonest reasons and payload samples."""
    st.dataframe(
        letters[["rule", "dead_letters", "top_reasons", "samples", "payload_bytes", "last_seen"]],
        hide_index=True,
        column_config={
            "rule": "Rule", "dead_letters": "Dead letters",
            "top_reasons": st.column_config.ListColumn("Commonest reasons", width="large"),
            "samples": st.column_config.ListColumn("Payload samples", width="medium"),
            "payload_bytes": "Bytes",
            "last_seen": st.column_config.DatetimeColumn("Last seen", format="YYYY-MM-DD HH:mm:ss"),
        },
    )
    for _, row in letters.iterrows():
        with st.expander(f"Samples of {row['rule']} ({row['dead_letters']} rejected)"):
            for reason in row["top_reasons"]:
                st.text(reason)
            for sample in row["samples"]:
                st.code(sample or "(empty payload)", language="json", wrap_lines=True)


def body() -> None:
    """Everything below the title, refreshed on the auto-refresh interval."""
    status = data.status()
    sink(status)
    if not components.data_available(status):
        return
    now = datetime.now(UTC)
    freshness(status, now)
    lookback = st.selectbox("Look back", list(LOOKBACK), key="health_lookback")
    start, end = now - LOOKBACK[lookback], now + timedelta(minutes=1)
    ingest = data.ingest_per_minute(start, end)
    if ingest.empty:
        st.info(f"Nothing ingested in the {lookback.lower()}.")
    else:
        top = frames.cut_above(ingest["events"])
        st.altair_chart(charts.stacked_over_time(
            ingest.assign(source="events"), "minute", "events", "source", bucket_s=60,
            title="Events stored per minute (ingest time)", y_title="events",
            domain=(start, end), y_max=top,
        ))
        if top is not None:
            cut = ", ".join(f"{row.minute:%H:%M} ({row.events:,})"
                            for row in ingest[ingest["events"] > top].itertuples())
            st.caption(f"Bars are cut at {top:,.0f} events so that the usual minutes show; "
                       f"taller minutes (UTC, events stored), such as history loaded at once: "
                       f"{cut}.")
    st.subheader("Dead letters by rule")
    letters = data.dead_letters(start, end)
    if letters.empty:
        st.success(f"No dead letters in the {lookback.lower()}.")
    else:
        dead_letter_details(letters)


components.live(body)
