"""Scale-out: two ``computewatch worker`` processes in one consumer group on one topic.

Each worker has its own embedded-engine path (chDB lets one process hold a path). Both join
the group while the topic is still empty; once the group is stable with partitions on both,
they are paused (SIGSTOP), the N events are produced, and both are resumed (SIGCONT) at the
same instant. So the run has no start-up rebalance and the producer does not compete with
the workers for the CPU. When N is so large that producing it could outlast the consumer
session timeout, that timeout is raised for these workers so the pause cannot expire them;
nothing else differs from ``computewatch worker``. Afterwards both paths are read:
exactly once means the union of event ids has N ids and the two paths hold N rows in total.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

from pipeline.bench.kafka import Broker, bench_name, produce_sync
from pipeline.bench.processes import Child, start_worker
from pipeline.bench.traffic import Wire
from pipeline.bench.worker import WorkerRun, read_run, stop_all, worker_envs

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 120.0
DEFAULT_SESSION_S = 15.0  # the worker's default consumer session timeout
SLOW_PRODUCE_PER_S = 20_000.0  # a conservative producing rate, to size the pause


def paused_session_timeout(events: int) -> float | None:
    """A session timeout that outlasts the pause while ``events`` are produced; None (the
    worker's default) when the default does.

    >>> paused_session_timeout(200_000), paused_session_timeout(1_000_000)
    (None, 82.5)
    """
    pause = events / SLOW_PRODUCE_PER_S + 5.0
    return None if pause <= DEFAULT_SESSION_S else pause * 1.5


def wait_members(broker: Broker, group: str, children: list[Child], count: int) -> None:
    """Until ``group`` is stable with ``count`` members (each holding partitions)."""
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while broker.stable_members(group) < count:
        for child in children:
            child.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} workers did not share {group} within {JOIN_TIMEOUT_S} s")
        time.sleep(0.5)


def measure_scaleout(
    broker: Broker, wire: Wire, workdir: Path, partitions: int, timeout: float, workers: int = 2
) -> WorkerRun:
    """``workers`` workers in one group over a fresh topic holding ``wire``'s events."""
    topic = broker.create_topic(bench_name("scaleout"), partitions)
    group = bench_name("scaleout")
    envs = worker_envs(
        broker,
        topic,
        group,
        workdir,
        workers,
        partitions,
        session_timeout_s=paused_session_timeout(len(wire)),
    )
    children = [start_worker(f"scaleout-{i}", env, workdir) for i, env in enumerate(envs)]
    try:
        wait_members(broker, group, children, workers)
        for child in children:
            child.signal(signal.SIGSTOP)
        produce_sync(broker.bootstrap, topic, wire)
        ends = broker.end_offsets(topic)
        for child in children:
            child.signal(signal.SIGCONT)

        def alive() -> None:
            for child in children:
                child.check_alive()

        broker.wait_committed(group, topic, ends, alive, timeout)
        peaks = [child.peak_rss_bytes() for child in children]
    finally:
        stop_all(children)
    run = read_run(envs, len(wire), workdir, peaks)
    log.info(
        "%d workers: rows %s, %d distinct, %.0f events/s",
        workers,
        run.rows_per_worker,
        run.distinct,
        run.events_per_s,
    )
    return run
