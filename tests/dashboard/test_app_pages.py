"""Every page of the dashboard, run by Streamlit's AppTest on a seeded store: what it shows.

Expected numbers come from the raw ``events`` table or from ``pipeline.storage.usage``, not
from the dashboard's own code, so a page that sums, filters or labels wrongly fails.
"""

from __future__ import annotations

import io
import json
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from pipeline.storage import connect, export_usage, migrate, migrate_database, usage_report
from pipeline.storage.client import quote_database
from tests.dashboard.harness import (
    DASHBOARDS,
    SeededStore,
    chart_titles,
    metric,
    new_database,
    open_page,
    page_links,
    serving,
    texts,
)
from tests.dashboard.seeding import PERIOD
from tests.integration.test_advisor import MISROUTED
from tests.integration.test_advisor import store as store_events

ALERTS, EFFICIENCY, ALLOCATION, USAGE, HEALTH = (
    f"app_pages/{p}.py" for p in ("alerts", "efficiency", "allocation", "usage", "health"))


def dollars(value: Decimal) -> str:
    cents = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"${cents:,.2f}"


def open_alerts(store: SeededStore) -> int:
    return int(store.scalar(
        "SELECT count() FROM alerts FINAL WHERE alert_id NOT IN (SELECT alert_id FROM alert_triage)"
    ))


# -- overview -----------------------------------------------------------------------------------

def test_overview_links_every_page_with_its_headline(store: SeededStore) -> None:
    at = open_page()
    assert at.title[0].value == "computewatch"
    assert page_links(at) == ["Alerts", "Efficiency", "Allocation", "Usage & cost", "Budgets",
                              "Pipeline health"]
    lines = "\n".join(texts(at, "markdown"))
    assert f"{open_alerts(store)} new alerts in the last 24 hours of data." in lines
    cost = usage_report(store.client, store.settings, *PERIOD).column("cost_usd")
    assert f"{dollars(sum(cost.to_pylist(), Decimal(0)))} spent since March 1." in lines
    assert f"{store.seeded.events:,} events stored" in lines
    assert "0 routing caps found, saving $0.00/day, over the last 7 days of data." in lines
    assert "0 budgets set (tenants and API keys)." in lines
    assert sum(t.startswith("Spend per hour") for t in chart_titles(at)) == 1  # usage's only


# -- alerts -------------------------------------------------------------------------------------

def test_alerts_page_lists_every_alert_with_its_summary(store: SeededStore) -> None:
    stored = store.client.query("SELECT summary FROM alerts FINAL").result_rows
    assert stored, "the seeded fleet must raise at least one alert"
    at = open_page(ALERTS)
    assert at.title[0].value == "Alerts"
    assert metric(at, "Alerts shown") == str(open_alerts(store))
    feed = at.dataframe[0].value
    assert set(feed["summary"]) <= {s for (s,) in stored}
    assert len(feed) == open_alerts(store)
    assert "Alerts by kind (last 24 hours of data)" in chart_titles(at)


def test_alert_detail_shows_summary_evidence_and_events(store: SeededStore) -> None:
    at = open_page(ALERTS)
    alert_id = at.selectbox(key="alert_choice").value
    summary, evidence, entity_type, entity_id, start, end = store.client.query(
        "SELECT summary, evidence, entity_type, entity_id, window_start, window_end"
        " FROM alerts FINAL WHERE alert_id = {id:UUID}", parameters={"id": alert_id},
    ).result_rows[0]
    assert f"**{summary}**" in texts(at, "markdown")
    shown = at.dataframe[1].value
    for feature, pair in json.loads(evidence).items():
        assert shown.loc[feature, "value"] == pytest.approx(pair["value"])
        assert shown.loc[feature, "baseline"] == pytest.approx(pair["baseline"])
    assert "Evidence: value vs baseline" in chart_titles(at)
    events = at.dataframe[2].value
    column = {"api_key": "api_key_id", "model": "model", "server": "server_id",
              "tenant": "tenant_id", "route": "route"}[entity_type]
    assert len(events) > 0 and set(events[column]) == {entity_id}
    assert events["ts"].min() >= start and events["ts"].max() <= end
    assert any(f"**Events behind it** ({len(events)} of" in t for t in texts(at, "markdown"))


def test_alerts_filter_by_kind_and_severity(store: SeededStore) -> None:
    kind, severity = store.client.query(
        "SELECT kind, severity FROM alerts FINAL ORDER BY detected_at LIMIT 1").result_rows[0]
    expected = store.scalar(
        "SELECT count() FROM alerts FINAL WHERE kind = {k:String} AND severity = {s:String}"
        " AND alert_id NOT IN (SELECT alert_id FROM alert_triage)", k=kind, s=severity)
    at = open_page(ALERTS)
    [kinds] = [w for w in at.multiselect if w.label == "Kind"]
    [severities] = [w for w in at.multiselect if w.label == "Severity"]
    kinds.set_value([kind])
    severities.set_value([severity])
    at.run()
    assert not at.exception
    assert metric(at, "Alerts shown") == str(expected)
    assert set(at.dataframe[0].value["kind"]) == {kind}


def test_alerts_for_one_entity_on_custom_days(store: SeededStore) -> None:
    entity_type, entity_id = store.client.query(
        "SELECT entity_type, entity_id FROM alerts FINAL GROUP BY entity_type, entity_id"
        " ORDER BY count() DESC, entity_id LIMIT 1").result_rows[0]
    expected = store.scalar(
        "SELECT count() FROM alerts FINAL WHERE entity_type = {t:String} AND entity_id ="
        " {i:String} AND alert_id NOT IN (SELECT alert_id FROM alert_triage)",
        t=entity_type, i=entity_id)
    at = open_page(ALERTS)
    at.selectbox(key="alerts_win").set_value("Custom dates").run()
    assert at.date_input(key="alerts_days").value == (PERIOD[0].replace(day=2),) * 2
    [entity] = [w for w in at.selectbox if w.label == "Entity"]
    entity.set_value(entity_type).run()
    [entity_box] = [w for w in at.text_input if w.label == "Entity id"]
    entity_box.input(entity_id).run()
    assert not at.exception
    assert metric(at, "Alerts shown") == str(expected)
    assert set(at.dataframe[0].value["entity_id"]) == {entity_id}

    entity_box.input("x' OR 1=1 --").run()  # values travel as parameters: matches nothing
    assert not at.exception and metric(at, "Alerts shown") == "0"
    assert any("No alerts match these filters" in t for t in texts(at, "info"))


def test_triage_resolves_an_alert_and_keeps_the_note(store: SeededStore) -> None:
    before = open_alerts(store)
    at = open_page(ALERTS)
    alert_id = at.selectbox(key="alert_choice").value
    at.radio(key="triage_status").set_value("resolved")
    at.text_input(key="triage_actor").input("dana (security)")
    at.text_area(key="triage_note").input("benign load test by tenant; ticket SEC-1")
    [save] = [b for b in at.button if b.label == "Save"]
    save.click()
    at.run()
    assert not at.exception
    assert "Alert marked resolved." in texts(at, "success")
    status, actor, note = store.client.query(
        "SELECT status, actor, note FROM alert_triage WHERE alert_id = {id:UUID}",
        parameters={"id": alert_id}).result_rows[-1]
    assert (status, actor, note) == ("resolved", "dana (security)",
                                    "benign load test by tenant; ticket SEC-1")
    assert metric(at, "Alerts shown") == str(before - 1)  # open alerts only, by default

    [statuses] = [w for w in at.multiselect if w.label == "Status"]
    statuses.set_value(["resolved"])
    at.run()
    assert metric(at, "Alerts shown") == "1"
    assert list(at.dataframe[0].value["status"]) == ["resolved"]
    history = at.dataframe[-1].value
    assert list(history["note"]) == ["benign load test by tenant; ticket SEC-1"]


# -- efficiency ---------------------------------------------------------------------------------

def test_efficiency_headline_matches_the_raw_events(store: SeededStore) -> None:
    per_1k, reasoning, truncated, timeouts = store.client.query(
        "SELECT sum(gpu_ms) * 1000 / sum(completion_tokens + reasoning_tokens),"
        " sum(reasoning_tokens) / count(), countIf(status = 'truncated') / count(),"
        " countIf(status = 'timeout') / count() FROM events FINAL").result_rows[0]
    at = open_page(EFFICIENCY)
    assert at.title[0].value == "Compute efficiency"
    assert at.subheader[0].value == "All traffic, last 24 hours of data"
    assert metric(at, "GPU-ms per 1k tokens") == f"{per_1k:,.0f}"
    assert metric(at, "Reasoning / request") == f"{reasoning:,.0f}"
    assert metric(at, "Truncation rate") == f"{truncated:.2%}"
    assert metric(at, "Timeout rate") == f"{timeouts:.2%}"
    assert {"GPU-ms per 1k tokens by model", "Latency percentiles (all traffic)",
            "Truncation and timeout rates (all traffic)",
            "Reasoning tokens per request by route",
            "Confidence vs compute (sampled requests)"} <= set(chart_titles(at))


def test_efficiency_breakdown_lists_each_model_with_its_requests(store: SeededStore) -> None:
    expected = {model: count for model, count in store.client.query(
        "SELECT model, count() FROM events FINAL GROUP BY model").result_rows}
    at = open_page(EFFICIENCY)
    table = at.dataframe[0].value
    assert dict(zip(table["model"], table["requests"], strict=True)) == expected


def test_efficiency_drills_down_into_one_route(store: SeededStore) -> None:
    requests, reasoning = store.client.query(
        "SELECT count(), sum(reasoning_tokens) / count() FROM events FINAL"
        " WHERE route = 'deep'").result_rows[0]
    at = open_page(EFFICIENCY)
    at.selectbox(key="eff_by").set_value("route").run()
    at.selectbox(key="eff_focus_route").set_value("deep").run()
    assert not at.exception
    assert at.subheader[0].value == "Route deep, last 24 hours of data"
    assert metric(at, "Reasoning / request") == f"{reasoning:,.0f}"
    table = at.dataframe[0].value
    assert list(table["route"]) == ["deep"] and list(table["requests"]) == [requests]
    assert "GPU-ms per 1k tokens by route" in chart_titles(at)


# -- allocation ---------------------------------------------------------------------------------

def bands_in_events(store: SeededStore, tenant: str | None = None) -> tuple[int, int, set[Any]]:
    """Requests, those with a difficulty, and the (model, band, route) groups, from the raw
    events (bands 0.2 wide, 1.0 in the last)."""
    rows = store.client.query(
        "SELECT model, difficulty, route FROM events FINAL"
        " WHERE {tenant:String} = '' OR tenant_id = {tenant:String}",
        parameters={"tenant": tenant or ""}).result_rows
    rated = [(m, d, r) for m, d, r in rows if d is not None]
    groups = {(m, f"{min(int(d * 5), 4) / 5:.1f}-{min(int(d * 5), 4) / 5 + 0.2:.1f}", r)
              for m, d, r in rated}
    return len(rows), len(rated), groups


def test_allocation_page_tabulates_every_model_band_and_route(store: SeededStore) -> None:
    requests, rated, groups = bands_in_events(store)
    at = open_page(ALLOCATION)
    assert at.title[0].value == "Allocation"
    assert metric(at, "Requests") == f"{requests:,}"
    table = at.dataframe[0].value
    assert {(r["model"], r["difficulty"], r["route"]) for _, r in table.iterrows()} == groups
    assert table["requests"].sum() == rated and len(table) == len(groups)
    # the simulator's router splits every band cleanly by difficulty: nothing like for like
    assert texts(at, "info")[:2] == [
        "None: no band has two routes serving the same difficulties.",
        "No band has two routes serving the same difficulties."]
    assert metric(at, "Savings found") == "$0.00/day"
    assert "computewatch advise --from" in at.code[0].value


def test_allocation_page_names_the_planted_misrouting_and_follows_the_tolerance(
    chdb_path: Path,
) -> None:
    settings = new_database(chdb_path, "cw_allocation")
    client = connect(settings.clickhouse, create_database=True)
    try:
        migrate(client, settings.clickhouse)
        store_events(client, settings, [MISROUTED])
        with serving(settings):
            at = open_page(ALLOCATION)
            at.date_input(key="alloc_from").set_value(date(2026, 3, 2)).run()
            lines = texts(at, "markdown")
            assert any(line.startswith("1. difficulty 0.4-0.6 on reasoner-large routed `deep`: ")
                       and "capping it at `standard` saves $" in line for line in lines), lines
            assert metric(at, "Savings found") != "$0.00/day"
            steps = at.dataframe[0].value
            assert list(steps["step"]) == ["standard -> deep"]
            at.number_input(key="alloc_tolerance").set_value(0.0).run()
            assert not at.exception
            assert texts(at, "info")[0].startswith("None: no dearer route is within 0 confidence")
    finally:
        client.command(f"DROP DATABASE IF EXISTS {quote_database(settings.clickhouse.database)}")
        client.close()


# -- usage & cost -------------------------------------------------------------------------------

def test_usage_table_and_totals_equal_the_usage_report(store: SeededStore) -> None:
    report = usage_report(store.client, store.settings, *PERIOD).to_pylist()
    total_cost = sum((r["cost_usd"] for r in report), Decimal(0))
    total_requests = sum(r["requests"] for r in report)
    at = open_page(USAGE)
    assert at.title[0].value == "Usage & cost"
    assert (at.date_input(key="usage_from").value, at.date_input(key="usage_to").value) == PERIOD
    assert metric(at, "Requests") == f"{total_requests:,}"
    assert metric(at, "Cost") == dollars(total_cost)
    table = at.dataframe[0].value
    rows = table[table["tenant_id"] != "Total"]
    assert [(r["tenant_id"], r["requests"], r["cost_usd"]) for _, r in rows.iterrows()] == [
        (r["tenant_id"], r["requests"], r["cost_usd"]) for r in report]
    total = table[table["tenant_id"] == "Total"].iloc[0]
    assert (total["requests"], total["cost_usd"]) == (total_requests, total_cost)
    assert "Cost per hour by tenant" in chart_titles(at)
    assert [b.label for b in at.download_button] == ["Download CSV", "Download Parquet"]


def test_usage_for_one_tenant_per_model(store: SeededStore) -> None:
    tenant = "tenant-02"
    report = usage_report(store.client, store.settings, *PERIOD, tenant, "model").to_pylist()
    at = open_page(USAGE)
    at.multiselect(key="usage_tenants").set_value([tenant]).run()
    at.selectbox(key="usage_group").set_value("model").run()
    assert not at.exception
    assert metric(at, "Cost") == dollars(sum((r["cost_usd"] for r in report), Decimal(0)))
    table = at.dataframe[0].value
    rows = table[table["tenant_id"] != "Total"]
    assert list(rows["model"]) == [r["model"] for r in report]
    assert set(rows["tenant_id"]) == {tenant}
    assert f"--tenant {tenant} --group-by model" in at.code[0].value


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[MemoryMediaFileStorage]:
    """Every in-memory media store AppTest creates, to read the download buttons' files."""
    import streamlit.testing.v1.app_test as app_test

    stores: list[MemoryMediaFileStorage] = []

    class Recording(MemoryMediaFileStorage):
        def __init__(self, endpoint: str) -> None:
            super().__init__(endpoint)
            stores.append(self)

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", Recording)
    return stores


def downloaded(at: AppTest, stores: list[MemoryMediaFileStorage], label: str) -> bytes:
    """The bytes behind a download button (AppTest keeps them in its media store)."""
    [button] = [b for b in at.download_button if b.label == label]
    return stores[-1].get_file(button.proto.url.rsplit("/", 1)[-1]).content


def test_finance_exports_equal_the_cli_and_the_report_to_the_cent(
    store: SeededStore, downloads: list[MemoryMediaFileStorage]
) -> None:
    at = open_page(USAGE)
    csv_bytes = downloaded(at, downloads, "Download CSV")
    parquet_bytes = downloaded(at, downloads, "Download Parquet")

    cli = io.BytesIO()  # what `computewatch usage --from ... --to ... --format csv` writes
    export_usage(store.settings, *PERIOD, format="csv", output=cli)
    assert csv_bytes == cli.getvalue()

    report = usage_report(store.client, store.settings, *PERIOD)
    assert pq.read_table(io.BytesIO(parquet_bytes)).equals(report)
    lines = csv_bytes.decode().splitlines()
    header = lines[0].split(",")
    assert header[:2] == ["tenant_id", "requests"] and header[-1] == "cost_usd"
    exported = sum((Decimal(line.split(",")[-1]) for line in lines[1:]), Decimal(0))
    expected = sum(report.column("cost_usd").to_pylist(), Decimal(0))
    assert exported == expected  # exact: 9 decimals, so equal to the cent and beyond
    assert metric(at, "Cost") == dollars(exported)


# -- pipeline health ----------------------------------------------------------------------------

def test_health_shows_counts_freshness_sink_and_dead_letters(store: SeededStore) -> None:
    last_ts = store.scalar("SELECT max(ts) FROM events")
    rules = {r for (r,) in store.client.query("SELECT DISTINCT rule FROM dead_letters").result_rows}
    at = open_page(HEALTH)
    assert at.title[0].value == "Pipeline health"
    assert metric(at, "Events stored") == f"{store.seeded.events:,}"
    assert metric(at, "Dead letters stored") == str(store.seeded.dead_letters)
    assert metric(at, "Last event time (UTC)") == f"{last_ts:%Y-%m-%d %H:%M:%S}"
    assert float(metric(at, "Events/s in").replace(",", "")) >= 0
    lines = "\n".join(texts(at, "markdown"))
    assert "embedded engine (chDB)" in lines and store.settings.clickhouse.database in lines
    assert "**Consumer lag:** n/a in embedded mode" in lines
    letters = at.dataframe[0].value
    assert set(letters["rule"]) == rules and letters["dead_letters"].sum() == 2
    assert "Events stored per minute (ingest time)" in chart_titles(at)
    assert any("{oops" in c.value for c in at.code)  # a payload sample


# -- empty and broken stores --------------------------------------------------------------------

PAGES = [None, ALERTS, EFFICIENCY, USAGE, HEALTH]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_says_what_to_do_without_data(
    store: SeededStore, chdb_path: object, page: str | None
) -> None:
    empty = new_database(chdb_path, "cw_empty")  # type: ignore[arg-type]
    migrate_database(empty)
    try:
        with serving(empty):
            at = open_page(page)
        [info] = texts(at, "info")
        assert "No data yet" in info and "`computewatch demo`" in info
        assert "`computewatch replay --events FILE --store`" in info
    finally:
        store.client.command(f"DROP DATABASE IF EXISTS {quote_database(empty.clickhouse.database)}")


def test_an_unreachable_store_is_reported_not_raised(store: SeededStore) -> None:
    broken = store.settings.model_copy(update={
        "clickhouse": store.settings.clickhouse.model_copy(
            update={"url": "http://127.0.0.1:9/", "database": "cw"})})
    with serving(broken):
        at = open_page(HEALTH)
    assert "Cannot read ClickHouse at `http://127.0.0.1:9`" in texts(at, "warning")[0]
    assert texts(at, "error")[0].startswith("Unreachable or not ready:")


# -- roles --------------------------------------------------------------------------------------

def test_roles_decide_the_pages_and_tenants_scope_the_data(
    store: SeededStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seam for login (issue 9): a finance viewer of one tenant sees only that."""
    monkeypatch.syspath_prepend(str(DASHBOARDS))
    import access  # the module the app imports (same process, same sys.modules)

    viewer = access.Viewer("fin", frozenset({"finance"}), ("tenant-03",))
    monkeypatch.setattr(access, "current_viewer", lambda: viewer)
    at = open_page()
    assert page_links(at) == ["Usage & cost", "Budgets"]
    with pytest.raises(ValueError):
        at.switch_page(ALERTS)
    at.switch_page(USAGE).run()
    assert not at.exception
    report = usage_report(store.client, store.settings, *PERIOD, "tenant-03").to_pylist()
    assert metric(at, "Cost") == dollars(report[0]["cost_usd"])
    assert at.multiselect(key="usage_tenants").options == ["tenant-03"]
    assert set(at.dataframe[0].value["tenant_id"]) == {"tenant-03", "Total"}


def test_a_tenant_scoped_engineer_gets_the_allocation_of_their_tenants_only(
    store: SeededStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(DASHBOARDS))
    import access

    viewer = access.Viewer("eng", frozenset({"engineering"}), ("tenant-03",))
    monkeypatch.setattr(access, "current_viewer", lambda: viewer)
    at = open_page()
    assert page_links(at) == ["Efficiency", "Allocation"]
    at.switch_page(ALLOCATION).run()
    assert not at.exception
    requests, rated, groups = bands_in_events(store, "tenant-03")
    assert metric(at, "Requests") == f"{requests:,}" and requests < store.seeded.events
    table = at.dataframe[0].value
    assert {(r["model"], r["difficulty"], r["route"]) for _, r in table.iterrows()} == groups
    assert table["requests"].sum() == rated
    assert not at.code  # the command line reads every tenant: not offered
