"""Rows for the ClickHouse tables: column names, value tuples and per-batch dedup tokens.

Column order here is the order the sink inserts in (column-oriented); names match the DDL in
``schemas/clickhouse``.

>>> from pipeline.events import example_event
>>> row = event_row(example_event(), 0.5, INGESTED)
>>> dict(zip(EVENT_COLUMNS, row))["cost_usd"], len(row) == len(EVENT_COLUMNS)
(0.5, True)
>>> by_id = lambda r: r[0]
>>> batch_token("events", [("a", 1)], key=by_id) == batch_token("events", [("a", 2)], key=by_id)
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from pipeline.alerts import Alert
from pipeline.engine import DeadLetter
from pipeline.events import AllocationEvent
from pipeline.metrics import MetricRow

__all__ = [
    "ALERT_COLUMNS",
    "DEAD_LETTER_COLUMNS",
    "EVENT_COLUMNS",
    "METRIC_COLUMNS",
    "SAMPLE_BYTES",
    "alert_row",
    "batch_token",
    "dead_letter_row",
    "event_row",
    "metric_row",
]

Row = tuple[Any, ...]
SAMPLE_BYTES: Final = 2048
INGESTED: Final = datetime(2026, 3, 2, 6, 0, 1, tzinfo=UTC)  # for doctests

EVENT_COLUMNS: Final = (
    "event_id", "ts", "tenant_id", "api_key_id", "model", "server_id", "route", "difficulty",
    "prompt_tokens", "completion_tokens", "reasoning_tokens", "passes", "budget_tokens",
    "gpu_ms", "latency_ms", "ttft_ms", "confidence", "status", "gpu_type", "region",
    "schema_version", "cost_usd", "ingested_at",
)
METRIC_COLUMNS: Final = tuple(MetricRow.__struct_fields__)
ALERT_COLUMNS: Final = (
    "alert_id", "kind", "entity_type", "entity_id", "window_start", "window_end", "detected_at",
    "score", "severity", "summary", "evidence", "event_count",
)
DEAD_LETTER_COLUMNS: Final = (
    "received_at", "reason", "rule", "topic", "partition", "offset", "payload_sample",
    "payload_bytes",
)


def event_row(event: AllocationEvent, cost_usd: float, ingested_at: datetime) -> Row:
    e = event
    return (
        e.event_id, e.ts, e.tenant_id, e.api_key_id, e.model, e.server_id, e.route, e.difficulty,
        e.prompt_tokens, e.completion_tokens, e.reasoning_tokens, e.passes, e.budget_tokens,
        e.gpu_ms, e.latency_ms, e.ttft_ms, e.confidence, e.status, e.gpu_type, e.region,
        e.schema_version, cost_usd, ingested_at,
    )


def metric_row(row: MetricRow) -> Row:
    return tuple(getattr(row, name) for name in METRIC_COLUMNS)


def alert_row(alert: Alert) -> Row:
    a = alert
    evidence = msgspec.json.encode(a.evidence).decode()
    return (
        a.alert_id, a.kind, a.entity_type, a.entity_id, a.window_start, a.window_end,
        a.detected_at, a.score, a.severity, a.summary, evidence, a.event_count,
    )


def dead_letter_row(
    letter: DeadLetter, received_at: datetime, sample_bytes: int = SAMPLE_BYTES
) -> Row:
    """A dead letter with a bounded sample of its bytes (invalid UTF-8 shown as U+FFFD)."""
    sample = letter.payload[:sample_bytes].decode("utf-8", errors="replace")
    return (
        received_at, letter.reason, letter.rule, letter.topic, letter.partition,
        letter.offset, sample, len(letter.payload),
    )


def batch_token(table: str, rows: Sequence[Row], key: Callable[[Row], object] = repr) -> str:
    """A deterministic ``insert_deduplication_token`` for a batch: the same rows give the same
    token, so ClickHouse drops a retried (or re-sent) batch whole.

    ``key`` picks what identifies a row: the event_id for events (the contract's idempotency
    key), the whole row elsewhere (a changed metric window is new data, not a retry).
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(table.encode())
    for row in rows:
        digest.update(b"\x1f")
        digest.update(str(key(row)).encode())
    return f"{table}-{len(rows)}-{digest.hexdigest()}"
