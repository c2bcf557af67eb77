"""Where a mapped export goes: Kafka, acknowledged before the receiver answers.

The receiver answers 200 only once Kafka has every event and dead letter of the request; when
it cannot, it answers 503 and the exporter sends the batch again, which is safe: the event ids
are the spans' own. :class:`KafkaSink` runs on the receiver's event loop with aiokafka's batch
API (an idempotent producer, ``acks=all``): the records of a request are grouped per partition,
by the same murmur2 of the tenant as every Kafka client's default partitioner (so a tenant's
spans land where its :class:`~pipeline.producer.TelemetryEmitter` events do), and each group
goes as one batch. Per record this costs a few microseconds instead of the tens a
``send()`` of its own costs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from pipeline.config import KafkaSettings
from pipeline.ingest.batch import MappedBatch
from pipeline.kafka_options import aiokafka_options, default_compression

CLIENT_ID: Final = "computewatch-ingest"
MAX_BATCH_BYTES: Final = 512 * 1024  # per partition and request; Kafka's default limit is 1 MiB

Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]  # key, value, headers


class DeliveryError(RuntimeError):
    """Kafka did not take the whole batch (or cannot be reached); the message says why."""


class Sink(Protocol):
    """Where the receiver puts a mapped request; ``deliver`` returns once it is safe."""

    async def start(self) -> None: ...
    async def deliver(self, batch: MappedBatch) -> None: ...
    async def stop(self) -> None: ...


class KafkaSink:
    """Events to the events topic keyed by tenant, dead letters to the dead-letter topic."""

    def __init__(self, kafka: KafkaSettings, *, timeout_s: float) -> None:
        self._options: dict[str, Any] = {
            **aiokafka_options(kafka),
            "client_id": CLIENT_ID,
            "enable_idempotence": True,
            "acks": "all",
            "compression_type": default_compression(),
            "max_batch_size": MAX_BATCH_BYTES,
            "request_timeout_ms": int(timeout_s * 1000),
        }
        self._events_topic, self._dlq_topic = kafka.events_topic, kafka.dlq_topic
        self._message_key = kafka.message_key
        self._timeout_s = timeout_s
        self._partitioner = DefaultPartitioner()
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect; raises :class:`DeliveryError` when Kafka cannot be reached."""
        producer = AIOKafkaProducer(**self._options)
        try:
            await asyncio.wait_for(producer.start(), self._timeout_s)
        except Exception as exc:
            await producer.stop()
            raise DeliveryError(f"Kafka unreachable at {self._options['bootstrap_servers']}: "
                                f"{exc!r}") from None  # fmt: skip
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def deliver(self, batch: MappedBatch) -> None:
        """Send the batch and wait for Kafka; raises :class:`DeliveryError` if it falls short."""
        if self._producer is None:
            raise DeliveryError("the Kafka producer is not started")
        dead: Iterable[Record] = ((None, d.payload, d.headers) for d in batch.dead_letters)
        events: Iterable[Record] = (
            (getattr(event, self._message_key).encode(), value, []) for event, value in batch.events
        )
        try:
            pending = [
                *await self._send(self._producer, self._events_topic, events),
                *await self._send(self._producer, self._dlq_topic, dead),
            ]
            await asyncio.wait_for(asyncio.gather(*pending), self._timeout_s)
        except Exception as exc:
            total = len(batch.events) + len(batch.dead_letters)
            raise DeliveryError(f"Kafka did not acknowledge {total} messages: {exc!r}") from None

    async def _send(
        self, producer: AIOKafkaProducer, topic: str, records: Iterable[Record]
    ) -> list[asyncio.Future[Any]]:
        """One batch per partition (more when one fills up); the futures of their delivery."""
        partitions = sorted(await producer.partitions_for(topic))
        open_batches: dict[int, BatchBuilder] = {}
        sent: list[asyncio.Future[Any]] = []
        for key, value, headers in records:
            partition = self._partitioner(key, partitions, partitions)
            builder = open_batches.get(partition)
            if builder is not None and builder.append(
                key=key, value=value, timestamp=None, headers=headers
            ) is not None:
                continue
            if builder is not None:  # full: send it, start the next one
                sent.append(await producer.send_batch(builder, topic, partition=partition))
            builder = open_batches[partition] = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
                raise DeliveryError(f"a {len(value)}-byte record does not fit a batch")
        for partition, builder in open_batches.items():
            sent.append(await producer.send_batch(builder, topic, partition=partition))
        return sent
