-- Engine snapshots are rewritten every batch (and again by each background merge of the
-- table), so their codec is paid per batch: LZ4 costs a fraction of ZSTD(3)'s CPU for blobs of
-- megabytes (benchmarks/sink.py). Parts written before this keep ZSTD until they are merged.
ALTER TABLE {db}.engine_state MODIFY COLUMN state String CODEC(LZ4);
