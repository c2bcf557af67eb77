-- Raw allocation events (contract v1), one row per request, plus the cost computed at ingest.
-- ReplacingMergeTree: the sorting key ends in event_id and the other key columns (tenant, ts)
-- are fields of the same event, so a re-sent event collapses to one row (queries use FINAL).
-- non_replicated_deduplication_window: a retried insert with the same insert_deduplication_token
-- is dropped whole, by this table and, through deduplicate_blocks_in_dependent_materialized_views,
-- by the usage rollups fed from it (see 003_usage.sql).
CREATE TABLE IF NOT EXISTS {db}.events
(
    event_id UUID,
    ts DateTime64(6, 'UTC'),
    tenant_id LowCardinality(String),
    api_key_id String,
    model LowCardinality(String),
    server_id LowCardinality(String),
    route LowCardinality(String),
    difficulty Nullable(Float64),
    prompt_tokens UInt64,
    completion_tokens UInt64,
    reasoning_tokens UInt64,
    passes UInt64,
    budget_tokens Nullable(UInt64),
    gpu_ms Float64,
    latency_ms Float64,
    ttft_ms Nullable(Float64),
    confidence Nullable(Float64),
    status LowCardinality(String),
    gpu_type LowCardinality(Nullable(String)),
    region LowCardinality(Nullable(String)),
    schema_version LowCardinality(String),
    cost_usd Decimal(18, 9),
    ingested_at DateTime64(3, 'UTC'),
    INDEX ingested_at_minmax ingested_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (tenant_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {events_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;
