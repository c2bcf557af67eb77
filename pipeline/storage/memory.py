"""The in-memory twin of the ClickHouse sink, for tests of the engine, replay and the worker.

It keeps what was added in lists, drops re-sent events by id like the real sink, and can be told
to push back (``capacity``) so callers' pause/resume paths are testable without ClickHouse.

>>> from pipeline.events import example_event
>>> sink = ListSink()
>>> sink.add(example_event()); sink.add(example_event())
>>> len(sink.events), sink.duplicates_dropped
(1, 1)
"""

from __future__ import annotations

from typing import TypeAlias

from pipeline.events import AllocationEvent
from pipeline.records import Alert, DeadLetter, MetricRow, StepOutput
from pipeline.storage.errors import SinkBackpressure

__all__ = ["ListSink", "Storable"]

Storable: TypeAlias = AllocationEvent | MetricRow | Alert | DeadLetter


class ListSink:
    """Keeps events (with their cost), metric rows, alerts and dead letters in lists."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.events: list[AllocationEvent] = []
        self.costs: list[float | None] = []
        self.metrics: list[MetricRow] = []
        self.alerts: list[Alert] = []
        self.dead_letters: list[DeadLetter] = []
        self.duplicates_dropped = 0
        self.flushes = 0
        self._seen: set[str] = set()

    def setup(self) -> None:
        return None

    def add(self, item: Storable) -> None:
        if isinstance(item, AllocationEvent):
            self.add_event(item)
            return
        self._check_capacity()
        if isinstance(item, MetricRow):
            self.metrics.append(item)
        elif isinstance(item, Alert):
            self.alerts.append(item)
        elif isinstance(item, DeadLetter):
            self.dead_letters.append(item)
        else:
            raise TypeError(f"cannot store {type(item).__name__}")

    def add_event(self, event: AllocationEvent, cost_usd: float | None = None) -> None:
        if event.event_id in self._seen:
            self.duplicates_dropped += 1
            return
        self._check_capacity()
        self._seen.add(event.event_id)
        self.events.append(event)
        self.costs.append(cost_usd)

    def add_step(self, out: StepOutput) -> None:
        costs: list[float | None] = list(out.costs) or [None] * len(out.events)
        for event, cost in zip(out.events, costs, strict=True):
            self.add_event(event, cost)
        for row in out.metrics:
            self.add(row)
        for alert in out.alerts:
            self.add(alert)
        for letter in out.dead_letters:
            self.add(letter)

    def cut_events(self) -> None:
        return None

    def flush(self) -> int:
        self.flushes += 1
        return 0

    def flush_due(self) -> int:
        return 0

    def close(self) -> None:
        self.flush()

    @property
    def buffered_rows(self) -> int:
        return len(self.events) + len(self.metrics) + len(self.alerts) + len(self.dead_letters)

    @property
    def writable(self) -> bool:
        return self.capacity is None or self.buffered_rows < self.capacity

    async def wait_writable(self) -> None:
        return None

    def _check_capacity(self) -> None:
        if not self.writable:
            raise SinkBackpressure(self.buffered_rows, 0.0)
