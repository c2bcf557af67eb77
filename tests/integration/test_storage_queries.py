"""Query builders: exact SQL and parameters (like OpenMeter's event_query_test.go), then the same
queries run on the embedded engine over a small stored data set."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.alerts import alert_id_for
from pipeline.config import Settings
from pipeline.events import example_event
from pipeline.metrics import WindowAggregator
from pipeline.pricing import PriceTable
from pipeline.records import Alert, DeadLetter, Evidence
from pipeline.storage import queries as q
from pipeline.storage.sink import ClickHouseSink
from pipeline.storage.triage import record_triage
from tests.fixtures.clickhouse import T0, synthetic_events

START, END = T0, T0 + timedelta(days=3)
INJECTION = "acme' OR 1=1 --"
INJECTIONS = [INJECTION, "x'); DROP TABLE events; --", "\\'; SELECT 1 --", "{tenants:String}"]


def norm(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


# -- SQL and parameters -------------------------------------------------------------------------

def test_usage_sql_and_params() -> None:
    sql, params = q.usage(date(2026, 3, 1), date(2026, 4, 1), group_by="model", tenants=["acme"])
    assert norm(sql) == norm("""SELECT tenant_id, model,
        sum(requests) AS requests, sum(prompt_tokens) AS prompt_tokens,
        sum(completion_tokens) AS completion_tokens, sum(reasoning_tokens) AS reasoning_tokens,
        sum(passes) AS passes, toDecimal128(sum(gpu_us), 3) / 1000 AS gpu_ms,
        sum(cost_usd) AS cost_usd
        FROM usage_daily
        WHERE day >= {date_from:Date} AND day < {date_to:Date}
          AND tenant_id IN {tenants:Array(String)}
        GROUP BY tenant_id, model ORDER BY tenant_id, model""")
    assert params == {"date_from": date(2026, 3, 1), "date_to": date(2026, 4, 1),
                      "tenants": ["acme"]}


def test_alerts_feed_sql_and_params_with_every_filter() -> None:
    sql, params = q.alerts_feed(
        START, END, kinds=["volume_spike"], severities=["high"], tenants=["acme"],
        entity_type="api_key", entity_id="k1", statuses=["new"], limit=50,
    )
    assert params == {
        "limit": 50, "start": START, "end": END, "kinds": ["volume_spike"],
        "severities": ["high"], "tenants": ["acme"], "entity_type": "api_key",
        "entity_id": "k1", "statuses": ["new"],
    }
    where = norm(sql).split(" WHERE ", 1)[1].split(" ORDER BY ")[0]
    assert where == norm("""a.detected_at >= {start:DateTime64(6, 'UTC')}
        AND a.detected_at < {end:DateTime64(6, 'UTC')}
        AND a.kind IN {kinds:Array(String)}
        AND a.severity IN {severities:Array(String)}
        AND ((a.entity_type = 'tenant' AND a.entity_id IN {tenants:Array(String)})
          OR (a.entity_type = 'api_key' AND a.entity_id IN (SELECT DISTINCT api_key_id FROM events
          WHERE tenant_id IN {tenants:Array(String)}
          AND ts >= {start:DateTime64(6, 'UTC')} - INTERVAL 1 DAY
          AND ts < {end:DateTime64(6, 'UTC')})))
        AND a.entity_type = {entity_type:String}
        AND a.entity_id = {entity_id:String}
        AND coalesce(t.last_status, 'new') IN {statuses:Array(String)}""")
    assert norm(sql).endswith("LIMIT {limit:UInt32} SETTINGS join_use_nulls = 1")


def test_alerts_feed_without_filters_has_only_the_time_range() -> None:
    sql, params = q.alerts_feed(START, END)
    assert set(params) == {"start", "end", "limit"}
    assert "IN {" not in sql


def test_efficiency_series_sql_and_params() -> None:
    sql, params = q.efficiency_series(START, END, bucket_s=300, by="route", tenants=["a", "b"])
    assert params == {"bucket_s": 300, "start": START, "end": END, "tenants": ["a", "b"]}
    text = norm(sql)
    assert text.startswith(
        "SELECT *, gpu_ms * 1000 / nullIf(completion_tokens + reasoning_tokens, 0)"
    )
    assert (
        "FROM ( SELECT toStartOfInterval(window_start, toIntervalSecond({bucket_s:UInt32}))"
        " AS bucket, route, sum(requests) AS requests," in text
    )
    assert "FROM metrics_1m FINAL" in text and "sumMap(latency_hist) AS latency_hist" in text
    assert text.endswith("GROUP BY bucket, route ) ORDER BY bucket, route")


def test_alert_events_picks_the_entity_column_from_a_whitelist() -> None:
    sql, params = q.alert_events("server", "gpu-01", START, END, limit=10)
    assert "WHERE server_id = {entity_id:String}" in sql
    assert params == {"entity_id": "gpu-01", "start": START, "end": END, "limit": 10}
    with pytest.raises(ValueError, match="entity type"):
        q.alert_events("tenant_id; DROP TABLE events", "x", START, END)


def test_allocation_cells_sql_and_params() -> None:
    sql, params = q.allocation_cells(START, END, bins=20, bucket_s=300, models=["m1"])
    assert params == {"bucket_s": 300, "bin_width": 50_000, "last_bin": 19, "start": START,
                      "end": END, "models": ["m1"]}
    assert norm(sql) == norm("""SELECT
        model, least(intDiv(toUInt64(round(difficulty * 1000000)), {bin_width:UInt64}),
        {last_bin:UInt64}) AS stratum, route,
        intDiv(toUnixTimestamp(ts), {bucket_s:UInt32}) AS bucket,
        count() AS requests, sum(gpu_ms) AS gpu_ms, toFloat64(sum(cost_usd)) AS cost_usd,
        sum(ifNull(confidence, 0)) AS confidence_sum, count(confidence) AS confidence_count,
        countIf(status = 'truncated') AS truncated
        FROM events FINAL
        WHERE ts >= {start:DateTime64(6, 'UTC')} AND ts < {end:DateTime64(6, 'UTC')}
          AND difficulty IS NOT NULL AND model IN {models:Array(String)}
        GROUP BY model, stratum, route, bucket ORDER BY model, stratum, route, bucket""")
    with pytest.raises(ValueError, match="difficulty bins must divide"):
        q.allocation_bands(START, END, bands=7)


@pytest.mark.parametrize("value", INJECTIONS)
def test_user_values_never_reach_the_sql_text(value: str) -> None:
    builders = [
        q.alerts_feed(START, END, tenants=[value], entity_id=value, kinds=[value]),
        q.alert_events("tenant", value, START, END),
        q.efficiency_series(START, END, tenants=[value]),
        q.efficiency_breakdown(START, END, by="model", tenants=[value]),
        q.confidence_vs_compute(START, END, tenants=[value]),
        q.usage(date(2026, 3, 1), date(2026, 3, 2), tenants=[value]),
    ]
    for sql, params in builders:
        assert value not in sql
        assert value in str(params)


def test_naive_datetimes_and_unknown_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        q.events_per_minute(datetime(2026, 3, 1), END)  # noqa: DTZ001
    with pytest.raises(ValueError, match="usage grouping"):
        q.usage(date(2026, 3, 1), date(2026, 3, 2), group_by="tenant_id")
    with pytest.raises(ValueError, match="empty period"):
        q.usage(date(2026, 3, 2), date(2026, 3, 2))


# -- on the engine ------------------------------------------------------------------------------

def _alert(kind: str, entity_type: str, entity_id: str, minute: int) -> Alert:
    at = T0 + timedelta(minutes=minute)
    return Alert(
        alert_id=alert_id_for(kind, entity_type, entity_id, at), kind=kind,  # type: ignore[arg-type]
        entity_type=entity_type, entity_id=entity_id,  # type: ignore[arg-type]
        window_start=at - timedelta(hours=12), window_end=at, detected_at=at, score=7.5,
        severity="high", summary=f"{kind} on {entity_id}",
        evidence={"reasoning_tokens": Evidence(value=9000.0, baseline=1200.0)}, event_count=42,
    )


@pytest.fixture
def stored(clickhouse_client: Client, storage_settings: Settings) -> Client:
    events = synthetic_events(3000, seed=11)
    prices = PriceTable(storage_settings.prices, storage_settings.default_price)
    sink = ClickHouseSink.from_settings(clickhouse_client, storage_settings)
    aggregator = WindowAggregator(prices, allowed_lateness_s=0)
    for event in sorted(events, key=lambda e: e.ts):
        sink.add(event)
        aggregator.add(event)
    for row in aggregator.close_all():
        sink.add(row)
    key = events[0].api_key_id
    for alert in (_alert("volume_spike", "api_key", key, 30),
                  _alert("reasoning_inflation", "tenant", INJECTION, 90),
                  _alert("runaway_generation", "server", "gpu-02", 200)):
        sink.add(alert)
    sink.add_dead_letter(DeadLetter(reason="invalid_json: x", rule="invalid_json",
                                    payload=b"{" * 5000, topic="compute.events", partition=1,
                                    offset=7), received_at=T0 + timedelta(minutes=1))
    sink.flush()
    return clickhouse_client


def run(client: Client, query: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    result = client.query(query[0], parameters=query[1])
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def test_difficulty_bins_are_cut_in_millionths(
    clickhouse_client: Client, storage_settings: Settings
) -> None:
    sink = ClickHouseSink.from_settings(clickhouse_client, storage_settings)
    for i, difficulty in enumerate([0.3 - 0.1, 1.0, 0.0, 0.2 - 1e-5]):
        sink.add(example_event(event_id=str(uuid.UUID(int=i + 1, version=4)), difficulty=difficulty,
                               ts=T0 + timedelta(minutes=i)))  # fmt: skip
    sink.flush()
    strata = run(clickhouse_client, q.allocation_cells(START, END, bins=20))
    assert [c["stratum"] for c in sorted(strata, key=lambda c: c["bucket"])] == [4, 19, 0, 3]
    bands = run(clickhouse_client, q.allocation_bands(START, END, bands=5))
    assert {b["band"]: b["requests"] for b in bands} == {0: 2, 1: 1, 4: 1}


def test_allocation_queries_agree_with_the_raw_events(
    stored: Client, storage_settings: Settings
) -> None:
    """Bands (5) and strata (20) of difficulty, 1.0 in the last; the strata and time buckets add
    up to the bands; events without a difficulty are counted apart."""
    events = synthetic_events(3000, seed=11)
    prices = PriceTable(storage_settings.prices, storage_settings.default_price)
    rated = [e for e in events if e.difficulty is not None]
    expected: dict[tuple[str, int, str], list[Any]] = {}
    for e in rated:
        assert e.difficulty is not None
        band = min(round(e.difficulty * 1_000_000) // 200_000, 4)
        expected.setdefault((e.model, band, e.route), []).append(e)
    bands = run(stored, q.allocation_bands(START, END))
    assert {(r["model"], r["band"], r["route"]) for r in bands} == set(expected)
    for r in bands:
        group = expected[(r["model"], r["band"], r["route"])]
        answered = [e.confidence for e in group if e.confidence is not None]
        latencies = sorted(e.latency_ms for e in group)
        assert (r["requests"], r["confidence_count"], r["truncated"]) == (
            len(group), len(answered), sum(e.status == "truncated" for e in group))
        assert r["gpu_ms"] == pytest.approx(sum(e.gpu_ms for e in group))
        assert r["cost_usd"] == pytest.approx(sum(prices.event_cost(e) for e in group))
        assert r["confidence_sum"] == pytest.approx(sum(answered))
        assert latencies[0] <= r["latency_p95_ms"] <= latencies[-1]
    cells = run(stored, q.allocation_cells(START, END, bins=20, bucket_s=3600))
    per_stratum: Counter[tuple[str, int, str]] = Counter()
    for c in cells:
        per_stratum[(c["model"], c["stratum"], c["route"])] += c["requests"]
    assert per_stratum == Counter(
        (e.model, min(round(e.difficulty * 1_000_000) // 50_000, 19), e.route)
        for e in rated if e.difficulty is not None
    )
    assert {c["stratum"] // 4 for c in cells} == {r["band"] for r in bands}
    assert {c["bucket"] for c in cells} == {int(e.ts.timestamp()) // 3600 for e in rated}
    (span,) = run(stored, q.allocation_span(START, END))
    assert (span["requests"], span["without_difficulty"]) == (3000, 3000 - len(rated))
    assert (span["first_ts"], span["last_ts"]) == (min(e.ts for e in events),
                                                   max(e.ts for e in events))
    assert run(stored, q.allocation_span(START, END, models=["no-such-model"])) == []
    (acme,) = run(stored, q.allocation_span(START, END, tenants=["acme"]))
    assert acme["requests"] == sum(e.tenant_id == "acme" for e in events)
    acme_bands = run(stored, q.allocation_bands(START, END, tenants=["acme"]))
    assert sum(r["requests"] for r in acme_bands) == sum(
        e.tenant_id == "acme" and e.difficulty is not None for e in events)


def test_alerts_feed_filters_and_triage_on_the_engine(stored: Client) -> None:
    assert len(run(stored, q.alerts_feed(START, END))) == 3
    assert {r["status"] for r in run(stored, q.alerts_feed(START, END))} == {"new"}
    by_key = run(stored, q.alerts_feed(START, END, tenants=["acme", "globex", "initech",
                                                            "umbrella"]))
    assert [r["kind"] for r in by_key] == ["volume_spike"]  # via the api key's tenant
    feed = run(stored, q.alerts_feed(START, END, tenants=[INJECTION]))
    assert [r["entity_id"] for r in feed] == [INJECTION]
    target = feed[0]["alert_id"]
    record_triage(stored, str(target), "acknowledged", "ana", at=T0 + timedelta(hours=5))
    record_triage(stored, str(target), "resolved", "bo", "false positive",
                  at=T0 + timedelta(hours=6))
    resolved = run(stored, q.alerts_feed(START, END, statuses=["resolved"]))
    assert [(r["triaged_by"], r["triage_note"]) for r in resolved] == [("bo", "false positive")]
    assert len(run(stored, q.alerts_feed(START, END, statuses=["new"]))) == 2
    history = run(stored, q.alert_triage_history(str(target)))
    assert [h["status"] for h in history] == ["acknowledged", "resolved"]
    counts = run(stored, q.alert_counts(START, END, bucket_s=86_400))
    assert sum(int(c["alerts"]) for c in counts) == 3


def test_alert_events_returns_the_entitys_events_in_the_window(stored: Client) -> None:
    alert = run(stored, q.alerts_feed(START, END, kinds=["runaway_generation"]))[0]
    rows = run(stored, q.alert_events("server", "gpu-02", alert["window_start"],
                                      alert["window_end"]))
    assert rows and {r["server_id"] for r in rows} == {"gpu-02"}


@pytest.mark.parametrize("by", [None, "model", "route", "server", "tenant"])
def test_efficiency_queries_run(stored: Client, by: str | None) -> None:
    series = run(stored, q.efficiency_series(START, END, bucket_s=3600, by=by))
    assert sum(int(r["requests"]) for r in series) == 3000
    hist = series[0]["latency_hist"]
    assert isinstance(hist, dict) and q.latency_percentiles(hist)["p50_ms"] is not None
    if by:
        breakdown = run(stored, q.efficiency_breakdown(START, END, by=by, tenants=["acme"]))
        assert breakdown and all(r["gpu_ms_per_1k_tokens"] is None
                                 or r["gpu_ms_per_1k_tokens"] >= 0 for r in breakdown)


def test_confidence_vs_compute_and_health_queries_run(stored: Client) -> None:
    points = run(stored, q.confidence_vs_compute(START, END, limit=100))
    assert len(points) == 100 and all(p["confidence"] is not None for p in points)
    hourly = run(stored, q.usage_by_hour(START, END, tenants=["acme", "globex"]))
    assert {h["tenant_id"] for h in hourly} == {"acme", "globex"}
    daily = run(stored, q.usage(START.date(), END.date(), tenants=["acme", "globex"]))
    assert sum(h["requests"] for h in hourly) == sum(d["requests"] for d in daily)
    assert sum(h["cost_usd"] for h in hourly) == sum(d["cost_usd"] for d in daily)
    status = run(stored, q.pipeline_status())[0]
    assert status["events_stored"] == 3000 and status["dead_letters_stored"] == 1
    now = datetime.now(UTC)
    minutes = run(stored, q.events_per_minute(now - timedelta(hours=1), now + timedelta(minutes=1)))
    assert sum(int(m["events"]) for m in minutes) == 3000
    dead = run(stored, q.dead_letters_by_reason(START, END))
    assert dead[0]["rule"] == "invalid_json" and dead[0]["payload_bytes"] == 5000
    assert len(dead[0]["samples"][0]) == 2048


@pytest.mark.parametrize("value", INJECTIONS)
def test_an_injection_string_in_a_tenant_filter_is_harmless(stored: Client, value: str) -> None:
    assert run(stored, q.usage(date(2026, 3, 1), date(2026, 3, 9), tenants=[value])) == []
    assert run(stored, q.efficiency_series(START, END, tenants=[value])) == []
    assert stored.query("SELECT count() FROM events").result_rows[0][0] == 3000
