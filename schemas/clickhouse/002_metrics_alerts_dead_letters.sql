-- One row per closed 1-minute window per (tenant, api key, model, route, server): MetricRow.
-- A replayed window replaces the earlier copy (ReplacingMergeTree; queries use FINAL).
CREATE TABLE IF NOT EXISTS {db}.metrics_1m
(
    window_start DateTime('UTC'),
    tenant_id LowCardinality(String),
    api_key_id String,
    model LowCardinality(String),
    route LowCardinality(String),
    server_id LowCardinality(String),
    requests UInt64,
    prompt_tokens UInt64,
    completion_tokens UInt64,
    reasoning_tokens UInt64,
    passes UInt64,
    gpu_ms Float64,
    latency_ms_sum Float64,
    budget_tokens UInt64,
    budgeted_generated_tokens UInt64,
    confidence_sum Float64,
    confidence_count UInt64,
    truncated UInt64,
    timeouts UInt64,
    errors UInt64,
    cancelled UInt64,
    latency_hist Map(UInt16, UInt64),
    latency_p50_ms Float64,
    latency_p95_ms Float64,
    latency_p99_ms Float64,
    cost_usd Decimal(18, 9)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(window_start)
ORDER BY (window_start, tenant_id, api_key_id, model, route, server_id)
TTL window_start + INTERVAL {events_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Alerts (the alert contract); evidence is the contract's JSON object as a string.
-- alert_id is deterministic, so a re-raised alert replaces its earlier copy.
CREATE TABLE IF NOT EXISTS {db}.alerts
(
    alert_id UUID,
    kind LowCardinality(String),
    entity_type LowCardinality(String),
    entity_id String,
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    detected_at DateTime64(3, 'UTC'),
    score Float64,
    severity LowCardinality(String),
    summary String,
    evidence String,
    event_count UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(detected_at)
ORDER BY (detected_at, alert_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- Triage is an append-only log; the current state of an alert is its latest row
-- (argMax by (updated_at, version)); an alert without rows is 'new'.
CREATE TABLE IF NOT EXISTS {db}.alert_triage
(
    alert_id UUID,
    status LowCardinality(String),
    actor String,
    note String,
    updated_at DateTime64(3, 'UTC'),
    version UInt64
)
ENGINE = MergeTree
ORDER BY (alert_id, updated_at, version);

-- Messages that broke the event contract: why, where from, and a bounded sample of the bytes.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    received_at DateTime64(3, 'UTC'),
    reason String,
    rule LowCardinality(String),
    topic LowCardinality(String),
    partition Int32,
    offset Int64,
    payload_sample String,
    payload_bytes UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (received_at, rule)
TTL toDateTime(received_at) + INTERVAL {events_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;
