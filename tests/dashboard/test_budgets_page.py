"""The Budgets page on a store with four days of a small fleet in which one tenant burns through
its weekly budget: what it shows (against the exact usage rollup and ``computewatch forecast``'s
own function), editing by finance, tenant scoping, and that other roles do not get it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Final

import pytest

from pipeline.budgets import Budget
from pipeline.config import Settings
from pipeline.simulate import FleetConfig, build_fleet, planted_budget_burn, simulate
from pipeline.storage import connect, migrate
from pipeline.storage.budgets import forecast, read_budgets, save_budget
from pipeline.storage.client import quote_database
from pipeline.storage.sink import ClickHouseSink
from tests.dashboard.harness import (
    DASHBOARDS,
    chart_titles,
    metric,
    new_database,
    open_page,
    page_links,
    serving,
)

BUDGETS: Final = "app_pages/budgets.py"
FLEET: Final = FleetConfig(tenants=4, rate=0.25, hours=100.0, seed=11,
                           start=datetime(2026, 3, 2, tzinfo=UTC))
BURN: Final = planted_budget_burn(FLEET)
AT: Final = datetime(2026, 3, 6, 4, tzinfo=UTC)  # the end of the newest hour of data
KEY: Final = build_fleet(FLEET).keys[0].id


def usd(tenant: str, amount: str) -> Budget:
    return Budget(entity_type="tenant", entity_id=tenant, period="week", unit="usd",
                  amount=Decimal(amount))  # fmt: skip


@pytest.fixture(scope="module")
def budget_store(chdb_path: Path) -> Iterator[tuple[Settings, list[Budget]]]:
    settings = new_database(chdb_path, "cw_budgets_page")
    client = connect(settings.clickhouse, create_database=True)
    migrate(client, settings.clickhouse)
    sink = ClickHouseSink.from_settings(client, settings, batch_rows=50_000)
    for batch in simulate(FLEET, [BURN]):
        for event in batch.to_events():
            sink.add_event(event)
    sink.flush()
    week = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC))
    sql = ("SELECT tenant_id, toString(sum(cost_usd)) FROM usage_hourly WHERE hour >= "
           "{s:DateTime} AND hour < {e:DateTime} AND hour < '2026-03-05' GROUP BY tenant_id")
    usual = {t: Decimal(c) / 3 * 7 for t, c in client.query(
        sql, parameters={"s": week[0], "e": week[1]}).result_rows}  # fmt: skip
    budgets = [usd(t, str(round(usual[t] * Decimal("1.2"), 2))) for t in sorted(usual)]
    budgets.append(Budget(entity_type="api_key", entity_id=KEY, period="day",
                          unit="gpu_hours", amount=Decimal("0.5")))  # fmt: skip
    for budget in budgets:
        save_budget(client, budget, "test")
    try:
        with serving(settings):
            yield settings, budgets
    finally:
        client.command(f"DROP DATABASE IF EXISTS {quote_database(settings.clickhouse.database)}")
        client.close()


def test_each_budget_with_its_spend_and_projection(
    budget_store: tuple[Settings, list[Budget]],
) -> None:
    settings, budgets = budget_store
    at = open_page(BUDGETS)
    assert metric(at, "Budgets") == str(len(budgets))
    table = at.dataframe[0].value
    assert len(table) == len(budgets)
    client = connect(settings.clickhouse)
    try:
        for budget in budgets:
            expected = forecast(client, budget.entity_type, budget.entity_id, budget.period,
                                budget.unit, AT, budget)  # fmt: skip
            name = f"{budget.entity_type.replace('_', ' ')} {budget.entity_id}"
            (row,) = [r for _, r in table.iterrows() if r["entity"] == name]
            assert row["spent"] == pytest.approx(float(expected.spend_to_date), abs=1e-9)
            assert expected.projection is not None
            assert row["low"] <= row["projected"] <= row["high"]
            assert row["projected"] == pytest.approx(expected.projection.total), (
                name, [c.value for c in at.caption][1:], expected.at, expected.history_hours)
            runs_out = row["runs_out"]
            if budget.entity_id == BURN.entity_id:
                assert runs_out is not None and AT < runs_out < AT + timedelta(days=3)
    finally:
        client.close()
    assert metric(at, "On course to run out") != "0"
    assert chart_titles(at) == ["Spent (bar) and projected (dot, 80 % interval)"]


def test_finance_sets_and_removes_a_budget(budget_store: tuple[Settings, list[Budget]]) -> None:
    settings, budgets = budget_store
    at = open_page(BUDGETS)
    at.selectbox(key="budget_entity").set_value("tenant-02")
    at.selectbox(key="budget_period").set_value("month")
    at.number_input(key="budget_amount").set_value(321.5)
    at.button[0].click().run()  # Save
    assert not at.exception
    assert at.success[0].value == "Budget of tenant-02 per month set to $321.50."
    client = connect(settings.clickhouse)
    try:
        stored = {b.key: b.amount for b in read_budgets(client)}
        assert stored[("tenant", "tenant-02", "month", "usd")] == Decimal("321.5")
        assert len(at.dataframe[0].value) == len(budgets) + 1
        at.selectbox(key="budget_entity").set_value("tenant-02")
        at.selectbox(key="budget_period").set_value("month")
        at.button[1].click().run()  # Remove
        assert ("tenant", "tenant-02", "month", "usd") not in {b.key for b in read_budgets(client)}
        assert len(at.dataframe[0].value) == len(budgets)
    finally:
        client.close()


def test_a_tenant_scoped_viewer_sees_and_sets_their_budgets_only(
    budget_store: tuple[Settings, list[Budget]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(DASHBOARDS))
    import access

    viewer = access.Viewer("fin", frozenset({"finance"}), (BURN.entity_id,))
    monkeypatch.setattr(access, "current_viewer", lambda: viewer)
    at = open_page()
    assert page_links(at) == ["Usage & cost", "Budgets"]
    at.switch_page(BUDGETS).run()
    assert not at.exception
    assert set(at.dataframe[0].value["entity"]) == {f"tenant {BURN.entity_id}"}
    assert at.selectbox(key="budget_entity").options == [BURN.entity_id]


def test_other_roles_do_not_get_the_page(
    budget_store: tuple[Settings, list[Budget]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(DASHBOARDS))
    import access

    viewer = access.Viewer("sec", frozenset({"security", "engineering"}))
    monkeypatch.setattr(access, "current_viewer", lambda: viewer)
    at = open_page()
    assert "Budgets" not in page_links(at)
    with pytest.raises(ValueError):
        at.switch_page(BUDGETS)
