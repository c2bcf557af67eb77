"""TelemetryEmitter: the SDK inference servers use to send allocation events to Kafka.

``emit()`` validates the event at the call site (a bad event raises
:class:`~pipeline.events.InvalidEvent`) and puts its contract-v1 bytes on a bounded in-memory
queue; it never waits for Kafka. A background thread connects lazily (retrying with backoff while
the broker is down) and hands events to an idempotent kafka-python producer (``acks='all'``,
batching, compression), keyed by ``tenant_id``. When the queue is full the event is dropped,
counted and passed to ``on_drop``. Counters are in :attr:`TelemetryEmitter.stats`.

The Kafka client is built by ``producer_factory`` (default: :class:`kafka.KafkaProducer`), the one
I/O seam; :class:`MemoryProducer` is its in-memory twin for examples and tests.

>>> from pipeline.config import KafkaSettings
>>> from pipeline.events import example_event
>>> memory = MemoryProducer()
>>> with TelemetryEmitter(KafkaSettings(), producer_factory=lambda options: memory) as emitter:
...     emitter.emit(example_event())
...     with emitter.track(tenant_id="acme", api_key_id="key-1", model="reasoner-large",
...                        server_id="gpu-01", route="deep") as request:
...         request.prompt_tokens, request.reasoning_tokens, request.passes = 700, 4000, 3
True
>>> emitter.stats
EmitterStats(emitted=2, sent=2, dropped=0, failed=0)
>>> [(topic, key) for topic, key, value in memory.messages]
[('compute.events', b'acme'), ('compute.events', b'acme')]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from kafka import KafkaProducer

from pipeline.config import KafkaSettings
from pipeline.events import AllocationEvent, InvalidEvent, encode_event, parse_event
from pipeline.kafka_options import kafka_python_producer_options

__all__ = [
    "EmitterStats",
    "MemoryProducer",
    "RequestRecord",
    "TelemetryEmitter",
    "to_wire",
]

log = logging.getLogger(__name__)

_IDLE_POLL_S: Final = 0.05


class DeliveryFuture(Protocol):
    """What ``send()`` returns: callbacks get the record metadata, errbacks the exception."""

    def add_callback(self, fn: Callable[..., Any], *args: Any) -> Any: ...
    def add_errback(self, fn: Callable[..., Any], *args: Any) -> Any: ...


class Producer(Protocol):
    """The part of :class:`kafka.KafkaProducer` the emitter uses."""

    def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> DeliveryFuture: ...
    def flush(self, timeout: float | None = None) -> None: ...
    def close(self, timeout: float | None = None) -> None: ...


ProducerFactory = Callable[[dict[str, Any]], Producer]
DropCallback = Callable[[AllocationEvent, str], None]


class _Done:
    """An already-acknowledged delivery: callbacks run at once (for :class:`MemoryProducer`)."""

    def add_callback(self, fn: Callable[..., Any], *args: Any) -> _Done:
        fn(*args, None)
        return self

    def add_errback(self, fn: Callable[..., Any], *args: Any) -> _Done:
        return self


class MemoryProducer:
    """An in-memory :class:`Producer`: every send succeeds and lands in ``messages``."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes | None, bytes | None]] = []

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> _Done:
        self.messages.append((topic, key, value))
        return _Done()

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None


@dataclass(frozen=True, slots=True)
class EmitterStats:
    """Counters since start. ``emitted`` = valid events given to ``emit()``; each ends up
    ``sent`` (acknowledged), ``failed`` (handed to Kafka, not delivered), ``dropped`` (queue full
    or emitter closed) or is still ``pending``."""

    emitted: int = 0
    sent: int = 0
    dropped: int = 0
    failed: int = 0

    @property
    def pending(self) -> int:
        return self.emitted - self.sent - self.dropped - self.failed


def _rfc3339(value: datetime, name: str) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEvent(f"bad_timestamp: {name} (naive datetime; give it a timezone, e.g. UTC)")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _plain(event: Mapping[str, Any]) -> dict[str, Any]:
    """Obvious conversions for dict events: aware datetime -> RFC 3339 UTC, UUID -> str."""
    out: dict[str, Any] = {}
    for name, value in event.items():
        if isinstance(value, datetime):
            value = _rfc3339(value, name)
        elif isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidEvent(f"non_finite: {name} ({value!r})")
        out[name] = value
    return out


def to_wire(event: AllocationEvent | Mapping[str, Any]) -> tuple[AllocationEvent, bytes]:
    """Validate ``event`` against contract v1; return it parsed, with its canonical wire bytes.

    Raises :class:`~pipeline.events.InvalidEvent` naming the field and the rule.
    """
    if isinstance(event, AllocationEvent):
        candidate: Any = event
    elif isinstance(event, Mapping):
        candidate = _plain(event)
    else:
        raise InvalidEvent(f"not_an_object: expected AllocationEvent or dict, not {type(event)}")
    try:
        raw = encode_event(candidate)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"wrong_type: {exc}") from None
    parsed = parse_event(raw)
    return parsed, encode_event(parsed)


@dataclass
class RequestRecord:
    """What a serving function fills in during one request; see :meth:`TelemetryEmitter.track`.

    ``latency_ms`` is measured around the ``with`` block unless set; ``status`` becomes
    ``error`` (``timeout``, ``cancelled``) when the block raises.
    """

    tenant_id: str
    api_key_id: str
    model: str
    server_id: str
    route: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    passes: int = 1
    gpu_ms: float = 0.0
    status: str = "ok"
    confidence: float | None = None
    difficulty: float | None = None
    budget_tokens: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    gpu_type: str | None = None
    region: str | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def event_fields(self, ts: datetime, measured_latency_ms: float) -> dict[str, Any]:
        """The record as a contract-v1 dict, completed at ``ts``."""
        fields = dataclasses.asdict(self)
        if fields["latency_ms"] is None:
            fields["latency_ms"] = measured_latency_ms
        return {"schema_version": "1", "ts": ts, **fields}


def _status_for(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(
        exc, KeyboardInterrupt | asyncio.CancelledError | concurrent.futures.CancelledError
    ):
        return "cancelled"
    return "error"


def _is_power_of_two(n: int) -> bool:
    """Log the 1st, 2nd, 4th, 8th... occurrence: visible, but no log flood during an outage."""
    return n > 0 and n & (n - 1) == 0


class TelemetryEmitter:
    """Send allocation events to Kafka without ever blocking or failing the serving path.

    Parameters
    ----------
    kafka
        Connection and topic settings, e.g. ``Settings().kafka``.
    topic
        Destination topic; ``kafka.events_topic`` when omitted.
    queue_size
        Events buffered in memory while Kafka is slow or down; beyond it events are dropped.
    max_unacked
        Events handed to the Kafka client but not yet acknowledged; bounds its memory.
    on_drop
        Called as ``on_drop(event, reason)`` (``queue_full`` or ``closed``) for a dropped event;
        it runs on the emitting thread for ``queue_full``, so keep it cheap.
    producer_factory
        Builds the Kafka client from keyword arguments; default :class:`kafka.KafkaProducer`.
    clock
        Event time for :meth:`track`; default ``datetime.now(UTC)``.
    linger_ms, batch_size, compression, client_id
        See :func:`~pipeline.kafka_options.kafka_python_producer_options`; ``extra_options``
        overrides any kafka-python producer argument.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        topic: str | None = None,
        queue_size: int = 50_000,
        max_unacked: int = 20_000,
        on_drop: DropCallback | None = None,
        producer_factory: ProducerFactory | None = None,
        clock: Callable[[], datetime] | None = None,
        linger_ms: int = 20,
        batch_size: int = 256 * 1024,
        compression: str | None = None,
        client_id: str = "computewatch-emitter",
        extra_options: Mapping[str, Any] | None = None,
        reconnect_backoff_s: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        options = kafka_python_producer_options(
            kafka,
            linger_ms=linger_ms,
            batch_size=batch_size,
            compression=compression,
            client_id=client_id,
        )
        self._options = {**options, **(extra_options or {})}
        self._topic = topic or kafka.events_topic
        self._factory: ProducerFactory = producer_factory or _kafka_producer
        self._on_drop = on_drop
        self._clock = clock or (lambda: datetime.now(UTC))
        self._backoff = reconnect_backoff_s
        self._max_unacked = max_unacked
        self._queue: queue.Queue[tuple[bytes, bytes]] = queue.Queue(maxsize=queue_size)
        self._changed = threading.Condition(threading.Lock())
        self._counts = {"emitted": 0, "sent": 0, "dropped": 0, "failed": 0}
        self._unacked = 0
        self._closed = False
        self._finished = False
        self._deadline = math.inf
        self._closing = threading.Event()
        self._flush_wanted = threading.Event()
        self._thread = threading.Thread(target=self._run, name="computewatch-emitter", daemon=True)
        self._thread.start()

    # -- the caller's side -------------------------------------------------------------------

    def emit(self, event: AllocationEvent | Mapping[str, Any]) -> bool:
        """Queue one event for Kafka; ``False`` if it was dropped (queue full or closed).

        Never blocks. Raises :class:`~pipeline.events.InvalidEvent` for a contract violation.
        """
        parsed, value = to_wire(event)
        with self._changed:
            self._counts["emitted"] += 1
            reason = "closed" if self._closed else self._enqueue(parsed.tenant_id.encode(), value)
            if reason:
                self._counts["dropped"] += 1
                dropped = self._counts["dropped"]
        if not reason:
            return True
        if _is_power_of_two(dropped):
            log.warning("telemetry event dropped (%s); %d dropped so far", reason, dropped)
        self._notify_drop(parsed, reason)
        return False

    def _enqueue(self, key: bytes, value: bytes) -> str:
        try:
            self._queue.put_nowait((key, value))
        except queue.Full:
            return "queue_full"
        return ""

    @contextlib.contextmanager
    def track(
        self,
        *,
        tenant_id: str,
        api_key_id: str,
        model: str,
        server_id: str,
        route: str,
        **fields: Any,
    ) -> Iterator[RequestRecord]:
        """Time a request and emit its event on exit (``status='error'`` if it raised; re-raised).

        Yields a :class:`RequestRecord` for the serving code to fill (tokens, passes, confidence,
        status...). A record that breaks the contract raises ``InvalidEvent`` on a normal exit
        and is only logged when the block itself raised.
        """
        record = RequestRecord(tenant_id, api_key_id, model, server_id, route, **fields)
        started = time.perf_counter()
        try:
            yield record
        except BaseException as exc:
            record.status = _status_for(exc)
            try:
                self._emit_record(record, started)
            except InvalidEvent as invalid:
                log.error("telemetry for a failed request not sent: %s", invalid.reason)
            raise
        self._emit_record(record, started)

    def _emit_record(self, record: RequestRecord, started: float) -> None:
        latency_ms = (time.perf_counter() - started) * 1000.0
        self.emit(record.event_fields(self._clock(), latency_ms))

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every emitted event is sent, failed or dropped; ``False`` on timeout."""
        self._flush_wanted.set()
        with self._changed:
            return self._changed.wait_for(lambda: self._pending() == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued within ``timeout`` seconds, then stop; the rest counts as dropped."""
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._deadline = time.monotonic() + timeout
        self._closing.set()
        self._thread.join(timeout + 0.2)
        if self._thread.is_alive():
            log.warning("Kafka sender still busy after %.1fs; dropping what is queued", timeout)
        self._drop_queued()

    @property
    def stats(self) -> EmitterStats:
        """A consistent snapshot of the counters."""
        with self._changed:
            return EmitterStats(**self._counts)

    def __enter__(self) -> TelemetryEmitter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _pending(self) -> int:
        counts = self._counts
        return counts["emitted"] - counts["sent"] - counts["dropped"] - counts["failed"]

    def _notify_drop(self, event: AllocationEvent, reason: str) -> None:
        if self._on_drop is None:
            return
        try:
            self._on_drop(event, reason)
        except Exception:
            log.exception("on_drop callback failed")

    def _drop_queued(self) -> None:
        """Count everything still queued as dropped (``closed``)."""
        while True:
            try:
                _key, value = self._queue.get_nowait()
            except queue.Empty:
                return
            with self._changed:
                self._counts["dropped"] += 1
                self._changed.notify_all()
            if self._on_drop is not None:
                self._notify_drop(parse_event(value), "closed")

    # -- the sender thread -------------------------------------------------------------------

    def _run(self) -> None:
        producer = self._connect()
        if producer is not None:
            self._pump(producer)
            self._shut_down(producer)
        self._drop_queued()

    def _connect(self) -> Producer | None:
        """Build the Kafka client, retrying with exponential backoff until it works or we close."""
        delay, most = self._backoff
        while not self._closing.is_set():
            try:
                producer = self._factory(dict(self._options))
            except Exception as exc:
                log.warning(
                    "Kafka not reachable at %s (%s); buffering, retry in %.1fs",
                    self._options["bootstrap_servers"],
                    exc,
                    delay,
                )
                self._closing.wait(delay)
                delay = min(delay * 2, most)
            else:
                log.info("telemetry emitter connected to Kafka; topic %s", self._topic)
                return producer
        return None

    def _pump(self, producer: Producer) -> None:
        """Hand queued events to the producer until closed and drained (or out of time)."""
        while not (self._closing.is_set() and (self._queue.empty() or self._late())):
            if self._flush_wanted.is_set() and self._queue.empty():
                self._flush_wanted.clear()
                with contextlib.suppress(Exception):
                    producer.flush(timeout=1.0)
            try:
                key, value = self._queue.get(timeout=_IDLE_POLL_S)
            except queue.Empty:
                continue
            self._wait_for_room()
            self._hand_over(producer, key, value)

    def _late(self) -> bool:
        return time.monotonic() >= self._deadline

    def _wait_for_room(self) -> None:
        with self._changed:
            while self._unacked >= self._max_unacked and not self._late():
                self._changed.wait(0.1)

    def _hand_over(self, producer: Producer, key: bytes, value: bytes) -> None:
        with self._changed:
            self._unacked += 1
        while True:
            try:
                future = producer.send(self._topic, value=value, key=key)
            except Exception as exc:
                if getattr(exc, "retriable", False) and not self._late():
                    log.warning("Kafka send delayed (%s); retrying", exc)
                    time.sleep(0.2)
                    continue
                self._on_failed(exc)
                return
            future.add_callback(self._on_sent)
            future.add_errback(self._on_failed)
            return

    def _on_sent(self, _metadata: object) -> None:
        with self._changed:
            if not self._finished:
                self._counts["sent"] += 1
                self._unacked -= 1
                self._changed.notify_all()

    def _on_failed(self, exc: BaseException) -> None:
        with self._changed:
            if self._finished:
                return
            self._counts["failed"] += 1
            self._unacked -= 1
            failed = self._counts["failed"]
            self._changed.notify_all()
        if _is_power_of_two(failed):
            log.warning("telemetry event not delivered (%r); %d failed so far", exc, failed)

    def _shut_down(self, producer: Producer) -> None:
        """Flush and close the producer in the time left; unconfirmed events count as failed."""
        with contextlib.suppress(Exception):
            producer.flush(timeout=max(0.0, self._deadline - time.monotonic()))
        try:  # kafka-python's close() re-raises a flush timeout, after dropping its atexit hook
            producer.close(timeout=max(0.0, self._deadline - time.monotonic()))
        except Exception as exc:
            log.warning("Kafka producer not closed cleanly: %r", exc)
        with self._changed:
            self._counts["failed"] += self._unacked
            self._unacked = 0
            self._finished = True
            self._changed.notify_all()


def _kafka_producer(options: dict[str, Any]) -> Producer:
    producer: Producer = KafkaProducer(**options)
    return producer
