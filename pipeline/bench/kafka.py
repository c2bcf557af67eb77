"""Broker plumbing for the bench: topics, fast producing, committed offsets, group members.

Admin calls use kafka-python (synchronous); producing and the bare consumer use aiokafka, the
client the Faust worker itself runs on.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from pipeline.bench.traffic import Wire

log = logging.getLogger(__name__)

PRODUCER_OPTIONS: dict[str, Any] = {"linger_ms": 20, "acks": "all", "max_batch_size": 1 << 20}
"""As the project's TelemetryEmitter: 20 ms linger, acks=all (batches up to 1 MiB)."""


class BrokerError(RuntimeError):
    """The broker is unreachable or a bench step on it did not finish in time."""


def bench_name(part: str) -> str:
    """A fresh topic or group name that says which bench part made it."""
    return f"bench.{part}.{uuid.uuid4().hex[:10]}"


class Broker:
    """An admin client on the broker; the topics the bench made are deleted on close."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        try:
            self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=10_000)
        except KafkaError as exc:
            raise BrokerError(f"no Kafka broker answers at {bootstrap}: {exc!r}") from exc
        self.topics: list[str] = []

    def create_topic(self, name: str, partitions: int) -> str:
        self.admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1}},
            timeout_ms=30_000,
            wait_for_metadata=True,
        )
        self.topics.append(name)
        return name

    def end_offsets(self, topic: str) -> dict[int, int]:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
            return {tp.partition: offset for tp, offset in ends.items()}
        finally:
            consumer.close()

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offsets on ``topic`` (empty while the group has none)."""
        try:
            offsets = self.admin.list_group_offsets(group).get(group, {})
        except KafkaError:  # the group or its coordinator does not exist yet
            return {}
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}

    def wait_committed(
        self,
        group: str,
        topic: str,
        ends: dict[int, int],
        alive: Callable[[], None],
        timeout: float,
    ) -> None:
        """Until ``group`` has committed ``ends`` on every partition; ``alive`` raises if a
        worker died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive()
            done = self.committed(group, topic)
            if all(done.get(p, 0) >= end for p, end in ends.items()):
                return
            time.sleep(0.5)
        raise BrokerError(f"group {group} did not consume {topic} within {timeout:.0f} s")

    def stable_members(self, group: str) -> int:
        """Members of ``group`` once it is stable (partitions handed out), else 0.

        kafka-python cannot decode the assignments of Faust's own assignor (and warns about
        each); a stable group has handed out its partitions, which is all the bench needs.
        """
        quiet = logging.getLogger("kafka.admin._groups")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            described = self.admin.describe_groups([group])
        except KafkaError:
            return 0
        finally:
            quiet.setLevel(level)
        info = described.get(group, {}) if isinstance(described, dict) else {}
        if info.get("group_state") != "Stable":
            return 0
        return len(info.get("members", []))

    def close(self) -> None:
        if self.topics:
            self.admin.delete_topics(self.topics, timeout_ms=30_000, raise_errors=False)
        self.admin.close()


async def produce(bootstrap: str, topic: str, wire: Wire) -> float:
    """Send every message of ``wire`` as fast as the producer takes them; return seconds."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_OPTIONS)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = [
            await producer.send(topic, value, key=key)
            for key, value in zip(wire.keys, wire.values, strict=True)
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def produce_sync(bootstrap: str, topic: str, wire: Wire) -> float:
    """:func:`produce` from synchronous code."""
    seconds = asyncio.run(produce(bootstrap, topic, wire))
    log.info("produced %d events to %s in %.1f s", len(wire), topic, seconds)
    return seconds


def total(offsets: dict[int, int]) -> int:
    return sum(offsets.values())


def spread(counts: Sequence[int]) -> str:
    """``"52% / 48%"`` for per-worker counts."""
    whole = sum(counts) or 1
    return " / ".join(f"{100 * c / whole:.0f}%" for c in counts)
