"""Finance: usage per tenant reconciles exactly with the raw events and the price table."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client

from pipeline.config import Settings
from pipeline.events import AllocationEvent
from pipeline.pricing import PriceTable
from pipeline.storage.client import connect, quote_database
from pipeline.storage.faults import FlakyClient
from pipeline.storage.sink import ClickHouseSink
from pipeline.storage.usage import USAGE_COLUMNS, reconcile, usage_report, write_usage
from tests.fixtures.clickhouse import synthetic_events

FROM, TO = date(2026, 3, 1), date(2026, 3, 5)


def expected(
    events: list[AllocationEvent], prices: PriceTable, key: Any = lambda e: (e.tenant_id,)
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Usage computed in Python straight from the events and the price table."""
    totals: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0,
                 "reasoning_tokens": 0, "passes": 0, "gpu_us": 0, "cost_usd": Decimal(0)}
    )
    for e in events:
        t = totals[key(e)]
        t["requests"] += 1
        t["prompt_tokens"] += e.prompt_tokens
        t["completion_tokens"] += e.completion_tokens
        t["reasoning_tokens"] += e.reasoning_tokens
        t["passes"] += e.passes
        t["gpu_us"] += round(e.gpu_ms * 1000)
        cost = prices.cost(model=e.model, gpu_ms=e.gpu_ms, prompt_tokens=e.prompt_tokens,
                           generated_tokens=e.completion_tokens + e.reasoning_tokens)
        t["cost_usd"] += Decimal(str(cost))
    for t in totals.values():
        t["gpu_ms"] = Decimal(t.pop("gpu_us")) / 1000
    return dict(totals)


@pytest.fixture
def loaded(
    clickhouse_client: Client, storage_settings: Settings
) -> tuple[list[AllocationEvent], PriceTable]:
    """5000 events stored through the sink, a slice of them re-sent and a batch retried."""
    events = synthetic_events(5000, seed=21, days=4)
    flaky = FlakyClient(clickhouse_client, lose_responses=1, fail_inserts=1)
    sink = ClickHouseSink.from_settings(flaky, storage_settings, batch_rows=1500)  # type: ignore[arg-type]
    for event in events + events[100:300]:  # re-sent events are dropped by id
        sink.add(event)
    sink.flush()
    assert sink.stats.failed_attempts == 2
    prices = PriceTable(storage_settings.prices, storage_settings.default_price)
    return events, prices


def as_dict(table: Any, keys: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    out = {}
    for row in table.to_pylist():
        out[tuple(row.pop(k) for k in keys)] = row
    return out


def test_usage_per_tenant_equals_sums_over_the_raw_events_exactly(
    clickhouse_client: Client, storage_settings: Settings, loaded: Any
) -> None:
    events, prices = loaded
    report = usage_report(clickhouse_client, storage_settings, FROM, TO)
    assert tuple(report.column_names) == USAGE_COLUMNS
    assert as_dict(report, ("tenant_id",)) == expected(events, prices)
    raw = usage_report(clickhouse_client, storage_settings, FROM, TO, source="events")
    assert raw.equals(report)
    assert reconcile(clickhouse_client, storage_settings, FROM, TO) == []


@pytest.mark.parametrize(
    ("group_by", "column", "key"),
    [
        ("api_key", "api_key_id", lambda e: (e.tenant_id, e.api_key_id)),
        ("model", "model", lambda e: (e.tenant_id, e.model)),
        ("day", "day", lambda e: (e.tenant_id, e.ts.date())),
    ],
)
def test_usage_groupings_add_their_key_column(
    clickhouse_client: Client, storage_settings: Settings, loaded: Any,
    group_by: str, column: str, key: Any,
) -> None:
    events, prices = loaded
    report = usage_report(clickhouse_client, storage_settings, FROM, TO, group_by=group_by)
    assert report.column_names[:2] == ["tenant_id", column]
    assert as_dict(report, ("tenant_id", column)) == expected(events, prices, key)


def test_period_is_half_open_and_tenant_filter_applies(
    clickhouse_client: Client, storage_settings: Settings, loaded: Any
) -> None:
    events, prices = loaded
    day2 = [e for e in events if e.ts.date() == date(2026, 3, 2) and e.tenant_id == "acme"]
    report = usage_report(
        clickhouse_client, storage_settings, date(2026, 3, 2), date(2026, 3, 3), tenant="acme"
    )
    assert as_dict(report, ("tenant_id",)) == expected(day2, prices)
    several = usage_report(clickhouse_client, storage_settings, FROM, TO,
                           tenant=["acme", "globex"])
    assert several.column("tenant_id").to_pylist() == ["acme", "globex"]
    assert usage_report(clickhouse_client, storage_settings, FROM, TO,
                        tenant="acme' OR '1'='1").num_rows == 0


def test_write_usage_formats_keep_exact_values(
    clickhouse_client: Client, storage_settings: Settings, loaded: Any, tmp_path: Path
) -> None:
    report = usage_report(clickhouse_client, storage_settings, FROM, TO)
    costs = [str(c) for c in report.column("cost_usd").to_pylist()]

    write_usage(report, "csv", tmp_path / "u.csv")
    text = (tmp_path / "u.csv").read_text()
    assert text.splitlines()[0] == ",".join(USAGE_COLUMNS)
    csv_costs = pa_csv.read_csv(tmp_path / "u.csv", convert_options=pa_csv.ConvertOptions(
        column_types={"cost_usd": "string"})).column("cost_usd").to_pylist()
    assert csv_costs == costs

    write_usage(report, "parquet", tmp_path / "u.parquet")
    assert pq.read_table(tmp_path / "u.parquet").equals(report)

    buffer = io.BytesIO()
    write_usage(report, "json", buffer)
    rows = json.loads(buffer.getvalue(), parse_float=Decimal)
    assert [str(r["cost_usd"]) for r in rows] == costs
    with pytest.raises(ValueError, match="format"):
        write_usage(report, "xlsx", buffer)


def test_store_helpers_migrate_write_steps_and_export(
    storage_settings: Settings, tmp_path: Path
) -> None:
    """The calls the CLI makes: migrate, replay --store (write_step), usage export."""
    from pipeline.records import StepOutput
    from pipeline.storage.store import export_usage, migrate_database, open_store

    assert [m.version for m in migrate_database(storage_settings)] == [1, 2, 3, 4, 5, 6]
    assert migrate_database(storage_settings) == []
    events = synthetic_events(300, seed=41)
    with open_store(storage_settings, max_buffer_rows=100, batch_rows=50) as store:
        for i in range(0, 300, 60):  # steps bigger than the free buffer: write_step waits
            store.write_step(StepOutput(events=events[i:i + 60]))
        client = store.client
        assert client.query("SELECT count() FROM events").result_rows[0][0] >= 240
    out = tmp_path / "usage.csv"
    rows = export_usage(storage_settings, FROM, TO, format="csv", output=out)
    lines = out.read_text().splitlines()
    assert lines[0] == ",".join(USAGE_COLUMNS) and len(lines) == rows + 1
    assert sum(int(line.split(",")[1]) for line in lines[1:]) == 300
    cleanup = connect(storage_settings.clickhouse)
    cleanup.command(f"DROP DATABASE {quote_database(storage_settings.clickhouse.database)}")
    cleanup.close()
