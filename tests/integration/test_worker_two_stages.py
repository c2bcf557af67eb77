"""The worker's two stages on the real broker: a server's slowdown, spread over the events
topic's four partitions, is alerted once, when and as the in-process topology alerts it, even
when the worker is killed with SIGKILL in the middle and its fleet stage restored. An alert
raised again after the restart reaches the webhook and the alerts topic under the same
idempotency key (its ``alert_id``), so a receiver can drop the repeat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.embedded import AlertsWriter, replay_file
from pipeline.events import encode_event
from pipeline.simulate import FleetConfig
from pipeline.topology import Topology
from tests.fixtures.fleet import slowed_server
from tests.fixtures.kafka import consume_all
from tests.fixtures.webhook import Webhook
from tests.integration.test_worker_crash import fresh_worker_env, kill_mid_stream
from tests.integration.test_worker_kafka import (
    T0,
    produce,
    query,
    start_worker,
    stop_worker,
    wait_consumed,
)

pytestmark = pytest.mark.kafka
ALERTS = "COMPUTEWATCH_KAFKA_ALERTS_TOPIC"


def test_a_fleet_incident_is_alerted_once_through_a_crash(
    kafka_bootstrap: str, tmp_path: Path, webhook: Webhook
) -> None:
    # long enough that the worker, taking 20,000-event batches, is killed a few commits in
    config = FleetConfig(tenants=8, rate=30.0, hours=2.5, seed=7, start=T0)
    events, server = slowed_server(config, 100, 140)
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"".join(encode_event(e) + b"\n" for e in events))
    expected_file = tmp_path / "expected.jsonl"
    with expected_file.open("wb") as fh:
        replay_file(events_file, Settings(), [AlertsWriter(fh)], Topology(Settings(), 4))
    expected = [
        (a["entity_id"], a["detected_at"])
        for a in map(json.loads, expected_file.read_text().splitlines())
        if a["kind"] == "efficiency_degradation"
    ]
    assert [entity for entity, _ in expected] and {e for e, _ in expected} == {server}

    env, topic, group = fresh_worker_env(kafka_bootstrap, tmp_path)
    env["COMPUTEWATCH_WORKER_WEBHOOK_URL"] = webhook.url
    log = tmp_path / "worker.log"
    produce(kafka_bootstrap, topic, [(e.tenant_id.encode(), encode_event(e)) for e in events])
    minutes = Settings(kafka={"consumer_group": group}).kafka.minutes_topic
    # once the fleet stage has saved a snapshot (the group commits what it acknowledged, and it
    # acknowledges a batch of minutes only after saving it)
    kill_mid_stream(
        env, log, kafka_bootstrap, group, topic, total=len(events), after=1 / 5, started=[minutes]
    )

    worker = start_worker(env, log)
    try:
        wait_consumed(worker, kafka_bootstrap, group, topic)
        wait_consumed(worker, kafka_bootstrap, group, minutes)
    finally:
        stop_worker(worker, log)

    assert "fleet stage: state restored" in log.read_text()
    stored = query(
        env,
        "SELECT entity_id, formatDateTime(detected_at, '%Y-%m-%dT%H:%i:%SZ') FROM alerts FINAL "
        "WHERE kind = 'efficiency_degradation' ORDER BY detected_at",
    )
    assert [tuple(row) for row in stored] == expected
    identities = query(
        env,
        "SELECT count(), uniqExact(kind, entity_type, entity_id, window_start, window_end) "
        "FROM alerts FINAL",
    )
    assert identities[0][0] == identities[0][1], "an alert was written twice"
    on_topic = [json.loads(m.value) for m in consume_all(kafka_bootstrap, env[ALERTS])]
    slow_on_topic = {
        (a["entity_id"], a["detected_at"])
        for a in on_topic
        if a["kind"] == "efficiency_degradation"
    }
    assert slow_on_topic == set(expected)

    # a repeat, if any, carries the key of the alert it repeats
    ids = {row[0] for row in query(env, "SELECT alert_id FROM alerts FINAL")}
    paged = {
        row[0]
        for row in query(env, "SELECT alert_id FROM alerts FINAL WHERE severity != 'low'")
    }
    headers = [dict(m.headers) for m in consume_all(kafka_bootstrap, env[ALERTS])]
    assert [h["alert_id"].decode() for h in headers] == [a["alert_id"] for a in on_topic]
    assert {a["alert_id"] for a in on_topic} == ids
    assert [key for key, _ in webhook.posted] == [a["alert_id"] for _, a in webhook.posted]
    assert {key for key, _ in webhook.posted} == paged
