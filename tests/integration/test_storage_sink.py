"""The sink on the embedded engine: batching by size and age, backpressure with bounded memory,
recovery without loss, whole engine steps, and the rows it writes read back intact."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.config import ClickHouseSettings, Settings
from pipeline.metrics import WindowAggregator
from pipeline.pricing import PriceTable
from pipeline.records import Alert, DeadLetter, Evidence, StepOutput
from pipeline.storage import rows as R
from pipeline.storage.client import connect, quote_database
from pipeline.storage.errors import SinkBackpressure
from pipeline.storage.faults import FlakyClient
from pipeline.storage.memory import ListSink
from pipeline.storage.migrations import SchemaNotReady
from pipeline.storage.sink import ClickHouseSink, RetryPolicy
from tests.fixtures.clickhouse import T0, synthetic_events


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_sink(client: object, clock: FakeClock, **kwargs: object) -> ClickHouseSink:
    options: dict[str, object] = {
        "prices": PriceTable({}), "batch_rows": 100, "batch_seconds": 5.0, "clock": clock,
        "sleep": lambda s: None, "retry": RetryPolicy(attempts=3, base_s=1.0, max_s=8.0),
    }
    options.update(kwargs)
    return ClickHouseSink(client, **options)  # type: ignore[arg-type]


def stored(client: Client) -> int:
    return int(client.query("SELECT count() FROM events").result_rows[0][0])


def test_batches_by_size_and_by_age(clickhouse_client: Client) -> None:
    clock = FakeClock()
    sink = make_sink(clickhouse_client, clock)
    events = synthetic_events(260, seed=31)
    for event in events[:250]:
        sink.add(event)
    assert (stored(clickhouse_client), sink.buffered_rows) == (200, 50)
    clock.now += 4.9
    assert sink.flush_due() == 0
    clock.now += 0.2  # the oldest buffered row is now older than batch_seconds
    assert sink.flush_due() == 50
    sink.add(events[250])
    clock.now += 6.0
    sink.add(events[251])  # an add past the age bound writes the batch itself
    assert (stored(clickhouse_client), sink.buffered_rows) == (252, 0)


def test_backpressure_bounds_memory_and_nothing_is_lost(clickhouse_client: Client) -> None:
    clock = FakeClock()
    flaky = FlakyClient(clickhouse_client, fail_inserts=1_000)
    sink = make_sink(flaky, clock, max_buffer_rows=300)
    events = synthetic_events(400, seed=32)
    accepted = 0
    with pytest.raises(SinkBackpressure) as refused:
        for event in events:
            sink.add(event)
            accepted += 1
    assert accepted == 300 and sink.buffered_rows == 300 and not sink.writable
    assert refused.value.retry_after_s > 0
    calls = flaky.insert_calls
    with pytest.raises(SinkBackpressure):
        sink.add(events[accepted])  # still backing off: no new attempt, no sleep
    assert flaky.insert_calls == calls

    flaky.fail_inserts = 0  # ClickHouse is back
    clock.now += 60
    asyncio.run(sink.wait_writable())
    assert sink.writable
    for event in events[accepted:]:
        sink.add(event)
    sink.flush()
    ids = {str(r[0]) for r in clickhouse_client.query("SELECT event_id FROM events").result_rows}
    assert stored(clickhouse_client) == 400 and ids == {e.event_id for e in events}


def test_an_engine_step_is_taken_whole_or_not_at_all(clickhouse_client: Client) -> None:
    clock = FakeClock()
    flaky = FlakyClient(clickhouse_client, fail_inserts=1_000)
    sink = make_sink(flaky, clock, max_buffer_rows=150)
    events = synthetic_events(200, seed=33)
    sink.add_step(StepOutput(events=events[:100], costs=[0.5] * 100))
    with pytest.raises(SinkBackpressure):
        sink.add_step(StepOutput(events=events[100:]))
    assert sink.buffered_rows == 100
    flaky.fail_inserts = 0
    clock.now += 60
    sink.add_step(StepOutput(events=events[100:]))
    sink.flush()
    total = clickhouse_client.query("SELECT count(), sum(cost_usd) FROM events").result_rows[0]
    assert total[0] == 200 and total[1] >= Decimal("50")


def test_metric_rows_alerts_and_dead_letters_read_back_intact(
    clickhouse_client: Client, storage_settings: Settings
) -> None:
    prices = PriceTable(storage_settings.prices)
    aggregator = WindowAggregator(prices, allowed_lateness_s=0)
    for event in synthetic_events(500, seed=34, days=1):
        aggregator.add(event)
    rows = aggregator.close_all()
    alert = Alert(
        alert_id="6f1c2b7e-8a51-4a55-9a0f-3d2b1c4e5f60", kind="pass_explosion",
        entity_type="api_key", entity_id="acme-key-1", window_start=T0,
        window_end=T0 + timedelta(minutes=5), detected_at=T0 + timedelta(minutes=5), score=9.0,
        severity="critical", summary="passes 12x normal",
        evidence={"passes": Evidence(value=24.0, baseline=2.0)}, event_count=17,
    )
    sink = ClickHouseSink.from_settings(clickhouse_client, storage_settings)
    sink.setup()
    sink.add_step(StepOutput(metrics=rows, alerts=[alert, alert], dead_letters=[DeadLetter(
        reason="wrong_type: gpu_ms", rule="wrong_type", payload=b"\xff\xfe{bad",
        topic="compute.events", partition=3, offset=99)]))
    sink.flush()
    c = clickhouse_client
    got = c.query("SELECT sum(requests), sumMap(latency_hist) FROM metrics_1m FINAL").result_rows
    merged: dict[int, int] = {}
    for row in rows:
        for k, v in row.latency_hist.items():
            merged[k] = merged.get(k, 0) + v
    assert got[0] == (500, merged)
    alerts = c.query("SELECT kind, evidence, event_count FROM alerts FINAL").result_rows
    assert alerts == [("pass_explosion", '{"passes":{"value":24.0,"baseline":2.0}}', 17)]
    assert json.loads(alerts[0][1])["passes"]["baseline"] == 2.0
    dead = c.query("SELECT rule, topic, partition, offset, payload_sample, payload_bytes "
                   "FROM dead_letters").result_rows
    assert dead == [("wrong_type", "compute.events", 3, 99, "\ufffd\ufffd{bad", 6)]


def test_setup_refuses_an_unmigrated_database(clickhouse_settings: ClickHouseSettings) -> None:
    client = connect(clickhouse_settings, create_database=True)
    try:
        with pytest.raises(SchemaNotReady):
            ClickHouseSink(client, prices=PriceTable({})).setup()
    finally:
        client.command(f"DROP DATABASE {quote_database(clickhouse_settings.database)}")
        client.close()


def test_list_sink_twin() -> None:
    sink = ListSink(capacity=3)
    events = synthetic_events(4, seed=35)
    sink.add_step(StepOutput(events=events[:2], costs=[0.1, 0.2]))
    sink.add(events[0])
    assert (len(sink.events), sink.costs, sink.duplicates_dropped) == (2, [0.1, 0.2], 1)
    sink.add(events[2])
    with pytest.raises(SinkBackpressure):
        sink.add(events[3])
    assert not sink.writable and sink.flush() == 0


def test_events_read_back_intact(clickhouse_client: Client) -> None:
    """Every column as the event had it: ids, microsecond timestamps, nulls, the cost truncated
    to 9 places and ingested_at to the millisecond."""
    ingested = T0 + timedelta(days=1, microseconds=123_456)
    sink = make_sink(clickhouse_client, FakeClock(), now=lambda: ingested)
    events = synthetic_events(150, seed=36)
    costs = [i / 7 for i in range(150)]
    sink.add_step(StepOutput(events=events, costs=costs))
    sink.flush()
    names = ", ".join(R.EVENT_COLUMNS)
    stored = {
        str(row[0]): row
        for row in clickhouse_client.query(f"SELECT {names} FROM events").result_rows
    }
    assert len(stored) == 150
    for event, cost in zip(events, costs, strict=True):
        row = dict(zip(R.EVENT_COLUMNS, stored[event.event_id], strict=True))
        expected = {name: getattr(event, name) for name in R.EVENT_COLUMNS[1:-2]}
        assert {name: row[name] for name in expected} == expected
        assert row["cost_usd"] == Decimal(str(cost)).quantize(Decimal("1e-9"), ROUND_DOWN)
        assert row["ingested_at"] == ingested.replace(microsecond=123_000)
