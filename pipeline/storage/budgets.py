"""Budgets in ClickHouse: read, seed from the TOML file, edit (dashboard), and hourly history.

The ``budgets`` table (``schemas/clickhouse/006_budgets.sql``) keeps every version of each
budget; the latest one of each (entity, period, unit) is the budget, unless it is a removal.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
from clickhouse_connect.driver.client import Client

from pipeline.budgets import HISTORY_H, UNIT_SCALE, Budget, period_bounds
from pipeline.forecast import MIN_HISTORY_H, Projection, project
from pipeline.storage import queries

__all__ = [
    "Forecast",
    "NoHistory",
    "UnknownEntity",
    "delete_budget",
    "forecast",
    "hourly_spend",
    "read_budgets",
    "save_budget",
    "seed_budgets",
    "tenant_forecast",
]

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


class UnknownEntity(ValueError):
    """No usage of the tenant or api key in the store."""


class NoHistory(ValueError):
    """Too little usage history for a projection."""


@dataclass(frozen=True, slots=True)
class Forecast:
    """A tenant's or api key's period, in a budget's unit: to date, and projected (None when
    its history is under :data:`~pipeline.forecast.MIN_HISTORY_H` hours)."""

    entity_type: str
    entity_id: str
    period: str
    unit: str
    start: datetime
    end: datetime
    at: datetime  # the projection is as of this hour
    spend_to_date: Decimal  # exact, from the hourly rollup
    history_hours: int
    projection: Projection | None
    budget: Budget | None  # its budget for this period and unit, if it has one

    @property
    def exhausted_at(self) -> datetime | None:
        """When the expected spend reaches the budget (None: no budget or projection, or not
        this period)."""
        if self.budget is None or self.projection is None:
            return None
        hours = self.projection.exhaustion_hours(float(self.budget.amount))
        return None if hours is None else self.at + timedelta(hours=hours)


def forecast(
    client: Client,
    entity_type: str,
    entity_id: str,
    period: str,
    unit: str = "usd",
    at: datetime | None = None,
    budget: Budget | None = None,
) -> Forecast:
    """Project the spend of a tenant or api key in the UTC ``period`` holding ``at`` (default:
    the end of its last hour of traffic) from up to five weeks of its own hourly history before
    ``at``. ``budget`` is given, or read from the table."""
    what = "tenant" if entity_type == "tenant" else "api key"
    sql, params = queries.entity_hours(entity_type, entity_id)
    found = client.query(sql, parameters=params).result_rows
    if not found:
        raise UnknownEntity(f"no usage of {what} {entity_id!r} in the store")
    first, last = (hour.replace(tzinfo=UTC) for hour in found[0])
    if at is None:
        at = last + timedelta(hours=1)
    at = datetime.fromtimestamp(int(at.timestamp()) // 3600 * 3600, UTC)
    start, end = period_bounds(period, at - timedelta(microseconds=1))
    if at >= end:
        start, end = period_bounds(period, at)
    sql, params = queries.period_spend(entity_type, entity_id, start, at)
    cost, gpu_us = next(iter(client.query(sql, parameters=params).result_rows), ("0", 0))
    spent = Decimal(cost) if unit == "usd" else Decimal(gpu_us) / UNIT_SCALE[unit]
    since = max(first, at - timedelta(hours=HISTORY_H))
    history = hourly_spend(client, entity_type, entity_id, unit, since, at) if at > since else None
    projection = None
    if history is not None:
        hours_left = int((end - at).total_seconds()) // 3600
        now_hour = int(at.timestamp()) // 3600
        projection = project(history, hours_left, float(spent), end_hour=now_hour)
    if budget is None:
        key = (entity_type, entity_id, period, unit)
        budget = next((b for b in read_budgets(client) if b.key == key), None)
    return Forecast(entity_type, entity_id, period, unit, start, end, at, spent,
                    0 if history is None else len(history), projection, budget)  # fmt: skip


def tenant_forecast(
    client: Client, tenant: str, period: str, at: datetime | None = None
) -> Forecast:
    """``computewatch forecast``: :func:`forecast` of a tenant in USD; :class:`NoHistory` when
    there is too little history to project."""
    result = forecast(client, "tenant", tenant, period, "usd", at)
    if result.projection is None:
        raise NoHistory(
            f"tenant {tenant!r} has {result.history_hours} h of usage before "
            f"{result.at:%Y-%m-%d %H:%M} UTC; a forecast needs {MIN_HISTORY_H} h with some spend"
        )
    return result
