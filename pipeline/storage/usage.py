"""Finance: per-tenant usage and cost for a period, exact to the last digit, as CSV/Parquet/JSON.

The report reads the daily rollup (kept after raw events expire). ``gpu_ms`` is summed from integer
microseconds and ``cost_usd`` from Decimal(18, 9) per-event costs, so totals never depend on
the order of addition; :func:`reconcile` recomputes the same report from the deduplicated raw
events and lists any difference.

>>> import pyarrow as pa, io
>>> from decimal import Decimal
>>> t = pa.table({"tenant_id": ["acme"], "requests": [2],
...               "cost_usd": pa.array([Decimal("0.001180555")], pa.decimal128(38, 9))})
>>> out = io.BytesIO(); write_usage(t, "json", out); out.getvalue()
b'[{"tenant_id":"acme","requests":2,"cost_usd":0.001180555}]\\n'
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, Final

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client

from pipeline.config import ClickHouseSettings, Settings
from pipeline.storage import queries

__all__ = ["FORMATS", "GROUP_BYS", "USAGE_COLUMNS", "reconcile", "usage_report", "write_usage"]

FORMATS: Final = ("csv", "parquet", "json")
GROUP_BYS: Final = tuple(queries.USAGE_GROUPS)
USAGE_COLUMNS: Final = (
    "tenant_id", "requests", "prompt_tokens", "completion_tokens", "reasoning_tokens", "passes",
    "gpu_ms", "cost_usd",
)
_KEY_COLUMN: Final = {"tenant": None, "api_key": "api_key_id", "model": "model", "day": "day"}


def usage_report(
    client: Client,
    settings: Settings | ClickHouseSettings,
    date_from: date,
    date_to: date,
    tenant: str | Sequence[str] | None = None,
    group_by: str = "tenant",
    *,
    source: str = "rollup",
) -> pa.Table:
    """Usage for days in [date_from, date_to) as a pyarrow Table (``.to_pandas()`` for pandas).

    Parameters
    ----------
    client
        Connected to the computewatch database (``connect(settings.clickhouse)``).
    settings
        The database it must be connected to (a mismatch raises ``ValueError``).
    tenant
        One tenant id, several, or None for all.
    group_by
        ``tenant``, ``api_key``, ``model`` or ``day``: the key column follows ``tenant_id``.
    source
        ``rollup`` (the daily rollup; default) or ``events`` (deduplicated raw events).

    Returns
    -------
    pyarrow.Table
        ``tenant_id[, key], requests, prompt_tokens, completion_tokens, reasoning_tokens,
        passes, gpu_ms, cost_usd``; ``gpu_ms`` is decimal(38, 3), ``cost_usd`` decimal(38, 9).
    """
    _check_database(client, settings)
    tenants = [tenant] if isinstance(tenant, str) else (list(tenant) if tenant else None)
    build = {"rollup": queries.usage, "events": queries.usage_from_events}.get(source)
    if build is None:
        raise ValueError(f"unknown usage source {source!r}; expected rollup or events")
    sql, params = build(date_from, date_to, group_by=group_by, tenants=tenants)
    table = client.query_arrow(sql, parameters=params)
    return _normalise(table, group_by)


def reconcile(
    client: Client, settings: Settings | ClickHouseSettings, date_from: date, date_to: date
) -> list[dict[str, Any]]:
    """Differences between the rollup and the raw events per tenant and day ([] = reconciled).

    Only meaningful while the raw events of the period are within their TTL.
    """
    rollup = usage_report(client, settings, date_from, date_to, group_by="day").to_pylist()
    events = usage_report(
        client, settings, date_from, date_to, group_by="day", source="events"
    ).to_pylist()
    key = ("tenant_id", "day")
    by_key = {tuple(r[k] for k in key): r for r in rollup}
    raw = {tuple(r[k] for k in key): r for r in events}
    diffs = []
    for k in sorted(set(by_key) | set(raw)):
        a, b = by_key.get(k), raw.get(k)
        if a != b:
            diffs.append({"tenant_id": k[0], "day": k[1], "rollup": a, "events": b})
    return diffs


def write_usage(
    table: pa.Table, format: str = "csv", output: str | Path | BinaryIO | None = None
) -> None:
    """Write a usage table as ``csv``, ``parquet`` or ``json`` (an array of objects, decimals
    as exact JSON numbers) to a path, a binary file object, or stdout when ``output`` is None."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if isinstance(output, (str, Path)):
        with open(output, "wb") as handle:
            _write(table, format, handle)
        return
    target = output if output is not None else sys.stdout.buffer
    _write(table, format, target)
    target.flush()


def _write(table: pa.Table, format: str, target: BinaryIO) -> None:
    if format == "csv":
        text = io.StringIO(newline="")
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(table.column_names)
        for row in table.to_pylist():
            writer.writerow([_csv_value(v) for v in row.values()])
        target.write(text.getvalue().encode())
    elif format == "parquet":
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        target.write(buffer.getvalue())
    else:
        rows = [{k: _json_value(v) for k, v in row.items()} for row in table.to_pylist()]
        target.write(msgspec.json.encode(rows) + b"\n")


def _csv_value(value: object) -> object:
    """Days as ISO dates, decimals in fixed notation (``0.000000001``, never ``1E-9``)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    return value.isoformat() if isinstance(value, date) else value


def _json_value(value: object) -> object:
    """Decimals as exact JSON numbers in fixed notation."""
    return msgspec.Raw(format(value, "f").encode()) if isinstance(value, Decimal) else value


def _normalise(table: pa.Table, group_by: str) -> pa.Table:
    """Stable column order and types: strings, int64 counts, exact decimals, date32 days."""
    key = _KEY_COLUMN[group_by]
    names = ["tenant_id", *([key] if key else []), *USAGE_COLUMNS[1:]]
    types = {
        "tenant_id": pa.string(), "api_key_id": pa.string(), "model": pa.string(),
        "day": pa.date32(), "gpu_ms": pa.decimal128(38, 3), "cost_usd": pa.decimal128(38, 9),
    }
    columns = []
    for name in names:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        columns.append(column.cast(types.get(name, pa.int64())))
    return pa.table(columns, names=names)


def _check_database(client: Client, settings: Settings | ClickHouseSettings) -> None:
    ch = settings.clickhouse if isinstance(settings, Settings) else settings
    if client.database and client.database != ch.database:
        raise ValueError(
            f"client is connected to database {client.database!r}, settings name {ch.database!r}"
        )
