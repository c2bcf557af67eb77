-- Budgets (pipeline/budgets.py): one per (entity, period, unit), the latest version wins.
-- Seeded from COMPUTEWATCH_BUDGETS_FILE (a budget the table has never had), edited from the
-- dashboard by the admin and finance roles; a removed budget keeps a row with deleted = 1, so
-- the file does not bring it back. The worker's fleet stage re-reads the table.
CREATE TABLE IF NOT EXISTS {db}.budgets
(
    entity_type LowCardinality(String),
    entity_id String,
    period LowCardinality(String),
    unit LowCardinality(String),
    amount Decimal(18, 9),
    deleted UInt8,
    updated_by String,
    updated_at DateTime64(3, 'UTC'),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (entity_type, entity_id, period, unit);
