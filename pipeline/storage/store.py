"""Composition helpers for the command line, replay/demo and the worker: one call each.

- :func:`open_store` — connect, migrate (or check) and hold a sink; ``store.write_step(out)``
  is an engine-output handler that waits out backpressure.
- :func:`migrate_database` — what ``computewatch migrate`` runs.
- :func:`export_usage` — what ``computewatch usage`` runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from pipeline.budgets import budgets_from_settings
from pipeline.config import Settings
from pipeline.events import AllocationEvent
from pipeline.records import StepOutput
from pipeline.storage.budgets import seed_budgets
from pipeline.storage.client import connect, describe_url
from pipeline.storage.errors import SinkBackpressure
from pipeline.storage.migrations import Migration, check_schema, migrate
from pipeline.storage.sink import ClickHouseSink, Sink
from pipeline.storage.usage import usage_report, write_usage

__all__ = ["Store", "export_usage", "migrate_database", "open_store"]

logger = logging.getLogger(__name__)


@dataclass
class Store:
    """A client on the computewatch database and the sink writing to it."""

    client: Client
    sink: Sink

    def save_snapshots(self, snapshots: Sequence[tuple[str, int, bytes]]) -> None:
        """Store ``(key, offset, state)`` engine snapshots, each covering messages up to its
        offset, in one insert (after the rows they made: call :meth:`flush` first, so restored
        state never counts rows that were not written)."""
        if not snapshots:
            return
        keys, offsets, states = zip(*snapshots, strict=True)
        table = pa.table(
            {
                "state_key": pa.array(keys, pa.string()),
                "kafka_offset": pa.array(offsets, pa.int64()),
                "saved_at": pa.array([datetime.now(UTC)] * len(keys), pa.timestamp("ms", "UTC")),
                "state": pa.array(states, pa.binary()),
            }
        )
        self.client.insert_arrow("engine_state", table)

    def load_snapshot(self, key: str) -> tuple[int, bytes] | None:
        """The latest snapshot for ``key`` as ``(offset, state)``, or None."""
        result = self.client.query(
            "SELECT kafka_offset, state FROM engine_state FINAL WHERE state_key = {key:String}",
            parameters={"key": key},
            column_formats={"state": "bytes"},
        )
        if not result.result_rows:
            return None
        offset, state = result.result_rows[0]
        return int(offset), bytes(state)

    def load_snapshots(self, prefix: str, max_offset: int) -> list[tuple[str, bytes]]:
        """The latest ``(key, state)`` of every key starting with ``prefix`` whose offset is at
        most ``max_offset``, by key."""
        result = self.client.query(
            "SELECT state_key, state FROM engine_state FINAL"
            " WHERE startsWith(state_key, {prefix:String}) AND kafka_offset <= {offset:Int64}"
            " ORDER BY state_key",
            parameters={"prefix": prefix, "offset": max_offset},
            column_formats={"state": "bytes"},
        )
        return [(str(key), bytes(state)) for key, state in result.result_rows]

    def delete_snapshots(self, prefix: str, below: str) -> None:
        """Delete the snapshots whose keys start with ``prefix`` and sort before ``below``."""
        self.client.command(
            "DELETE FROM engine_state"
            " WHERE startsWith(state_key, {prefix:String}) AND state_key < {below:String}",
            parameters={"prefix": prefix, "below": below},
        )

    def stored_event_ids(self, events: Sequence[AllocationEvent]) -> set[str]:
        """The ids of ``events`` (lower case, as parsed) that the events table already holds.

        Looked up within the events' tenants and time span, the table's sorting key, so only
        the parts and granules that can hold them are read.
        """
        if not events:
            return set()
        micros = [round(e.ts.timestamp() * 1e6) for e in events]
        result = self.client.query(
            "SELECT DISTINCT toString(event_id) FROM events"
            " WHERE tenant_id IN {tenants:Array(String)}"
            " AND ts BETWEEN fromUnixTimestamp64Micro({first:Int64}, 'UTC')"
            " AND fromUnixTimestamp64Micro({last:Int64}, 'UTC')"
            # as Array(String), chDB found no common type with UUID once there were 40,000 ids
            " AND event_id IN {ids:Array(UUID)}",
            parameters={
                "tenants": sorted({e.tenant_id for e in events}),
                "first": min(micros) - 1_000_000,  # a second's margin for float rounding
                "last": max(micros) + 1_000_000,
                "ids": [e.event_id for e in events],
            },
        )
        return {row[0] for row in result.result_rows}

    def flush(self) -> None:
        self.sink.flush()

    def write_step(self, out: StepOutput) -> None:
        """Hand one engine step to the sink; when it pushes back, flush (blocking, with
        retries) and offer the step again. Raises ``SinkUnavailable`` if ClickHouse stays down."""
        while True:
            try:
                self.sink.add_step(out)
                return
            except SinkBackpressure:
                self.sink.flush()


@contextmanager
def open_store(
    settings: Settings, *, migrate_schema: bool = True, **sink_options: Any
) -> Iterator[Store]:
    """Connect to ``settings.clickhouse``, bring the schema up to date and seed the budgets
    file's new budgets (or only check the schema when ``migrate_schema`` is False) and yield a
    :class:`Store`; flush and close on exit."""
    ch = settings.clickhouse
    client = connect(ch, create_database=migrate_schema)
    try:
        if migrate_schema:
            migrate(client, ch)
            seed_budgets(client, budgets_from_settings(settings))
        else:
            check_schema(client, ch.database)
        sink = ClickHouseSink.from_settings(client, settings, **sink_options)
        logger.info("storing to %s database %s", describe_url(ch.url), ch.database)
        yield Store(client, sink)
        sink.close()
    finally:
        client.close()


def migrate_database(settings: Settings) -> list[Migration]:
    """Apply pending migrations to ``settings.clickhouse`` and seed the budgets from
    ``COMPUTEWATCH_BUDGETS_FILE``; return the migrations applied (may be [])."""
    client = connect(settings.clickhouse, create_database=True)
    try:
        applied = migrate(client, settings.clickhouse)
        seed_budgets(client, budgets_from_settings(settings))
        return applied
    finally:
        client.close()


def export_usage(
    settings: Settings,
    date_from: date,
    date_to: date,
    *,
    tenant: str | None = None,
    group_by: str = "tenant",
    format: str = "csv",
    output: str | Path | BinaryIO | None = None,
) -> int:
    """Write the usage report for [date_from, date_to) and return its number of rows.

    Reads only: a missing embedded store raises ``StoreNotFound`` (none is created) and one
    without the schema ``SchemaNotReady``.
    """
    client = connect(settings.clickhouse, must_exist=True)
    try:
        check_schema(client, settings.clickhouse.database)
        table = usage_report(client, settings, date_from, date_to, tenant, group_by)
    finally:
        client.close()
    write_usage(table, format, output)
    logger.info("usage from %s to %s (exclusive): %d rows from %s", date_from, date_to,
                table.num_rows, describe_url(settings.clickhouse.url))
    return int(table.num_rows)
