"""Shared fixtures: the real local Kafka broker and the embedded ClickHouse engine."""

pytest_plugins = ["tests.fixtures.kafka", "tests.fixtures.clickhouse"]
