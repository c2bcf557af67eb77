"""The dashboard's only door to ClickHouse: one settings object, one cached client, cached queries.

- :func:`settings` builds :class:`pipeline.config.Settings` once per process (from
  ``COMPUTEWATCH_*``), :func:`database` holds one client on it (``st.cache_resource``). In the
  embedded mode that client lives in the same process as the writer (``computewatch demo``),
  which is what the embedded engine requires.
- Every query is a builder from :mod:`pipeline.storage.queries` (values travel as server-side
  parameters, never formatted into SQL); results are pandas DataFrames cached for
  :data:`TTL_S` seconds (``st.cache_data``).
- Writes are limited to alert triage, through :func:`pipeline.storage.record_triage`, and
  budgets (:mod:`pipeline.storage.budgets`; the Budgets page lets finance and admin edit).
- ``tenants`` arguments scope a query to those tenants (None = all); pages pass the viewer's.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

import pandas as pd
import pyarrow as pa
import streamlit as st
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

import frames
from pipeline.advisor import Advice, Options
from pipeline.budgets import Budget
from pipeline.config import Settings
from pipeline.storage import budgets as stored_budgets
from pipeline.storage import check_schema, connect, describe_url, is_embedded, queries
from pipeline.storage.allocation import allocation_advice as build_allocation_advice
from pipeline.storage.triage import record_triage
from pipeline.storage.usage import usage_report as build_usage_report

logger = logging.getLogger(__name__)

TTL_S: Final = 15
MAX_SCOPED_ALERTS: Final = 100_000
"""Alerts counted for a tenant-scoped viewer's chart (from the scoped feed)."""
_READ_ONLY: Final = re.compile(r"\b(READONLY|ACCESS_DENIED)\b|Code: (164|497)\b")
"""Seconds a query result is reused: shorter than the default auto-refresh interval."""
Query = tuple[str, dict[str, Any]]
Tenants = tuple[str, ...] | None


class Database:
    """A client and the lock that serialises its queries (sessions run in parallel threads)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.lock = threading.Lock()

    def frame(self, query: Query) -> pd.DataFrame:
        """Run a ``(sql, params)`` query and return its rows as a DataFrame.

        An empty result still has the query's columns (the embedded engine returns none for
        an empty result, so they are asked for with ``DESCRIBE``): pages can index them.
        """
        sql, params = query
        with self.lock:
            df = self.client.query_df(sql, parameters=params)
            if len(df.columns) == 0:
                described = self.client.query(f"DESCRIBE TABLE ({sql})", parameters=params)
                df = pd.DataFrame(columns=[row[0] for row in described.result_rows])
        return df

    def close(self) -> None:
        """Close the client (called when the resource cache drops it)."""
        with self.lock:
            self.client.close()


@st.cache_resource(show_spinner=False)
def settings() -> Settings:
    """The settings object of this dashboard process, built once."""
    return Settings()


@st.cache_resource(show_spinner=False, on_release=Database.close)
def database() -> Database:
    """The one client of this process; ``st.cache_resource.clear()`` closes it (which lets a
    test process open another embedded-engine path afterwards).

    It connects as the dashboard's own ClickHouse user when one is set
    (``COMPUTEWATCH_DASHBOARD_CLICKHOUSE_USERNAME``; see ``schemas/clickhouse/roles/``), else
    with ``COMPUTEWATCH_CLICKHOUSE_USERNAME``.
    """
    return Database(connect(settings().dashboard_clickhouse()))


# -- status -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StoreStatus:
    """Where the dashboard reads from and what is there; ``problem`` says why it cannot read."""

    target: str
    database: str
    embedded: bool
    problem: str | None = None
    schema_version: int = 0
    events_stored: int = 0
    dead_letters_stored: int = 0
    last_event_ts: datetime | None = None
    last_ingested_at: datetime | None = None
    last_dead_letter_at: datetime | None = None

    @property
    def has_events(self) -> bool:
        """True once the store holds at least one event."""
        return self.problem is None and self.events_stored > 0


@st.cache_data(ttl=TTL_S, show_spinner=False)
def status() -> StoreStatus:
    """The store's status; connection and schema problems are reported, not raised."""
    ch = settings().clickhouse
    where = StoreStatus(target=describe_url(ch.url), database=ch.database,
                        embedded=is_embedded(ch.url))
    try:
        db = database()
        with db.lock:
            version = check_schema(db.client, ch.database)
        row = db.frame(queries.pipeline_status()).iloc[0]
    except Exception as exc:  # any failure becomes a message on the page
        logger.warning("cannot read %s: %s", where.target, exc)
        return replace(where, problem=_first_line(exc))
    return replace(
        where,
        schema_version=version,
        events_stored=int(row["events_stored"]),
        dead_letters_stored=int(row["dead_letters_stored"]),
        last_event_ts=_timestamp(row["last_event_ts"]) if row["events_stored"] else None,
        last_ingested_at=_timestamp(row["last_ingested_at"]) if row["events_stored"] else None,
        last_dead_letter_at=(
            _timestamp(row["last_dead_letter_at"]) if row["dead_letters_stored"] else None
        ),
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _timestamp(value: Any) -> datetime | None:
    return None if pd.isna(value) else pd.Timestamp(value).to_pydatetime()


# -- alerts -------------------------------------------------------------------------------------

@st.cache_data(ttl=TTL_S, show_spinner=False)
def alerts(
    start: datetime,
    end: datetime,
    *,
    kinds: tuple[str, ...] | None = None,
    severities: tuple[str, ...] | None = None,
    statuses: tuple[str, ...] | None = None,
    tenants: Tenants = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
) -> pd.DataFrame:
    """Alerts detected in [start, end), newest first, with their triage status."""
    df = database().frame(queries.alerts_feed(
        start, end, kinds=kinds, severities=severities, statuses=statuses, tenants=tenants,
        entity_type=entity_type, entity_id=entity_id,
    ))
    df["alert_id"] = df["alert_id"].astype(str)
    return df


@st.cache_data(ttl=TTL_S, show_spinner=False)
def alert_counts(start: datetime, end: datetime, bucket_s: int,
                 tenants: Tenants = None) -> pd.DataFrame:
    """Alerts per kind per ``bucket_s`` bucket in [start, end) (of ``tenants`` only, if given:
    counted from the tenant-scoped feed, as the fleet-wide count would reveal other tenants')."""
    if tenants is None:
        return database().frame(queries.alert_counts(start, end, bucket_s=bucket_s))
    feed = database().frame(queries.alerts_feed(start, end, tenants=tenants,
                                                limit=MAX_SCOPED_ALERTS))
    return frames.alert_counts(feed, bucket_s)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def alert_events(entity_type: str, entity_id: str, start: datetime, end: datetime,
                 tenants: Tenants = None) -> pd.DataFrame:
    """The events of an alert's entity inside its evidence window (of ``tenants`` only)."""
    df = database().frame(queries.alert_events(entity_type, entity_id, start, end))
    if tenants is not None:
        df = df[df["tenant_id"].isin(tenants)].reset_index(drop=True)
    df["event_id"] = df["event_id"].astype(str)
    df["cost_usd"] = df["cost_usd"].astype(float)
    return df


@st.cache_data(ttl=TTL_S, show_spinner=False)
def triage_history(alert_id: str) -> pd.DataFrame:
    """Every triage action on one alert, oldest first."""
    return database().frame(queries.alert_triage_history(alert_id))


class TriageRefused(ValueError):
    """ClickHouse refused the triage write: the dashboard's user may only read."""


@contextlib.contextmanager
def _writing(
    what: str, may_not: str, grant: str, refused: type[ValueError]
) -> Iterator[Client]:
    """The store's client, under its lock, for one write; ClickHouse refusing it to a read-only
    user becomes ``refused``, saying what the user ``may_not`` do and the ``grant`` file."""
    db = database()
    with db.lock:
        try:
            yield db.client
        except DatabaseError as exc:
            if not _READ_ONLY.search(str(exc)):
                raise
            logger.warning("%s refused by ClickHouse: %s", what, _first_line(exc))
            raise refused(
                f"The dashboard's ClickHouse user may not {may_not} (it is read-only). "
                f"Grant it with schemas/clickhouse/roles/{grant}."
            ) from None


def triage(alert_id: str, status: str, actor: str, note: str) -> None:
    """Record a triage action and drop the cached results it changes."""
    with _writing("triage", "record triage", "triage_grant.sql", TriageRefused) as client:
        record_triage(client, alert_id, status, actor, note)
    alerts.clear()
    triage_history.clear()


# -- budgets ------------------------------------------------------------------------------------

@st.cache_data(ttl=TTL_S, show_spinner=False)
def budgets(tenants: Tenants = None) -> list[Budget]:
    """The budgets in force (of ``tenants`` and their keys when given)."""
    db = database()
    with db.lock:
        return stored_budgets.read_budgets(db.client, tenants)


def budget_forecast(budget: Budget, at: datetime) -> stored_budgets.Forecast | None:
    """The budget's period as of ``at``: spend to date and projection (the same function as
    ``computewatch forecast``); None when its entity has no usage."""
    return _forecast(budget.entity_type, budget.entity_id, budget.period, budget.unit,
                     str(budget.amount), at)  # fmt: skip


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _forecast(entity_type: str, entity_id: str, period: str, unit: str, amount: str,
              at: datetime) -> stored_budgets.Forecast | None:  # fmt: skip
    budget = Budget(entity_type=entity_type, entity_id=entity_id, period=period,  # type: ignore[arg-type]
                    unit=unit, amount=Decimal(amount))  # type: ignore[arg-type]
    db = database()
    with db.lock:
        try:
            return stored_budgets.forecast(db.client, budget.entity_type, budget.entity_id,
                                           budget.period, budget.unit, at, budget)  # fmt: skip
        except stored_budgets.UnknownEntity:
            return None


@st.cache_data(ttl=TTL_S, show_spinner=False)
def spenders(entity_type: str, tenants: Tenants = None) -> list[str]:
    """Tenants or api keys with usage (of ``tenants`` when given), sorted."""
    return [str(k) for k in database().frame(queries.spenders(entity_type, tenants))["id"]]


class BudgetRefused(ValueError):
    """ClickHouse refused the budget write: the dashboard's user may only read."""


def change_budget(budget: Budget, actor: str, *, remove: bool = False) -> None:
    """Set or remove a budget and drop the cached results it changes."""
    write = stored_budgets.delete_budget if remove else stored_budgets.save_budget
    with _writing("budget change", "change budgets", "budgets_grant.sql", BudgetRefused) as client:
        write(client, budget, actor)
    budgets.clear()
    _forecast.clear()


# -- efficiency ---------------------------------------------------------------------------------

@st.cache_data(ttl=TTL_S, show_spinner=False)
def efficiency_series(
    start: datetime, end: datetime, bucket_s: int, by: str | None = None, tenants: Tenants = None
) -> pd.DataFrame:
    """Efficiency metrics per time bucket (and per ``by`` group), with latency percentiles."""
    query = queries.efficiency_series(start, end, bucket_s=bucket_s, by=by, tenants=tenants)
    return frames.with_percentiles(database().frame(query))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def events_per_second(start: datetime, end: datetime) -> float:
    """Events per second whose event time is in [start, end), from the 1-minute metrics (so a
    minute counts once it is closed): live traffic, not history stored late."""
    requests = database().frame(queries.efficiency_series(start, end, bucket_s=60))["requests"]
    return float(requests.sum()) / (end - start).total_seconds()


@st.cache_data(ttl=TTL_S, show_spinner=False)
def efficiency_breakdown(
    start: datetime, end: datetime, by: str, tenants: Tenants = None
) -> pd.DataFrame:
    """Efficiency metrics per model, route, server, tenant or api key, with the raw histogram
    kept (``latency_hist``) so that :func:`frames.overall` can merge groups exactly."""
    query = queries.efficiency_breakdown(start, end, by=by, tenants=tenants)
    return frames.with_percentiles(database().frame(query), keep_hist=True)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def confidence_sample(start: datetime, end: datetime, tenants: Tenants = None) -> pd.DataFrame:
    """A deterministic sample of requests with a confidence, for confidence vs compute."""
    return database().frame(queries.confidence_vs_compute(start, end, tenants=tenants, limit=3000))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def tenant_ids(start: datetime, end: datetime, tenants: Tenants = None) -> list[str]:
    """Tenants with traffic in [start, end) (within ``tenants`` when given)."""
    df = database().frame(queries.efficiency_breakdown(start, end, by="tenant", tenants=tenants))
    return sorted(str(t) for t in df["tenant_id"])


# -- usage --------------------------------------------------------------------------------------

@st.cache_data(ttl=TTL_S, show_spinner=False)
def usage_report(
    date_from: date, date_to: date, group_by: str = "tenant", tenants: Tenants = None
) -> pa.Table:
    """The finance report for days in [date_from, date_to): exactly what ``computewatch usage``
    exports (same function, :func:`pipeline.storage.usage.usage_report`)."""
    db = database()
    with db.lock:
        return build_usage_report(
            db.client, settings(), date_from, date_to,
            None if tenants is None else list(tenants), group_by,
        )


@st.cache_data(ttl=TTL_S, show_spinner=False)
def usage_hourly(start: datetime, end: datetime, tenants: Tenants = None) -> pd.DataFrame:
    """Usage per hour and tenant in [start, end) (for the trend chart; floats, not exact)."""
    df = database().frame(queries.usage_by_hour(start, end, tenants=tenants))
    for column in ("gpu_ms", "cost_usd"):
        df[column] = df[column].astype(float)
    return df


# -- allocation ---------------------------------------------------------------------------------

@st.cache_data(ttl=TTL_S, show_spinner=False)
def allocation_advice(
    date_from: date, date_to: date, tolerance: float, models: tuple[str, ...] | None = None,
    tenants: Tenants = None,
) -> Advice:
    """The allocation advice for days [date_from, date_to): what ``computewatch advise``
    reports (same function, :func:`pipeline.storage.allocation.allocation_advice`)."""
    db = database()
    with db.lock:
        return build_allocation_advice(
            db.client, date_from, date_to, models=models, tenants=tenants,
            options=Options(tolerance=tolerance),
        )


# -- pipeline health ----------------------------------------------------------------------------

@st.cache_data(ttl=TTL_S, show_spinner=False)
def ingest_per_minute(start: datetime, end: datetime) -> pd.DataFrame:
    """Events stored per minute of ingest time in [start, end)."""
    return database().frame(queries.events_per_minute(start, end))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def dead_letters(start: datetime, end: datetime) -> pd.DataFrame:
    """Dead letters per rule in [start, end), with the commonest reasons and payload samples."""
    return database().frame(queries.dead_letters_by_reason(start, end, samples=3))
