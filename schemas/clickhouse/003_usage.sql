-- Usage rollups per hour and per day, per tenant, api key and model, fed by materialized views
-- from events. They keep no TTL: bills outlive the raw events.
-- Exactness: gpu time is summed as integer microseconds (round(gpu_ms * 1000), banker's rounding
-- like Python's round) and cost as Decimal, so sums never depend on the order of addition.
-- Retried inserts: these tables carry non_replicated_deduplication_window too, so when a retried
-- events insert (same insert_deduplication_token) is dropped, the view's block derived from it
-- is dropped here as well (deduplicate_blocks_in_dependent_materialized_views, on by default);
-- without the window here a retried insert would be counted twice
-- (tests/integration/test_storage_dedup.py).
CREATE TABLE IF NOT EXISTS {db}.usage_hourly
(
    hour DateTime('UTC'),
    tenant_id LowCardinality(String),
    api_key_id String,
    model LowCardinality(String),
    requests UInt64,
    prompt_tokens UInt64,
    completion_tokens UInt64,
    reasoning_tokens UInt64,
    passes UInt64,
    gpu_us UInt64,
    cost_usd Decimal(38, 9)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant_id, hour, api_key_id, model)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {db}.usage_daily
(
    day Date,
    tenant_id LowCardinality(String),
    api_key_id String,
    model LowCardinality(String),
    requests UInt64,
    prompt_tokens UInt64,
    completion_tokens UInt64,
    reasoning_tokens UInt64,
    passes UInt64,
    gpu_us UInt64,
    cost_usd Decimal(38, 9)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, day, api_key_id, model)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_hourly_mv TO {db}.usage_hourly AS
SELECT
    toStartOfHour(ts) AS hour,
    tenant_id,
    api_key_id,
    model,
    count() AS requests,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(passes) AS passes,
    sum(toUInt64(round(gpu_ms * 1000))) AS gpu_us,
    sum(cost_usd) AS cost_usd
FROM {db}.events
GROUP BY hour, tenant_id, api_key_id, model;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_daily_mv TO {db}.usage_daily AS
SELECT
    toDate(ts) AS day,
    tenant_id,
    api_key_id,
    model,
    count() AS requests,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(passes) AS passes,
    sum(toUInt64(round(gpu_ms * 1000))) AS gpu_us,
    sum(cost_usd) AS cost_usd
FROM {db}.events
GROUP BY day, tenant_id, api_key_id, model;
