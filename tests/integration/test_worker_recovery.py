"""A worker that dies after writing a batch's rows but before saving its snapshot, or in the
middle of writing them: the next worker writes none of those rows again, in ``events`` or in
the usage rollups.

This is ``PartitionEngines`` as the Faust agent drives it (``process`` each partition's
messages, then ``commit``), on the real engine and the embedded ClickHouse, without Kafka: the
crash and the redelivery that follows are spelled out, so the test is deterministic. After a
restart Kafka redelivers from the group's committed offset, which may lag the snapshot's, so the
first batches can hold only messages the snapshot already covers, or only dead letters.
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.config import Settings
from pipeline.events import encode_event
from pipeline.records import Message
from pipeline.simulate import FleetConfig, simulate
from pipeline.storage import ClickHouseSink, SinkUnavailable, Store
from pipeline.stream import PartitionEngines

INVALID: Final = range(1_000, 1_010)  # offsets of messages that are dead letters
SNAPSHOT_AT: Final = 999  # the dead worker's last snapshot covers offsets 0..999
DIED_AFTER: Final = 2_000  # it had also written (some of) the rows of offsets 1000..1999


def wire_messages(partition: int = 0) -> list[Message]:
    config = FleetConfig(tenants=3, rate=6.0, hours=0.2, seed=2 + partition)
    events = [e for b in simulate(config) for e in b.to_events()]
    values = [encode_event(e) for e in events]
    for offset in INVALID:
        values.insert(offset, b"{not json")
    return [Message(v, "compute.events", partition, offset=i) for i, v in enumerate(values)]


class Killed(BaseException):
    """SIGKILL, in-process: nothing the worker does after it happens."""


class DiesWriting:
    """The real client, until the worker is killed in the middle of its ``n``-th events insert."""

    def __init__(self, client: Client, n: int) -> None:
        self.client, self.n = client, n

    def insert_arrow(self, table: str, *args: Any, **kwargs: Any) -> Any:
        if table == "events":
            self.n -= 1
            if self.n == 0:
                raise Killed
        return self.client.insert_arrow(table, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


class Frozen:
    """The real client, whose events inserts stop landing, after ``landed`` more, while the
    worker is frozen (its requests wait in the socket), and land when it is thawed."""

    def __init__(self, client: Client) -> None:
        self.client, self.landed = client, None

    def freeze(self, landed: int) -> None:
        self.landed = landed

    def thaw(self) -> None:
        self.landed = None

    def insert_arrow(self, table: str, *args: Any, **kwargs: Any) -> Any:
        if table == "events" and self.landed is not None:
            if self.landed == 0:
                raise ConnectionError("frozen")
            self.landed -= 1
        return self.client.insert_arrow(table, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def worker(client: Any, settings: Settings, **sink_options: int) -> PartitionEngines:
    """A fresh worker process's engines: its own sink (nothing remembered) on the database."""
    sink = ClickHouseSink.from_settings(client, settings, **sink_options)
    return PartitionEngines(settings, Store(client, sink))


@pytest.mark.parametrize("died", ["after the flush", "writing"])
def test_rows_written_after_the_last_snapshot_are_not_written_again(
    clickhouse_client: Client, storage_settings: Settings, died: str
) -> None:
    messages = wire_messages()
    valid = len(messages) - len(INVALID)
    assert valid > 2_500

    if died == "after the flush":  # ... and before the snapshot
        dead = worker(clickhouse_client, storage_settings)
    else:  # events go out 300 at a time; the third insert of the second batch never ends
        client = DiesWriting(clickhouse_client, n=7)
        dead = worker(client, storage_settings, batch_rows=300)
    dead.process(0, messages[: SNAPSHOT_AT + 1])
    dead.commit([0])
    with contextlib.suppress(Killed):
        dead.process(0, messages[SNAPSHOT_AT + 1 : DIED_AFTER])
        dead.store.flush()
        raise Killed
    [[written]] = clickhouse_client.query("SELECT count() FROM events").result_rows
    assert SNAPSHOT_AT + 1 < written <= DIED_AFTER - len(INVALID)

    restarted = worker(clickhouse_client, storage_settings)
    redelivered = [(500, 1_000), (1_000, 1_010), (1_010, 1_500), (1_500, 2_500), (2_500, None)]
    for start, end in redelivered:  # from a committed offset behind the snapshot's
        restarted.process(0, messages[start:end])
        restarted.commit([0])

    c = clickhouse_client
    [[rows, distinct]] = c.query("SELECT count(), uniqExact(event_id) FROM events").result_rows
    [[hourly]] = c.query("SELECT sum(requests) FROM usage_hourly").result_rows
    [[daily]] = c.query("SELECT sum(requests) FROM usage_daily").result_rows
    assert (rows, distinct, hourly, daily) == (valid, valid, valid, valid)


@pytest.mark.parametrize(
    ("batch_rows", "landed"),
    [(5_000, 0), (300, 5)],  # each step one batch, none landed; 300 a batch, 1 of partition 1's
)
def test_a_worker_frozen_in_a_step_writes_nothing_twice_once_it_resumes(
    clickhouse_client: Client, storage_settings: Settings, batch_rows: int, landed: int
) -> None:
    """A worker frozen while it writes a step of partitions 0 and 1 resumes after another
    worker took partition 1 and replayed that step, and writes the rows it held: ClickHouse
    drops them, as the other worker wrote the same batches (the same dedup tokens)."""
    streams = {p: wire_messages(p) for p in (0, 1)}
    valid = DIED_AFTER + len(streams[1]) - 2 * len(INVALID)  # partition 0 to DIED_AFTER
    client = Frozen(clickhouse_client)
    frozen = worker(client, storage_settings, batch_rows=batch_rows)
    for partition, messages in streams.items():
        frozen.process(partition, messages[: SNAPSHOT_AT + 1])
    frozen.commit([0, 1])
    client.freeze(landed)
    outs = {  # one batch of both partitions: the marks, then the rows
        p: frozen.step(p, messages[SNAPSHOT_AT + 1 : DIED_AFTER]) for p, messages in streams.items()
    }
    frozen.mark_written([0, 1])
    for partition, out in outs.items():
        frozen.store_step(partition, out)
    with contextlib.suppress(SinkUnavailable):
        frozen.store.flush()  # ... and it freezes with rows unwritten

    taker = worker(clickhouse_client, storage_settings, batch_rows=batch_rows)
    taker.restore(1)  # the group gives partition 1 to another worker
    assert taker.unsettled(1) == (SNAPSHOT_AT + 1, DIED_AFTER - 1)
    taker.process(1, streams[1][SNAPSHOT_AT + 1 : DIED_AFTER])  # read back: one step
    assert taker.unsettled(1) is None
    taker.process(1, streams[1][SNAPSHOT_AT + 1 :])  # what the group delivers
    taker.commit([1])

    client.thaw()
    frozen.store.flush()  # it resumes and writes what it held

    c = clickhouse_client
    [[distinct]] = c.query("SELECT uniqExact(event_id) FROM events").result_rows
    [[hourly]] = c.query("SELECT sum(requests) FROM usage_hourly").result_rows
    [[daily]] = c.query("SELECT sum(requests) FROM usage_daily").result_rows
    assert (distinct, hourly, daily) == (valid, valid, valid)


def test_seen_ids_come_back_from_their_chunks_and_forgotten_generations_are_deleted(
    clickhouse_client: Client, storage_settings: Settings
) -> None:
    worker_settings = storage_settings.worker.model_copy(update={"dedupe_max_ids": 400})
    settings = storage_settings.model_copy(update={"worker": worker_settings})
    messages = [m for m in wire_messages() if m.offset not in INVALID]
    first = worker(clickhouse_client, settings)
    for start in range(0, 2_100, 300):  # 2,100 ids in 7 commits: generations of 200 ids
        first.process(0, messages[start : start + 300])
        first.commit([0])
    seen = first.engines[0].seen
    assert seen.generation == 10

    restarted = worker(clickhouse_client, settings)
    again = restarted.restore(0).seen
    assert (again.generation, len(again)) == (seen.generation, len(seen))
    current, previous, forgotten = messages[2_050], messages[1_850], messages[1_000]
    replayed = [Message(m.value, m.topic, 0, 3_000 + i) for i, m in enumerate([current, previous])]
    assert restarted.step(0, replayed).duplicates == 2  # remembered through a restart
    replayed = [Message(forgotten.value, forgotten.topic, 0, 3_002)]
    assert restarted.step(0, replayed).duplicates == 0  # forgotten, as without the restart

    keys = clickhouse_client.query(
        "SELECT state_key FROM engine_state FINAL WHERE position(state_key, '#seen/') > 0"
    ).result_rows
    generations = {int(key.split("#seen/")[1].split("/")[0]) for [key] in keys}
    assert generations == {seen.generation - 1, seen.generation}
    [[snapshot_bytes]] = clickhouse_client.query(
        "SELECT length(state) FROM engine_state FINAL WHERE state_key = {k:String}",
        parameters={"k": first.key(0)},
    ).result_rows
    assert snapshot_bytes < len(first.engines[0].snapshot())  # the ids are not in it
