"""The per-minute statistics are one spec: the DDL, the metric rows and the window sums agree."""

from __future__ import annotations

import pickle
import re
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.detectors import EntityMinute
from pipeline.events import example_event
from pipeline.metrics import WindowTotals
from pipeline.minute_fields import INDEX, metric_columns
from pipeline.records import MetricRow
from pipeline.sketch import LatencySketch

DDL = Path(__file__).parents[2] / "schemas/clickhouse/002_metrics_alerts_dead_letters.sql"
IDS = ["tenant_id", "api_key_id", "model", "route", "server_id"]


def metrics_ddl() -> list[tuple[str, str]]:
    table = re.search(r"metrics_1m\n\((.*?)\n\)", DDL.read_text(), re.S)
    assert table is not None
    lines = [line.strip().rstrip(",") for line in table.group(1).splitlines() if line.strip()]
    return [(name, kind) for name, kind in (line.split(" ", 1) for line in lines)]


def test_the_ddl_holds_the_stored_statistics_in_the_specs_order_and_types() -> None:
    columns = metrics_ddl()
    assert [name for name, _ in columns[:6]] == ["window_start", *IDS]
    assert columns[6:] == metric_columns()


def test_a_metric_row_is_the_ids_and_the_stored_statistics() -> None:
    assert list(MetricRow.__struct_fields__) == [
        "window_start", *IDS, *(name for name, _ in metric_columns())
    ]


def test_the_detectors_minute_reads_statistics_of_the_spec() -> None:
    assert all(f.name in INDEX for f in fields(EntityMinute))


class OldShape:
    """Pickles as a ``WindowTotals`` of before the spec: one slot per statistic."""

    def __init__(self, slots: dict[str, Any]) -> None:
        self.slots = slots

    def __reduce__(self) -> tuple[Any, ...]:
        return (object.__new__, (WindowTotals,), (None, self.slots))


def test_window_sums_saved_before_the_spec_restore() -> None:
    event = example_event()
    latency = LatencySketch()
    latency.add(event.latency_ms)
    old = {
        "requests": 1, "prompt_tokens": 512, "completion_tokens": 256, "reasoning_tokens": 1024,
        "passes": 1, "token_passes": 1280, "gpu_ms": 850.0, "latency_sum": 2100.0,
        "latency": latency, "cost_usd": 0.5, "budget_tokens": 4096, "budgeted_generated": 1280,
        "confidence_sum": 0.82, "confidence_count": 1, "truncated": 0, "timeouts": 0,
        "errors": 0, "cancelled": 0,
    }  # fmt: skip
    restored = pickle.loads(pickle.dumps(OldShape(old)))
    fresh = WindowTotals()
    fresh.add(event, 0.5)
    key = (0, *IDS)
    start = datetime(2026, 3, 2, tzinfo=UTC)
    assert restored.entity_minute() == fresh.entity_minute()
    assert restored.row(key, start) == fresh.row(key, start)
    again = pickle.loads(pickle.dumps(restored))
    assert again.row(key, start) == fresh.row(key, start)
