"""Migrations: apply from empty, no-op on re-run, refuse a newer schema, TTL from settings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.config import ClickHouseSettings
from pipeline.storage.client import connect, quote_database
from pipeline.storage.migrations import (
    MigrationError,
    SchemaNotReady,
    SchemaTooNew,
    check_schema,
    discover,
    migrate,
    schema_version,
)

TABLES = {
    "alert_triage",
    "alerts",
    "budgets",
    "dead_letters",
    "engine_state",
    "events",
    "metrics_1m",
    "schema_migrations",
    "usage_daily",
    "usage_daily_mv",
    "usage_hourly",
    "usage_hourly_mv",
}


@pytest.fixture
def empty_client(clickhouse_settings: ClickHouseSettings) -> Iterator[Client]:
    client = connect(clickhouse_settings, create_database=True)
    try:
        yield client
    finally:
        client.command(f"DROP DATABASE IF EXISTS {quote_database(clickhouse_settings.database)}")
        client.close()


def tables(client: Client, database: str) -> set[str]:
    rows = client.query(
        "SELECT name FROM system.tables WHERE database = {db:String}", parameters={"db": database}
    ).result_rows
    return {r[0] for r in rows}


def test_apply_from_empty_then_rerun_is_a_no_op(
    empty_client: Client, clickhouse_settings: ClickHouseSettings
) -> None:
    db = clickhouse_settings.database
    with pytest.raises(SchemaNotReady, match="computewatch migrate"):
        check_schema(empty_client, db)
    applied = migrate(empty_client, clickhouse_settings)
    assert [m.version for m in applied] == [m.version for m in discover()] == [1, 2, 3, 4, 5, 6]
    assert tables(empty_client, db) == TABLES
    assert check_schema(empty_client, db) == 6
    assert migrate(empty_client, clickhouse_settings) == []
    recorded = empty_client.query("SELECT version FROM schema_migrations ORDER BY version")
    assert [r[0] for r in recorded.result_rows] == [1, 2, 3, 4, 5, 6]


def test_refuses_a_newer_schema(
    clickhouse_client: Client, clickhouse_settings: ClickHouseSettings
) -> None:
    latest = discover()[-1].version
    clickhouse_client.insert(
        "schema_migrations",
        [[latest + 1, "from_the_future", "x", datetime.now(UTC)]],
        column_names=["version", "name", "checksum", "applied_at"],
    )
    assert schema_version(clickhouse_client, clickhouse_settings.database) == latest + 1
    with pytest.raises(SchemaTooNew, match=f"version {latest + 1}, newer than the {latest}"):
        migrate(clickhouse_client, clickhouse_settings)
    with pytest.raises(SchemaTooNew):
        check_schema(clickhouse_client, clickhouse_settings.database)


def test_ttl_comes_from_settings_and_follows_a_change(
    empty_client: Client, clickhouse_settings: ClickHouseSettings
) -> None:
    short = clickhouse_settings.model_copy(update={"events_ttl_days": 30})
    migrate(empty_client, short)

    def engine(table: str) -> str:
        return str(
            empty_client.query(
                "SELECT engine_full FROM system.tables"
                " WHERE database = {db:String} AND name = {t:String}",
                parameters={"db": short.database, "t": table},
            ).result_rows[0][0]
        )

    assert "TTL toDateTime(ts) + toIntervalDay(30)" in engine("events")
    assert "TTL" not in engine("usage_daily")  # bills outlive raw events
    migrate(empty_client, short.model_copy(update={"events_ttl_days": 90}))
    assert "toIntervalDay(90)" in engine("events") and "toIntervalDay(90)" in engine("dead_letters")


def test_interrupted_migration_is_completed_by_the_next_run(
    empty_client: Client, clickhouse_settings: ClickHouseSettings, tmp_path: Path
) -> None:
    known = discover()
    for migration in known:
        (tmp_path / migration.path.name).write_text(migration.text)
    latest = known[-1].version
    broken = tmp_path / f"{latest + 1:03d}_broken.sql"
    broken.write_text(
        "CREATE TABLE IF NOT EXISTS {db}.extra (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
        "CREATE TABLE IF NOT EXISTS {db}.broken (x UInt8) ENGINE = NoSuchEngine;\n"
    )
    with pytest.raises(Exception, match="NoSuchEngine"):
        migrate(empty_client, clickhouse_settings, schema_dir=tmp_path)
    assert schema_version(empty_client, clickhouse_settings.database) == latest
    broken.write_text(
        "CREATE TABLE IF NOT EXISTS {db}.extra (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
    )
    assert [m.version for m in migrate(empty_client, clickhouse_settings, tmp_path)] == [latest + 1]


def test_bad_file_names_and_database_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_x.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNN_name"):
        discover(tmp_path)
    with pytest.raises(ValueError, match="database name"):
        quote_database("cw`; DROP DATABASE x")
