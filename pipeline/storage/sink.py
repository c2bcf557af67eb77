"""The ClickHouse sink: buffer → batch (by rows and by age) → Arrow insert, with retries, bounded
memory, backpressure and exactly-once rows.

Items are buffered as they come (no per-row work beyond pricing and the duplicate check); a batch
is built column by column as one Arrow table when it is cut (:mod:`pipeline.storage.rows`), and
written with ``insert_arrow``: the engine converts the columns, nothing is serialised per value
in Python.

Exactly once: a batch is cut once and never changes; its ``insert_deduplication_token`` is a hash
of its rows (event ids for ``events``), so re-sending it after a failure whose outcome is unknown
(the insert may have landed) is dropped by ClickHouse, in the table and in the usage rollups.
Events already seen by this sink (a bounded set of recent ids) are dropped before buffering.

Failure and backpressure: while ClickHouse fails, batches stay pending and attempts back off
exponentially (no sleeping inside :meth:`ClickHouseSink.add`). When ``max_buffer_rows`` are held,
``add`` raises :class:`SinkBackpressure` *without* taking the item: pause the source, then
``await sink.wait_writable()`` (asyncio, e.g. a Faust agent) or call :meth:`ClickHouseSink.flush`
(blocking, with retries) and offer the item again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from pipeline.config import Settings
from pipeline.events import AllocationEvent
from pipeline.pricing import PriceTable
from pipeline.records import Alert, DeadLetter, MetricRow, StepOutput
from pipeline.storage import rows as R
from pipeline.storage.errors import SinkBackpressure, SinkUnavailable
from pipeline.storage.memory import ListSink, Storable
from pipeline.storage.migrations import check_schema

__all__ = [
    "ClickHouseSink",
    "ListSink",
    "RetryPolicy",
    "Sink",
    "SinkBackpressure",
    "SinkStats",
    "SinkUnavailable",
    "Storable",
]

logger = logging.getLogger(__name__)

TABLES: Final = tuple(R.TABLES)


class Sink(Protocol):
    """The storage port the engine, worker, replay and demo write to."""

    def setup(self) -> None: ...
    def add(self, item: Storable) -> None: ...
    def add_event(self, event: AllocationEvent, cost_usd: float | None = None) -> None: ...
    def add_step(self, out: StepOutput) -> None: ...
    def cut_events(self) -> None: ...
    def flush(self) -> int: ...
    def flush_due(self) -> int: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: ``base_s * 2**n`` capped at ``max_s``; ``attempts`` per flush."""

    attempts: int = 5
    base_s: float = 0.1
    max_s: float = 5.0

    def delay(self, failures: int) -> float:
        return float(min(self.max_s, self.base_s * 2 ** max(0, failures - 1)))


@dataclass
class SinkStats:
    rows_written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    batches_written: int = 0
    failed_attempts: int = 0
    duplicates_dropped: int = 0


@dataclass(frozen=True, slots=True)
class _Batch:
    table: str
    data: pa.Table
    rows: int
    token: str


class _Buffer:
    """One table's items: ``open`` (not yet cut) and ``pending`` batches (cut, not written)."""

    __slots__ = ("first_at", "name", "open", "pending")

    def __init__(self, name: str) -> None:
        self.name = name
        self.open: list[Any] = []
        self.pending: deque[_Batch] = deque()
        self.first_at = 0.0


class ClickHouseSink:
    """Batched, retried, exactly-once writes of events, metric rows, alerts and dead letters.

    Parameters
    ----------
    client
        A clickhouse-connect client bound to the computewatch database (see ``connect``).
    prices
        Prices events at ingest unless ``add_event`` is given the cost.
    batch_rows, batch_seconds
        A table's buffer is written when it holds ``batch_rows`` or its oldest row is this old.
    max_buffer_rows
        Bound on rows held (open + pending); past it ``add`` raises :class:`SinkBackpressure`.
    clock, sleep, now
        Monotonic clock and sleep for batching and backoff; ``now`` stamps ``ingested_at``.
    recent_ids
        How many recent event ids are remembered to drop re-sent events before they are written.
    """

    def __init__(
        self,
        client: Client,
        *,
        prices: PriceTable,
        batch_rows: int = 20_000,
        batch_seconds: float = 1.0,
        max_buffer_rows: int | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        recent_ids: int = 100_000,
    ) -> None:
        self.client = client
        self.prices = prices
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.max_buffer_rows = max(max_buffer_rows or 5 * batch_rows, batch_rows)
        self.retry = retry or RetryPolicy()
        self.stats = SinkStats()
        self._clock, self._sleep, self._now = clock, sleep, now
        self._buffers = {name: _Buffer(name) for name in TABLES}
        self._buffered = 0
        self._failures = 0
        self._retry_at = 0.0
        self._recent: set[str] = set()
        self._recent_order: deque[str] = deque()
        self._recent_cap = recent_ids
        self._lock = threading.RLock()

    @classmethod
    def from_settings(cls, client: Client, settings: Settings, **kwargs: Any) -> ClickHouseSink:
        """A sink with the settings' price table and batch sizes (``kwargs`` override)."""
        options: dict[str, Any] = {
            "prices": PriceTable(settings.prices, settings.default_price),
            "batch_rows": settings.clickhouse.batch_rows,
            "batch_seconds": settings.clickhouse.batch_seconds,
        }
        options.update(kwargs)
        return cls(client, **options)

    # -- the port -----------------------------------------------------------------------------

    def setup(self) -> None:
        """Check the database schema is current (raises ``SchemaNotReady``/``SchemaTooNew``)."""
        check_schema(self.client, str(self.client.database))

    def add(self, item: Storable) -> None:
        """Buffer one event, metric row, alert or dead letter (see :meth:`add_event`)."""
        if isinstance(item, AllocationEvent):
            self.add_event(item)
        elif isinstance(item, MetricRow):
            self._accept("metrics_1m", item)
        elif isinstance(item, Alert):
            self._accept("alerts", item)
        elif isinstance(item, DeadLetter):
            self.add_dead_letter(item)
        else:
            raise TypeError(f"cannot store {type(item).__name__}")

    def add_event(self, event: AllocationEvent, cost_usd: float | None = None) -> None:
        """Buffer one event with its cost (priced here when not given); drop a re-sent one."""
        with self._lock:
            if event.event_id in self._recent:
                self.stats.duplicates_dropped += 1
                return
            cost = self.prices.event_cost(event) if cost_usd is None else cost_usd
            item = (event, cost, self._now())
            self._accept("events", item)
            self._remember([event.event_id])

    def add_dead_letter(self, letter: DeadLetter, received_at: datetime | None = None) -> None:
        """Buffer one dead letter, stamped ``received_at`` (default: now)."""
        self._accept("dead_letters", (letter, received_at or self._now()))

    def add_step(self, out: StepOutput) -> None:
        """Buffer everything one engine step produced, or nothing.

        Raises :class:`SinkBackpressure` before taking any of it when it does not fit; a step
        that fits may overshoot ``max_buffer_rows`` by less than its own size.
        """
        with self._lock:
            size = len(out.events) + len(out.metrics) + len(out.alerts) + len(out.dead_letters)
            if self._buffered and self._buffered + size > self.max_buffer_rows:
                self._maybe_write(force=True)
                if self._buffered + size > self.max_buffer_rows:
                    raise SinkBackpressure(self._buffered, max(0.0, self._retry_at - self._clock()))
            now = self._now()
            self._extend("events", self._fresh_events(out, now))
            self._extend("metrics_1m", out.metrics)
            self._extend("alerts", out.alerts)
            self._extend("dead_letters", [(letter, now) for letter in out.dead_letters])

    def cut_events(self) -> None:
        """End the open events batch here (it is written with the next write or flush), so
        the events added next start a batch of their own.

        The worker calls it after each partition's step: a step's batches, and so their
        dedup tokens, then depend on the step alone, and a worker that replays the step of
        another (which died or froze while writing it) writes the very batches that worker
        wrote or may still write, which ClickHouse keeps once.
        """
        with self._lock:
            self._cut(self._buffers["events"])

    def flush(self) -> int:
        """Write everything buffered, retrying with backoff; return rows written.

        Raises :class:`SinkUnavailable` when ClickHouse still fails after ``retry.attempts``;
        nothing is lost: the rows stay buffered for the next flush.
        """
        with self._lock:
            for buffer in self._buffers.values():
                self._cut(buffer)
            written = 0
            for attempt in range(1, self.retry.attempts + 1):
                done, ok = self._attempt()
                written += done
                if ok:
                    return written
                if attempt < self.retry.attempts:
                    self._sleep(self.retry.delay(self._failures))
            raise SinkUnavailable(
                f"ClickHouse unavailable after {self.retry.attempts} attempts; "
                f"{self._buffered} rows kept for retry"
            )

    def flush_due(self) -> int:
        """Write the batches that are due by size or age, once, without sleeping or raising.

        Call it from a timer when the stream is idle, so ``batch_seconds`` holds.
        """
        with self._lock:
            return self._maybe_write(force=False)

    def close(self) -> None:
        """Flush what is buffered (raises :class:`SinkUnavailable` if that fails)."""
        self.flush()

    # -- backpressure -------------------------------------------------------------------------

    @property
    def buffered_rows(self) -> int:
        return self._buffered

    @property
    def writable(self) -> bool:
        """True while ``add`` will accept an item without raising :class:`SinkBackpressure`."""
        return self._buffered < self.max_buffer_rows

    async def wait_writable(self) -> None:
        """Return once the buffer is below its bound, retrying writes off the event loop."""
        while not self.writable:
            delay = max(0.0, self._retry_at - self._clock())
            if delay:
                await asyncio.sleep(delay)
            await asyncio.to_thread(self._attempt_now)

    # -- internals ----------------------------------------------------------------------------

    def _fresh_events(self, out: StepOutput, now: datetime) -> list[R.EventItem]:
        """The step's events this sink has not taken yet, as buffer items; remembers them."""
        ids = [event.event_id for event in out.events]
        costs: list[float | None] = list(out.costs) or [None] * len(ids)
        if len(costs) != len(ids):
            raise ValueError(f"{len(ids)} events but {len(costs)} costs")
        fresh = list(zip(out.events, costs, strict=True))
        if not self._recent.isdisjoint(ids) or len(set(ids)) < len(ids):  # re-sent events
            pairs, fresh, taken = fresh, [], set()
            for event, cost in pairs:
                if event.event_id in self._recent or event.event_id in taken:
                    self.stats.duplicates_dropped += 1
                else:
                    taken.add(event.event_id)
                    fresh.append((event, cost))
        self._remember([event.event_id for event, _ in fresh])
        return [(e, self.prices.event_cost(e) if c is None else c, now) for e, c in fresh]

    def _accept(self, table: str, item: Any) -> None:
        with self._lock:
            if self._buffered >= self.max_buffer_rows:
                self._maybe_write(force=True)
                if self._buffered >= self.max_buffer_rows:
                    retry_after = max(0.0, self._retry_at - self._clock())
                    raise SinkBackpressure(self._buffered, retry_after)
            self._extend(table, [item])

    def _extend(self, table: str, items: list[Any]) -> None:
        """Buffer ``items`` (no bound checked) and write what is then due."""
        if not items:
            return
        buffer = self._buffers[table]
        if not buffer.open:
            buffer.first_at = self._clock()
        buffer.open.extend(items)
        self._buffered += len(items)
        age = self._clock() - buffer.first_at
        if len(buffer.open) >= self.batch_rows or age >= self.batch_seconds:
            self._maybe_write(force=False)

    def _maybe_write(self, *, force: bool) -> int:
        """Cut due buffers (all when ``force``) and try once, unless backing off."""
        now = self._clock()
        for buffer in self._buffers.values():
            due = len(buffer.open) >= self.batch_rows or (
                buffer.open and now - buffer.first_at >= self.batch_seconds
            )
            if force or due:
                self._cut(buffer)
        if now < self._retry_at:
            return 0
        return self._attempt()[0]

    def _attempt_now(self) -> None:
        with self._lock:
            for buffer in self._buffers.values():
                self._cut(buffer)
            self._attempt()

    def _cut(self, buffer: _Buffer) -> None:
        """Turn open rows into immutable pending batches of at most ``batch_rows``."""
        spec = R.TABLES[buffer.name]
        while buffer.open:
            chunk = buffer.open[: self.batch_rows]
            token = R.batch_token(buffer.name, len(chunk), spec.identity(chunk))
            buffer.pending.append(_Batch(buffer.name, spec.build(chunk), len(chunk), token))
            del buffer.open[: self.batch_rows]
        buffer.first_at = self._clock()

    def _attempt(self) -> tuple[int, bool]:
        """Write pending batches in order, stopping at the first failure; (rows, all written)."""
        written = 0
        for buffer in self._buffers.values():
            while buffer.pending:
                batch = buffer.pending[0]
                try:
                    self._insert(batch)
                except Exception as exc:  # the client raises many types; all mean "not now"
                    self._failed(exc)
                    return written, False
                buffer.pending.popleft()
                self._buffered -= batch.rows
                written += batch.rows
                self.stats.rows_written[batch.table] += batch.rows
                self.stats.batches_written += 1
        self._failures = 0
        self._retry_at = 0.0
        return written, True

    def _insert(self, batch: _Batch) -> None:
        self.client.insert_arrow(
            batch.table,
            batch.data,
            settings={"insert_deduplicate": 1, "insert_deduplication_token": batch.token},
        )

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        self.stats.failed_attempts += 1
        delay = self.retry.delay(self._failures)
        self._retry_at = self._clock() + delay
        logger.warning(
            "ClickHouse insert failed (%s: %s); %d rows buffered, retry in %.2fs",
            type(exc).__name__, str(exc)[:200], self._buffered, delay,
        )

    def _remember(self, event_ids: list[str]) -> None:
        """Remember new ids, forgetting the oldest beyond ``recent_ids``."""
        self._recent.update(event_ids)
        self._recent_order.extend(event_ids)
        excess = len(self._recent_order) - self._recent_cap
        if excess > 0:
            order = self._recent_order
            self._recent.difference_update([order.popleft() for _ in range(excess)])
