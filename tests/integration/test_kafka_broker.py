"""The local broker from scripts/kafka.sh works end to end: produce, then consume it all back."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from tests.fixtures.kafka import TOPIC_PARTITIONS, consume_all

pytestmark = pytest.mark.kafka


def test_fresh_topic_has_the_requested_partitions(
    kafka_admin: KafkaAdminClient, kafka_topic: str
) -> None:
    [described] = kafka_admin.describe_topics([kafka_topic])
    assert len(described["partitions"]) == TOPIC_PARTITIONS


def test_produced_messages_come_back_in_key_order(kafka_bootstrap: str, kafka_topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    for i in range(200):
        producer.send(kafka_topic, key=f"tenant-{i % 5}".encode(), value=str(i).encode())
    producer.flush(timeout=30)
    producer.close(timeout=10)

    records = consume_all(kafka_bootstrap, kafka_topic, timeout=30)

    assert sorted(int(r.value) for r in records) == list(range(200))
    for key in {r.key for r in records}:
        same_key = [r for r in records if r.key == key]
        assert len({r.partition for r in same_key}) == 1, "one key, one partition"
        values = [int(r.value) for r in sorted(same_key, key=lambda r: r.offset)]
        assert values == sorted(values), "order kept within a key"


def test_consume_all_of_an_empty_topic_returns_nothing(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    assert consume_all(kafka_bootstrap, kafka_topic, timeout=10) == []
