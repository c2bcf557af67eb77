"""Every query builder in ``pipeline.storage.queries``, with an injection string in every string
filter, run on the embedded engine: the value never reaches the SQL text, travels as a typed
server-side parameter, matches nothing, and every table is intact afterwards.

Extends ``test_storage_queries.py`` (which covers the tenant filters of a few builders) to all
builders and all their string filters, plus triage notes and the usage export. A new builder
without a case here fails :func:`test_every_builder_has_an_injection_case`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import date, timedelta

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.config import Settings
from pipeline.storage import queries as q
from pipeline.storage import record_triage, usage_report
from pipeline.storage.queries import Query
from tests.integration.test_storage_queries import (
    END,
    INJECTION,
    INJECTIONS,
    START,
    run,
    stored,  # noqa: F401  (the fixture: 3000 events, metrics, three alerts, a dead letter)
)

HOSTILE = [
    *INJECTIONS,
    "' UNION ALL SELECT name FROM system.users --",
    "acme') OR ('1'='1",
    "x\\' OR 1=1 --",
    "}{tenants:Array(String)}{",
    "tenant\x00nul",
    "ünïcødé ' 😀",
]
DAY_FROM, DAY_TO = date(2026, 3, 1), date(2026, 3, 9)

Builder = Callable[[str], Query]
CASES: dict[str, list[Builder]] = {
    "alerts_feed": [
        lambda v: q.alerts_feed(START, END, kinds=[v]),
        lambda v: q.alerts_feed(START, END, severities=[v]),
        lambda v: q.alerts_feed(START, END, tenants=[v]),
        lambda v: q.alerts_feed(START, END, entity_type="api_key", entity_id=v),
        lambda v: q.alerts_feed(START, END, statuses=[v]),
    ],
    "alert_events": [lambda v: q.alert_events("api_key", v, START, END)],
    "efficiency_series": [lambda v: q.efficiency_series(START, END, by="model", tenants=[v])],
    "efficiency_breakdown": [lambda v: q.efficiency_breakdown(START, END, by="route",
                                                              tenants=[v])],
    "confidence_vs_compute": [lambda v: q.confidence_vs_compute(START, END, tenants=[v])],
    "usage": [lambda v: q.usage(DAY_FROM, DAY_TO, group_by="model", tenants=[v])],
    "allocation_bands": [lambda v: q.allocation_bands(START, END, models=[v]),
                         lambda v: q.allocation_bands(START, END, tenants=[v])],
    "allocation_cells": [lambda v: q.allocation_cells(START, END, models=[v]),
                         lambda v: q.allocation_cells(START, END, tenants=[v])],
    "allocation_span": [lambda v: q.allocation_span(START, END, models=[v]),
                        lambda v: q.allocation_span(START, END, tenants=[v])],
    "usage_by_hour": [lambda v: q.usage_by_hour(START, END, tenants=[v])],
    "usage_from_events": [lambda v: q.usage_from_events(DAY_FROM, DAY_TO, group_by="day",
                                                        tenants=[v])],
    "budgets": [lambda v: q.budgets([v])],
    "hourly_spend": [lambda v: q.hourly_spend("tenant", v, START, END),
                     lambda v: q.hourly_spend("api_key", v, START, END)],
    "entity_hours": [lambda v: q.entity_hours("tenant", v)],
    "period_spend": [lambda v: q.period_spend("api_key", v, START, END)],
    "spenders": [lambda v: q.spenders("api_key", [v])],
}
"""Builders with string filters: one builder call per filter, the hostile value in it."""
WHITELISTED: dict[str, Callable[[str], Query]] = {
    "alerts_feed": lambda v: q.alerts_feed(START, END, entity_type=v),
    "alert_events": lambda v: q.alert_events(v, "k", START, END),
    "efficiency_series": lambda v: q.efficiency_series(START, END, by=v),
    "efficiency_breakdown": lambda v: q.efficiency_breakdown(START, END, by=v),
    "usage": lambda v: q.usage(DAY_FROM, DAY_TO, group_by=v),
    "usage_from_events": lambda v: q.usage_from_events(DAY_FROM, DAY_TO, group_by=v),
    "hourly_spend": lambda v: q.hourly_spend(v, "k", START, END),
    "entity_hours": lambda v: q.entity_hours(v, "k"),
    "period_spend": lambda v: q.period_spend(v, "k", START, END),
    "spenders": lambda v: q.spenders(v),
}
"""Filters that pick a column name: only names from a fixed list are accepted."""
TYPED = {"alert_triage_history": lambda v: q.alert_triage_history(v)}
"""A string filter whose parameter type is not String: the server refuses a non-UUID value."""
NO_STRING_FILTERS = {"alert_counts", "events_per_minute", "pipeline_status",
                     "dead_letters_by_reason", "budget_keys"}


def builders() -> set[str]:
    """Every public function in ``queries`` that returns ``(sql, params)``."""
    return {name for name in q.__all__ if inspect.isfunction(getattr(q, name))
            and inspect.signature(getattr(q, name)).return_annotation in ("Query", Query)}


def values(params: dict[str, object]) -> list[object]:
    """Every parameter value, lists flattened."""
    return [x for v in params.values() for x in (v if isinstance(v, list) else [v])]


def intact(client: Client) -> tuple[int, ...]:
    counts = client.query(
        "SELECT (SELECT count() FROM events), (SELECT count() FROM alerts),"
        " (SELECT count() FROM dead_letters), (SELECT count() FROM system.tables"
        " WHERE database = currentDatabase())").result_rows[0]
    return tuple(int(c) for c in counts)


def test_every_builder_has_an_injection_case() -> None:
    covered = set(CASES) | set(TYPED) | NO_STRING_FILTERS
    assert builders() == covered, "a query builder has no injection case here"
    for name in NO_STRING_FILTERS:  # their parameters are datetimes and integers only
        parameters = inspect.signature(getattr(q, name)).parameters.values()
        assert all(p.annotation in ("datetime", "int") for p in parameters), name


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_values_in_every_string_filter_are_inert(
    stored: Client, name: str  # noqa: F811  (the imported fixture)
) -> None:
    before = intact(stored)
    for build in CASES[name]:
        for value in HOSTILE:
            sql, params = build(value)
            assert value not in sql, f"{name}: the value reached the SQL text"
            assert value in values(params), f"{name}: the value is not a parameter"
            rows = run(stored, (sql, params))
            assert rows == [] or (value == INJECTION and name == "alerts_feed"), (name, value)
    assert intact(stored) == before


def test_the_injection_string_stored_as_a_tenant_is_matched_exactly(
    stored: Client,  # noqa: F811
) -> None:
    """A value that *is* stored (an alert on a tenant named like an injection) matches itself
    and nothing else: the filter compares values, it does not evaluate them."""
    rows = run(stored, q.alerts_feed(START, END, tenants=[INJECTION]))
    assert [r["entity_id"] for r in rows] == [INJECTION]
    assert run(stored, q.alerts_feed(START, END, tenants=["acme"])) != rows


@pytest.mark.parametrize("name", sorted(WHITELISTED))
def test_column_choices_accept_only_their_fixed_names(name: str) -> None:
    for value in [*HOSTILE, "tenant_id", "tenant_id; DROP TABLE events", "events.tenant_id"]:
        with pytest.raises(ValueError, match=r"unknown|expected one of"):
            WHITELISTED[name](value)


def test_a_non_uuid_alert_id_is_refused_by_the_server(stored: Client) -> None:  # noqa: F811
    before = intact(stored)
    for value in HOSTILE:
        sql, params = TYPED["alert_triage_history"](value)
        assert value not in sql and params == {"alert_id": value}
        with pytest.raises(DatabaseError, match=r"(?i)uuid"):
            run(stored, (sql, params))
    assert intact(stored) == before


def test_triage_notes_and_usage_exports_take_hostile_text_as_data(
    stored: Client, storage_settings: Settings  # noqa: F811
) -> None:
    [alert] = run(stored, q.alerts_feed(START, END, tenants=[INJECTION]))
    alert_id = str(alert["alert_id"])
    for i, value in enumerate(HOSTILE):
        record_triage(stored, alert_id, "acknowledged", value, value,
                      at=START + timedelta(hours=1, seconds=i))
    history = run(stored, q.alert_triage_history(alert_id))
    assert [(h["actor"], h["note"]) for h in history] == [(v, v) for v in HOSTILE]
    for value in HOSTILE:
        assert usage_report(stored, storage_settings, DAY_FROM, DAY_TO, [value]).num_rows == 0
    assert intact(stored)[:3] == (3000, 3, 1)

