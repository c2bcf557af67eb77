"""The limit: a bare aiokafka consumer that reads the topic and JSON-decodes every message.

No validation, no engine, no storage: what one Python process can take off the broker. The
rate is counted from the end of the first fetched batch to the last message, as the worker's
is from the end of its first engine step (:mod:`pipeline.bench.chstats`); when one fetch holds
every message (tiny runs), from asking for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

MAX_RECORDS = 10_000
IDLE_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class ConsumeResult:
    messages: int
    rate_messages: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.rate_messages / self.seconds if self.seconds > 0 else 0.0


async def consume_and_decode(
    bootstrap: str, topic: str, partitions: Iterable[int], expected: int
) -> ConsumeResult:
    """Read ``expected`` messages of ``topic`` from the beginning, decoding each value."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        return await _drain(consumer, expected)
    finally:
        await consumer.stop()


async def _drain(consumer: AIOKafkaConsumer, expected: int) -> ConsumeResult:
    decode = msgspec.json.decode
    count, first_count, first_asked, first_done = 0, 0, 0.0, 0.0
    last = time.perf_counter()
    while count < expected:
        asked = time.perf_counter()
        batches = await consumer.getmany(timeout_ms=1_000, max_records=MAX_RECORDS)
        if not batches:
            if asked - last > IDLE_TIMEOUT_S:
                raise TimeoutError(f"read {count} of {expected} messages, then nothing more")
            continue
        for records in batches.values():
            for record in records:
                decode(record.value)
            count += len(records)
        last = time.perf_counter()
        if not first_done:
            first_count, first_asked, first_done = count, asked, last
    if count == first_count:  # all in one fetch: count that fetch too
        return ConsumeResult(count, count, last - first_asked)
    return ConsumeResult(count, count - first_count, last - first_done)


def measure_limit(
    bootstrap: str, topic: str, partitions: Iterable[int], expected: int
) -> ConsumeResult:
    result = asyncio.run(consume_and_decode(bootstrap, topic, partitions, expected))
    log.info("bare consumer: %d messages, %.0f events/s", result.messages, result.events_per_s)
    return result
