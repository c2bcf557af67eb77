-- Worker state: one snapshot per (consumer group, topic, partition) of the processing engine
-- (windows, detector baselines, cooldowns, seen ids) with the last Kafka offset it covers.
-- A restarted or rebalanced worker restores it and skips messages at or below that offset.
CREATE TABLE IF NOT EXISTS {db}.engine_state
(
    state_key String,
    kafka_offset Int64,
    saved_at DateTime64(3, 'UTC'),
    state String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree(saved_at)
ORDER BY state_key;
