"""A worker frozen (SIGSTOP) past its group's session timeout while another worker takes its
partitions, then resumed (SIGCONT): nothing is lost, nothing written twice, no alert sent twice,
and events a producer sends again afterwards are recognised by whichever worker owns them then.

Both workers write to one store, as in production. No ClickHouse server runs on the test
machines and chDB lets one process hold a directory, so the store is one embedded engine
served over ClickHouse's HTTP interface by :mod:`tests.fixtures.clickhouse_http`: the workers
use clickhouse-connect's HTTP client, the server path of production, and the engine does the
SQL and the insert deduplication. The README's "The frozen worker and its shared store" says
what this proves and what it does not.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from pipeline.config import Settings
from pipeline.embedded import AlertsWriter, replay_file
from pipeline.events import encode_event
from pipeline.simulate import FleetConfig
from pipeline.topology import Topology
from tests.fixtures.fleet import slowed_server
from tests.fixtures.kafka import committed_total, consume_all
from tests.fixtures.webhook import Webhook
from tests.integration.test_worker_crash import fresh_worker_env
from tests.integration.test_worker_kafka import (
    T0,
    produce,
    query,
    start_worker,
    stop_worker,
    wait_consumed,
)

pytestmark = pytest.mark.kafka
SESSION_TIMEOUT_S = 10  # the group drops a member that has not sent a heartbeat for this long
ALERTS = "COMPUTEWATCH_KAFKA_ALERTS_TOPIC"
RETRIED = 500  # events sent again once A is back


@pytest.fixture
def shared_store(tmp_path: Path) -> Iterator[str]:
    """The URL of one embedded engine served over ClickHouse's HTTP interface, for every
    process of the test."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.clickhouse_http", str(tmp_path / "clickhouse")],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "clickhouse_http.log").open("ab"),
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().decode().strip()
        assert url.startswith("http://"), (tmp_path / "clickhouse_http.log").read_text()
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.2)


def members(bootstrap: str, group: str) -> int:
    """How many members the group has, once it is stable (else -1)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_groups([group])[group]
        return len(described["members"]) if described["group_state"] == "Stable" else -1
    finally:
        admin.close()


def test_a_frozen_worker_resumed_after_losing_its_partitions_writes_and_sends_nothing_twice(
    kafka_bootstrap: str, tmp_path: Path, shared_store: str, webhook: Webhook
) -> None:
    config = FleetConfig(tenants=8, rate=30.0, hours=2.5, seed=7, start=T0)
    events, server = slowed_server(config, 100, 140)
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"".join(encode_event(e) + b"\n" for e in events))
    expected_file = tmp_path / "expected.jsonl"
    with expected_file.open("wb") as fh:
        replay_file(events_file, Settings(), [AlertsWriter(fh)], Topology(Settings(), 4))
    expected = {
        (a["entity_id"], a["detected_at"])
        for a in map(json.loads, expected_file.read_text().splitlines())
        if a["kind"] == "efficiency_degradation"
    }
    assert expected and {entity for entity, _ in expected} == {server}

    env, topic, group = fresh_worker_env(kafka_bootstrap, tmp_path)
    env["COMPUTEWATCH_CLICKHOUSE_URL"] = shared_store
    env["COMPUTEWATCH_KAFKA_SESSION_TIMEOUT_S"] = str(SESSION_TIMEOUT_S)
    env["COMPUTEWATCH_WORKER_WEBHOOK_URL"] = webhook.url
    minutes = Settings(kafka={"consumer_group": group}).kafka.minutes_topic
    produce(kafka_bootstrap, topic, [(e.tenant_id.encode(), encode_event(e)) for e in events])
    retried = events[-RETRIED:]  # the last ones sent: B stores them (A is frozen before)

    # A owns every partition, and the fleet stage, and is frozen in the middle of the stream
    log_a, log_b = tmp_path / "worker_a.log", tmp_path / "worker_b.log"
    worker_a = start_worker(env, log_a)
    worker_b = None
    try:
        wait_until(
            lambda: committed_total(kafka_bootstrap, group, topic) >= len(events) / 4
            and committed_total(kafka_bootstrap, group, minutes) > 0,
            "worker A stores a quarter of the events and the fleet stage a batch",
        )
        worker_a.send_signal(signal.SIGSTOP)
        assert committed_total(kafka_bootstrap, group, topic) < len(events), "frozen too late"

        # B joins; the group waits out A's session, then B takes every partition to the end
        worker_b = start_worker(env, log_b)
        wait_consumed(worker_b, kafka_bootstrap, group, topic)
        wait_consumed(worker_b, kafka_bootstrap, group, minutes)
        assert "state restored" in log_b.read_text(), "B did not take over A's partitions"

        # A resumes with what it held, finds itself out of the group and joins again
        worker_a.send_signal(signal.SIGCONT)
        wait_until(lambda: members(kafka_bootstrap, group) == 2, "A is back in the group")

        # a producer retries events that B stored: whichever worker now owns their partition
        # restored B's state (not A's, older), so it recognises them
        produce(kafka_bootstrap, topic, [(e.tenant_id.encode(), encode_event(e)) for e in retried])
        wait_consumed(worker_a, kafka_bootstrap, group, topic)
        wait_consumed(worker_b, kafka_bootstrap, group, minutes)
        assert worker_b.poll() is None, log_b.read_text()[-3000:]
    finally:
        worker_a.send_signal(signal.SIGCONT)
        stop_worker(worker_a, log_a)
        if worker_b is not None:
            stop_worker(worker_b, log_b)

    [[rows, distinct]] = query(env, "SELECT count(), uniqExact(event_id) FROM events")
    assert (rows, distinct) == (len(events), len(events))
    [[requests, tokens]] = query(
        env, "SELECT sum(requests), sum(reasoning_tokens) FROM usage_daily"
    )
    assert (requests, tokens) == (len(events), sum(e.reasoning_tokens for e in events))
    stored = query(
        env,
        "SELECT entity_id, formatDateTime(detected_at, '%Y-%m-%dT%H:%i:%SZ') FROM alerts FINAL "
        "WHERE kind = 'efficiency_degradation'",
    )
    assert {tuple(row) for row in stored} == expected
    [[alerts, identities]] = query(
        env,
        "SELECT count(), uniqExact(kind, entity_type, entity_id, window_start, window_end) "
        "FROM alerts FINAL",
    )
    assert alerts == identities, "an alert was written twice"
    sent = [dict(m.headers)["alert_id"].decode() for m in consume_all(kafka_bootstrap, env[ALERTS])]
    assert sorted(sent) == sorted(set(sent)), "an alert was sent twice on the alerts topic"
    assert set(sent) == {row[0] for row in query(env, "SELECT alert_id FROM alerts FINAL")}
    posted = [key for key, _ in webhook.posted]
    assert sorted(posted) == sorted(set(posted)), "an alert was posted twice to the webhook"
