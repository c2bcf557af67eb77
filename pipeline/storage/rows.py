"""Arrow tables for the ClickHouse tables, built column by column, and per-batch dedup tokens.

Each table has a :class:`TableSpec`: ``build`` turns buffered items into a ``pyarrow.Table``
(column names match the DDL in ``schemas/clickhouse``; ClickHouse converts strings to UUID and
LowCardinality, microsecond timestamps to its DateTime types), ``identity`` gives the bytes a
batch's ``insert_deduplication_token`` is hashed from. Items are what the sink buffers:

- ``events``: ``(event, cost_usd, ingested_at)`` (:data:`EventItem`);
- ``metrics_1m``: :class:`~pipeline.records.MetricRow`;
  ``alerts``: :class:`~pipeline.records.Alert`;
- ``dead_letters``: ``(letter, received_at)`` (:data:`DeadLetterItem`).

>>> from pipeline.events import example_event
>>> table = events_table([(example_event(), 0.5, INGESTED)])
>>> table.column_names == list(EVENT_COLUMNS), str(table.column("cost_usd")[0])
(True, '0.500000000')
>>> token = lambda items: batch_token("events", len(items), event_identity(items))
>>> token([(example_event(), 1.0, INGESTED)]) == token([(example_event(), 2.0, INGESTED)])
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, Final, NamedTuple, TypeAlias

import msgspec
import numpy as np
import pyarrow as pa

from pipeline.events import AllocationEvent
from pipeline.minute_fields import COST_COLUMN, SKETCH_COLUMN, metric_columns
from pipeline.pricing import cost_units
from pipeline.records import Alert, DeadLetter, MetricRow

__all__ = [
    "ALERT_COLUMNS",
    "DEAD_LETTER_COLUMNS",
    "EVENT_COLUMNS",
    "METRIC_COLUMNS",
    "SAMPLE_BYTES",
    "TABLES",
    "DeadLetterItem",
    "EventItem",
    "TableSpec",
    "alerts_table",
    "batch_token",
    "content_identity",
    "dead_letters_table",
    "decimal_array",
    "event_identity",
    "events_table",
    "metrics_table",
]

EventItem: TypeAlias = tuple[AllocationEvent, float, datetime]
DeadLetterItem: TypeAlias = tuple[DeadLetter, datetime]
SAMPLE_BYTES: Final = 2048
INGESTED: Final = datetime(2026, 3, 2, 6, 0, 1, tzinfo=UTC)  # for doctests
COST_SCALE: Final = 9  # Decimal(18, 9)

_STR, _F64, _U64 = pa.string(), pa.float64(), pa.uint64()
_MICROS: Final = pa.timestamp("us", tz="UTC")
_MILLIS: Final = pa.timestamp("ms", tz="UTC")
_SECONDS: Final = pa.timestamp("s", tz="UTC")

# (column, attribute of the event, arrow type); ``cost_usd`` and ``ingested_at`` come from the item
_EVENT_FIELDS: Final = (
    ("event_id", _STR), ("ts", _MICROS), ("tenant_id", _STR), ("api_key_id", _STR),
    ("model", _STR), ("server_id", _STR), ("route", _STR), ("difficulty", _F64),
    ("prompt_tokens", _U64), ("completion_tokens", _U64), ("reasoning_tokens", _U64),
    ("passes", _U64), ("budget_tokens", _U64), ("gpu_ms", _F64), ("latency_ms", _F64),
    ("ttft_ms", _F64), ("confidence", _F64), ("status", _STR), ("gpu_type", _STR),
    ("region", _STR), ("schema_version", _STR),
)  # fmt: skip
EVENT_COLUMNS: Final = (*(name for name, _ in _EVENT_FIELDS), "cost_usd", "ingested_at")
METRIC_COLUMNS: Final = tuple(MetricRow.__struct_fields__)
_METRIC_KINDS: Final = {
    "UInt64": _U64, "Float64": _F64, SKETCH_COLUMN: pa.map_(pa.uint16(), _U64),
}  # fmt: skip
# the statistics' types by the spec (cost_usd, a decimal, has its own path); the ids are strings
_METRIC_TYPES: Final = {
    name: _METRIC_KINDS[column] for name, column in metric_columns() if column != COST_COLUMN
}
ALERT_COLUMNS: Final = (
    "alert_id", "kind", "entity_type", "entity_id", "window_start", "window_end", "detected_at",
    "score", "severity", "summary", "evidence", "event_count",
)
DEAD_LETTER_COLUMNS: Final = (
    "received_at", "reason", "rule", "topic", "partition", "offset", "payload_sample",
    "payload_bytes",
)


class TableSpec(NamedTuple):
    """How the sink turns one table's buffered items into a batch."""

    build: Callable[[Sequence[Any]], pa.Table]
    identity: Callable[[Sequence[Any]], bytes]


def events_table(items: Sequence[EventItem]) -> pa.Table:
    """The ``events`` columns of ``(event, cost_usd, ingested_at)`` items."""
    events = [item[0] for item in items]
    columns = [pa.array(list(map(attrgetter(name), events)), kind) for name, kind in _EVENT_FIELDS]
    columns.append(decimal_array([item[1] for item in items]))
    columns.append(_truncated([item[2] for item in items], _MILLIS))
    return pa.Table.from_arrays(columns, names=list(EVENT_COLUMNS))


def metrics_table(rows: Sequence[MetricRow]) -> pa.Table:
    """The ``metrics_1m`` columns of metric rows."""
    columns = []
    for name in METRIC_COLUMNS:
        values = list(map(attrgetter(name), rows))
        if name == "window_start":
            columns.append(_truncated(values, _SECONDS))
        elif name == "cost_usd":
            columns.append(decimal_array(values))
        else:
            columns.append(pa.array(values, _METRIC_TYPES.get(name, _STR)))
    return pa.Table.from_arrays(columns, names=list(METRIC_COLUMNS))


def alerts_table(alerts: Sequence[Alert]) -> pa.Table:
    """The ``alerts`` columns; ``evidence`` is the contract's JSON object as a string."""
    encode = msgspec.json.encode
    columns = {
        "alert_id": pa.array([a.alert_id for a in alerts], _STR),
        "kind": pa.array([a.kind for a in alerts], _STR),
        "entity_type": pa.array([a.entity_type for a in alerts], _STR),
        "entity_id": pa.array([a.entity_id for a in alerts], _STR),
        "window_start": _truncated([a.window_start for a in alerts], _MILLIS),
        "window_end": _truncated([a.window_end for a in alerts], _MILLIS),
        "detected_at": _truncated([a.detected_at for a in alerts], _MILLIS),
        "score": pa.array([a.score for a in alerts], _F64),
        "severity": pa.array([a.severity for a in alerts], _STR),
        "summary": pa.array([a.summary for a in alerts], _STR),
        "evidence": pa.array([encode(a.evidence).decode() for a in alerts], _STR),
        "event_count": pa.array([a.event_count for a in alerts], _U64),
    }
    return pa.table(columns)


def dead_letters_table(
    items: Sequence[DeadLetterItem], sample_bytes: int = SAMPLE_BYTES
) -> pa.Table:
    """The ``dead_letters`` columns, with a bounded sample of each payload (invalid UTF-8 shown
    as U+FFFD)."""
    letters = [letter for letter, _ in items]
    columns = {
        "received_at": _truncated([received for _, received in items], _MILLIS),
        "reason": pa.array([d.reason for d in letters], _STR),
        "rule": pa.array([d.rule for d in letters], _STR),
        "topic": pa.array([d.topic for d in letters], _STR),
        "partition": pa.array([d.partition for d in letters], pa.int32()),
        "offset": pa.array([d.offset for d in letters], pa.int64()),
        "payload_sample": pa.array(
            [d.payload[:sample_bytes].decode("utf-8", errors="replace") for d in letters], _STR
        ),
        "payload_bytes": pa.array([len(d.payload) for d in letters], _U64),
    }
    return pa.table(columns)


def decimal_array(values: Sequence[float], scale: int = COST_SCALE) -> pa.Array:
    """Floats as ``decimal128(18, scale)``: each the shortest decimal that reads back as the
    float (``str(x)``), truncated to ``scale`` digits, exactly as ``int(Decimal(str(x)) *
    10**scale)`` (what clickhouse-connect sends for a Decimal column).

    Vectorised: the product ``x * 10**scale`` in floating point is within 3 ulps of the exact
    decimal one, so its floor is exact unless it lies that close to an integer ``k``. Near ``k``,
    a float that is the nearest one to ``k / 10**scale`` (what ``round(x, scale)`` gives, as the
    engine's costs are) has that decimal as its shortest form, so the answer is ``k``. The rest
    (and negatives, non-finite and huge values) take the exact decimal path; zero is zero.

    >>> decimal_array([0.0011805555555555556, 3e-9, 0.0, 1.5]).to_pylist()
    [Decimal('0.001180555'), Decimal('3E-9'), Decimal('0E-9'), Decimal('1.500000000')]
    """
    floats = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        product = floats * float(10**scale)
        nearest = np.rint(product)
        on_grid = nearest / float(10**scale) == floats
        far = np.abs(product - nearest) > product * 1e-15
        fast = (product > 0) & (product < 2.0**50) & (far | on_grid)
        exact = ~fast & (product != 0)
        units = np.where(far, np.floor(product), nearest)
        units = np.where(exact | (product == 0), 0.0, units).astype(np.int64)
    for i in np.flatnonzero(exact).tolist():
        units[i] = cost_units(float(floats[i]), scale)
    halves = np.empty((len(units), 2), dtype=np.int64)  # little-endian int128: low, sign
    halves[:, 0] = units
    halves[:, 1] = units >> 63
    kind = pa.decimal128(18, scale)
    return pa.Array.from_buffers(kind, len(units), [None, pa.py_buffer(halves)])


def _truncated(values: Sequence[datetime], unit: pa.DataType) -> pa.Array:
    """Timezone-aware datetimes as UTC timestamps of ``unit``, truncated (as clickhouse-connect
    does for DateTime64 ticks and DateTime seconds).

    >>> _truncated([datetime(2026, 1, 1, 0, 0, 1, 999999, tzinfo=UTC)], _MILLIS)[0].value
    1767225601999
    """
    return pa.array(values, unit)


def event_identity(items: Sequence[EventItem]) -> bytes:
    """What identifies a batch of events: their ids (the contract's idempotency key)."""
    return ("\x1f" + "\x1f".join([item[0].event_id for item in items])).encode()


def content_identity(items: Sequence[Any]) -> bytes:
    """What identifies a batch of other rows: all their values (a changed metric window is new
    data, not a retry)."""
    return msgspec.msgpack.encode(items)


def batch_token(table: str, rows: int, identity: bytes) -> str:
    """A deterministic ``insert_deduplication_token`` for a batch of ``rows`` rows: the same
    identity gives the same token, so ClickHouse drops a retried (or re-sent) batch whole."""
    digest = hashlib.blake2b(table.encode(), digest_size=16)
    digest.update(identity)
    return f"{table}-{rows}-{digest.hexdigest()}"


TABLES: Final[dict[str, TableSpec]] = {
    "events": TableSpec(events_table, event_identity),
    "metrics_1m": TableSpec(metrics_table, content_identity),
    "alerts": TableSpec(alerts_table, content_identity),
    "dead_letters": TableSpec(dead_letters_table, content_identity),
}
