"""The Faust app: topics, the two stages' agents, partition-local engines. Wiring only.

``compute.events`` is keyed by tenant_id, so a tenant's detector state stays in one partition.
Each assigned partition has its own stage-1 :class:`~pipeline.engine.Engine`. Per batch the
agent runs the engine, writes the step to ClickHouse and flushes, sends dead letters, sends the
minutes it scored to the fleet stage (``compute.minutes``, one partition) and waits until the
broker has them, then stores the partition's engine snapshot with the offset it covers; only
then are the offsets acknowledged. A partition with nothing left to read follows the event
time of the busiest partition its worker owns (checked every second), so an idle partition
does not hold the fleet stage back. The fleet agent (:mod:`pipeline.stream_fleet`) judges the
fleet's minutes once every partition's clock has passed them, writes and sends the alerts,
then stores its own snapshot.

On assignment a partition's snapshot is restored and messages at or below its offset are
skipped. Before a step's rows are written, the highest offset they come from is recorded (a
mark); after a crash between writing and the snapshot, the step up to the mark is read back and
run again as one step, and its events already stored are recognised by event_id and not written
twice (see :class:`PartitionEngines`).
While ClickHouse fails, the agent waits with the batch in hand and retries (:func:`until_stored`);
a revoked partition whose snapshot cannot be saved is left to its next owner.

A worker that was frozen (SIGSTOP, a VM or GC pause) past the group's session timeout has lost
its partitions to another worker without knowing it. Before a batch's rows are written, before
the fleet stage sends its alerts, and before a revoked partition's snapshot is saved, the worker
asks the group coordinator whether it still owns them (:func:`create_app`'s ``still_owned``);
if not, it drops their state and writes, sends and saves nothing of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, NoReturn, TypeVar, cast

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError as AIOKafkaError
from clickhouse_connect.driver.exceptions import ClickHouseError
from faust.types import TP

from pipeline.alerts import encode_alert
from pipeline.collector import freeze_what_lives
from pipeline.config import KafkaSettings, Settings
from pipeline.engine import Engine, SeenChunk
from pipeline.faust_delivery import RecordBatch, Undecoded, use_batch_delivery
from pipeline.fleet import decode_norms, encode_fleet_input, encode_norms, fleet_inputs
from pipeline.instruments import (
    Instruments,
    NoInstruments,
    PartitionReading,
    Readings,
    entities_held,
    timed,
)
from pipeline.kafka_options import aiokafka_options, faust_credentials
from pipeline.records import DeadLetter, Message, StepOutput
from pipeline.state_format import SnapshotError
from pipeline.storage import RetryPolicy, SinkUnavailable, Store, open_store
from pipeline.stream_fleet import StoredFleet
from pipeline.webhook import WebhookNotifier

log = logging.getLogger(__name__)
T = TypeVar("T")

# Each step of the agent takes what one gathered fetch brought (pipeline/faust_delivery.py):
# up to FETCH_RECORDS records, one message per partition, up to TAKE_MESSAGES messages; once
# caught up with the topic, what arrived within the consumer's gather_s. Bigger steps spread
# a step's fixed cost (an insert per table, a snapshot per partition): 2,500, 10,000 and 20,000
# records per fetch measured 16k, 18k and 21.5k events/s for one worker.
FETCH_RECORDS = 20_000
TAKE_MESSAGES = 4
TAKE_WITHIN_S = 0.5
FAUST_CONSUMER_OPTIONS: dict[str, Any] = {
    "broker_max_poll_records": FETCH_RECORDS,
    "consumer_max_fetch_size": 16 * 1024 * 1024,
    "stream_buffer_maxsize": TAKE_MESSAGES,
}
PRE_MARK_BATCH_MAX = 10_000  # events per batch of the workers that saved snapshots without marks
# While ClickHouse fails, the agent retries after 1, 2, 4 ... 30 s (each try is a flush with the
# sink's own short retries); any error of the client, or a flush that gave up, means "not now".
OUTAGE_RETRY: Final = RetryPolicy(base_s=1.0, max_s=30.0)
READ_SPAN_S: Final = 60.0  # the longest reading an unsettled step back may take
IDLE_CHECK_S: Final = 1.0  # how often partitions with nothing to read follow the busiest
EXIT_UNEXPECTED: Final = 70  # EX_SOFTWARE: a bug, not an outage
EXIT_STATE_REFUSED: Final = 78  # EX_CONFIG: a snapshot this computewatch cannot restore
EXIT_STOP_TIMED_OUT: Final = 75  # EX_TEMPFAIL: asked to stop, it had not within its bound
STORAGE_ERRORS: Final = (ClickHouseError, SinkUnavailable, OSError)


@dataclass
class PartitionEngines:
    """The engines of the partitions this worker owns, restored from and saved to the store.

    Per partition: ``offsets`` is the last offset its engine has processed (saved with each
    snapshot); ``written`` the highest offset whose rows may be in ClickHouse, recorded in the
    store (a mark, under ``<key>#written``) *before* any of them is written, so a worker that
    dies between writing rows and saving the snapshot leaves a mark beyond the snapshot.
    ``recover_to`` holds, after such a restore, the mark: until the engine is past it, events
    already in ``events`` are dropped from each step instead of being written (and counted in
    the rollups) twice, whatever batches the redelivery comes in.

    That check cannot see rows a worker frozen in that step (SIGSTOP, a VM pause) writes after
    it resumes. Those are dropped by ClickHouse instead, by their dedup tokens: each partition's
    step has batches of its own (:meth:`store_step`), and the worker replays the step the mark
    ends (:meth:`unsettled`) as one step, so it writes the very batches the frozen worker wrote
    or may still write. Events already stored are whole batches at the start of the step (a
    batch is one insert, the batches go in order), so dropping them keeps the rest's batches.

    Each method that reads or writes ClickHouse can be retried after a failure.
    """

    settings: Settings
    store: Store
    engines: dict[int, Engine] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    written: dict[int, int] = field(default_factory=dict)
    recover_to: dict[int, int] = field(default_factory=dict)
    pruned: dict[int, int] = field(default_factory=dict)
    instruments: Instruments = field(default_factory=NoInstruments)

    def key(self, partition: int) -> str:
        kafka = self.settings.kafka
        return f"{kafka.consumer_group}/{kafka.events_topic}/{partition}"

    def mark_key(self, partition: int) -> str:
        return f"{self.key(partition)}#written"

    def seen_prefix(self, partition: int) -> str:
        """Keys of the partition's seen-id chunks: ``<prefix><generation>/<end>``."""
        return f"{self.key(partition)}#seen/"

    def seen_key(self, partition: int, generation: int, end: int | None = None) -> str:
        """The key of a seen-id chunk, or without ``end`` the start of its generation's keys."""
        tail = "" if end is None else f"{end:012d}"
        return f"{self.seen_prefix(partition)}{generation:012d}/{tail}"

    def restore(self, partition: int) -> Engine:
        """The partition's engine, restored on first use from its snapshot and mark."""
        if partition in self.engines:
            return self.engines[partition]
        snapshot = self.store.load_snapshot(self.key(partition))
        mark = self.store.load_snapshot(self.mark_key(partition))
        offset, engine = -1, Engine(self.settings, partition=partition)
        if snapshot is not None:
            offset, engine = snapshot[0], Engine.restore(snapshot[1], self.settings)
            if engine.seen.awaiting_chunks:
                engine.seen.load(self._seen_chunks(partition, offset))
            if engine.fleet is not None:
                log.info("partition %d: the fleet detectors now learn in stage 2", partition)
                engine.as_stage_one(partition)
            log.info("partition %d: state restored at offset %d", partition, offset)
        written = offset if mark is None else max(offset, mark[0])
        if mark is None and snapshot is not None:  # saved before marks: one batch may follow
            written = offset + PRE_MARK_BATCH_MAX
        if written > offset:
            self.recover_to[partition] = written
            log.info("partition %d: events up to offset %d may be stored", partition, written)
        self.engines[partition], self.offsets[partition] = engine, offset
        self.written[partition] = written
        return engine

    def unsettled(self, partition: int) -> tuple[int, int] | None:
        """The first and last offsets of the step whose rows may be stored in part, after
        :meth:`restore` found a mark beyond the snapshot; None once the engine is past it.
        Run those messages as one step, before any other, so its batches are the ones the
        step was written in before."""
        last = self.recover_to.get(partition)
        offset = self.offsets[partition]
        return None if last is None or offset >= last else (offset + 1, last)

    def step(self, partition: int, messages: list[Message]) -> StepOutput:
        """Run the restored engine on the messages it has not seen (no I/O, not retryable)."""
        fresh = [m for m in messages if m.offset > self.offsets[partition]]
        out = self.engines[partition].process(fresh)
        if fresh:
            self.offsets[partition] = fresh[-1].offset
        return out

    def mark_written(self, partitions: Sequence[int]) -> None:
        """Record the marks of the partitions' steps (one insert), before any of their rows is
        handed over (:meth:`store_step`)."""
        ahead = [p for p in partitions if self.offsets[p] > self.written[p]]
        self.store.save_snapshots([(self.mark_key(p), self.offsets[p], b"") for p in ahead])
        for partition in ahead:
            self.written[partition] = self.offsets[partition]

    def store_step(self, partition: int, out: StepOutput) -> None:
        """Drop events already stored (while recovering), hand ``out`` over to the sink, and
        end its events batch there: the step's batches are its own."""
        offset = self.offsets[partition]
        if partition in self.recover_to:
            self._drop_stored(partition, out)
        self.store.write_step(out)
        self.store.sink.cut_events()
        if offset >= self.recover_to.get(partition, offset):
            self.recover_to.pop(partition, None)

    def process(self, partition: int, messages: list[Message]) -> StepOutput:
        """:meth:`restore`, :meth:`step`, :meth:`mark_written` and :meth:`store_step` at once
        (no retries)."""
        self.restore(partition)
        out = self.step(partition, messages)
        self.mark_written([partition])
        self.store_step(partition, out)
        return out

    def _drop_stored(self, partition: int, out: StepOutput) -> None:
        stored = self.store.stored_event_ids(out.events)
        if not stored:
            return
        kept = [
            (e, c) for e, c in zip(out.events, out.costs, strict=True) if e.event_id not in stored
        ]
        out.events = [e for e, _ in kept]
        out.costs = [c for _, c in kept]
        log.info("partition %d: %d events were already stored", partition, len(stored))

    def advance_idle(self, caught_up: Sequence[int]) -> dict[int, StepOutput]:
        """Move the engines of ``caught_up`` partitions (restored, nothing left to read) to the
        latest event time of this worker's engines (no I/O); the steps of those that moved."""
        if not self.engines:
            return {}
        now = max(engine.clock_s for engine in self.engines.values())
        moved = [p for p in caught_up if p in self.engines and self.engines[p].clock_s < now]
        return {p: self.engines[p].advance(now) for p in moved}

    def commit(self, partitions: Sequence[int]) -> None:
        """Flush the sink, then snapshot each partition's engine with its offset (one insert).

        A snapshot leaves out the seen event ids, which are most of an engine's state; the ids
        added since the last commit go into the same insert as chunks (:class:`SeenChunk`), so
        a batch's snapshot costs what changed, not the million ids remembered. Chunks of
        generations the engine has forgotten are deleted after the insert.
        """
        with timed(partial(self.instruments.wrote, "flush")):
            self.store.flush()
        chunks = {p: self.engines[p].seen.unsaved() for p in partitions if p in self.engines}
        rows = []
        for p, unsaved in chunks.items():
            offset = self.offsets[p]
            rows += [
                (self.seen_key(p, c.generation, c.end), offset, c.ids.encode()) for c in unsaved
            ]
            rows.append((self.key(p), offset, self.engines[p].snapshot(seen_ids=False)))
        with timed(partial(self.instruments.saved, "partition", sum(len(r[2]) for r in rows))):
            self.store.save_snapshots(rows)
        for p, unsaved in chunks.items():
            seen = self.engines[p].seen
            seen.saved(unsaved)
            if self.pruned.get(p) != seen.generation:  # the previous generation is kept
                self.store.delete_snapshots(
                    self.seen_prefix(p), below=self.seen_key(p, seen.generation - 1)
                )
                self.pruned[p] = seen.generation

    def _seen_chunks(self, partition: int, offset: int) -> list[SeenChunk]:
        prefix = self.seen_prefix(partition)
        chunks = []
        for key, ids in self.store.load_snapshots(prefix, max_offset=offset):
            generation, end = key.removeprefix(prefix).split("/")
            chunks.append(SeenChunk(int(generation), int(end), ids.decode()))
        return chunks

    def drop(self, partitions: Sequence[int]) -> None:
        for partition in partitions:
            for state in (self.engines, self.offsets, self.written, self.recover_to, self.pruned):
                state.pop(partition, None)


def faust_app(settings: Settings) -> tuple[faust.App, faust.TopicT]:
    """The worker's Faust app and its events topic, with nothing wired to them yet.

    The bench's Faust ceiling (:mod:`pipeline.bench.faust_ceiling`) runs the same.
    """
    kafka = settings.kafka
    settings.worker.data_dir.mkdir(parents=True, exist_ok=True)  # Faust makes only its own dir
    app = faust.App(
        kafka.consumer_group,
        broker=[f"kafka://{host}" for host in kafka.bootstrap.split(",")],
        broker_credentials=faust_credentials(kafka),
        store="memory://",
        topic_partitions=kafka.partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=kafka.session_timeout_s,
        broker_heartbeat_interval=kafka.session_timeout_s / 5,
        web_enabled=False,
        **FAUST_CONSUMER_OPTIONS,
        datadir=str(settings.worker.data_dir / kafka.consumer_group),
    )
    use_batch_delivery(app)
    events_topic = app.topic(kafka.events_topic, schema=Undecoded())
    return app, events_topic


def take_batches(stream: faust.StreamT[RecordBatch]) -> AsyncIterator[Sequence[faust.EventT]]:
    """The stream's partition batches, up to :data:`TAKE_MESSAGES` at a time, at most
    :data:`TAKE_WITHIN_S` apart; each event's message holds a partition's records
    (:func:`records`)."""
    # take_events is defined on faust.Stream but missing from the StreamT stub
    batches: AsyncIterator[Sequence[faust.EventT]] = stream.take_events(  # type: ignore[attr-defined]
        TAKE_MESSAGES, within=TAKE_WITHIN_S
    )
    return batches


def records(batch: Sequence[faust.EventT]) -> int:
    """How many records the partition batches of ``batch`` hold."""
    return sum(len(cast(RecordBatch, event.message.value)) for event in batch)


def create_app(settings: Settings, instruments: Instruments | None = None) -> faust.App:
    """The worker's Faust app, wired to ``settings``' topics and ClickHouse; it reports to
    ``instruments`` (:mod:`pipeline.instruments`) as it works."""
    kafka = settings.kafka
    instruments = instruments or NoInstruments()
    retrying = partial(until_stored, instruments=instruments)
    app, events_topic = faust_app(settings)
    alerts_topic = app.topic(
        kafka.alerts_topic,
        partitions=kafka.partitions,
        key_serializer="raw",
        value_serializer="raw",
    )
    dlq_topic = app.topic(
        kafka.dlq_topic,
        partitions=kafka.partitions,
        key_serializer="raw",
        value_serializer="raw",
    )
    # stage 1 -> the fleet stage: one partition, so one worker judges the fleet at a time
    minutes_out = app.topic(
        kafka.minutes_topic, partitions=1, key_serializer="raw", value_serializer="raw"
    )
    minutes_in = app.topic(kafka.minutes_topic, partitions=1, schema=Undecoded())
    # the fleet stage -> every worker (each reads all of it, outside the group)
    norms_out = app.topic(
        kafka.norms_topic, partitions=1, key_serializer="raw", value_serializer="raw"
    )
    webhook = WebhookNotifier(
        settings.worker.webhook_url, min_severity=settings.worker.webhook_min_severity
    )
    resources = contextlib.ExitStack()
    state: dict[str, PartitionEngines] = {}
    fleet_state: dict[str, StoredFleet] = {}
    store_lock = asyncio.Lock()  # the agents and the idle clock take turns with the store

    def engines() -> PartitionEngines:
        if "engines" not in state:
            store = resources.enter_context(open_store(settings))
            state["engines"] = PartitionEngines(settings, store, instruments=instruments)
        return state["engines"]

    def fleet() -> StoredFleet:
        if "fleet" not in fleet_state:
            stored = StoredFleet(settings, engines().store, instruments=instruments)
            fleet_state["fleet"] = stored
        return fleet_state["fleet"]

    def readings() -> Readings:
        """The worker's partitions, detectors and webhook, when asked (another thread)."""
        partitions, detectors = [], []
        if "engines" in state:
            parts = state["engines"]
            for partition, offset in sorted(parts.offsets.items()):
                tp = TopicPartition(kafka.events_topic, partition)
                highwater = app.consumer.highwater(tp)
                partitions.append(
                    PartitionReading(kafka.events_topic, partition, offset, highwater)
                )
            detectors += [d for e in list(parts.engines.values()) for d in e.detectors]
        if "fleet" in fleet_state and (stage := fleet_state["fleet"].stage) is not None:
            offset = fleet_state["fleet"].offset
            highwater = app.consumer.highwater(TopicPartition(kafka.minutes_topic, 0))
            partitions.append(PartitionReading(kafka.minutes_topic, 0, offset, highwater))
            detectors += stage.detectors
        counts = ("sent", "failed", "dropped", "held_back")
        return Readings(
            partitions=partitions,
            entities=entities_held(detectors),
            webhook={name: getattr(webhook, name) for name in counts},
        )

    instruments.watch(readings)

    async def send_minutes(parts: PartitionEngines, outs: dict[int, StepOutput]) -> None:
        """Send each partition's minutes and clock to the fleet stage; return once the broker
        has them all (before the snapshot that would let them be skipped after a crash)."""
        count = app.consumer.topic_partitions(kafka.events_topic) or kafka.partitions
        pending = []
        for partition, out in outs.items():
            clock = parts.engines[partition].clock_s
            for message in fleet_inputs(
                partition, count, clock, out.parts, out.norms, out.spend
            ):
                value = encode_fleet_input(message)
                pending.append(await minutes_out.send(value=value, partition=0))
        await asyncio.gather(*pending)

    async def still_owned(offsets: dict[TP, int], otherwise: str = "") -> bool:
        """Whether this worker still owns the partitions of ``offsets``, asked of the group
        coordinator: it takes a commit only from a member of the group's current generation.
        The offsets committed are ones the store's snapshots already cover (each partition's
        snapshot offset + 1), so the commit itself changes nothing that matters. A worker
        frozen past its session learns here that another worker has taken its partitions.
        """
        if not offsets:
            return True
        owned = all(tp in app.consumer.assignment() for tp in offsets)
        # Faust's consumer thread runs the commit; False when the group has rebalanced
        if owned and await app.consumer._thread.commit(offsets):  # type: ignore[attr-defined]
            return True
        if otherwise:
            log.warning("partitions %s are no longer this worker's: %s", sorted(offsets), otherwise)
        return False

    @app.agent(events_topic)
    async def process(stream: faust.StreamT[RecordBatch]) -> None:
        for topic in (alerts_topic, dlq_topic, minutes_out, norms_out):  # producers do not
            await topic.maybe_declare()  # create topics
        freeze_what_lives()  # modules and the app live as long as the worker: 6 % less CPU
        async for batch in take_batches(stream):
            try:
                await handle(batch)
            except Exception:  # a bug: Faust would acknowledge the batch as the loop ends
                exit_unacknowledged(records(batch))

    async def handle(batch: Sequence[faust.EventT]) -> None:
        """Run, store and commit one batch; its dead letters and minutes go out. A step a
        worker left unsettled is replayed first, as one step (:meth:`PartitionEngines.unsettled`).
        """
        async with store_lock:
            parts = await retrying(engines, "opening the store")
            groups = _by_partition(batch, kafka.events_topic)
            for partition in groups:
                await retrying(partial(parts.restore, partition), "restoring state")
            unsettled = {p: span for p in groups if (span := parts.unsettled(p))}
            if unsettled:
                replayed = await read_spans(kafka, unsettled)
                if not await run(parts, replayed):
                    return
            await run(parts, groups)

    async def run(parts: PartitionEngines, groups: dict[int, list[Message]]) -> bool:
        """Step, store and commit the partitions' messages; False if they were taken."""
        outs, covered = {}, {}
        for partition, messages in groups.items():
            covered[TP(kafka.events_topic, partition)] = parts.offsets[partition] + 1
            started = time.perf_counter()
            out = await asyncio.to_thread(parts.step, partition, messages)
            instruments.stepped(out, len(messages), time.perf_counter() - started)
            outs[partition] = out
        await retrying(partial(parts.mark_written, list(outs)), "recording marks", "marks")
        if not await still_owned(covered):  # after the marks: a new owner reads them
            log.warning("partitions %s were taken by another worker while this one was not "
                        "answering; their batch is dropped", list(groups))  # fmt: skip
            parts.drop(list(groups))
            return False
        for partition, out in outs.items():
            await retrying(partial(parts.store_step, partition, out), "storing a step", "step")
            for dead in out.dead_letters:
                await dlq_topic.send(key=None, value=dead.payload, headers=_dlq_headers(dead))
        await send_minutes(parts, outs)
        await retrying(partial(parts.commit, list(groups)), "committing a batch")
        log.debug("%d messages from partitions %s stored", sum(map(len, groups.values())),
                  list(groups))  # fmt: skip
        return True

    @app.timer(interval=IDLE_CHECK_S)
    async def idle_clock() -> None:
        """Partitions with nothing left to read follow the busiest one's event time."""
        if "engines" not in state:  # before the first batch (and the consumer's start)
            return
        async with store_lock:  # a rebalance may have run meanwhile: the assignment after it
            parts = state["engines"]
            caught_up = []
            for tp in _owned(app, kafka.events_topic):
                await retrying(partial(parts.restore, tp.partition), "restoring state")
                if tp not in app.consumer.assignment():  # revoked while restoring
                    parts.drop([tp.partition])
                    continue
                highwater = app.consumer.highwater(tp)
                if highwater is not None and parts.offsets[tp.partition] + 1 >= highwater:
                    caught_up.append(tp.partition)
            outs = parts.advance_idle(caught_up)
            await send_minutes(parts, outs)

    @app.agent(minutes_in)
    async def judge(stream: faust.StreamT[RecordBatch]) -> None:
        async for batch in take_batches(stream):
            try:
                await judge_batch(batch)
            except Exception:  # a bug: as in process
                exit_unacknowledged(records(batch))

    async def judge_batch(batch: Sequence[faust.EventT]) -> None:
        """Judge what the batch's minutes complete; store, send and commit the alerts."""
        async with store_lock:
            stored = await retrying(fleet, "opening the store")
            messages = [m for ms in _by_partition(batch, kafka.minutes_topic).values() for m in ms]
            await retrying(stored.restore, "restoring the fleet stage")
            covered = {TP(kafka.minutes_topic, 0): stored.offset + 1}
            started = time.perf_counter()
            out, norms = await asyncio.to_thread(stored.step, messages)
            instruments.judged(out.alerts, time.perf_counter() - started)
            await retrying(partial(stored.store.write_step, out), "storing alerts", "alerts")
            if not await still_owned(covered):  # its new owner judges and sends them
                log.warning("the fleet stage was taken by another worker while this one was not "
                            "answering; its batch is dropped")  # fmt: skip
                stored.drop()
                return
            for alert in out.alerts:
                await alerts_topic.send(
                    key=alert.entity_id.encode(),
                    value=encode_alert(alert),
                    headers=[("alert_id", alert.alert_id.encode())],  # the same if sent again
                )
                webhook.notify(alert)
            for value in encode_norms(norms):
                await norms_out.send(value=value, partition=0)
            await retrying(stored.commit, "committing the fleet stage")

    @app.task
    async def take_fleet_norms() -> None:
        """Every worker's engines take the context norms the fleet stage merged."""
        await norms_out.maybe_declare()
        consumer = AIOKafkaConsumer(**aiokafka_options(kafka), enable_auto_commit=False)
        await consumer.start()
        try:
            partition = TopicPartition(kafka.norms_topic, 0)
            consumer.assign([partition])
            await consumer.seek_to_end(partition)  # engines restored hold their own
            async for record in consumer:
                norms = decode_norms(record.value)
                async with store_lock:
                    for engine in state["engines"].engines.values() if "engines" in state else []:
                        engine.take_norms(norms)
        finally:
            await consumer.stop()

    # mode's SignalHandlerT wants (sender, *args, signal=..., **kwargs); the handlers take the
    # signal's actual positional arguments, as faust's documentation shows
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
        async with store_lock:
            if "engines" in state:
                parts = state["engines"]
                partitions = [tp.partition for tp in revoked if tp.topic == kafka.events_topic]
                held = {TP(kafka.events_topic, p): parts.offsets[p] + 1 for p in parts.offsets
                        if p in partitions}  # fmt: skip
                try:
                    if await still_owned(held, "their snapshots are not saved"):
                        await asyncio.to_thread(parts.commit, partitions)
                except STORAGE_ERRORS as exc:  # a rebalance or shutdown does not wait
                    log.warning(
                        "partitions %s revoked without a snapshot (%s); their next owner "
                        "resumes from the last one", partitions, exc,
                    )  # fmt: skip
                parts.drop(partitions)
            if "fleet" in fleet_state and any(tp.topic == kafka.minutes_topic for tp in revoked):
                stored = fleet_state["fleet"]
                held = {TP(kafka.minutes_topic, 0): stored.offset + 1} if stored.stage else {}
                try:
                    if await still_owned(held, "its snapshot is not saved"):
                        await asyncio.to_thread(stored.commit)
                except STORAGE_ERRORS as exc:
                    log.warning("fleet stage revoked without a snapshot (%s)", exc)
                stored.drop()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # see on_revoked
    async def on_shutdown(app: faust.App, **_: Any) -> None:
        webhook.close()
        await asyncio.to_thread(resources.close)

    return app


async def read_spans(
    kafka: KafkaSettings, spans: dict[int, tuple[int, int]]
) -> dict[int, list[Message]]:
    """The events topic's messages in each partition's span of offsets (first, last), read
    outside the group (for :meth:`PartitionEngines.unsettled`).

    A span cut short (messages past retention, a broker that does not answer within
    :data:`READ_SPAN_S`) gives what was read, with a warning: the step is then replayed in
    part, and the stored-id check alone keeps its events from being written twice.
    """
    read: dict[int, list[Message]] = {p: [] for p in spans}
    consumer = AIOKafkaConsumer(**aiokafka_options(kafka), enable_auto_commit=False)
    try:
        await consumer.start()
        tps = {TopicPartition(kafka.events_topic, p): span for p, span in spans.items()}
        consumer.assign(list(tps))
        starts = await consumer.beginning_offsets(list(tps))
        ends = await consumer.end_offsets(list(tps))
        waiting = {}
        for tp, (first, last) in tps.items():
            consumer.seek(tp, max(first, starts[tp]))
            if max(first, starts[tp]) <= min(last, ends[tp] - 1):
                waiting[tp] = min(last, ends[tp] - 1)
        deadline = time.monotonic() + READ_SPAN_S
        while waiting and time.monotonic() < deadline:
            fetched = await consumer.getmany(*waiting, timeout_ms=1000)
            for tp, batch in fetched.items():
                last = waiting[tp]
                read[tp.partition] += [
                    Message(r.value, topic=tp.topic, partition=tp.partition, offset=r.offset)
                    for r in batch
                    if r.offset <= last
                ]
                if batch and batch[-1].offset >= last:
                    del waiting[tp]
    except (AIOKafkaError, OSError) as exc:
        log.warning("reading unsettled steps back failed: %r", exc)
    finally:
        await consumer.stop()
    for partition, (first, last) in spans.items():
        got = read[partition]
        if not got or got[-1].offset != last:
            log.warning(
                "partition %d: offsets %d to %d could not all be read back (%d read); the step "
                "is replayed in part", partition, first, last, len(got),
            )  # fmt: skip
    return read


async def until_stored(
    call: Callable[[], T],
    doing: str,
    operation: str | None = None,
    *,
    instruments: Instruments | None = None,
) -> T:
    """``call()`` in a thread, retried with capped backoff while ClickHouse fails; each retry,
    and the time of the write that succeeded (an ``operation``), go to ``instruments``.

    The agent waits here, so no new batch is taken (Faust's stream buffer bounds what is
    fetched meanwhile) and nothing is acknowledged; every method retried here can be repeated.
    A SIGTERM meanwhile waits too (Faust stops once the batch in hand is acknowledged, and
    acknowledging it unstored would lose it); SIGKILL loses and duplicates nothing. A snapshot
    that cannot be restored ends the worker (:func:`exit_refused`): no retry would read it.
    """
    instruments = instruments or NoInstruments()
    failures = 0
    while True:
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(call)
        except STORAGE_ERRORS as exc:
            failures += 1
            delay = OUTAGE_RETRY.delay(failures)
            instruments.retried(delay)
            log.warning(
                "ClickHouse unavailable while %s (%s: %s); consumption paused, waiting: "
                "retry %d in %.1f s", doing, type(exc).__name__, str(exc)[:200], failures, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
            continue
        except SnapshotError as exc:
            exit_refused(exc)
        if operation is not None:
            instruments.wrote(operation, time.perf_counter() - started)
        if failures:
            log.warning("ClickHouse is back: %s after %d failed attempts", doing, failures)
        return result


def exit_unacknowledged(messages: int) -> NoReturn:
    """End the worker at once after an unexpected error in a batch, without acknowledging it.

    Faust acknowledges a batch from ``take_events`` when the agent leaves it, even on an error,
    and then commits it: the batch would be lost. Ending the process like SIGKILL instead
    leaves it to the restarted worker, which resumes exactly (snapshots and marks); a
    supervisor (Docker's restart policy, systemd) restarts it.
    """
    _exit_at_once(
        EXIT_UNEXPECTED,
        "unexpected error in a batch of %d messages; exiting (code %d) without acknowledging it",
        messages, EXIT_UNEXPECTED, exc_info=True,
    )  # fmt: skip


def exit_refused(exc: SnapshotError) -> NoReturn:
    """End the worker at once, in one line that says what to do, on a snapshot it cannot
    restore (a newer format, damaged bytes), acknowledging nothing: a supervisor's restart
    meets the same snapshot until the operator acts."""
    _exit_at_once(EXIT_STATE_REFUSED, "cannot restore the worker's state; exiting (code %d): %s",
                  EXIT_STATE_REFUSED, exc)  # fmt: skip


def exit_stop_timed_out(timeout_s: float) -> NoReturn:
    """End the worker at once: it was asked to stop ``timeout_s`` ago and has not. Faust's
    stop waits for the consumer to leave its group, which can hang while the group rebalances
    (members that left, one that no longer answers), and for a batch to be stored, which waits
    out a ClickHouse outage. Ending like SIGKILL loses and duplicates nothing: what was not
    acknowledged is read again by the partitions' next owner, from their snapshots and marks."""
    _exit_at_once(
        EXIT_STOP_TIMED_OUT,
        "asked to stop %.0f s ago and not stopped yet (a rebalance or a ClickHouse outage under "
        "way?); exiting (code %d) without acknowledging more: the next owner of its partitions "
        "resumes from their snapshots", timeout_s, EXIT_STOP_TIMED_OUT,
    )  # fmt: skip


def _exit_at_once(code: int, message: str, *args: object, exc_info: bool = False) -> NoReturn:
    """Log ``message`` as critical and end the process with ``code``, running nothing else
    (no Faust shutdown that would acknowledge what is in hand)."""
    log.critical(message, *args, exc_info=exc_info or None)  # None: no traceback at all
    logging.shutdown()
    os._exit(code)


def _owned(app: faust.App, topic: str) -> list[TP]:
    """The partitions of ``topic`` assigned to this worker now."""
    return [tp for tp in app.consumer.assignment() if tp.topic == topic]


def _by_partition(batch: Sequence[Any], topic: str) -> dict[int, list[Message]]:
    groups: dict[int, list[Message]] = defaultdict(list)
    for event in batch:
        partition = event.message.partition
        groups[partition].extend(
            Message(r.value, topic=topic, partition=partition, offset=r.offset)
            for r in event.message.value
        )
    return groups


def _dlq_headers(dead: DeadLetter) -> list[tuple[str, bytes]]:
    return [
        ("reason", dead.reason.encode()),
        ("rule", dead.rule.encode()),
        ("source_topic", dead.topic.encode()),
        ("source_partition", str(dead.partition).encode()),
        ("source_offset", str(dead.offset).encode()),
    ]


def run_worker(
    settings: Settings, loglevel: str = "WARNING", instruments: Instruments | None = None
) -> None:
    """Run the worker until SIGTERM/SIGINT (blocking); if it has not stopped
    ``worker.stop_timeout_s`` after the signal, :func:`exit_stop_timed_out`."""
    from faust.worker import Worker

    class StoppingWorker(Worker):
        """Faust's worker, with a deadline on its stop once a signal has asked for it."""

        def _schedule_shutdown(self, signum: signal.Signals) -> None:
            if not self._signal_stop_time:  # the first signal: later ones change nothing
                deadline = threading.Timer(
                    settings.worker.stop_timeout_s,
                    exit_stop_timed_out,
                    (settings.worker.stop_timeout_s,),
                )
                deadline.daemon = True
                deadline.start()
            super()._schedule_shutdown(signum)

    app = create_app(settings, instruments)
    StoppingWorker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
