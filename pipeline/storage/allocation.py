"""The allocation advisor's reads: three aggregations in ClickHouse, then
:func:`pipeline.advisor.advise` on their (small) results.

>>> block_seconds(timedelta(hours=3)), block_seconds(timedelta(days=30))
(60, 3600)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from clickhouse_connect.driver.client import Client

from pipeline.advisor import DEFAULT_OPTIONS, Advice, Options, Span, advise
from pipeline.config import Settings
from pipeline.storage import queries
from pipeline.storage.client import connect
from pipeline.storage.migrations import check_schema

__all__ = ["MAX_BLOCKS", "advise_store", "allocation_advice", "block_seconds"]

MAX_BLOCKS: Final = 720
"""The bootstrap resamples at most this many time blocks (a minute each, or longer)."""


def block_seconds(span: timedelta) -> int:
    """Bootstrap block length for traffic spanning ``span``: whole minutes, at least one, so
    that there are at most :data:`MAX_BLOCKS` blocks."""
    return 60 * max(1, math.ceil(span / timedelta(minutes=1) / MAX_BLOCKS))


def _columns(client: Client, query: tuple[str, dict[str, Any]]) -> dict[str, Sequence[Any]]:
    result = client.query(query[0], parameters=query[1])
    return dict(zip(result.column_names, result.result_columns, strict=True))


def allocation_advice(
    client: Client,
    date_from: date,
    date_to: date,
    *,
    models: Sequence[str] | None = None,
    tenants: Sequence[str] | None = None,
    options: Options = DEFAULT_OPTIONS,
) -> Advice:
    """Advice on the events of days [date_from, date_to) (of ``models`` and ``tenants``, or
    all), read through ``client`` (connected to the computewatch database)."""
    if date_to <= date_from:
        raise ValueError(f"empty period: --to {date_to} must be after --from {date_from}")
    start = datetime.combine(date_from, time(), UTC)
    end = datetime.combine(date_to, time(), UTC)
    scope: dict[str, Any] = {"models": models, "tenants": tenants}
    found = client.query(*queries.allocation_span(start, end, **scope)).result_rows
    span, bucket_s = Span(0, 0, None, None), block_seconds(timedelta(0))
    if found:
        requests, without, first, last = found[0]
        span, bucket_s = Span(int(requests), int(without), first, last), block_seconds(last - first)
    bands = _columns(client, queries.allocation_bands(start, end, bands=options.bands, **scope))
    cells = _columns(client, queries.allocation_cells(
        start, end, bins=options.bands * options.strata, bucket_s=bucket_s, **scope))
    return advise(span, bands, cells, bucket_s=bucket_s, options=options)


def advise_store(
    settings: Settings,
    date_from: date,
    date_to: date,
    *,
    models: Sequence[str] | None = None,
    options: Options = DEFAULT_OPTIONS,
) -> Advice:
    """What ``computewatch advise`` runs. Reads only: a missing embedded store raises
    ``StoreNotFound`` (none is created) and one without the schema ``SchemaNotReady``."""
    client = connect(settings.clickhouse, must_exist=True)
    try:
        check_schema(client, settings.clickhouse.database)
        return allocation_advice(client, date_from, date_to, models=models, options=options)
    finally:
        client.close()
