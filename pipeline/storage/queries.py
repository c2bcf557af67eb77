"""Every query the dashboard and the exports run: pure functions returning ``(sql, params)``.

Values only ever travel as server-side parameters (``{name:Type}``); the SQL text varies only by
which optional filters are present and by column names picked from fixed whitelists. Tables are
unqualified: the client's database (``connect``) applies. Replacing tables are read with FINAL,
so a re-sent event or replayed window counts once.

>>> sql, params = usage(date(2026, 3, 1), date(2026, 4, 1), tenants=["acme"])
>>> "{tenants:Array(String)}" in sql, params["tenants"]
(True, ['acme'])
>>> latency_percentiles({}) == {"p50_ms": None, "p95_ms": None, "p99_ms": None}
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, Final

from pipeline.minute_fields import MINUTE_FIELDS
from pipeline.sketch import quantile_of

__all__ = [
    "DIFFICULTY_SCALE",
    "ENTITY_COLUMNS",
    "GROUP_BY_COLUMNS",
    "USAGE_GROUPS",
    "alert_counts",
    "alert_events",
    "alert_triage_history",
    "alerts_feed",
    "allocation_bands",
    "allocation_cells",
    "allocation_span",
    "budget_keys",
    "budgets",
    "confidence_vs_compute",
    "dead_letters_by_reason",
    "efficiency_breakdown",
    "efficiency_series",
    "entity_hours",
    "events_per_minute",
    "hourly_spend",
    "latency_percentiles",
    "period_spend",
    "pipeline_status",
    "spenders",
    "usage",
    "usage_by_hour",
    "usage_from_events",
]

Query = tuple[str, dict[str, Any]]
TS: Final = "DateTime64(6, 'UTC')"
ENTITY_COLUMNS: Final[dict[str, str]] = {
    "tenant": "tenant_id", "api_key": "api_key_id", "server": "server_id",
    "model": "model", "route": "route",
}
GROUP_BY_COLUMNS: Final[dict[str | None, str | None]] = dict(
    [(None, None), *ENTITY_COLUMNS.items()]
)
_SPENDERS: Final = {"tenant": "tenant_id", "api_key": "api_key_id"}  # who budgets are for
USAGE_GROUPS: Final = {"tenant": None, "api_key": "api_key_id", "model": "model", "day": "day"}
_USAGE_SUMS: Final = """
    sum(requests) AS requests,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(passes) AS passes,
    toDecimal128(sum(gpu_us), 3) / 1000 AS gpu_ms,
    sum(cost_usd) AS cost_usd"""
_TOTALS: Final = "".join(  # every stored statistic of a minute, combined as the spec says
    f"\n        {'sumMap' if f.combine == 'sketch' else 'sum'}({f.name}) AS {f.name},"
    for f in MINUTE_FIELDS
    if f.column is not None
).rstrip(",")
_RATIOS: Final = """
    gpu_ms * 1000 / nullIf(completion_tokens + reasoning_tokens, 0) AS gpu_ms_per_1k_tokens,
    gpu_ms / nullIf(requests, 0) AS gpu_ms_per_request,
    reasoning_tokens / nullIf(requests, 0) AS reasoning_tokens_per_request,
    passes / nullIf(requests, 0) AS passes_per_request,
    confidence_sum / nullIf(confidence_count, 0) AS confidence_mean,
    confidence_sum / nullIf(gpu_ms / 1000, 0) AS confidence_per_gpu_s,
    budgeted_generated_tokens / nullIf(budget_tokens, 0) AS budget_utilisation,
    truncated / nullIf(requests, 0) AS truncation_rate,
    timeouts / nullIf(requests, 0) AS timeout_rate,
    errors / nullIf(requests, 0) AS error_rate,
    latency_ms_sum / nullIf(requests, 0) AS latency_mean_ms"""
_ALLOCATION_SUMS: Final = """
    count() AS requests,
    sum(gpu_ms) AS gpu_ms,
    toFloat64(sum(cost_usd)) AS cost_usd,
    sum(ifNull(confidence, 0)) AS confidence_sum,
    count(confidence) AS confidence_count,
    countIf(status = 'truncated') AS truncated"""
DIFFICULTY_SCALE: Final = 1_000_000
_EVENT_FIELDS: Final = (
    "event_id, ts, tenant_id, api_key_id, model, server_id, route, difficulty, prompt_tokens, "
    "completion_tokens, reasoning_tokens, passes, budget_tokens, gpu_ms, latency_ms, ttft_ms, "
    "confidence, status, gpu_type, region, cost_usd"
)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value


def _range(column: str, start: datetime, end: datetime, params: dict[str, Any]) -> str:
    params["start"], params["end"] = _aware(start, "start"), _aware(end, "end")
    return f"{column} >= {{start:{TS}}} AND {column} < {{end:{TS}}}"


def _in(column: str, name: str, values: Sequence[str] | None, params: dict[str, Any]) -> list[str]:
    if values is None:
        return []
    params[name] = [str(v) for v in values]
    return [f"{column} IN {{{name}:Array(String)}}"]


def _column(table: Mapping[Any, str | None], key: Any, what: str) -> str | None:
    if key not in table:
        raise ValueError(f"unknown {what} {key!r}; expected one of {sorted(map(str, table))}")
    return table[key]


def _where(conditions: Sequence[str]) -> str:
    return "WHERE " + "\n  AND ".join(conditions)


def _bin(bins: int, params: dict[str, Any]) -> str:
    """The difficulty bin (0 .. bins - 1) of an event, cut in whole millionths so that a value
    computed a hair below an edge (0.3 - 0.1 = 0.19999999999999998) falls in the bin whose
    edge it names; difficulty 1 joins the last bin."""
    if bins < 1 or DIFFICULTY_SCALE % bins:
        raise ValueError(f"difficulty bins must divide {DIFFICULTY_SCALE}, got {bins}")
    params["bin_width"], params["last_bin"] = DIFFICULTY_SCALE // bins, bins - 1
    return (
        f"least(intDiv(toUInt64(round(difficulty * {DIFFICULTY_SCALE})), {{bin_width:UInt64}}),"
        " {last_bin:UInt64})"
    )


# -- alerts -------------------------------------------------------------------------------------

def alerts_feed(
    start: datetime,
    end: datetime,
    *,
    kinds: Sequence[str] | None = None,
    severities: Sequence[str] | None = None,
    tenants: Sequence[str] | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    statuses: Sequence[str] | None = None,
    limit: int = 500,
) -> Query:
    """Alerts detected in [start, end), newest first, with their current triage state.

    ``tenants`` matches alerts on those tenants and on api keys those tenants used in the period
    (the alert contract names an entity, not a tenant); server/model/route alerts are fleet-wide
    and are left out by a tenant filter. An alert never triaged has status ``new``.
    """
    params: dict[str, Any] = {"limit": int(limit)}
    where = [_range("a.detected_at", start, end, params)]
    where += _in("a.kind", "kinds", kinds, params)
    where += _in("a.severity", "severities", severities, params)
    if tenants is not None:
        params["tenants"] = [str(t) for t in tenants]
        where.append(
            "((a.entity_type = 'tenant' AND a.entity_id IN {tenants:Array(String)})"
            "\n    OR (a.entity_type = 'api_key' AND a.entity_id IN ("
            "SELECT DISTINCT api_key_id FROM events WHERE tenant_id IN {tenants:Array(String)}"
            f" AND ts >= {{start:{TS}}} - INTERVAL 1 DAY AND ts < {{end:{TS}}})))"
        )
    if entity_type is not None:
        _column(ENTITY_COLUMNS, entity_type, "entity type")
        params["entity_type"] = entity_type
        where.append("a.entity_type = {entity_type:String}")
    if entity_id is not None:
        params["entity_id"] = entity_id
        where.append("a.entity_id = {entity_id:String}")
    where += _in("coalesce(t.last_status, 'new')", "statuses", statuses, params)
    sql = f"""SELECT
    a.alert_id AS alert_id, a.kind AS kind, a.entity_type AS entity_type,
    a.entity_id AS entity_id, a.window_start AS window_start, a.window_end AS window_end,
    a.detected_at AS detected_at, a.score AS score, a.severity AS severity,
    a.summary AS summary, a.evidence AS evidence, a.event_count AS event_count,
    coalesce(t.last_status, 'new') AS status, t.last_actor AS triaged_by,
    t.last_at AS triaged_at, t.last_note AS triage_note
FROM alerts AS a FINAL
LEFT JOIN (
    SELECT alert_id,
        argMax(status, (updated_at, version)) AS last_status,
        argMax(actor, (updated_at, version)) AS last_actor,
        argMax(note, (updated_at, version)) AS last_note,
        max(updated_at) AS last_at
    FROM alert_triage
    GROUP BY alert_id
) AS t ON t.alert_id = a.alert_id
{_where(where)}
ORDER BY a.detected_at DESC, a.alert_id
LIMIT {{limit:UInt32}}
SETTINGS join_use_nulls = 1"""
    return sql, params


def alert_counts(start: datetime, end: datetime, *, bucket_s: int = 3600) -> Query:
    """Alerts per kind per time bucket (``bucket_s`` seconds) in [start, end)."""
    params: dict[str, Any] = {"bucket_s": int(bucket_s)}
    sql = f"""SELECT
    toStartOfInterval(detected_at, toIntervalSecond({{bucket_s:UInt32}})) AS bucket,
    kind,
    count() AS alerts
FROM alerts FINAL
{_where([_range("detected_at", start, end, params)])}
GROUP BY bucket, kind
ORDER BY bucket, kind"""
    return sql, params


def alert_events(
    entity_type: str, entity_id: str, start: datetime, end: datetime, *, limit: int = 1000
) -> Query:
    """The events behind an alert: those of its entity with ``start <= ts <= end`` (inclusive)."""
    column = _column(ENTITY_COLUMNS, entity_type, "entity type")
    params: dict[str, Any] = {
        "entity_id": entity_id, "start": _aware(start, "start"), "end": _aware(end, "end"),
        "limit": int(limit),
    }
    sql = f"""SELECT {_EVENT_FIELDS}
FROM events FINAL
WHERE {column} = {{entity_id:String}}
  AND ts >= {{start:{TS}}} AND ts <= {{end:{TS}}}
ORDER BY ts
LIMIT {{limit:UInt32}}"""
    return sql, params


def alert_triage_history(alert_id: str) -> Query:
    """Every triage action on one alert, oldest first."""
    sql = """SELECT status, actor, note, updated_at
FROM alert_triage
WHERE alert_id = {alert_id:UUID}
ORDER BY updated_at, version"""
    return sql, {"alert_id": str(alert_id)}


# -- efficiency ---------------------------------------------------------------------------------

def efficiency_series(
    start: datetime,
    end: datetime,
    *,
    bucket_s: int = 60,
    by: str | None = None,
    tenants: Sequence[str] | None = None,
) -> Query:
    """Efficiency metrics per time bucket (and per ``by`` group) from ``metrics_1m``.

    ``latency_hist`` is the merged histogram: turn it into percentiles with
    :func:`latency_percentiles`.
    """
    group = _column(GROUP_BY_COLUMNS, by, "breakdown")
    params: dict[str, Any] = {"bucket_s": int(bucket_s)}
    where = [_range("window_start", start, end, params)]
    where += _in("tenant_id", "tenants", tenants, params)
    keys = ", ".join(["bucket", *([group] if group else [])])
    bucket = "toStartOfInterval(window_start, toIntervalSecond({bucket_s:UInt32})) AS bucket"
    columns = ",\n        ".join([bucket, *([group] if group else [])])
    sql = f"""SELECT *,{_RATIOS}
FROM (
    SELECT
        {columns},{_TOTALS}
    FROM metrics_1m FINAL
    {_where(where)}
    GROUP BY {keys}
)
ORDER BY {keys}"""
    return sql, params


def efficiency_breakdown(
    start: datetime, end: datetime, *, by: str, tenants: Sequence[str] | None = None
) -> Query:
    """Efficiency metrics per model, route, server, tenant or api key over [start, end)."""
    group = _column(ENTITY_COLUMNS, by, "breakdown")
    params: dict[str, Any] = {}
    where = [_range("window_start", start, end, params)]
    where += _in("tenant_id", "tenants", tenants, params)
    sql = f"""SELECT *,{_RATIOS}
FROM (
    SELECT
        {group},{_TOTALS}
    FROM metrics_1m FINAL
    {_where(where)}
    GROUP BY {group}
)
ORDER BY gpu_ms DESC, {group}"""
    return sql, params


def confidence_vs_compute(
    start: datetime, end: datetime, *, tenants: Sequence[str] | None = None, limit: int = 5000
) -> Query:
    """A deterministic sample of requests with a confidence: compute spent vs confidence reached."""
    params: dict[str, Any] = {"limit": int(limit)}
    where = [
        _range("ts", start, end, params),
        "confidence IS NOT NULL",
        *_in("tenant_id", "tenants", tenants, params),
    ]
    sql = f"""SELECT tenant_id, model, route, gpu_ms, reasoning_tokens, passes, confidence, status
FROM events FINAL
{_where(where)}
ORDER BY cityHash64(event_id)
LIMIT {{limit:UInt32}}"""
    return sql, params


def latency_percentiles(
    hist: Mapping[int, int], qs: Sequence[float] = (0.5, 0.95, 0.99)
) -> dict[str, float | None]:
    """Percentiles (``p50_ms``...) of a merged latency histogram (``sumMap(latency_hist)``)."""
    return {f"p{round(q * 100):d}_ms": quantile_of(hist, q) for q in qs}


# -- usage --------------------------------------------------------------------------------------

def usage(
    date_from: date,
    date_to: date,
    *,
    group_by: str = "tenant",
    tenants: Sequence[str] | None = None,
) -> Query:
    """Usage per tenant (plus api key, model or day) for days in [date_from, date_to), from the
    daily rollup. ``gpu_ms`` is exact (Decimal, 3 places) and ``cost_usd`` Decimal(38, 9)."""
    return _usage("usage_daily", "day", date_from, date_to, group_by, tenants)


def usage_by_hour(
    start: datetime, end: datetime, *, tenants: Sequence[str] | None = None
) -> Query:
    """Usage per hour and tenant in [start, end), from the hourly rollup (dashboard series)."""
    params: dict[str, Any] = {}
    where = [_range("hour", start, end, params), *_in("tenant_id", "tenants", tenants, params)]
    sql = f"""SELECT
    hour, tenant_id,{_USAGE_SUMS}
FROM usage_hourly
{_where(where)}
GROUP BY hour, tenant_id
ORDER BY hour, tenant_id"""
    return sql, params


def usage_from_events(
    date_from: date,
    date_to: date,
    *,
    group_by: str = "tenant",
    tenants: Sequence[str] | None = None,
) -> Query:
    """The same report computed from the deduplicated raw events (for reconciliation)."""
    source = """(
    SELECT toDate(ts) AS day, tenant_id, api_key_id, model, 1 AS requests, prompt_tokens,
        completion_tokens, reasoning_tokens, passes, toUInt64(round(gpu_ms * 1000)) AS gpu_us,
        cost_usd
    FROM events FINAL
)"""
    return _usage(source, "day", date_from, date_to, group_by, tenants)


def _usage(
    source: str,
    day: str,
    date_from: date,
    date_to: date,
    group_by: str,
    tenants: Sequence[str] | None,
) -> Query:
    key = _column(USAGE_GROUPS, group_by, "usage grouping")
    if date_to <= date_from:
        raise ValueError(f"empty period: --to {date_to} must be after --from {date_from}")
    params: dict[str, Any] = {"date_from": date_from, "date_to": date_to}
    where = [f"{day} >= {{date_from:Date}} AND {day} < {{date_to:Date}}"]
    where += _in("tenant_id", "tenants", tenants, params)
    keys = ", ".join(["tenant_id", *([key] if key else [])])
    sql = f"""SELECT
    {keys},{_USAGE_SUMS}
FROM {source}
{_where(where)}
GROUP BY {keys}
ORDER BY {keys}"""
    return sql, params


# -- budgets ------------------------------------------------------------------------------------

def budgets(tenants: Sequence[str] | None = None) -> Query:
    """The budgets in force: the latest version of each, unless it removed the budget; with
    ``tenants``, only theirs (a key's budget is its tenant's when the key sent events of it)."""
    params: dict[str, Any] = {}
    where = ["deleted = 0"]
    if tenants is not None:
        params["tenants"] = list(tenants)
        where.append(
            "((entity_type = 'tenant' AND entity_id IN {tenants:Array(String)}) OR "
            "(entity_type = 'api_key' AND entity_id IN (SELECT DISTINCT api_key_id FROM "
            "usage_daily WHERE tenant_id IN {tenants:Array(String)})))"
        )
    sql = f"""SELECT entity_type, entity_id, period, unit, toString(amount) AS amount
FROM budgets FINAL
{_where(where)}
ORDER BY entity_type, entity_id, period, unit"""
    return sql, params


def spenders(entity_type: str, tenants: Sequence[str] | None = None) -> Query:
    """Every tenant or api key with usage (of ``tenants`` when given), sorted, as ``id``."""
    column = _column(_SPENDERS, entity_type, "entity")
    params: dict[str, Any] = {}
    where = _in("tenant_id", "tenants", tenants, params)
    sql = f"""SELECT DISTINCT {column} AS id FROM usage_daily
{_where(where) if where else ""}
ORDER BY id"""
    return sql, params


def budget_keys() -> Query:
    """Every (entity_type, entity_id, period, unit) the budgets table has had."""
    return "SELECT DISTINCT entity_type, entity_id, period, unit FROM budgets", {}


def hourly_spend(entity_type: str, entity_id: str, start: datetime, end: datetime) -> Query:
    """A tenant's or api key's exact cost and GPU microseconds per hour in [start, end)."""
    column = _column(_SPENDERS, entity_type, "entity")
    params: dict[str, Any] = {"entity": entity_id}
    where = [_range("hour", start, end, params), f"{column} = {{entity:String}}"]
    sql = f"""SELECT hour, toString(sum(cost_usd)) AS cost_usd, sum(gpu_us) AS gpu_us
FROM usage_hourly
{_where(where)}
GROUP BY hour
ORDER BY hour"""
    return sql, params


def entity_hours(entity_type: str, entity_id: str) -> Query:
    """The first and last hour of a tenant's or api key's usage (no row when it has none)."""
    column = _column(_SPENDERS, entity_type, "entity")
    sql = f"""SELECT min(hour), max(hour) FROM usage_hourly WHERE {column} = {{entity:String}}
HAVING count() > 0"""
    return sql, {"entity": entity_id}


def period_spend(entity_type: str, entity_id: str, start: datetime, end: datetime) -> Query:
    """A tenant's or api key's exact cost and GPU microseconds in [start, end) (whole hours),
    from the hourly rollup (no row when it spent nothing then)."""
    column = _column(_SPENDERS, entity_type, "entity")
    params: dict[str, Any] = {"entity": entity_id}
    where = [_range("hour", start, end, params), f"{column} = {{entity:String}}"]
    sql = f"""SELECT toString(sum(cost_usd)), sum(gpu_us) FROM usage_hourly
{_where(where)}
HAVING count() > 0"""
    return sql, params


# -- pipeline health ----------------------------------------------------------------------------

def events_per_minute(start: datetime, end: datetime) -> Query:
    """Events ingested per minute (by ``ingested_at``) in [start, end)."""
    params: dict[str, Any] = {}
    sql = f"""SELECT toStartOfMinute(ingested_at) AS minute, count() AS events
FROM events
{_where([_range("ingested_at", start, end, params)])}
GROUP BY minute
ORDER BY minute"""
    return sql, params


def pipeline_status() -> Query:
    """One row: rows stored, the newest event time, the last ingest and the last dead letter."""
    sql = """SELECT
    (SELECT count() FROM events) AS events_stored,
    (SELECT max(ts) FROM events) AS last_event_ts,
    (SELECT max(ingested_at) FROM events) AS last_ingested_at,
    (SELECT count() FROM dead_letters) AS dead_letters_stored,
    (SELECT max(received_at) FROM dead_letters) AS last_dead_letter_at"""
    return sql, {}


def dead_letters_by_reason(start: datetime, end: datetime, *, samples: int = 3) -> Query:
    """Dead letters per rule in [start, end) with the commonest reasons and payload samples."""
    params: dict[str, Any] = {"samples": int(samples)}
    sql = f"""SELECT
    rule,
    count() AS dead_letters,
    sum(payload_bytes) AS payload_bytes,
    max(received_at) AS last_seen,
    topK({{samples:UInt8}})(reason) AS top_reasons,
    groupArray({{samples:UInt8}})(payload_sample) AS samples
FROM dead_letters
{_where([_range("received_at", start, end, params)])}
GROUP BY rule
ORDER BY dead_letters DESC, rule"""
    return sql, params


# -- allocation ---------------------------------------------------------------------------------

def _allocation_where(
    start: datetime,
    end: datetime,
    models: Sequence[str] | None,
    tenants: Sequence[str] | None,
    params: dict[str, Any],
) -> list[str]:
    where = [_range("ts", start, end, params), *_in("tenant_id", "tenants", tenants, params)]
    return [*where, "difficulty IS NOT NULL", *_in("model", "models", models, params)]


def allocation_bands(
    start: datetime,
    end: datetime,
    *,
    bands: int = 5,
    models: Sequence[str] | None = None,
    tenants: Sequence[str] | None = None,
) -> Query:
    """Per model, difficulty band (``band`` = 0 .. bands - 1, equal widths) and route over
    [start, end) (of ``models`` and ``tenants`` when given): requests, GPU-ms, cost, confidence
    sums, truncations and latency p95.

    >>> from datetime import UTC
    >>> sql, params = allocation_bands(datetime(2026, 3, 2, tzinfo=UTC),
    ...                                datetime(2026, 3, 3, tzinfo=UTC), models=["m"])
    >>> params["bin_width"], params["models"], "GROUP BY model, band, route" in sql
    (200000, ['m'], True)
    """
    params: dict[str, Any] = {}
    band = _bin(bands, params)
    sql = f"""SELECT
    model, {band} AS band, route,{_ALLOCATION_SUMS},
    quantileExact(0.95)(latency_ms) AS latency_p95_ms
FROM events FINAL
{_where(_allocation_where(start, end, models, tenants, params))}
GROUP BY model, band, route
ORDER BY model, band, route"""
    return sql, params


def allocation_cells(
    start: datetime,
    end: datetime,
    *,
    bins: int = 20,
    bucket_s: int = 60,
    models: Sequence[str] | None = None,
    tenants: Sequence[str] | None = None,
) -> Query:
    """The sums of :func:`allocation_bands` per model, fine difficulty bin (``bins`` equal
    widths), route and time bucket (``bucket`` = unix seconds // ``bucket_s``): what the advisor
    resamples for its intervals and compares routes on like for like."""
    params: dict[str, Any] = {"bucket_s": int(bucket_s)}
    stratum = _bin(bins, params)
    sql = f"""SELECT
    model, {stratum} AS stratum, route,
    intDiv(toUnixTimestamp(ts), {{bucket_s:UInt32}}) AS bucket,{_ALLOCATION_SUMS}
FROM events FINAL
{_where(_allocation_where(start, end, models, tenants, params))}
GROUP BY model, stratum, route, bucket
ORDER BY model, stratum, route, bucket"""
    return sql, params


def allocation_span(
    start: datetime,
    end: datetime,
    *,
    models: Sequence[str] | None = None,
    tenants: Sequence[str] | None = None,
) -> Query:
    """Over [start, end): requests, those without a difficulty, first and last ``ts``; one row,
    or none when no event matched."""
    params: dict[str, Any] = {}
    where = [_range("ts", start, end, params), *_in("tenant_id", "tenants", tenants, params),
             *_in("model", "models", models, params)]
    sql = f"""SELECT
    count() AS requests,
    countIf(difficulty IS NULL) AS without_difficulty,
    min(ts) AS first_ts,
    max(ts) AS last_ts
FROM events FINAL
{_where(where)}
HAVING requests > 0"""
    return sql, params
