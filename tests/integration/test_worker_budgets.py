"""Budget alerts from the real worker on the real broker, through a SIGKILL: each tenant's daily
budget is 90 % of what it spends in the stream, so every threshold (50, 80, 100 %) is crossed
during it, before the kill or after it. Each fires once: one alert id per tenant and
threshold in ClickHouse and on the alerts topic, whatever the restarted worker read again, and
the same tenants and thresholds as the in-process topology."""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.budgets import Budget, format_budgets
from pipeline.config import Settings
from pipeline.embedded import AlertsWriter, replay_file
from pipeline.events import encode_event
from pipeline.pricing import PriceTable, cost_units
from pipeline.simulate import FleetConfig, simulate
from pipeline.topology import Topology
from tests.fixtures.kafka import consume_all
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


def test_budget_alerts_fire_once_through_a_crash(kafka_bootstrap: str, tmp_path: Path) -> None:
    config = FleetConfig(tenants=6, rate=30.0, hours=2.0, seed=3, start=T0)
    events = [e for batch in simulate(config) for e in batch.to_events()]
    prices = PriceTable(Settings().prices, Settings().default_price)
    spent: dict[str, int] = defaultdict(int)
    for event in events:
        spent[event.tenant_id] += cost_units(prices.event_cost(event))
    budgets = [
        Budget(entity_type="tenant", entity_id=tenant, period="day", unit="usd",
               amount=Decimal(units * 9 // 10) / 10**9)
        for tenant, units in sorted(spent.items())
    ]  # fmt: skip
    budgets_file = tmp_path / "budgets.toml"
    budgets_file.write_text(format_budgets(budgets))
    settings = Settings(budgets={"file": budgets_file})
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"".join(encode_event(e) + b"\n" for e in events))
    expected_file = tmp_path / "expected.jsonl"
    with expected_file.open("wb") as fh:
        replay_file(events_file, settings, [AlertsWriter(fh)], Topology(settings, 4))
    expected = {
        (a["entity_id"], a["evidence"]["threshold"]["value"])
        for a in map(json.loads, expected_file.read_text().splitlines())
        if a["kind"] == "budget_overrun"
    }
    assert expected == {(b.entity_id, t) for b in budgets for t in (0.5, 0.8, 1.0)}

    env, topic, group = fresh_worker_env(kafka_bootstrap, tmp_path)
    env["COMPUTEWATCH_BUDGETS_FILE"] = str(budgets_file)
    log = tmp_path / "worker.log"
    messages = [(e.tenant_id.encode(), encode_event(e)) for e in events]
    # The last fifth (where every 100 % budget is crossed, at 90 % of a tenant's spend) is sent
    # only after the kill: however far the worker got before the kill landed, some alerts are
    # still to come (a kill after all of them had been raised would test nothing).
    later = len(messages) * 4 // 5
    produce(kafka_bootstrap, topic, messages[:later])
    minutes = Settings(kafka={"consumer_group": group}).kafka.minutes_topic
    kill_mid_stream(
        env, log, kafka_bootstrap, group, topic, total=len(events), after=3 / 5, started=[minutes]
    )
    killed = {
        (row[0], row[1]) for row in query(
            env, "SELECT entity_id, JSONExtractFloat(evidence, 'threshold', 'value') FROM alerts "
            "FINAL WHERE kind = 'budget_overrun'")
    }  # fmt: skip
    produce(kafka_bootstrap, topic, messages[later:])
    worker = start_worker(env, log)
    try:
        wait_consumed(worker, kafka_bootstrap, group, topic)
        wait_consumed(worker, kafka_bootstrap, group, minutes)
    finally:
        stop_worker(worker, log)

    assert "fleet stage: state restored" in log.read_text()
    # killed once 3/5 were committed (at 4/5 a quiet machine's worker committed the last 50,000
    # events between two polls); the restarted worker raised the rest (how many fired before
    # the kill depends on how far the fleet stage had got)
    assert len(killed) < len(expected)
    stored = query(
        env,
        "SELECT entity_id, JSONExtractFloat(evidence, 'threshold', 'value'), alert_id, "
        "JSONExtractFloat(evidence, 'spend', 'value'), JSONExtractFloat(evidence, 'budget', "
        "'value') FROM alerts FINAL WHERE kind = 'budget_overrun'",
    )
    ids: dict[tuple[str, float], set[str]] = defaultdict(set)
    for entity, threshold, alert_id, spend, budget in stored:
        ids[(entity, threshold)].add(str(alert_id))
        assert spend >= threshold * budget
    on_topic = [json.loads(m.value) for m in consume_all(kafka_bootstrap, env[ALERTS])]
    for alert in on_topic:
        if alert["kind"] == "budget_overrun":
            ids[(alert["entity_id"], alert["evidence"]["threshold"]["value"])].add(
                alert["alert_id"])
    assert set(ids) == expected
    assert all(len(found) == 1 for found in ids.values()), ids
