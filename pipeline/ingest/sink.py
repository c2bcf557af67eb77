"""Where a mapped export goes: Kafka, acknowledged before the receiver answers.

The receiver answers 200 only once Kafka has every event and dead letter of the request (an
idempotent, ``acks=all`` kafka-python producer); when it cannot, it answers 503 and the
exporter sends the batch again, which is safe: the event ids are the spans' own.
"""

from __future__ import annotations

import threading
from typing import Final

from pipeline.config import KafkaSettings
from pipeline.ingest.batch import MappedBatch
from pipeline.kafka_options import kafka_python_producer_options
from pipeline.producer.transport import Producer, ProducerFactory, kafka_producer

CLIENT_ID: Final = "computewatch-ingest"


class DeliveryError(RuntimeError):
    """Kafka did not take the whole batch; the message says how much and why."""


class _Acks:
    """Counts acknowledgements of one batch; ``done`` is set when every message is settled."""

    def __init__(self, expected: int) -> None:
        self._left = expected
        self._lock = threading.Lock()
        self.failed = 0
        self.error: BaseException | None = None
        self.done = threading.Event()
        if expected == 0:
            self.done.set()

    def ok(self, _metadata: object) -> None:
        self._settle(None)

    def fail(self, exc: BaseException) -> None:
        self._settle(exc)

    def _settle(self, exc: BaseException | None) -> None:
        with self._lock:
            self._left -= 1
            if exc is not None:
                self.failed += 1
                self.error = exc
            if self._left == 0:
                self.done.set()


class KafkaSink:
    """Produces a :class:`MappedBatch`: events to the events topic keyed by tenant, dead
    letters to the dead-letter topic; :meth:`deliver` blocks until Kafka acknowledged all."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        timeout_s: float,
        producer_factory: ProducerFactory = kafka_producer,
    ) -> None:
        options = kafka_python_producer_options(kafka, linger_ms=5, client_id=CLIENT_ID)
        self._producer: Producer = producer_factory(options)
        self._events_topic, self._dlq_topic = kafka.events_topic, kafka.dlq_topic
        self._timeout_s = timeout_s

    def deliver(self, batch: MappedBatch) -> None:
        """Send the batch and wait for Kafka; raises :class:`DeliveryError` if it falls short."""
        total = len(batch.events) + len(batch.dead_letters)
        acks = _Acks(total)
        try:
            for key, value in batch.events:
                self._producer.send(self._events_topic, value=value, key=key).add_callback(
                    acks.ok
                ).add_errback(acks.fail)
            for dead in batch.dead_letters:
                self._producer.send(
                    self._dlq_topic, value=dead.payload, headers=dead.headers
                ).add_callback(acks.ok).add_errback(acks.fail)
        except Exception as exc:
            raise DeliveryError(f"Kafka refused the batch: {exc!r}") from None
        if not acks.done.wait(self._timeout_s):
            raise DeliveryError(f"Kafka did not acknowledge {total} messages in {self._timeout_s}s")
        if acks.failed:
            raise DeliveryError(f"Kafka did not take {acks.failed} of {total}: {acks.error!r}")

    def close(self) -> None:
        self._producer.close(timeout=self._timeout_s)
