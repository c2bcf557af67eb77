"""Event-time 1-minute windows of efficiency metrics per (tenant, api key, model, route, server).

A window closes once the watermark (latest event time seen minus the allowed lateness) passes
its end; late events within the lateness merge into their window, later ones are counted in
:attr:`WindowAggregator.too_late` (they still reach the raw events table and usage).

Open groups can be bounded: a tenant's api keys beyond ``max_keys_per_tenant`` in one window
share the groups of api key :data:`OVERFLOW_ID`, and past ``max_groups`` open groups new ones
all go to one group per window whose ids are all :data:`OVERFLOW_ID`. A flood of fake keys thus
costs bounded memory and leaves other tenants' keys their own groups; requests, tokens and cost
are all still counted.

>>> from pipeline.events import example_event
>>> from pipeline.pricing import PriceTable
>>> agg = WindowAggregator(PriceTable({}), allowed_lateness_s=0)
>>> agg.add(example_event())[1:3]
('acme', 'key-1')
>>> rows = agg.close_all()
>>> rows[0].requests, rows[0].reasoning_tokens, rows[0].window_start.isoformat()
(1, 1024, '2026-03-02T06:00:00+00:00')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Final

from pipeline.detectors.base import EntityMinute
from pipeline.events import AllocationEvent
from pipeline.minute_fields import (
    COST_COLUMN,
    INDEX,
    MINUTE_FIELDS,
    SKETCH_COLUMN,
    window_adder,
)
from pipeline.pricing import PriceTable
from pipeline.records import MetricRow
from pipeline.sketch import LatencySketch, quantiles_of

WINDOW_S = 60
# What the ClickHouse columns hold (schemas/clickhouse): counts are UInt64 and costs
# Decimal(18, 9). A window's sums saturate there rather than fail the insert (which the sink
# would retry forever); the engine dead-letters a single request that costs more.
UINT64_MAX = 2**64 - 1
COST_LIMIT_USD = 1e9  # exclusive
OVERFLOW_ID = "(overflow)"  # the ids of a group that stands for groups past the bounds
GroupKey = tuple[
    int, str, str, str, str, str
]  # (window epoch s, tenant, key, model, route, server)
_ADD: Final = window_adder()
_ZEROS: Final = tuple(None if f.combine == "sketch" else f.kind() for f in MINUTE_FIELDS)
_SKETCHES: Final = tuple(i for i, f in enumerate(MINUTE_FIELDS) if f.combine == "sketch")
_VIEW: Final = itemgetter(*(INDEX[f.name] for f in fields(EntityMinute)))  # in its order
# the fields of an older WindowTotals (one slot per statistic) under their names in the spec
_PREVIOUS_NAMES: Final = {
    "latency_sum": "latency_ms_sum", "budgeted_generated": "budgeted_generated_tokens",
    "latency": "latency_hist",
}  # fmt: skip


class WindowTotals:
    """Running values of one open window group: one per :data:`MINUTE_FIELDS` entry, in its
    order (a sum, or a :class:`LatencySketch`)."""

    __slots__ = ("_view", "values")

    def __init__(self) -> None:
        # a copy of the zeros, then a sketch of its own per sketch field: most groups see one
        # or two events a minute, so making a group costs as much as adding to it
        self.values: list[Any] = [*_ZEROS]
        for i in _SKETCHES:
            self.values[i] = LatencySketch()
        self._view: EntityMinute | None = None  # entity_minute's, until the next event

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        return None, {"values": self.values}

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        slots = state[1]
        self._view = None
        if "values" in slots:
            self.values = slots["values"]
            return
        # saved before the spec: one slot per statistic, some under other names, the
        # detectors' generated tokens and runaway requests not kept apart
        named = {_PREVIOUS_NAMES.get(name, name): value for name, value in slots.items()}
        named["generated_tokens"] = named["completion_tokens"] + named["reasoning_tokens"]
        named["runaway"] = named["truncated"] + named["timeouts"]
        self.values = [named[f.name] for f in MINUTE_FIELDS]

    def add(self, e: AllocationEvent, cost_usd: float) -> None:
        _ADD(self.values, e, cost_usd)
        self._view = None

    def entity_minute(self) -> EntityMinute:
        """The sums the detectors read (:class:`~pipeline.detectors.EntityMinute`), not to be
        changed: a group without events since the last call (most, from one 15 s peek to the
        next) gives the same object again.

        >>> from pipeline.events import example_event
        >>> totals = WindowTotals()
        >>> totals.add(example_event(), 0.5)
        >>> first = totals.entity_minute()
        >>> first is totals.entity_minute()
        True
        >>> totals.add(example_event(), 0.5)
        >>> totals.entity_minute().requests, first.requests
        (2, 1)
        """
        if self._view is None:
            self._view = EntityMinute(*_VIEW(self.values))
        return self._view

    def row(self, key: GroupKey, window_start: datetime) -> MetricRow:
        return _ROW(self.values, window_start, *key[1:])


# how a value is stored in its column type: saturated, rounded, a sketch as its buckets
_STORE: Final = {
    "UInt64": "({v} if {v} <= UINT64_MAX else UINT64_MAX)", "Float64": "{v}",
    COST_COLUMN: "min(round({v}, 9), COST_LIMIT_USD - 0.001)", SKETCH_COLUMN: "dict({v}.buckets)",
}  # fmt: skip


def _row_maker() -> Callable[..., MetricRow]:
    """``row(values, window_start, tenant, api_key, model, route, server)``: the metric row of a
    group's values, compiled from the spec as :func:`~pipeline.minute_fields.window_adder`."""
    lines = ["def row(values, window_start, tenant, api_key, model, route, server):"]
    args = ["window_start=window_start", "tenant_id=tenant", "api_key_id=api_key",
            "model=model", "route=route", "server_id=server"]  # fmt: skip
    for i, f in enumerate(MINUTE_FIELDS):
        if f.column is None:
            continue
        args.append(f"{f.name}={_STORE[f.column].format(v=f'values[{i}]')}")
        if f.quantiles:
            names = [name for name, _ in f.quantiles]
            qs = [q for _, q in f.quantiles]
            lines.append(f"    {', '.join(names)}, = quantiles_of(values[{i}].buckets, {qs!r})")
            args += [f"{name}={name}" for name in names]
    lines.append(f"    return MetricRow({', '.join(args)})")
    namespace: dict[str, Any] = {
        "MetricRow": MetricRow, "quantiles_of": quantiles_of, "UINT64_MAX": UINT64_MAX,
        "COST_LIMIT_USD": COST_LIMIT_USD,
    }  # fmt: skip
    exec("\n".join(lines), namespace)
    row: Callable[..., MetricRow] = namespace["row"]
    return row


_ROW: Final = _row_maker()


def window_of(epoch_s: float) -> int:
    """Start (epoch seconds) of the 1-minute window holding ``epoch_s``."""
    return int(epoch_s // WINDOW_S) * WINDOW_S


class WindowAggregator:
    """Open windows keyed by (window, tenant, key, model, route, server), closed by watermark."""

    def __init__(
        self,
        prices: PriceTable,
        allowed_lateness_s: float = 120.0,
        max_groups: int | None = None,
        max_keys_per_tenant: int | None = None,
    ) -> None:
        self.configure(prices, allowed_lateness_s, max_groups, max_keys_per_tenant)
        self._keys: dict[tuple[int, str], set[str]] = {}  # api keys per (window, tenant)
        self.max_event_s = float("-inf")
        self.too_late = 0
        self._closed_before = float("-inf")  # windows starting before this are closed
        self._windows: dict[int, dict[GroupKey, WindowTotals]] = {}  # open groups by window
        self._groups = 0  # open groups in all windows

    def configure(
        self,
        prices: PriceTable,
        allowed_lateness_s: float,
        max_groups: int | None,
        max_keys_per_tenant: int | None,
    ) -> None:
        """Price, wait and bound by these from now on (settings; a restored engine's are the
        current ones). Open windows keep what they hold: a window a shorter lateness has passed
        closes at the next :meth:`close_ready`, closed ones stay closed under a longer one; a
        group past lower bounds stays, new ones go to the overflow groups."""
        self.prices = prices
        self.allowed_lateness_s = allowed_lateness_s
        self.max_groups = max_groups
        self.max_keys_per_tenant = max_keys_per_tenant

    @property
    def open_group_count(self) -> int:
        return self._groups

    @property
    def watermark_s(self) -> float:
        return self.max_event_s - self.allowed_lateness_s

    def add(
        self, e: AllocationEvent, cost_usd: float | None = None, epoch: float | None = None
    ) -> GroupKey | None:
        """Add one event and return its group; None when it is later than the allowed lateness
        (then it is only counted). ``epoch`` is its ``ts`` as a timestamp, when the caller has
        it."""
        if epoch is None:
            epoch = e.ts.timestamp()
        window = window_of(epoch)
        if window < self._closed_before:
            self.too_late += 1
            return None
        if epoch > self.max_event_s:
            self.max_event_s = epoch
        key = (window, e.tenant_id, e.api_key_id, e.model, e.route, e.server_id)
        groups = self._windows.get(window)
        if groups is None:
            groups = self._windows[window] = {}
        acc = groups.get(key)
        if acc is None:
            if self.max_groups is not None or self.max_keys_per_tenant is not None:
                key = self._bounded(key, groups)
            acc = groups.get(key)
            if acc is None:
                acc = groups[key] = WindowTotals()
                self._groups += 1
        acc.add(e, self.prices.event_cost(e) if cost_usd is None else cost_usd)
        return key

    def _bounded(self, key: GroupKey, groups: dict[GroupKey, WindowTotals]) -> GroupKey:
        """Where a new group of ``groups`` (its window's) goes under the bounds (see the module
        docstring)."""
        window, tenant, api_key = key[:3]
        if self.max_keys_per_tenant is not None:
            keys = self._keys.get((window, tenant))
            if keys is None:  # not setdefault: that makes a set for every new group
                keys = self._keys[(window, tenant)] = set()
            if api_key not in keys:
                if len(keys) < self.max_keys_per_tenant:
                    keys.add(api_key)
                else:
                    key = (window, tenant, OVERFLOW_ID, *key[3:])
        full = self.max_groups is not None and self._groups >= self.max_groups
        if full and key not in groups:
            key = (window, *(OVERFLOW_ID,) * 5)
        return key

    def upgrade(self) -> None:
        """Bring an aggregator restored from an older snapshot to this version's shape: one
        saved before the windows were bounded gets its index of keys per tenant (the bounds
        come with :meth:`configure`), one that kept every open group in one dict gets them
        indexed by window. A current one is left as it is."""
        state = vars(self)
        if "_keys" not in state:  # from before the windows were bounded
            self._keys = {}
        if "_open" in state:  # from before the groups were indexed by window
            groups: dict[GroupKey, WindowTotals] = state.pop("_open")
            self._windows = {}
            for key, acc in groups.items():
                self._windows.setdefault(key[0], {})[key] = acc
            self._groups = len(groups)

    def open_groups(self, window: int) -> list[tuple[GroupKey, WindowTotals]]:
        """The still-open groups of one window (detectors read them before the window closes)."""
        return list(self._windows.get(window, {}).items())

    def open_windows(self) -> list[int]:
        """Start times of the windows that hold at least one open group, in order."""
        return sorted(self._windows)

    def close_ready(self, *, rows: bool = True) -> list[MetricRow]:
        """Close and return every window whose end is at or before the watermark (closed
        without their rows, which are then not built, when ``rows`` is False)."""
        cutoff = window_of(self.watermark_s - WINDOW_S) + WINDOW_S
        if cutoff <= self._closed_before:
            return []
        return self._close(cutoff, rows)

    def close_all(self, *, rows: bool = True) -> list[MetricRow]:
        """Close every open window (end of a replay); as :meth:`close_ready` for ``rows``."""
        return self._close(float("inf"), rows)

    def _close(self, cutoff: float, rows_wanted: bool) -> list[MetricRow]:
        self._closed_before = max(self._closed_before, cutoff)
        if self._keys:
            self._keys = {k: v for k, v in self._keys.items() if k[0] >= cutoff}
        rows: list[MetricRow] = []
        for window in sorted(w for w in self._windows if w < cutoff):
            groups = self._windows.pop(window)
            self._groups -= len(groups)
            if rows_wanted:
                start = datetime.fromtimestamp(window, UTC)
                rows.extend(groups[key].row(key, start) for key in sorted(groups))
        return rows
