"""The consumer delivers one message per partition of what it fetched, gathers small fetches,
and acknowledging a message commits past all of its records. The fetches are given (no
broker); the worker's Kafka tests run it for real."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP

from pipeline.faust_delivery import BatchDeliveryConsumer, use_batch_delivery

TOPIC = "compute.events"
P0, P1, P2 = TP(TOPIC, 0), TP(TOPIC, 1), TP(TOPIC, 2)
Fetch = dict[TP, list[SimpleNamespace]]
Delivered = list[tuple[TP, Any]]  # (partition, batch message)


def record(tp: TP, offset: int) -> SimpleNamespace:
    """What aiokafka's fetch returns per record (the fields Faust and the worker read)."""
    return SimpleNamespace(
        topic=tp.topic, partition=tp.partition, offset=offset, timestamp=1_000 * offset,
        key=b"tenant", value=f"event {tp.partition}/{offset}".encode(), headers=[],
    )  # fmt: skip


def records(tp: TP, offsets: range | tuple[int, ...]) -> list[SimpleNamespace]:
    return [record(tp, offset) for offset in offsets]


class Broker:
    """Answers the consumer's fetches with ``fetches`` in turn, then with nothing; ``on_fetch``
    runs before each answer (a rebalance, say)."""

    def __init__(self, *fetches: Fetch, active: set[TP] | None = None) -> None:
        self.fetches, self.active = list(fetches), active
        self.on_fetch: Callable[[], None] = lambda: None

    async def __call__(self, timeout: float) -> tuple[Fetch, set[TP] | None]:
        self.on_fetch()
        return (self.fetches.pop(0) if self.fetches else {}), self.active


async def deliveries(consumer: BatchDeliveryConsumer, broker: Broker) -> Delivered:
    """What one ``getmany`` of ``consumer`` delivers from ``broker``."""
    consumer._wait_next_records = broker  # type: ignore[method-assign]
    return [item async for item in consumer.getmany(timeout=1.0)]


def with_consumer(
    check: Callable[[BatchDeliveryConsumer], Awaitable[None]],
    *,
    max_records: int | None = None,
    committed: dict[TP, int] | None = None,
) -> None:
    """Run ``check`` with the batch-delivery consumer of an app (never started) consuming
    :data:`TOPIC`, fetching up to ``max_records`` records at a time."""

    async def main() -> None:
        app = faust.App(
            "batch-delivery-test",
            broker="kafka://127.0.0.1:1",
            web_enabled=False,
            broker_max_poll_records=max_records,
        )
        use_batch_delivery(app)
        app.topics.add(app.topic(TOPIC))  # as an agent subscribing to it: acks count for it
        await app.topics._update_indices()  # type: ignore[attr-defined]
        consumer = app.consumer
        assert isinstance(consumer, BatchDeliveryConsumer)
        consumer._committed_offset.update(committed or {})
        consumer.highwater = lambda tp: 0  # type: ignore[method-assign]
        consumer.flow_active = True
        await check(consumer)

    asyncio.run(main())


def test_each_partition_s_records_come_as_one_message_in_order() -> None:
    async def check(consumer: BatchDeliveryConsumer) -> None:
        fetch = {P0: records(P0, (5, 6, 7)), P1: records(P1, (40,))}
        first, second = await deliveries(consumer, Broker(fetch))
        assert (first[0], second[0]) == (P0, P1)
        message = first[1]
        assert (message.tp, message.offset, message.key) == (P0, 7, None)
        assert [r.value for r in message.value] == [b"event 0/5", b"event 0/6", b"event 0/7"]
        assert message.timestamp == 7.0  # the last record's, in seconds
        assert (second[1].offset, [r.offset for r in second[1].value]) == (40, [40])

    with_consumer(check)


def test_small_fetches_are_gathered_until_a_full_fetch_worth() -> None:
    async def check(consumer: BatchDeliveryConsumer) -> None:
        broker = Broker(
            {P0: records(P0, range(0, 3))},
            {P0: records(P0, range(3, 5)), P1: records(P1, (0,))},
            {P0: records(P0, range(5, 9))},  # not fetched: the limit is reached before
        )
        delivered = await deliveries(consumer, broker)
        assert [(tp, [r.offset for r in m.value]) for tp, m in delivered] == [
            (P0, [0, 1, 2, 3, 4]),
            (P1, [0]),
        ]
        assert len(broker.fetches) == 1

    with_consumer(check, max_records=5)


def test_gathering_ends_after_gather_s_with_what_was_fetched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(BatchDeliveryConsumer, "gather_s", 0.05)

    async def check(consumer: BatchDeliveryConsumer) -> None:
        waits: list[float] = []
        broker = Broker({P0: records(P0, (0,))})
        broker.on_fetch = lambda: waits.append(loop.time())
        loop = asyncio.get_running_loop()
        delivered = await deliveries(consumer, broker)
        done = loop.time()
        assert [(tp, m.offset) for tp, m in delivered] == [(P0, 0)]
        # gathering stops at the first fetch to return gather_s after the first one did (the
        # last fetch may start a little before that): not the drain loop's 1 s timeout
        assert 0.05 <= done - waits[0] < 1.0 and len(waits) > 1

    with_consumer(check, max_records=1_000)


def test_records_held_across_a_rebalance_are_dropped() -> None:
    async def check(consumer: BatchDeliveryConsumer) -> None:
        broker = Broker({P0: records(P0, range(0, 3))}, {P0: records(P0, range(10, 12))})
        # the second fetch comes after a rebalance (and its seek)
        generations = itertools.chain([0], itertools.repeat(1))
        broker.on_fetch = lambda: setattr(consumer.app, "consumer_generation_id", next(generations))
        delivered = await deliveries(consumer, broker)
        assert [(tp, [r.offset for r in m.value]) for tp, m in delivered] == [(P0, [10, 11])]
        assert delivered[0][1].generation_id == 1

    with_consumer(check, max_records=1_000)


def test_records_held_when_the_flow_stops_are_dropped_and_the_consumer_seeks_back() -> None:
    async def check(consumer: BatchDeliveryConsumer) -> None:
        seeks: list[str] = []

        async def seek() -> None:
            seeks.append("seek")

        def stop_flow_on_second_fetch() -> None:
            consumer.flow_active = consumer.flow_active and not fetched
            fetched.append(True)

        fetched: list[bool] = []
        consumer.perform_seek = seek  # type: ignore[method-assign]
        broker = Broker({P0: records(P0, range(0, 3))}, {P0: records(P0, range(3, 5))})
        broker.on_fetch = stop_flow_on_second_fetch  # a rebalance begins
        assert await deliveries(consumer, broker) == []
        assert seeks == ["seek"]

    with_consumer(check, max_records=1_000)


@pytest.mark.parametrize("committed", [None, 100], ids=["fresh group", "resumed partition"])
def test_acknowledging_a_batch_commits_past_its_last_record(committed: int | None) -> None:
    start = committed or 0

    async def check(consumer: BatchDeliveryConsumer) -> None:
        fetch = {P0: records(P0, range(start, start + 2_500))}
        [(_, message)] = await deliveries(consumer, Broker(fetch))
        assert consumer._new_offset(P0) is None  # nothing acknowledged yet
        assert consumer.ack(message)
        assert consumer._new_offset(P0) == start + 2_500

    with_consumer(check, max_records=2_500, committed={P0: committed} if committed else None)


def test_a_delivered_batch_is_committed_only_once_acknowledged() -> None:
    async def check(consumer: BatchDeliveryConsumer) -> None:
        [(_, earlier)] = await deliveries(consumer, Broker({P0: records(P0, range(100, 110))}))
        [(_, later)] = await deliveries(consumer, Broker({P0: records(P0, range(110, 120))}))
        consumer.ack(earlier)
        assert consumer._new_offset(P0) == 110  # not past the later batch, still in hand
        consumer._committed_offset[P0] = 110  # as Faust's commit records it
        consumer.ack(later)
        assert consumer._new_offset(P0) == 120

    with_consumer(check, max_records=10, committed={P0: 100})


def test_batches_acknowledged_between_two_commits_are_committed_at_once() -> None:
    async def check(consumer: BatchDeliveryConsumer) -> None:
        read = 110  # the drain loop's read offset: the committed one, then the last delivered
        for start in (110, 120, 130):
            [(_, message)] = await deliveries(
                consumer, Broker({P0: records(P0, range(start, start + 10))})
            )
            # what Faust's drain loop does before delivering each message
            await consumer._add_gap(P0, read + 1, message.offset)
            read = message.offset
            consumer.ack(message)
        assert consumer._new_offset(P0) == 140

    with_consumer(check, max_records=10, committed={P0: 110})


def test_partitions_not_active_or_with_no_records_are_not_delivered() -> None:
    async def check(consumer: BatchDeliveryConsumer) -> None:
        fetch = {P0: records(P0, (1,)), P1: records(P1, (1,)), P2: []}
        delivered = await deliveries(consumer, Broker(fetch, active={P1, P2}))
        assert [tp for tp, _ in delivered] == [P1]

    with_consumer(check)


def test_a_stopped_flow_delivers_nothing_and_seeks_back() -> None:
    async def check(consumer: BatchDeliveryConsumer) -> None:
        seeks: list[str] = []

        async def seek() -> None:
            seeks.append("seek")

        consumer.perform_seek = seek  # type: ignore[method-assign]
        consumer.flow_active = False
        assert await deliveries(consumer, Broker({P0: records(P0, (1,))})) == []
        assert seeks == ["seek"]

    with_consumer(check)


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
    batch = records(P0, (7,))
    message = Message(TOPIC, 0, 7, 0.0, 0, None, None, batch, None)  # type: ignore[arg-type]
    assert topic.schema.loads_value(app, message) is batch
    assert topic.schema.loads_key(app, message) is None
