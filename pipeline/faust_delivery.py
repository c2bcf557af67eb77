"""Faust delivers fetched records to the agent as one message per partition, not one per record.

Faust's consumer passes every fetched record, alone, through its drain loop, the conductor,
the stream's buffer, the agent and the acknowledgement: about 40 µs per record here, as much
as the engine's own work, and no tuning of fetch sizes or buffers changes that (a no-op agent
received 4.5k–22k records/s whatever its settings). :class:`BatchDeliveryConsumer` makes one
message of all the records it fetched for a partition (:class:`RecordBatch`) and passes that
down the same path, with Faust's own flow control, rebalance checks and acknowledgements.

Acknowledging a batch message commits past its last record. Faust commits an offset once every
offset before it is acknowledged or recorded as a gap (as it records the offsets of
transaction markers, which no message carries). A batch message has the offset of its last
record, and the offsets of the batch's other records are recorded as a gap when it is
delivered, so they count as acknowledged with the batch. Faust counts a gap once any later offset
is acknowledged, so a partition's batches must be acknowledged in order, as the worker's one
agent (concurrency 1, ``take_events``) does.

:class:`Undecoded` hands the agent a batch message's records as they are: no codec is looked up,
and none would know what to do with a list of records.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ConsumerMessage

RecordBatch = Sequence[Any]
"""The value of a batch message: a partition's records from one fetch, in offset order (aiokafka
``ConsumerRecord``: ``offset``, ``key``, ``value``, ``timestamp``, ``headers``)."""


class BatchDeliveryConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, yielding one message per partition of what it fetched.

    Once caught up with the topic, fetches return a few records each, and a message per few
    records would cost the agent a step (a ClickHouse write, a snapshot) per few records. So a
    fetch of fewer than ``broker_max_poll_records`` records is held, and the next fetches
    added to it, until they reach that many or :attr:`gather_s` has passed: what the broker's
    ``fetch.min.bytes`` would do, which Faust does not expose. Behind the topic, a fetch
    returns that many at once and is delivered at once.
    """

    gather_s: ClassVar[float] = 0.2

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, ConsumerMessage]]:
        """Like Faust's ``getmany``, but each partition's records come as one message.

        As Faust does: nothing once stopping; while the flow is stopped (a rebalance), seek
        back to the committed offsets and deliver nothing (held records are fetched again
        from there); stop delivering when the flow stops
        or the group's generation changes meanwhile; deliver only active (or buffered)
        partitions, noting each one's high-water mark for the monitor. Records held from
        before a generation change are dropped, as Faust drops the rest of a fetch then: the
        new assignment seeks back to the committed offsets.
        """
        limit = self.app.conf.broker_max_poll_records
        held: dict[TP, list[Any]] = {}
        count, generation, deadline = 0, None, 0.0
        while True:
            wait = max(0.0, deadline - time.monotonic()) if held else timeout
            records, active = await self._wait_next_records(wait)
            if self.should_stop:
                return
            if not self.flow_active:
                try:
                    await self.perform_seek()
                except Exception as exc:  # as Faust: the next assignment seeks again
                    self.log.warning("seeking back to the committed offsets failed: %r", exc)
                return
            if self.app.consumer_generation_id != generation:
                held, count, generation = {}, 0, self.app.consumer_generation_id
            for tp, batch in (records or {}).items():
                if batch and (active is None or tp in active or tp in self._buffered_partitions):
                    if not held:
                        deadline = time.monotonic() + self.gather_s
                    held.setdefault(tp, []).extend(batch)
                    count += len(batch)
            if not held or limit is None or count >= limit or time.monotonic() >= deadline:
                break
        for tp, batch in held.items():
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            await self._add_gap(tp, batch[0].offset, batch[-1].offset)
            yield tp, batch_message(tp, batch, generation)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Record the offsets from ``offset_from`` up to, not including, ``offset_to`` as
        acknowledged once a later offset is (they have no message of their own).

        Faust's drain loop calls this with ``offset_to`` the offset of the message it is
        about to deliver, and Faust records that one too; when the message is then
        acknowledged, its offset counts twice and each commit falls one batch further behind.
        """
        if offset_to > offset_from:
            await super()._add_gap(tp, offset_from, offset_to - 1)


def batch_message(tp: TP, batch: RecordBatch, generation: int | None = None) -> ConsumerMessage:
    """One Faust message for ``batch``: the offset and timestamp of its last record, no key, and
    the records as its value.

    >>> from types import SimpleNamespace as Record
    >>> tp = TP("compute.events", 3)
    >>> batch = [Record(offset=7, timestamp=1_000), Record(offset=9, timestamp=2_500)]
    >>> message = batch_message(tp, batch)
    >>> message.offset, message.timestamp, [r.offset for r in message.value]
    (9, 2.5, [7, 9])
    """
    last = batch[-1]
    return ConsumerMessage(
        tp.topic,
        tp.partition,
        last.offset,
        last.timestamp / 1000.0 if last.timestamp is not None else None,  # type: ignore[arg-type]
        0,
        [],
        None,
        batch,  # type: ignore[arg-type]
        None,
        tp=tp,
        generation_id=generation,
    )


class BatchDeliveryTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`BatchDeliveryConsumer`."""

    Consumer: ClassVar[type[faust_aiokafka.Consumer]] = BatchDeliveryConsumer


class Undecoded(faust.Schema):
    """Keys and values as the message holds them (a batch message's value is its records)."""

    def loads_key(self, app: Any, message: Any, **_: Any) -> Any:
        return message.key

    def loads_value(self, app: Any, message: Any, **_: Any) -> Any:
        return message.value


def use_batch_delivery(app: faust.App) -> None:
    """Give ``app`` the transport of :class:`BatchDeliveryConsumer` (before it starts)."""
    app.transport = BatchDeliveryTransport(app.conf.broker_consumer, app)
