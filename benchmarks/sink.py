"""Sink insert throughput into the embedded engine's ``events`` table (rows/s).

    .venv/bin/python benchmarks/sink.py [--rows 200000] [--batch-rows 20000]

Events are built before the clock starts; the timed part is ``ClickHouseSink.add`` for every
event (pricing, row building, batching, dedup-id memory) plus the final ``flush``, i.e. what the
worker pays per event. The usage materialized views run on every insert, as in production.
The data goes to a temporary directory under /tmp, removed afterwards.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

from pipeline.config import ClickHouseSettings, Settings
from pipeline.events import AllocationEvent, example_event
from pipeline.storage.client import connect
from pipeline.storage.migrations import migrate
from pipeline.storage.sink import ClickHouseSink

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def make_events(n: int, seed: int = 7) -> list[AllocationEvent]:
    rng = random.Random(seed)
    return [
        example_event(
            event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            ts=T0 + timedelta(milliseconds=i * 40),
            tenant_id=f"tenant-{rng.randint(1, 50)}",
            api_key_id=f"key-{rng.randint(1, 500)}",
            model=rng.choice(("reasoner-large", "reasoner-small", "chat-fast")),
            server_id=f"gpu-{rng.randint(1, 64):02d}",
            reasoning_tokens=rng.randint(0, 20_000),
            gpu_ms=rng.uniform(10.0, 20_000.0),
            latency_ms=rng.uniform(50.0, 60_000.0),
        )
        for i in range(n)
    ]


def measure(rows: int = 200_000, batch_rows: int = 20_000) -> dict[str, float]:
    """Rows/s through the sink (and the stored count, as a check)."""
    events = make_events(rows)
    root = tempfile.mkdtemp(prefix="cw-bench-")
    ch = ClickHouseSettings(url=f"chdb://{root}/engine", database="bench", batch_rows=batch_rows)
    client = connect(ch, create_database=True)
    try:
        migrate(client, ch)
        sink = ClickHouseSink.from_settings(
            client, Settings(clickhouse=ch), batch_seconds=3600.0, max_buffer_rows=rows
        )
        start = time.perf_counter()
        for event in events:
            sink.add(event)
        sink.flush()
        seconds = time.perf_counter() - start
        stored = client.query("SELECT count() FROM events").result_rows[0][0]
    finally:
        client.close()
        shutil.rmtree(root, ignore_errors=True)
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "stored": stored}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-rows", type=int, default=20_000)
    args = parser.parse_args(argv)
    result = measure(args.rows, args.batch_rows)
    sys.stdout.write(
        f"sink events rows={result['rows']:.0f} batch_rows={args.batch_rows} "
        f"seconds={result['seconds']:.2f} rows_per_s={result['rows_per_s']:.0f} "
        f"stored={result['stored']:.0f}\n"
    )


if __name__ == "__main__":
    main()
