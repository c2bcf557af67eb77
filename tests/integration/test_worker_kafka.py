"""The real path: simulated events -> real Kafka broker -> `computewatch worker` (Faust) ->
embedded ClickHouse, with a worker restart in the middle that must keep detector state.

The injected volume spike starts 5 minutes after the restart. The volume detector needs 30
minutes of warm-up, so only a worker that restored its state can raise the alert in time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from pipeline.events import encode_event
from pipeline.simulate import FleetConfig, VolumeSpike, build_fleet, simulate
from tests.fixtures.kafka import consume_all, unique_topic_name

pytestmark = pytest.mark.kafka

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RESTART_AT = T0 + timedelta(minutes=60)
INVALID = [b"{not json", b'{"schema_version": "2"}', b"[1, 2, 3]"]


def busiest_key(config: FleetConfig) -> str:
    fleet = build_fleet(config)
    rates = fleet.key_rates(RESTART_AT.timestamp() * 1000)
    return fleet.keys[int(rates.argmax())].id


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush(60)
    producer.close()


def wait_consumed(
    worker: subprocess.Popen[bytes], bootstrap: str, group: str, topic: str, timeout: float = 180.0
) -> None:
    """Until the group's committed offsets reach the topic's end offsets (or the worker dies)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise AssertionError(f"worker exited with {worker.returncode}")
            try:
                committed = admin.list_group_offsets(group).get(group, {})
            except KafkaError:  # the group or its coordinator does not exist yet
                committed = {}
            done = {tp: committed[tp].offset if tp in committed else 0 for tp in tps}
            if all(done[tp] >= end[tp] for tp in tps):
                return
            time.sleep(1.0)
        raise AssertionError(f"worker did not consume {topic} within {timeout} s")
    finally:
        consumer.close()
        admin.close()


def worker_env(
    bootstrap: str,
    tmp_path: Path,
    topic: str,
    group: str,
    inherited: Mapping[str, str] = os.environ,
) -> dict[str, str]:
    """A worker's environment: ``inherited`` plus the broker, ``topic`` with fresh alerts and
    dead-letter topics, ``group``, and its own embedded-engine path under ``tmp_path``."""
    return {
        **inherited,
        "COMPUTEWATCH_KAFKA_BOOTSTRAP": bootstrap,
        "COMPUTEWATCH_KAFKA_EVENTS_TOPIC": topic,
        "COMPUTEWATCH_KAFKA_ALERTS_TOPIC": unique_topic_name("alerts"),
        "COMPUTEWATCH_KAFKA_DLQ_TOPIC": unique_topic_name("dlq"),
        "COMPUTEWATCH_KAFKA_CONSUMER_GROUP": group,
        "COMPUTEWATCH_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
    }


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "worker", "--loglevel", "INFO"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def stop_worker(worker: subprocess.Popen[bytes], log: Path) -> None:
    if worker.poll() is not None:
        raise AssertionError("worker died:\n" + log.read_text()[-3000:])
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=60)
    except subprocess.TimeoutExpired as exc:
        worker.kill()
        raise AssertionError("worker did not stop on SIGTERM:\n" + log.read_text()[-3000:]) from exc


def query(env: dict[str, str], sql: str) -> list[list[object]]:
    """Run a query in a fresh process (the embedded engine is one process per data path)."""
    code = (
        "import json,sys\n"
        "from pipeline.config import Settings\n"
        "from pipeline.storage import connect\n"
        "c = connect(Settings().clickhouse)\n"
        "print(json.dumps(c.query(sys.argv[1]).result_rows, default=str))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, sql], env=env, capture_output=True, check=True, timeout=120
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_worker_end_to_end_with_restart(kafka_bootstrap: str, tmp_path: Path) -> None:
    config = FleetConfig(tenants=4, rate=12.0, hours=1.5, seed=5, start=T0)
    key = busiest_key(config)
    spike = VolumeSpike(
        entity_id=key,
        start=RESTART_AT + timedelta(minutes=5),
        end=RESTART_AT + timedelta(minutes=20),
        intensity=8.0,
        variant="blatant",
    )
    events = [e for batch in simulate(config, [spike]) for e in batch.to_events()]
    before = [e for e in events if e.ts < RESTART_AT]
    after = [e for e in events if e.ts >= RESTART_AT]
    assert len(before) > 20_000 and len(after) > 10_000

    events_topic = unique_topic_name("events")
    env = worker_env(kafka_bootstrap, tmp_path, events_topic, unique_topic_name("group"))
    log = tmp_path / "worker.log"

    def wire(batch: list) -> list[tuple[bytes | None, bytes]]:  # type: ignore[type-arg]
        return [(e.tenant_id.encode(), encode_event(e)) for e in batch]

    produce(kafka_bootstrap, events_topic, wire(before) + [(None, m) for m in INVALID])
    worker = start_worker(env, log)
    try:
        wait_consumed(
            worker, kafka_bootstrap, env["COMPUTEWATCH_KAFKA_CONSUMER_GROUP"], events_topic
        )
    finally:
        stop_worker(worker, log)

    duplicate = wire(before[:50])  # a producer retry: the same events again
    produce(kafka_bootstrap, events_topic, duplicate + wire(after))
    worker = start_worker(env, log)
    try:
        wait_consumed(
            worker, kafka_bootstrap, env["COMPUTEWATCH_KAFKA_CONSUMER_GROUP"], events_topic
        )
    finally:
        stop_worker(worker, log)

    assert "state restored" in log.read_text(), "the second worker did not restore its state"
    [[rows, distinct]] = query(env, "SELECT count(), uniqExact(event_id) FROM events")
    assert (rows, distinct) == (len(events), len(events))
    [[requests]] = query(env, "SELECT sum(requests) FROM usage_daily")
    assert requests == len(events), "usage rollups must count each event exactly once"
    [[dead]] = query(env, "SELECT count() FROM dead_letters")
    assert dead == len(INVALID)
    spikes = query(
        env,
        "SELECT entity_type, entity_id, detected_at FROM alerts FINAL "
        "WHERE kind = 'volume_spike' ORDER BY detected_at",
    )
    assert spikes and spikes[0][1] == key, spikes
    alerts_on_topic = consume_all(kafka_bootstrap, env["COMPUTEWATCH_KAFKA_ALERTS_TOPIC"])
    assert any(json.loads(m.value)["entity_id"] == key for m in alerts_on_topic)
    dlq = consume_all(kafka_bootstrap, env["COMPUTEWATCH_KAFKA_DLQ_TOPIC"])
    assert sorted(m.value for m in dlq) == sorted(INVALID)
    assert all(dict(m.headers)["reason"] for m in dlq)


def test_a_worker_started_before_its_topics_exist_reads_what_is_sent_after(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Faust reads only the topics present when it joins its group: the worker creates them
    first (before, it ignored a missing events topic until restarted)."""
    events_topic = unique_topic_name("events")
    env = worker_env(kafka_bootstrap, tmp_path, events_topic, unique_topic_name("group"))
    group = env["COMPUTEWATCH_KAFKA_CONSUMER_GROUP"]
    log = tmp_path / "worker.log"
    config = FleetConfig(tenants=3, rate=5.0, hours=0.1, seed=2, start=T0)
    events = [e for batch in simulate(config, []) for e in batch.to_events()]
    worker = start_worker(env, log)
    try:
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        deadline = time.monotonic() + 60
        while events_topic not in admin.list_topics() and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        [described] = admin.describe_topics([events_topic])
        admin.close()
        assert len(described["partitions"]) == 4
        wire = [(e.tenant_id.encode(), encode_event(e)) for e in events]
        produce(kafka_bootstrap, events_topic, wire)
        wait_consumed(worker, kafka_bootstrap, group, events_topic)
    finally:
        stop_worker(worker, log)

    assert f"created topic {events_topic}" in log.read_text()
    [[rows]] = query(env, "SELECT count() FROM events")
    assert rows == len(events) > 1_000
