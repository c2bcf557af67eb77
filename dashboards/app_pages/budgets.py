"""Budgets (finance): each budget's spend to date against it, the period's projected total
with an 80 % interval (the same projection as ``computewatch forecast``), and, for the admin and
finance roles, setting and removing budgets. Tenant-scoped viewers see and set their tenants'
budgets (and their keys') only."""

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import altair as alt
import pandas as pd
import streamlit as st

import access
import components
import data
from pipeline.budgets import PERIODS, UNITS, Budget, format_amount
from pipeline.forecast import MIN_HISTORY_H
from pipeline.storage.budgets import Forecast

UNIT_LABELS = {"usd": "USD", "gpu_hours": "GPU-hours"}

st.title("Budgets")
st.caption("Spend per tenant or API key against its budget for the UTC day, week (from Monday) "
           "or month, and where the period is heading: the projected total with an 80 % "
           "interval, from the spender's own hourly history (its pattern by hour of day, and "
           "day of week after two weeks; its recent burn rate), as `computewatch forecast` "
           "projects it. The worker alerts (`budget_overrun`) at 50, 80 and 100 % and when the "
           "forecast runs out the budget.")
viewer = access.require("finance")


def as_of(status: data.StoreStatus) -> datetime:
    """The end of the newest hour of data: projections are made as of it."""
    newest = components.data_end(status).timestamp()
    return datetime.fromtimestamp(-(-newest // 3600) * 3600, UTC)


def rows(forecasts: list[tuple[Budget, Forecast | None]]) -> pd.DataFrame:
    """One row per budget: spend, share, projection and when it runs out."""
    out = []
    for budget, f in forecasts:
        p = f.projection if f is not None else None
        amount = float(budget.amount)
        spent = float(f.spend_to_date) if f is not None else 0.0
        out.append({
            "entity": f"{budget.entity_type.replace('_', ' ')} {budget.entity_id}",
            "id": budget.entity_id,
            "period": budget.period,
            "unit": UNIT_LABELS[budget.unit],
            "budget": amount,
            "spent": spent,
            "used": spent / amount,
            "projected": p.total if p else None,
            "low": p.low if p else None,
            "high": p.high if p else None,
            "runs_out": f.exhausted_at if f is not None else None,
        })  # fmt: skip
    return pd.DataFrame(out)


def table(frame: pd.DataFrame) -> None:
    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            "entity": "Budget of", "period": "Period", "unit": "Unit",
            "budget": st.column_config.NumberColumn("Budget", format="%.2f"),
            "spent": st.column_config.NumberColumn("Spent", format="%.2f"),
            "used": st.column_config.ProgressColumn("Used", format="percent", min_value=0,
                                                    max_value=1),
            "projected": st.column_config.NumberColumn("Projected", format="%.2f"),
            "low": st.column_config.NumberColumn("80 % low", format="%.2f"),
            "high": st.column_config.NumberColumn("80 % high", format="%.2f"),
            "runs_out": st.column_config.DatetimeColumn("Runs out (UTC)",
                                                        format="YYYY-MM-DD HH:mm"),
            "id": None,
        },
    )
    st.caption(f"A projection needs {MIN_HISTORY_H} h of the spender's history; the budgets "
               "without one show none.")


def chart(frame: pd.DataFrame) -> None:
    """Spent and projected as shares of each budget, the interval as a rule, 100 % dashed."""
    shares = pd.DataFrame({
        "label": frame["id"] + " · " + frame["period"],
        "spent": frame["spent"] / frame["budget"],
        "projected": frame["projected"] / frame["budget"],
        "low": frame["low"] / frame["budget"],
        "high": frame["high"] / frame["budget"],
    })  # fmt: skip
    base = alt.Chart(shares).encode(y=alt.Y("label:N", title=None, sort=None,
                                            axis=alt.Axis(labelLimit=240)))
    percent = alt.Axis(format="%")
    spent = base.mark_bar(color="#4c78a8").encode(
        x=alt.X("spent:Q", title="share of the budget", axis=percent),
        tooltip=["label", alt.Tooltip("spent:Q", format=".0%")])
    interval = base.mark_rule(color="#f58518", strokeWidth=2).encode(x="low:Q", x2="high:Q")
    projected = base.mark_point(color="#f58518", filled=True, size=70).encode(
        x="projected:Q", tooltip=["label", alt.Tooltip("projected:Q", format=".0%")])
    full = alt.Chart(shares.head(1)).mark_rule(color="#e45756", strokeDash=[4, 3]).encode(
        x=alt.datum(1.0))  # no y: across every row
    st.altair_chart((spent + interval + projected + full).properties(
        title="Spent (bar) and projected (dot, 80 % interval)",
        height=alt.Step(32)), width="stretch")


def change(remove: bool) -> None:
    """Form callback: set or remove the budget the form describes."""
    state = st.session_state
    try:
        amount = Decimal(str(state["budget_amount"]))
        budget = Budget(entity_type=state["budget_entity_type"],
                        entity_id=state["budget_entity"], period=state["budget_period"],
                        unit=state["budget_unit"], amount=amount)  # fmt: skip
        if not remove and amount <= 0:
            raise ValueError("the amount must be above 0")
        data.change_budget(budget, viewer.name, remove=remove)
    except (ValueError, InvalidOperation) as exc:
        state["budget_message"] = ("error", str(exc))
    else:
        done = "removed" if remove else f"set to {format_amount(amount, budget.unit)}"
        state["budget_message"] = ("success", f"Budget of {budget.entity_id} per "
                                              f"{budget.period} {done}.")


def editor() -> None:
    """Set or remove a budget: this page is the finance role's (admin has every role); a
    tenant-scoped viewer picks among their tenants and their keys only."""
    st.subheader("Set a budget")
    kind = st.radio("For", ["tenant", "api_key"], horizontal=True, key="budget_entity_type",
                    format_func=lambda k: "Tenant" if k == "tenant" else "API key")
    choices = data.spenders(kind, viewer.tenants)
    with st.form("budget_form", border=True):
        who, period, unit, amount = st.columns([3, 2, 2, 2])
        who.selectbox("Tenant" if kind == "tenant" else "API key", list(choices),
                      key="budget_entity")
        period.selectbox("Period", PERIODS, key="budget_period")
        unit.selectbox("Unit", UNITS, format_func=UNIT_LABELS.__getitem__, key="budget_unit")
        amount.number_input("Amount", min_value=0.0, value=100.0, step=10.0,
                            key="budget_amount")
        save, remove = st.columns(2)
        save.form_submit_button("Save", type="primary", on_click=change, args=(False,))
        remove.form_submit_button("Remove", on_click=change, args=(True,))
    kind_, message = st.session_state.pop("budget_message", (None, ""))
    if kind_ == "success":
        st.success(message)
    elif kind_ == "error":
        st.error(message)


def body() -> None:
    """Everything below the title, refreshed on the auto-refresh interval."""
    status = data.status()
    if not components.data_available(status):
        return
    at = as_of(status)
    budgets = data.budgets(viewer.tenants)
    if budgets:
        forecasts = [(b, data.budget_forecast(b, at)) for b in budgets]
        over = sum(1 for _, f in forecasts if f is not None and f.exhausted_at is not None)
        cells = components.metric_row()
        cells.metric("Budgets", len(budgets), width="content")
        cells.metric("On course to run out", over, width="content",
                     help="Budgets whose expected spend reaches them before the period ends.")
        st.caption(f"As of {at:%Y-%m-%d %H:%M} UTC (the end of the newest hour of data).")
        frame = rows(forecasts)
        chart(frame)
        table(frame)
    else:
        st.info("No budgets yet: set one below, or seed them from a TOML file "
                "(`COMPUTEWATCH_BUDGETS_FILE`, applied by `computewatch migrate`).")
    editor()


components.live(body)
