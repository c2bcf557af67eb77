"""ClickHouse storage: versioned schema, the batched exactly-once sink, queries and usage exports.

Composition roots build a client with :func:`connect`, apply the schema with :func:`migrate`
and write through a :class:`ClickHouseSink` (or the in-memory :class:`ListSink` in tests).
The dashboard and the exports take their SQL from :mod:`pipeline.storage.queries`.
"""

from __future__ import annotations

from pipeline.storage.client import connect, describe_url, is_embedded, snapshot_copy
from pipeline.storage.errors import (
    SinkBackpressure,
    SinkUnavailable,
    StoreNotFound,
    StoreUnavailable,
)
from pipeline.storage.memory import ListSink, Storable
from pipeline.storage.migrations import (
    MigrationError,
    SchemaNotReady,
    SchemaTooNew,
    check_schema,
    migrate,
    schema_version,
)
from pipeline.storage.sink import ClickHouseSink, RetryPolicy, Sink
from pipeline.storage.store import Store, export_usage, migrate_database, open_store
from pipeline.storage.triage import TRIAGE_STATUSES, record_triage
from pipeline.storage.usage import reconcile, usage_report, write_usage

__all__ = [
    "TRIAGE_STATUSES",
    "ClickHouseSink",
    "ListSink",
    "MigrationError",
    "RetryPolicy",
    "SchemaNotReady",
    "SchemaTooNew",
    "Sink",
    "SinkBackpressure",
    "SinkUnavailable",
    "Storable",
    "Store",
    "StoreNotFound",
    "StoreUnavailable",
    "check_schema",
    "connect",
    "describe_url",
    "export_usage",
    "is_embedded",
    "migrate",
    "migrate_database",
    "open_store",
    "reconcile",
    "record_triage",
    "schema_version",
    "snapshot_copy",
    "usage_report",
    "write_usage",
]
