"""Outages and overload (issue 9): every produced event ends in ClickHouse exactly once.

- the Kafka broker stopped for 30 s mid-stream and started again (a broker of the test's own,
  ``scripts/kafka.sh --dir``): the TelemetryEmitter buffers within its queue and delivers after
  the restart, the worker reconnects by itself;
- a burst of 10x the normal rate: consumer lag grows, then drains; the worker does not crash;
- ClickHouse unavailable for 60 s, in-process (the embedded engine lives inside the worker's
  process, so it cannot be taken away from outside): the worker's write path (engine step ->
  ``Store.write_step`` -> flush) pauses while inserts fail, the sink holds at most
  ``max_buffer_rows``, and afterwards everything lands once, in the events table and the usage
  rollups. The sink's own backpressure and retry-dedup rules are in ``test_storage_sink.py`` and
  ``test_storage_dedup.py``.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final

import pytest
from clickhouse_connect.driver.client import Client
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from msgspec.structs import replace

from pipeline.config import KafkaSettings, Settings
from pipeline.engine import Engine
from pipeline.events import encode_event, example_event
from pipeline.producer import TelemetryEmitter
from pipeline.records import Message
from pipeline.simulate import FleetConfig, simulate
from pipeline.storage.errors import SinkUnavailable
from pipeline.storage.faults import FlakyClient, InjectedFailure
from pipeline.storage.sink import ClickHouseSink, RetryPolicy
from pipeline.storage.store import Store
from pipeline.stream import EXIT_STOP_TIMED_OUT
from tests.fixtures.kafka import PrivateBroker, unique_topic_name
from tests.integration.test_worker_kafka import (
    produce,
    query,
    start_worker,
    stop_worker,
    wait_consumed,
    worker_env,
)

TENANTS: Final = [f"tenant-{i}" for i in range(8)]


# --- helpers: a steady feed through the TelemetryEmitter, a worker, consumer lag -----------------


@dataclass
class Feed:
    """Emits events at ``rate`` per second from a thread (the serving path of a fleet)."""

    emitter: TelemetryEmitter
    rate: float
    ids: list[str] = field(default_factory=list)
    refused: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Feed:
        self._thread = threading.Thread(target=self._run, name="feed", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)

    def _run(self) -> None:
        template = example_event()
        last, credit = time.monotonic(), 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            credit += (now - last) * self.rate  # the rate may change while this runs
            last, due = now, int(credit)
            credit -= due
            for _ in range(due):
                event_id = str(uuid.uuid4())
                event = replace(
                    template,
                    event_id=event_id,
                    ts=datetime.now(UTC),
                    tenant_id=TENANTS[len(self.ids) % len(TENANTS)],
                )
                if self.emitter.emit(event):
                    self.ids.append(event_id)
                else:
                    self.refused += 1
            time.sleep(0.005)


@contextmanager
def running_worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    worker = start_worker(env, log)
    try:
        yield worker
    finally:
        if worker.poll() is None:
            stop_worker(worker, log)


def lag(bootstrap: str, group: str, topic: str) -> int:
    """Messages in ``topic`` not yet committed by ``group`` (the end offsets minus commits)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        end = consumer.end_offsets(tps)
        try:
            committed = admin.list_group_offsets(group).get(group, {})
        except KafkaError:
            committed = {}
        return sum(end[tp] - (committed[tp].offset if tp in committed else 0) for tp in tps)
    finally:
        consumer.close()
        admin.close()


def wait_caught_up(
    bootstrap: str, group: str, topic: str, worker: Any, log: Path, below: int, steady_s: float = 3
) -> None:
    """Until the worker has committed offsets and has trailed the topic by fewer than ``below``
    at every sample for ``steady_s`` seconds: a worker that has just started is still settling
    (first commits, first minute closed) and its lag can rise again after one low sample."""
    deadline = time.monotonic() + 120
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    low_since: float | None = None
    try:
        while time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()[-3000:]
            try:
                started = bool(admin.list_group_offsets(group).get(group))
            except KafkaError:
                started = False
            now = time.monotonic()
            if not (started and lag(bootstrap, group, topic) < below):
                low_since = None
            elif low_since is None:
                low_since = now
            elif now - low_since >= steady_s:
                return
            time.sleep(0.5)
    finally:
        admin.close()
    raise AssertionError(f"the worker did not catch up steadily with {topic} within 120 s")


def stored_ids(env: dict[str, str]) -> tuple[int, set[str]]:
    """(rows in events, their distinct event ids), read after the worker has stopped."""
    rows = query(env, "SELECT event_id FROM events")
    return len(rows), {str(r[0]) for r in rows}


# --- the broker goes away for 30 s ---------------------------------------------------------------


@pytest.mark.kafka
def test_a_30_s_broker_outage_loses_and_duplicates_nothing(
    private_kafka: PrivateBroker, tmp_path: Path
) -> None:
    bootstrap = private_kafka.bootstrap
    topic, group = unique_topic_name("outage"), unique_topic_name("group")
    env, log = worker_env(bootstrap, tmp_path, topic, group), tmp_path / "worker.log"
    settings = KafkaSettings(bootstrap=bootstrap, events_topic=topic)
    with TelemetryEmitter(
        settings, queue_size=20_000, reconnect_backoff_s=(0.5, 2.0)
    ) as emitter:
        feed = Feed(emitter, rate=150).start()
        with running_worker(env, log) as worker:
            wait_caught_up(bootstrap, group, topic, worker, log, below=1_000)
            private_kafka.stop(keep=True)  # mid-stream: the feed goes on
            time.sleep(30)
            buffered = emitter.stats.pending
            private_kafka.start()
            time.sleep(5)
            feed.stop()
            assert emitter.flush(timeout=120), emitter.stats
            wait_consumed(worker, bootstrap, group, topic, timeout=180)
            assert worker.poll() is None, "the worker died with the broker"
    stats = emitter.stats
    assert buffered >= 150 * 20, f"only {buffered} events were waiting during the outage"
    assert feed.refused == 0 and (stats.dropped, stats.failed) == (0, 0), stats
    assert stats.sent == stats.emitted == len(feed.ids)
    rows, ids = stored_ids(env)
    assert (rows, ids) == (len(feed.ids), set(feed.ids)), "lost or duplicated events"


# --- a burst of 10x the normal rate --------------------------------------------------------------


@pytest.mark.kafka
def test_a_burst_of_10x_the_rate_builds_lag_that_drains(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group = unique_topic_name("burst"), unique_topic_name("group")
    env, log = worker_env(kafka_bootstrap, tmp_path, topic, group), tmp_path / "worker.log"
    settings = KafkaSettings(bootstrap=kafka_bootstrap, events_topic=topic)
    samples: dict[str, list[int]] = {"normal": [], "burst": [], "after": []}
    with TelemetryEmitter(settings) as emitter:
        feed = Feed(emitter, rate=300).start()
        with running_worker(env, log) as worker:
            wait_caught_up(kafka_bootstrap, group, topic, worker, log, below=300)
            for phase, rate, seconds in (("normal", 300, 5), ("burst", 3000, 5), ("after", 300, 3)):
                feed.rate = rate
                until = time.monotonic() + seconds
                while time.monotonic() < until:
                    samples[phase].append(lag(kafka_bootstrap, group, topic))
                    time.sleep(0.25)
                assert worker.poll() is None, log.read_text()[-3000:]
            feed.stop()
            assert emitter.flush(timeout=60), emitter.stats
            wait_consumed(worker, kafka_bootstrap, group, topic, timeout=120)
            final_lag = lag(kafka_bootstrap, group, topic)
    # Typical lag, not the largest sample: a single stall of a second or so (a minute closed and
    # written) can lift one sample at the normal rate to what a burst reaches.
    normal, burst = statistics.median(samples["normal"]), statistics.median(samples["burst"])
    print(f"lag: median {normal} at the normal rate, {burst} in the burst, then {final_lag}")
    assert burst > 3 * normal, f"lag did not grow: {samples}"
    assert final_lag == 0
    rows, ids = stored_ids(env)
    assert (rows, ids) == (len(feed.ids), set(feed.ids)), "lost or duplicated events"


@pytest.mark.kafka
def test_the_emitters_default_codec_is_one_the_worker_reads(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group = unique_topic_name("codec"), unique_topic_name("group")
    env, log = worker_env(kafka_bootstrap, tmp_path, topic, group), tmp_path / "worker.log"
    with TelemetryEmitter(KafkaSettings(bootstrap=kafka_bootstrap, events_topic=topic)) as emitter:
        for _ in range(100):
            emitter.emit(replace(example_event(), event_id=str(uuid.uuid4())))
        assert emitter.flush(timeout=30), emitter.stats
    with running_worker(env, log) as worker:
        wait_consumed(worker, kafka_bootstrap, group, topic, timeout=60)


# --- ClickHouse is unavailable, in the worker ----------------------------------------------------

# The worker with its real embedded ClickHouse behind a FlakyClient whose inserts fail for
# OUTAGE_S seconds from its first write to engine_state on (the first batch's write mark, made
# before any of its rows).
OUTAGE_WORKER: Final = """
import sys, time
from pipeline.storage import store
from pipeline.storage.faults import FlakyClient, InjectedFailure

OUTAGE_S, began = float(sys.argv[1]), []

class Outage(FlakyClient):
    def insert_arrow(self, table, data, *args, **kwargs):
        if began and time.monotonic() - began[0] < OUTAGE_S:
            raise InjectedFailure("ClickHouse unavailable (injected)")
        result = super().insert_arrow(table, data, *args, **kwargs)
        if table == "engine_state" and not began:
            began.append(time.monotonic())
        return result

real_connect = store.connect
store.connect = lambda *args, **kwargs: Outage(real_connect(*args, **kwargs))
sys.argv = ["computewatch", "worker", "--loglevel", "INFO"]
from pipeline.cli import main
main()
"""


@pytest.mark.kafka
def test_the_worker_waits_out_a_clickhouse_outage(kafka_bootstrap: str, tmp_path: Path) -> None:
    config = FleetConfig(tenants=4, rate=20.0, hours=0.25, seed=4)
    events = [e for b in simulate(config) for e in b.to_events()]
    topic, group = unique_topic_name("chdown"), unique_topic_name("group")
    env, log = worker_env(kafka_bootstrap, tmp_path, topic, group), tmp_path / "worker.log"
    produce(kafka_bootstrap, topic, [(e.tenant_id.encode(), encode_event(e)) for e in events])
    worker = subprocess.Popen(
        [sys.executable, "-c", OUTAGE_WORKER, "10"],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    crashed = False
    try:
        deadline = time.monotonic() + 90
        while (behind := lag(kafka_bootstrap, group, topic)) > 0:
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            if not crashed and "Crashed reason=" in log.read_text():
                crashed = True  # the agent died on a ClickHouse error: does the stream go on?
                time.sleep(10)
                assert lag(kafka_bootstrap, group, topic) < behind, "the stream stalled"
            time.sleep(1.0)
    except BaseException:
        worker.kill()  # a stalled worker takes a minute to give up on SIGTERM
        worker.wait(30)
        raise
    stop_worker(worker, log)
    text = log.read_text()
    assert "consumption paused, waiting" in text and "ClickHouse is back" in text, text[-3000:]
    rows, ids = stored_ids(env)
    assert (rows, ids) == (len(events), {e.event_id for e in events})


@pytest.mark.kafka
def test_a_worker_asked_to_stop_during_an_outage_exits_within_its_bound(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """SIGTERM while ClickHouse is down: Faust's stop would wait for the batch in hand to be
    stored, for as long as the outage lasts. The worker exits by itself once its stop timeout
    has passed (code 75), acknowledging nothing more, and a worker started after it stores
    every event once."""
    config = FleetConfig(tenants=4, rate=20.0, hours=0.1, seed=5)
    events = [e for b in simulate(config) for e in b.to_events()]
    topic, group = unique_topic_name("stopdown"), unique_topic_name("group")
    env, log = worker_env(kafka_bootstrap, tmp_path, topic, group), tmp_path / "worker.log"
    env["COMPUTEWATCH_WORKER_STOP_TIMEOUT_S"] = "8"
    produce(kafka_bootstrap, topic, [(e.tenant_id.encode(), encode_event(e)) for e in events])
    worker = subprocess.Popen(
        [sys.executable, "-c", OUTAGE_WORKER, "3600"],  # an outage longer than the test
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "consumption paused, waiting" not in log.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        asked = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    except BaseException:
        worker.kill()
        worker.wait(30)
        raise
    text = log.read_text()
    assert code == EXIT_STOP_TIMED_OUT, text[-3000:]
    assert "asked to stop 8 s ago and not stopped yet" in text
    assert time.monotonic() - asked < 30
    with running_worker(env, tmp_path / "second.log") as second:
        wait_caught_up(kafka_bootstrap, group, topic, second, tmp_path / "second.log", below=1)
    rows, ids = stored_ids(env)
    assert (rows, ids) == (len(events), {e.event_id for e in events})


# --- ClickHouse is unavailable for 60 s (in-process) ---------------------------------------------


class Clock:
    """The sink's clock and sleep: sleeping moves time on, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Outage(FlakyClient):
    """The real embedded client, whose inserts fail from ``start`` to ``end`` on ``clock``."""

    def __init__(self, client: Client, clock: Clock, start: float, end: float) -> None:
        super().__init__(client)
        self.clock, self.start, self.end = clock, start, end

    def insert_arrow(self, table: str, data: Any, *args: Any, **kwargs: Any) -> Any:
        if self.start <= self.clock() < self.end:
            self.insert_calls += 1
            raise InjectedFailure(f"ClickHouse unavailable (insert into {table})")
        return super().insert_arrow(table, data, *args, **kwargs)


def test_clickhouse_down_for_60_s_pauses_the_stream_and_loses_nothing(
    clickhouse_client: Client, storage_settings: Settings
) -> None:
    config = FleetConfig(tenants=4, rate=30.0, hours=0.5, seed=3)
    messages = [
        Message(encode_event(e), topic="compute.events", partition=0, offset=i)
        for i, e in enumerate(e for b in simulate(config) for e in b.to_events())
    ]
    batches = [messages[i : i + 1_000] for i in range(0, len(messages), 1_000)]
    clock = Clock()
    client = Outage(clickhouse_client, clock, start=10.0, end=70.0)
    sink = ClickHouseSink.from_settings(
        client, storage_settings, batch_rows=500, max_buffer_rows=2_000, clock=clock,
        sleep=clock.sleep, retry=RetryPolicy(attempts=4, base_s=0.5, max_s=4.0),
    )  # fmt: skip
    store = Store(client, sink)
    engine = Engine(storage_settings)
    events = metrics = peak = paused = largest_step = 0
    consumed_during_outage = []
    for batch in batches:  # what PartitionEngines.process + commit do for each batch
        clock.now += 1.0  # a batch every second of stream time
        if client.start <= clock.now < client.end:
            consumed_during_outage.append(batch[0].offset)
        out = engine.process(batch)
        events, metrics = events + len(out.events), metrics + len(out.metrics)
        largest_step = max(largest_step, len(out.events) + len(out.metrics) + len(out.alerts))
        for write in (partial(store.write_step, out), store.flush):
            while True:  # the stream waits here: no next batch until this one is stored
                try:
                    write()
                    break
                except SinkUnavailable:
                    paused += 1
                    clock.sleep(5.0)
                finally:
                    peak = max(peak, sink.buffered_rows)
    final = engine.finish()
    store.write_step(final)
    store.flush()
    assert clock.now > client.end and paused > 0 and client.insert_calls > 0
    assert len(consumed_during_outage) <= 1, "the stream kept consuming while ClickHouse was down"
    assert peak <= sink.max_buffer_rows + largest_step, peak  # bounded memory
    c = clickhouse_client
    [[rows, distinct]] = c.query("SELECT count(), uniqExact(event_id) FROM events").result_rows
    [[daily]] = c.query("SELECT sum(requests) FROM usage_daily").result_rows
    [[windows]] = c.query("SELECT count() FROM metrics_1m FINAL").result_rows
    assert (rows, distinct, daily) == (events, events, events) and events == len(messages)
    assert windows == metrics + len(final.metrics)
