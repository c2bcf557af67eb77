"""The per-minute statistics of a window group, one spec for every place that holds them.

Each :class:`MinuteField` says what one event adds to it (``of``, an expression in the event
``e`` and its ``cost``), how it is
combined across events and partitions (``sum``, or ``sketch``: a :class:`LatencySketch` whose
buckets add up) and its ``metrics_1m`` column type (None: not stored, only read by detectors).
The window sums (:class:`~pipeline.metrics.WindowTotals`) hold one value per field; the
detectors' :class:`~pipeline.detectors.EntityMinute` takes its fields from them by name;
:class:`~pipeline.records.MetricRow`, the insert columns (:mod:`pipeline.storage.rows`) and
the totals of ``metrics_1m`` queries (:mod:`pipeline.storage.queries`) take the stored ones
(:func:`metric_columns`), in this order. A test holds the DDL to them.

>>> [(f.name, f.of) for f in MINUTE_FIELDS if f.column is None]
[('generated_tokens', 'e.generated_tokens'), ('token_passes', 'e.generated_tokens * e.passes'), \
('runaway', "e.status in ('truncated', 'timeout')")]
>>> metric_columns()[-5:]
[('latency_hist', 'Map(UInt16, UInt64)'), ('latency_p50_ms', 'Float64'), \
('latency_p95_ms', 'Float64'), ('latency_p99_ms', 'Float64'), ('cost_usd', 'Decimal(18, 9)')]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal, NamedTuple

from pipeline.events import AllocationEvent

Combine = Literal["sum", "sketch"]
MAX_SKETCH_MS: Final = 1e300  # larger latencies count as this in the sketch (its buckets overflow)
COST_COLUMN: Final = "Decimal(18, 9)"
SKETCH_COLUMN: Final = "Map(UInt16, UInt64)"


class MinuteField(NamedTuple):
    """One statistic of a window group."""

    name: str
    kind: type[int] | type[float]  # of its sum (a sketch counts ints)
    of: str  # what one event ``e`` (and its cost, ``cost``) adds: a Python expression
    combine: Combine
    column: str | None  # its metrics_1m type; None when it is not stored
    quantiles: tuple[tuple[str, float], ...] = ()  # a sketch's stored quantile columns


MINUTE_FIELDS: Final[tuple[MinuteField, ...]] = (
    MinuteField("requests", int, "1", "sum", "UInt64"),
    MinuteField("prompt_tokens", int, "e.prompt_tokens", "sum", "UInt64"),
    MinuteField("completion_tokens", int, "e.completion_tokens", "sum", "UInt64"),
    MinuteField("generated_tokens", int, "e.generated_tokens", "sum", None),
    MinuteField("reasoning_tokens", int, "e.reasoning_tokens", "sum", "UInt64"),
    MinuteField("passes", int, "e.passes", "sum", "UInt64"),
    # the decode work behind gpu_ms
    MinuteField("token_passes", int, "e.generated_tokens * e.passes", "sum", None),
    MinuteField("gpu_ms", float, "e.gpu_ms", "sum", "Float64"),
    MinuteField("latency_ms_sum", float, "e.latency_ms", "sum", "Float64"),
    MinuteField("budget_tokens", int, "e.budget_tokens or 0", "sum", "UInt64"),
    MinuteField(
        "budgeted_generated_tokens",
        int,
        "e.generated_tokens if e.budget_tokens is not None else 0",
        "sum",
        "UInt64",
    ),
    MinuteField("confidence_sum", float, "e.confidence or 0.0", "sum", "Float64"),
    MinuteField(
        "confidence_count", int, "e.confidence is not None", "sum", "UInt64"
    ),
    MinuteField(
        "runaway", int, "e.status in ('truncated', 'timeout')", "sum", None
    ),
    MinuteField("truncated", int, "e.status == 'truncated'", "sum", "UInt64"),
    MinuteField("timeouts", int, "e.status == 'timeout'", "sum", "UInt64"),
    MinuteField("errors", int, "e.status == 'error'", "sum", "UInt64"),
    MinuteField("cancelled", int, "e.status == 'cancelled'", "sum", "UInt64"),
    MinuteField(
        "latency_hist",
        int,
        "min(e.latency_ms, MAX_SKETCH_MS)",
        "sketch",
        SKETCH_COLUMN,
        quantiles=(("latency_p50_ms", 0.5), ("latency_p95_ms", 0.95), ("latency_p99_ms", 0.99)),
    ),
    MinuteField("cost_usd", float, "cost", "sum", COST_COLUMN),
)
INDEX: Final = {f.name: i for i, f in enumerate(MINUTE_FIELDS)}


def window_adder() -> Callable[[list[Any], AllocationEvent, float], None]:
    """A function that adds one event and its cost to a group's values (one per field, in
    order; a sketch's is a :class:`~pipeline.sketch.LatencySketch`). It is compiled from the
    fields' expressions, as :mod:`dataclasses` compiles ``__init__``: the per-event path costs
    about what a hand-written one would.

    >>> from pipeline.events import example_event
    >>> from pipeline.sketch import LatencySketch
    >>> values = [LatencySketch() if f.combine == "sketch" else f.kind() for f in MINUTE_FIELDS]
    >>> window_adder()(values, example_event(), 0.5)
    >>> values[INDEX["generated_tokens"]], values[INDEX["latency_hist"]].buckets
    (1280, {387: 1})
    """
    lines = ["def add(values, e, cost):"]
    for i, f in enumerate(MINUTE_FIELDS):
        action = f"values[{i}].add({f.of})" if f.combine == "sketch" else f"values[{i}] += {f.of}"
        lines.append(f"    {action}")
    namespace: dict[str, Any] = {"MAX_SKETCH_MS": MAX_SKETCH_MS}
    exec("\n".join(lines), namespace)
    adder: Callable[[list[Any], AllocationEvent, float], None] = namespace["add"]
    return adder


def metric_columns() -> list[tuple[str, str]]:
    """The stored statistics as ``metrics_1m`` columns with their types, in order (a sketch's
    quantile columns follow it)."""
    columns: list[tuple[str, str]] = []
    for f in MINUTE_FIELDS:
        if f.column is not None:
            columns.append((f.name, f.column))
            columns.extend((name, "Float64") for name, _ in f.quantiles)
    return columns
