"""A worker killed with SIGKILL mid-stream, or ended by a bug, loses no event and writes none twice
after its restart."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from pipeline.events import AllocationEvent, encode_event
from pipeline.simulate import FleetConfig, simulate
from tests.fixtures.kafka import committed_total, unique_topic_name
from tests.integration.test_worker_kafka import (
    T0,
    produce,
    query,
    start_worker,
    stop_worker,
    wait_consumed,
    worker_env,
)

pytestmark = pytest.mark.kafka


def fresh_worker_env(bootstrap: str, tmp_path: Path) -> tuple[dict[str, str], str, str]:
    """A worker's environment on a fresh events topic and group, with the two."""
    topic, group = unique_topic_name("events"), unique_topic_name("group")
    return worker_env(bootstrap, tmp_path, topic, group), topic, group


def restart_and_count(
    env: dict[str, str],
    log: Path,
    bootstrap: str,
    group: str,
    topic: str,
    events: list[AllocationEvent],
) -> None:
    """Run a fresh worker to the end of ``topic``; every event must be stored once, in
    ``events`` and in the daily rollup."""
    worker = start_worker(env, log)
    try:
        wait_consumed(worker, bootstrap, group, topic)
    finally:
        stop_worker(worker, log)

    [[rows, distinct]] = query(env, "SELECT count(), uniqExact(event_id) FROM events")
    assert (rows, distinct) == (len(events), len(events))
    [[requests, tokens]] = query(
        env, "SELECT sum(requests), sum(reasoning_tokens) FROM usage_daily"
    )
    assert requests == len(events)
    assert tokens == sum(e.reasoning_tokens for e in events)


def kill_mid_stream(
    env: dict[str, str],
    log: Path,
    bootstrap: str,
    group: str,
    topic: str,
    *,
    total: int,
    after: float,
    started: Sequence[str] = (),
) -> None:
    """Start a worker and SIGKILL it (no flush, no snapshot, no commit) once the group has
    committed ``after`` of the ``total`` messages of ``topic``, and something of each topic in
    ``started``, before it reaches the end."""
    worker = start_worker(env, log)
    deadline = time.monotonic() + 120
    while committed_total(bootstrap, group, topic) < total * after or any(
        committed_total(bootstrap, group, other) == 0 for other in started
    ):
        assert worker.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the worker made no progress"
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    assert committed_total(bootstrap, group, topic) < total, "killed too late to matter"


def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # long enough that a worker taking 20,000-event batches is still busy a few commits in
    config = FleetConfig(tenants=6, rate=20.0, hours=3.0, seed=11, start=T0)
    events = [e for batch in simulate(config) for e in batch.to_events()]
    env, topic, group = fresh_worker_env(kafka_bootstrap, tmp_path)
    log = tmp_path / "worker.log"
    produce(kafka_bootstrap, topic, [(e.tenant_id.encode(), encode_event(e)) for e in events])

    kill_mid_stream(env, log, kafka_bootstrap, group, topic, total=len(events), after=1 / 4)

    restart_and_count(env, log, kafka_bootstrap, group, topic, events)


BUG_ON_SECOND_BATCH = """
import sys
from pipeline import stream
from pipeline.config import Settings

step, calls = stream.PartitionEngines.step, []

def step_with_a_bug(self, partition, messages):
    calls.append(partition)
    if len(calls) == 2:
        raise RuntimeError("a bug in the second step")
    return step(self, partition, messages)

stream.PartitionEngines.step = step_with_a_bug
stream.run_worker(Settings(), loglevel="INFO")
"""


def test_a_bug_in_a_batch_stops_the_worker_without_losing_the_batch(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Faust acknowledges a batch when the agent leaves it, error or not; the worker exits
    instead (code 70), and the batch it failed on is processed after the restart."""
    config = FleetConfig(tenants=6, rate=20.0, hours=0.5, seed=12, start=T0)
    events = [e for batch in simulate(config) for e in batch.to_events()]
    env, topic, group = fresh_worker_env(kafka_bootstrap, tmp_path)
    log = tmp_path / "worker.log"
    produce(kafka_bootstrap, topic, [(e.tenant_id.encode(), encode_event(e)) for e in events])

    buggy = subprocess.Popen(
        [sys.executable, "-c", BUG_ON_SECOND_BATCH], env=env, stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        code = buggy.wait(timeout=120)
    except subprocess.TimeoutExpired:
        code = None  # still running: Faust restarted the agent past the failed batch
    finally:
        buggy.kill()
    assert code == 70, log.read_text()[-3000:]
    assert "exiting (code 70) without acknowledging it" in log.read_text()
    assert committed_total(kafka_bootstrap, group, topic) < len(events)

    restart_and_count(env, log, kafka_bootstrap, group, topic, events)
