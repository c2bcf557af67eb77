"""TelemetryEmitter: non-blocking, bounded, batching delivery of allocation events."""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pipeline.config import KafkaSettings
from pipeline.events import AllocationEvent, InvalidEvent, parse_event
from pipeline.kafka_check import KafkaUnreachable, check_reachable
from pipeline.kafka_options import kafka_python_producer_options
from pipeline.producer.record import RequestRecord, status_for
from pipeline.producer.transport import DropCallback, Producer, ProducerFactory, kafka_producer
from pipeline.producer.wire import to_wire

log = logging.getLogger(__name__)

_IDLE_POLL_S: Final = 0.05


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
        self._kafka = kafka
        self._topic = topic or kafka.events_topic
        self._message_key = kafka.message_key
        self._factory: ProducerFactory = producer_factory or kafka_producer
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
            key = getattr(parsed, self._message_key).encode()
            reason = "closed" if self._closed else self._enqueue(key, value)
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
            record.status = status_for(exc)
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
    def queue_depth(self) -> int:
        """Events waiting in the queue for the Kafka client."""
        return self._queue.qsize()

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
                named = self._named_failure()
                log.log(
                    logging.WARNING if named is None else logging.ERROR,
                    "Kafka not reachable at %s (%s); buffering, retry in %.1fs",
                    self._options["bootstrap_servers"],
                    named or exc,
                    delay,
                )
                self._closing.wait(delay)
                delay = min(delay * 2, most)
            else:
                log.info("telemetry emitter connected to Kafka; topic %s", self._topic)
                return producer
        return None

    def _named_failure(self) -> str | None:
        """Why a TLS or SASL connection fails, in one line that says what to do (a CA that does
        not verify the broker, a listener that does not speak TLS, a refused login), which
        kafka-python only calls "Unable to bootstrap"; ``None`` on ``PLAINTEXT`` or when the
        check passes."""
        if self._kafka.security_protocol.strip().upper() == "PLAINTEXT":
            return None
        try:
            check_reachable(self._kafka, timeout_s=5.0)
        except KafkaUnreachable as exc:
            return str(exc)
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
