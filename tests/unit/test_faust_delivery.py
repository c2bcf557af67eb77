"""The consumer delivers one message per partition per fetch, and acknowledging it commits past
all of its records. The fetch and the high-water marks are given (no broker); the worker's Kafka
tests run it for real."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP

from pipeline.faust_delivery import BatchDeliveryConsumer, use_batch_delivery

TOPIC = "compute.events"
Delivered = list[tuple[TP, Any]]  # (partition, batch message)


def record(partition: int, offset: int) -> SimpleNamespace:
    """What aiokafka's fetch returns per record (the fields Faust and the worker read)."""
    return SimpleNamespace(
        topic=TOPIC, partition=partition, offset=offset, timestamp=1_000 * offset,
        key=b"tenant", value=f"event {partition}/{offset}".encode(), headers=[],
    )  # fmt: skip


def with_fetch(
    fetched: dict[TP, list[SimpleNamespace]],
    check: Callable[[BatchDeliveryConsumer, Delivered], Awaitable[None]],
    *,
    active: set[TP] | None = None,
    committed: dict[TP, int] | None = None,
) -> None:
    """Run ``getmany`` of an app's batch-delivery consumer (never started) on one fetch of
    ``fetched``, and ``check`` what it delivered."""

    async def main() -> None:
        app = faust.App("batch-delivery-test", broker="kafka://127.0.0.1:1", web_enabled=False)
        use_batch_delivery(app)
        app.topics.add(app.topic(TOPIC))  # as an agent subscribing to it: acks count for it
        await app.topics._update_indices()  # type: ignore[attr-defined]
        consumer = app.consumer
        assert isinstance(consumer, BatchDeliveryConsumer)
        consumer._committed_offset.update(committed or {})

        async def fetch(timeout: float) -> tuple[Any, set[TP] | None]:
            return fetched, active

        consumer._wait_next_records = fetch  # type: ignore[method-assign]
        consumer.highwater = lambda tp: fetched[tp][-1].offset + 1  # type: ignore[method-assign]
        consumer.flow_active = True
        delivered = [item async for item in consumer.getmany(timeout=1.0)]
        await check(consumer, delivered)

    asyncio.run(main())


def test_each_partition_s_records_come_as_one_message_in_order() -> None:
    p0, p1 = TP(TOPIC, 0), TP(TOPIC, 1)
    fetched = {p0: [record(0, o) for o in (5, 6, 7)], p1: [record(1, 40)]}

    async def check(
        consumer: BatchDeliveryConsumer, delivered: Delivered
    ) -> None:
        assert [tp for tp, _ in delivered] == [p0, p1]
        first, second = (message for _, message in delivered)
        assert (first.tp, first.offset, first.key) == (p0, 7, None)
        assert [r.value for r in first.value] == [b"event 0/5", b"event 0/6", b"event 0/7"]
        assert (second.offset, [r.offset for r in second.value]) == (40, [40])
        assert first.timestamp == 7.0  # the last record's, in seconds

    with_fetch(fetched, check)


@pytest.mark.parametrize("committed", [None, 100], ids=["fresh group", "resumed partition"])
def test_acknowledging_a_batch_commits_past_its_last_record(committed: int | None) -> None:
    tp = TP(TOPIC, 0)
    start = committed or 0
    fetched = {tp: [record(0, start + i) for i in range(2_500)]}

    async def check(
        consumer: BatchDeliveryConsumer, delivered: Delivered
    ) -> None:
        [(_, message)] = delivered
        assert consumer._new_offset(tp) is None  # nothing acknowledged yet
        assert consumer.ack(message)
        assert consumer._new_offset(tp) == start + 2_500

    with_fetch(fetched, check, committed={tp: committed} if committed else None)


def test_a_delivered_batch_is_committed_only_once_acknowledged() -> None:
    tp = TP(TOPIC, 0)

    async def check(
        consumer: BatchDeliveryConsumer, delivered: Delivered
    ) -> None:
        [(_, earlier)] = delivered
        consumer._wait_next_records = next_fetch  # type: ignore[method-assign]
        [(_, later)] = [item async for item in consumer.getmany(timeout=1.0)]
        consumer.ack(earlier)
        assert consumer._new_offset(tp) == 110  # not past the later batch, still in hand
        consumer._committed_offset[tp] = 110  # as Faust's commit records it
        consumer.ack(later)
        assert consumer._new_offset(tp) == 120

    async def next_fetch(timeout: float) -> tuple[Any, None]:
        return {tp: [record(0, o) for o in range(110, 120)]}, None

    with_fetch({tp: [record(0, o) for o in range(100, 110)]}, check, committed={tp: 100})


def test_batches_acknowledged_between_two_commits_are_committed_at_once() -> None:
    tp = TP(TOPIC, 0)
    fetches = [[record(0, o) for o in range(start, start + 10)] for start in (110, 120, 130)]

    async def check(consumer: BatchDeliveryConsumer, delivered: Delivered) -> None:
        read = 110  # the drain loop's read offset: the committed one, then the last delivered
        messages = [delivered[0][1]]
        for batch in fetches[1:]:
            consumer._wait_next_records = fetch_of(batch)  # type: ignore[method-assign,assignment]
            messages += [message async for _, message in consumer.getmany(timeout=1.0)]
        for message in messages:
            # what Faust's drain loop does before delivering each message
            await consumer._add_gap(tp, read + 1, message.offset)
            read = message.offset
            consumer.ack(message)
        assert consumer._new_offset(tp) == 140

    def fetch_of(batch: list[SimpleNamespace]) -> Callable[[float], Coroutine[Any, Any, Any]]:
        async def fetch(timeout: float) -> tuple[Any, None]:
            return {tp: batch}, None

        return fetch

    with_fetch({tp: fetches[0]}, check, committed={tp: 110})


def test_partitions_not_active_or_with_no_records_are_not_delivered() -> None:
    p0, p1, p2 = TP(TOPIC, 0), TP(TOPIC, 1), TP(TOPIC, 2)
    fetched = {p0: [record(0, 1)], p1: [record(1, 1)], p2: []}

    async def check(
        consumer: BatchDeliveryConsumer, delivered: Delivered
    ) -> None:
        assert [tp for tp, _ in delivered] == [p1]

    with_fetch(fetched, check, active={p1, p2})


def test_a_stopped_flow_delivers_nothing_and_seeks_back() -> None:
    async def main() -> None:
        app = faust.App("batch-delivery-test", broker="kafka://127.0.0.1:1", web_enabled=False)
        use_batch_delivery(app)
        consumer = app.consumer
        assert isinstance(consumer, BatchDeliveryConsumer)
        seeks: list[str] = []

        async def fetch(timeout: float) -> tuple[Any, None]:
            return {TP(TOPIC, 0): [record(0, 1)]}, None

        async def seek() -> None:
            seeks.append("seek")

        consumer._wait_next_records = fetch  # type: ignore[method-assign]
        consumer.perform_seek = seek  # type: ignore[method-assign]
        consumer.flow_active = False
        assert [item async for item in consumer.getmany(timeout=1.0)] == []
        assert seeks == ["seek"]

    asyncio.run(main())


def test_the_events_topic_hands_over_the_message_value_without_codecs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faust.types import Message

    from pipeline.config import Settings
    from pipeline.stream import faust_app

    settings = Settings.model_validate({"worker": {"data_dir": tmp_path}})
    app, topic = faust_app(settings)
    assert isinstance(app.consumer, BatchDeliveryConsumer)

    def no_codec(*args: object, **kwargs: object) -> object:
        raise AssertionError("a codec was looked up")

    monkeypatch.setattr(app.serializers, "loads_key", no_codec)
    monkeypatch.setattr(app.serializers, "loads_value", no_codec)
    batch = [record(0, 7)]
    message = Message(TOPIC, 0, 7, 0.0, 0, None, None, batch, None)  # type: ignore[arg-type]
    assert topic.schema.loads_value(app, message) is batch
    assert topic.schema.loads_key(app, message) is None
