"""The full worker on one process: ``computewatch worker`` consuming the pre-produced topic.

The real command in a child process — validation, metrics windows, detectors, alerts, the
ClickHouse sink into a fresh embedded-engine path, engine snapshots — with a fresh consumer
group. The bench waits until the group has committed the topic's end offsets, stops the
worker (SIGTERM) and reads its path (:mod:`pipeline.bench.chstats`): events per second from
the end of the first engine step to the last event row, by the sink's ``ingested_at`` stamps.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.bench.kafka import Broker, bench_name
from pipeline.bench.limit import ConsumeResult
from pipeline.bench.processes import Child, WorkerEnv, run_json, start_worker

log = logging.getLogger(__name__)

POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class WorkerRun:
    """What one or more workers in one group did with a topic of ``events`` messages."""

    events: int
    rows_per_worker: tuple[int, ...]
    distinct: int
    alerts: int
    rate_rows: int
    rate_seconds: float
    busy_rows: int
    busy_seconds: float
    peak_rss_bytes: tuple[int, ...] = ()

    @property
    def rows(self) -> int:
        return sum(self.rows_per_worker)

    @property
    def exactly_once(self) -> bool:
        return self.rows == self.distinct == self.events

    @property
    def events_per_s(self) -> float:
        return self.rate_rows / self.rate_seconds if self.rate_seconds > 0 else 0.0

    @property
    def busy_events_per_s(self) -> float:
        return self.busy_rows / self.busy_seconds if self.busy_seconds > 0 else 0.0


def worker_envs(
    broker: Broker,
    topic: str,
    group: str,
    workdir: Path,
    count: int,
    partitions: int,
    session_timeout_s: float | None = None,
) -> list[WorkerEnv]:
    """One environment per worker: shared topic and group, its own chDB path."""
    alerts = broker.create_topic(bench_name("alerts"), partitions)
    dlq = broker.create_topic(bench_name("dlq"), partitions)
    return [
        WorkerEnv(
            bootstrap=broker.bootstrap,
            events_topic=topic,
            alerts_topic=alerts,
            dlq_topic=dlq,
            group=group,
            clickhouse_url=f"chdb://{workdir / f'{group}-{i}.chdb'}",
            partitions=partitions,
            session_timeout_s=session_timeout_s,
        )
        for i in range(count)
    ]


def read_run(
    envs: Sequence[WorkerEnv], events: int, workdir: Path, peak_rss: Sequence[int] = ()
) -> WorkerRun:
    """Read the stopped workers' paths (a child process) into a :class:`WorkerRun`."""
    found = run_json("pipeline.bench.chstats", [env.clickhouse_url for env in envs], workdir)
    return WorkerRun(
        events=events,
        rows_per_worker=tuple(int(p["rows"]) for p in found["paths"]),
        distinct=int(found["distinct"]),
        alerts=sum(int(p["alerts"]) for p in found["paths"]),
        rate_rows=int(found["rate_rows"]),
        rate_seconds=float(found["rate_seconds"]),
        busy_rows=int(found["busy_rows"]),
        busy_seconds=float(found["busy_seconds"]),
        peak_rss_bytes=tuple(peak_rss),
    )


def stop_all(children: Sequence[Child]) -> None:
    """SIGTERM every child at once, then wait for each (see :meth:`Child.stop`)."""
    for child in children:
        child.signal(signal.SIGTERM)
        child.signal(signal.SIGCONT)
    codes = [child.stop() for child in children]
    for child, code in zip(children, codes, strict=True):
        if code not in (0, -15):
            log.warning("%s exited with %s:\n%s", child.name, code, child.tail())


def measure_worker(
    broker: Broker, topic: str, events: int, workdir: Path, partitions: int, timeout: float
) -> WorkerRun:
    """One ``computewatch worker`` over the whole pre-produced ``topic``."""
    group = bench_name("worker")
    [env] = worker_envs(broker, topic, group, workdir, 1, partitions)
    ends = broker.end_offsets(topic)
    child = start_worker("worker", env, workdir)
    try:
        broker.wait_committed(group, topic, ends, child.check_alive, timeout)
        peak = child.peak_rss_bytes()
    finally:
        stop_all([child])
    run = read_run([env], events, workdir, [peak])
    log.info("one worker: %d rows, %.0f events/s", run.rows, run.events_per_s)
    return run


def measure_faust_ceiling(
    broker: Broker, topic: str, events: int, workdir: Path, partitions: int, timeout: float
) -> ConsumeResult:
    """The worker's Faust app with a counting agent over the whole ``topic`` (its ceiling)."""
    group = bench_name("faust")
    [env] = worker_envs(broker, topic, group, workdir, 1, partitions)
    result = workdir / f"{group}.json"
    argv = (sys.executable, "-m", "pipeline.bench.faust_ceiling", str(result), str(events))
    child = start_worker("faust", env, workdir, argv=argv)
    deadline = time.monotonic() + timeout
    try:
        while not result.exists():
            child.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the counting agent did not see {events} messages")
            time.sleep(POLL_S)
    finally:
        stop_all([child])
    found = json.loads(result.read_text())
    ceiling = ConsumeResult(found["messages"], found["rate_messages"], found["seconds"])
    log.info("Faust ceiling: %.0f events/s", ceiling.events_per_s)
    return ceiling
