"""Budgets in ClickHouse: read, seed from the TOML file, edit (dashboard), and hourly history.

The ``budgets`` table (``schemas/clickhouse/006_budgets.sql``) keeps every version of each
budget; the latest one of each (entity, period, unit) is the budget, unless it is a removal.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
from clickhouse_connect.driver.client import Client

from pipeline.budgets import UNIT_SCALE, Budget
from pipeline.storage import queries

__all__ = ["delete_budget", "hourly_spend", "read_budgets", "save_budget", "seed_budgets"]

_COLUMNS = ["entity_type", "entity_id", "period", "unit", "amount", "deleted", "updated_by",
            "updated_at", "version"]  # fmt: skip


def read_budgets(client: Client, tenants: Sequence[str] | None = None) -> list[Budget]:
    """The budgets in force (of ``tenants`` only, their keys included, when given)."""
    sql, params = queries.budgets(tenants)
    rows = client.query(sql, parameters=params).result_rows
    return [
        Budget(entity_type=r[0], entity_id=r[1], period=r[2], unit=r[3], amount=Decimal(r[4]))
        for r in rows
    ]


def save_budget(client: Client, budget: Budget, actor: str) -> None:
    """Set (create or change) a budget, recording who did it."""
    _write(client, [budget], actor, deleted=False)


def delete_budget(client: Client, budget: Budget, actor: str) -> None:
    """Remove a budget (a row saying so: the seed file does not bring it back)."""
    _write(client, [budget], actor, deleted=True)


def seed_budgets(client: Client, budgets: Sequence[Budget]) -> list[Budget]:
    """Add the file's budgets the table has never had (edits and removals made since win);
    return those added."""
    sql, params = queries.budget_keys()
    known = {tuple(r) for r in client.query(sql, parameters=params).result_rows}
    new = [b for b in budgets if b.key not in known]
    _write(client, new, "budgets file", deleted=False)
    return new


def _write(client: Client, budgets: Sequence[Budget], actor: str, *, deleted: bool) -> None:
    if not budgets:
        return
    now, version = datetime.now(UTC), time.time_ns()
    rows = [
        [b.entity_type, b.entity_id, b.period, b.unit, b.amount, int(deleted), actor, now, version]
        for b in budgets
    ]
    client.insert("budgets", rows, column_names=_COLUMNS)


def hourly_spend(
    client: Client, entity_type: str, entity_id: str, unit: str, start: datetime, end: datetime
) -> np.ndarray:
    """Spend per UTC hour in [start, end) (whole hours) of a tenant or api key, in the
    budget's unit, from the exact hourly rollup; hours without traffic are 0."""
    sql, params = queries.hourly_spend(entity_type, entity_id, start, end)
    rows = client.query(sql, parameters=params).result_rows
    first = int(start.timestamp()) // 3600
    series = np.zeros(int(end.timestamp()) // 3600 - first)
    for hour, usd, gpu_us in rows:
        index = int(hour.replace(tzinfo=UTC).timestamp()) // 3600 - first
        if 0 <= index < len(series):
            value = Decimal(usd) if unit == "usd" else Decimal(gpu_us) / UNIT_SCALE[unit]
            series[index] = float(value)
    return series
