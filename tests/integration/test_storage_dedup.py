"""Never an event twice: which ClickHouse mechanism holds after a retried insert, measured on chdb.

Findings these tests pin down (engine 26.9):
- ``insert_deduplication_token`` drops a retried insert on a MergeTree table only when the table
  sets ``non_replicated_deduplication_window``;
- the materialized views fed by that table still receive the retried block unless their target
  tables set the window too (then ``deduplicate_blocks_in_dependent_materialized_views``, on by
  default, drops it there as well): our rollups set it, so usage stays exact;
- a duplicate that arrives in a *different* batch is collapsed by ReplacingMergeTree under FINAL
  but would be summed twice by the rollups: the sink drops re-sent ids it remembers, and
  ``reconcile`` reports any difference that still slips through.
"""

from __future__ import annotations

from datetime import date

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.config import Settings
from pipeline.events import AllocationEvent
from pipeline.pricing import PriceTable
from pipeline.storage import open_store
from pipeline.storage import rows as R
from pipeline.storage.errors import SinkUnavailable
from pipeline.storage.faults import FlakyClient
from pipeline.storage.sink import ClickHouseSink, RetryPolicy
from pipeline.storage.usage import reconcile, usage_report
from tests.fixtures.clickhouse import synthetic_events

PERIOD = (date(2026, 3, 1), date(2026, 3, 10))


def _counts(client: Client) -> tuple[int, int, int, int]:
    """(rows in events, distinct event ids, requests in the daily rollup, in the hourly one)."""
    rows = client.query("SELECT count(), uniqExact(event_id) FROM events").result_rows[0]
    daily = client.query("SELECT sum(requests) FROM usage_daily").result_rows[0][0]
    hourly = client.query("SELECT sum(requests) FROM usage_hourly").result_rows[0][0]
    return int(rows[0]), int(rows[1]), int(daily), int(hourly)


def _insert(client: Client, events: list[AllocationEvent], token: str | None) -> None:
    batch = R.events_table([(e, 0.001, R.INGESTED) for e in events])
    settings = {"insert_deduplication_token": token} if token else {}
    client.insert_arrow("events", batch, settings=settings)


def test_a_retried_insert_with_its_token_is_dropped_by_the_table_and_the_rollups(
    clickhouse_client: Client,
) -> None:
    events = synthetic_events(500, seed=1)  # spans several daily partitions
    _insert(clickhouse_client, events, token="batch-1")
    _insert(clickhouse_client, events, token="batch-1")  # the retry
    assert _counts(clickhouse_client) == (500, 500, 500, 500)


def test_a_new_token_with_new_rows_is_written(clickhouse_client: Client) -> None:
    _insert(clickhouse_client, synthetic_events(10, seed=2), token="a")
    _insert(clickhouse_client, synthetic_events(10, seed=3), token="b")
    assert _counts(clickhouse_client) == (20, 20, 20, 20)


def test_a_cross_batch_duplicate_is_collapsed_by_final_and_reported_by_reconcile(
    clickhouse_client: Client, storage_settings: Settings
) -> None:
    events = synthetic_events(50, seed=4)
    _insert(clickhouse_client, events, token="a")
    _insert(clickhouse_client, events[:5], token="b")  # re-sent in another batch: not a retry
    final = clickhouse_client.query("SELECT count() FROM events FINAL").result_rows[0][0]
    assert final == 50
    diffs = reconcile(clickhouse_client, storage_settings, *PERIOD)
    assert diffs, "the rollup counted the re-sent events; reconcile must say so"
    raw = usage_report(clickhouse_client, storage_settings, *PERIOD, source="events")
    assert sum(raw.column("requests").to_pylist()) == 50


def _sink(client: object) -> ClickHouseSink:
    return ClickHouseSink(
        client,  # type: ignore[arg-type]
        prices=PriceTable({}),
        batch_rows=200,
        batch_seconds=3600.0,
        retry=RetryPolicy(attempts=4, base_s=0.0),
        sleep=lambda s: None,
    )


def test_sink_retry_after_failures_leaves_no_duplicate_and_no_gap(
    clickhouse_client: Client, storage_settings: Settings
) -> None:
    flaky = FlakyClient(clickhouse_client, fail_inserts=2)
    sink = _sink(flaky)
    events = synthetic_events(1000, seed=5)
    for event in events:
        sink.add(event)
    sink.flush()
    assert sink.stats.failed_attempts == 2
    assert _counts(clickhouse_client) == (1000, 1000, 1000, 1000)
    stored = {str(r[0]) for r in clickhouse_client.query("SELECT event_id FROM events").result_rows}
    assert stored == {e.event_id for e in events}
    assert reconcile(clickhouse_client, storage_settings, *PERIOD) == []


def test_sink_retry_after_a_lost_response_is_deduplicated_by_its_token(
    clickhouse_client: Client, storage_settings: Settings
) -> None:
    flaky = FlakyClient(clickhouse_client, lose_responses=1)  # insert lands, client sees an error
    sink = _sink(flaky)
    for event in synthetic_events(700, seed=6):
        sink.add(event)
    sink.flush()
    assert flaky.tokens[0] == flaky.tokens[1], "the retry must reuse the batch's token"
    assert _counts(clickhouse_client) == (700, 700, 700, 700)
    assert reconcile(clickhouse_client, storage_settings, *PERIOD) == []


def test_sink_drops_an_event_it_has_already_taken(clickhouse_client: Client) -> None:
    sink = _sink(clickhouse_client)
    events = synthetic_events(300, seed=7)
    for event in events + events[:40]:
        sink.add(event)
    sink.flush()
    assert sink.stats.duplicates_dropped == 40
    assert _counts(clickhouse_client) == (300, 300, 300, 300)


def test_a_flush_that_keeps_failing_keeps_the_rows(clickhouse_client: Client) -> None:
    flaky = FlakyClient(clickhouse_client, fail_inserts=10)
    sink = _sink(flaky)
    for event in synthetic_events(50, seed=8):
        sink.add(event)
    with pytest.raises(SinkUnavailable):
        sink.flush()
    assert sink.buffered_rows == 50
    flaky.fail_inserts = 0
    assert sink.flush() == 50
    assert _counts(clickhouse_client) == (50, 50, 50, 50)


def test_without_the_window_on_its_target_a_view_counts_a_retry_twice(
    clickhouse_client: Client,
) -> None:
    """Why 003_usage.sql sets the window on the rollup tables: the failure mode, shown."""
    c = clickhouse_client
    c.command(
        "CREATE TABLE src (id String, v UInt64) ENGINE = MergeTree ORDER BY id"
        " SETTINGS non_replicated_deduplication_window = 100"
    )
    c.command("CREATE TABLE dst (v UInt64) ENGINE = SummingMergeTree ORDER BY tuple()")
    c.command("CREATE MATERIALIZED VIEW src_mv TO dst AS SELECT sum(v) AS v FROM src")
    for _ in range(2):
        c.insert("src", [["a", "b"], [1, 2]], column_names=["id", "v"], column_oriented=True,
                 settings={"insert_deduplication_token": "t"})
    assert c.query("SELECT count(), sum(v) FROM src").result_rows[0] == (2, 3)
    assert c.query("SELECT sum(v) FROM dst").result_rows[0][0] == 6  # double counted


def test_stored_event_ids_are_found_among_a_large_step(storage_settings: Settings) -> None:
    """After a crash, the worker asks which of a step's events are already stored; a step can
    hold tens of thousands of events (several 20,000-record fetches of one partition)."""
    events = synthetic_events(50_000)
    stored = events[::50]
    with open_store(storage_settings) as store:
        for event in stored:
            store.sink.add_event(event)
        store.flush()
        assert store.stored_event_ids(events) == {e.event_id for e in stored}
