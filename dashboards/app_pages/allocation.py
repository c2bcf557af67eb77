"""Allocation (engineers): per model, difficulty band and route, what the compute costs and the
confidence it buys, and where a cheaper route would do: the report of ``computewatch advise``
(same function, :func:`pipeline.storage.allocation.allocation_advice`)."""

from datetime import date, timedelta
from decimal import Decimal

import streamlit as st

import access
import components
import data
import frames
from pipeline.advisor import Advice
from pipeline.advisor_report import explanation, no_recommendation, summary

DAYS = 7

st.title("Allocation")
st.caption("Per model, difficulty band and route: what the compute costs and the confidence it "
           "buys, compared like for like (requests of the same difficulty), with "
           "recommendations ranked by money per day. Days are UTC; the end date is exclusive, "
           "as in `computewatch advise --from … --to …`.")
viewer = access.require("engineering")


def choices(status: data.StoreStatus) -> tuple[date, date, float]:
    """From (inclusive) and to (exclusive) dates, by default the last week of data, and the
    confidence a cheaper route may lose."""
    newest = components.data_end(status).date()
    from_col, to_col, tolerance_col = st.columns(3)
    date_from = from_col.date_input("From", value=newest - timedelta(days=DAYS - 1),
                                    key="alloc_from")
    date_to = to_col.date_input("To (exclusive)", value=newest + timedelta(days=1),
                                key="alloc_to")
    tolerance = tolerance_col.number_input(
        "Tolerance (confidence)", min_value=0.0, max_value=0.5, value=0.01, step=0.005,
        format="%.3f", key="alloc_tolerance",
        help="A band is capped at a cheaper route when the 95 % interval of the confidence the "
             "dearer route adds stays below this.",
    )
    return date_from, date_to, float(tolerance)


def models(date_from: date, date_to: date) -> tuple[str, ...] | None:
    """The models to advise on (none chosen = every model)."""
    known = data.efficiency_breakdown(components.midnight(date_from),
                                      components.midnight(date_to), "model", viewer.tenants)
    chosen = st.multiselect("Models", sorted(str(m) for m in known["model"]),
                            placeholder="all models", key="alloc_models")
    return tuple(chosen) or None


def headline(advice: Advice) -> None:
    """What the recommendations save per day, and the traffic they rest on."""
    saved = sum(r.usd_per_day for r in advice.recommendations if r.action == "cap")
    cells = components.metric_row()
    cells.metric("Savings found", f"{components.money(Decimal(repr(saved)))}/day",
                 width="content", help="Sum of the caps recommended below.")
    cells.metric("Requests", components.number(float(advice.span.requests)), width="content")
    cells.metric("Days of traffic", components.number(advice.span.days, 2), width="content",
                 help="First to last event of the period: \"per day\" is over these.")


def recommendations(advice: Advice) -> None:
    """Each recommendation in one sentence, with the arithmetic behind its money."""
    st.subheader("Recommendations")
    if not advice.recommendations:
        st.info(no_recommendation(advice))
        return
    for i, rec in enumerate(advice.recommendations, 1):
        st.markdown(f"{i}. {summary(rec)}.")
        st.caption(explanation(rec))


def steps(advice: Advice) -> None:
    """The route steps compared, with their intervals."""
    st.subheader("Route steps")
    st.caption("Each route against the nearest cheaper one, on the difficulty strata both serve "
               "(weighted by the dearer route's requests); 95 % bootstrap intervals.")
    if not advice.steps:
        st.info("No band has two routes serving the same difficulties.")
        return
    st.dataframe(frames.allocation_steps(advice), hide_index=True, column_config={
        "model": "Model", "difficulty": "Difficulty", "step": "Step",
        "requests": st.column_config.NumberColumn("Compared", format="localized",
                                                  help="Requests on both routes compared."),
        "gpu_ratio": st.column_config.NumberColumn("GPU time", format="%.1fx"),
        "confidence_gain": st.column_config.NumberColumn("Confidence gain", format="%+.3f"),
        "confidence_gain_ci": "95 % CI",
        "confidence_per_gpu_s": st.column_config.NumberColumn(
            "Per extra GPU-s", format="%.4f", help="Confidence gained per extra GPU-second."),
        "confidence_per_gpu_s_ci": "95 % CI ",
        "cost_cheap_usd": st.column_config.NumberColumn("$/request from", format="$%.6f"),
        "cost_dear_usd": st.column_config.NumberColumn("$/request to", format="$%.6f"),
    })


def table(advice: Advice) -> None:
    """One row per model, difficulty band and route."""
    st.subheader("By model, difficulty band and route")
    st.dataframe(frames.allocation_rows(advice), hide_index=True, column_config={
        "model": "Model", "difficulty": "Difficulty", "route": "Route",
        "requests": st.column_config.NumberColumn("Requests", format="localized"),
        "gpu_s_per_request": st.column_config.NumberColumn("GPU-s/request", format="%.2f"),
        "gpu_s_ci": "95 % CI",
        "cost_usd": st.column_config.NumberColumn("Cost", format="$%.2f"),
        "confidence": st.column_config.NumberColumn("Confidence", format="%.3f",
                                                    help="Mean confidence of the answers."),
        "confidence_ci": "95 % CI ",
        "truncation_rate": st.column_config.NumberColumn("Truncated", format="percent"),
        "latency_p95_s": st.column_config.NumberColumn("p95 (s)", format="%.1f",
                                                       help="Latency, 95th percentile."),
    })


def command(date_from: date, date_to: date, tolerance: float,
            chosen: tuple[str, ...] | None) -> None:
    """The same report from the command line (for a viewer who sees every tenant)."""
    if viewer.tenants is not None:
        return
    flags = "".join(f" --model {m}" for m in chosen or ())
    st.caption("Same report from the command line:")
    st.code(f"computewatch advise --from {date_from} --to {date_to}{flags} "
            f"--tolerance {tolerance:g} --format markdown", language="bash", wrap_lines=True)


def body() -> None:
    """Everything below the title, refreshed on the auto-refresh interval."""
    status = data.status()
    if not components.data_available(status):
        return
    date_from, date_to, tolerance = choices(status)
    if date_to <= date_from:
        st.error("The end date must be after the start date (the end date is exclusive).")
        return
    chosen = models(date_from, date_to)
    advice = data.allocation_advice(date_from, date_to, tolerance, chosen, viewer.tenants)
    if advice.span.requests == 0:
        components.nothing_in(f"events from {date_from} to {date_to}")
        return
    headline(advice)
    recommendations(advice)
    steps(advice)
    table(advice)
    command(date_from, date_to, tolerance, chosen)


components.live(body)
