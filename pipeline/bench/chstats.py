"""What stopped workers wrote: run as ``python -m pipeline.bench.chstats URL [URL ...]``.

Each worker has its own embedded-engine path, which only one process can open at a time, so
the bench reads them here, in a child, one after the other once the workers have stopped. It
prints one JSON object: per path the events rows, distinct event ids and alerts; over all
paths the union of event ids and the processing rate.

The rate comes from ``ingested_at``, the wall-clock stamp the ClickHouse sink puts on each
event row as the worker hands it the engine's output. A worker stamps the rows of one engine
step in a burst; the first burst is left out with the time before it (start-up, group join,
the first step), so the rate is events per second from the end of the first step to the
last event row:

>>> import numpy as np
>>> stamps = np.array([1000, 1001, 1002, 1400, 1401, 1800, 1801])  # ms: three steps
>>> throughput([stamps])
(4, 0.799)
>>> throughput([stamps, np.array([1100, 1101, 1500, 1900])])  # from the earliest first step
(8, 0.898)
>>> busy_window([stamps, np.array([1100, 1101, 1500, 1900])])  # while both were busy
(5, 0.7)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from pipeline.config import ClickHouseSettings
from pipeline.storage import connect

STEP_GAP_MS = 50
"""A pause longer than this between two stamps ends a burst (one engine step's rows)."""

Stamps = NDArray[np.int64]


def first_burst_end(stamps: Stamps, gap_ms: int = STEP_GAP_MS) -> int:
    """The last stamp of the first burst of sorted ``stamps`` (ms)."""
    gaps = np.flatnonzero(np.diff(stamps) > gap_ms)
    return int(stamps[gaps[0]] if len(gaps) else stamps[-1])


def throughput(per_worker: Sequence[Stamps]) -> tuple[int, float]:
    """(rows, seconds) from the end of the earliest first burst to the last stamp of any."""
    filled = [s for s in per_worker if len(s)]
    if not filled:
        return 0, 0.0
    start = min(first_burst_end(s) for s in filled)
    end = max(int(s[-1]) for s in filled)
    rows = sum(int(np.count_nonzero(s > start)) for s in filled)
    return rows, (end - start) / 1000.0


def busy_window(per_worker: Sequence[Stamps]) -> tuple[int, float]:
    """(rows, seconds) between the latest first-burst end and the earliest last stamp."""
    filled = [s for s in per_worker if len(s)]
    if len(filled) < len(per_worker) or not filled:
        return 0, 0.0
    start = max(first_burst_end(s) for s in filled)
    end = min(int(s[-1]) for s in filled)
    if end <= start:
        return 0, 0.0
    rows = sum(int(np.count_nonzero((s > start) & (s <= end))) for s in filled)
    return rows, (end - start) / 1000.0


def read_path(url: str) -> tuple[Stamps, set[str], int]:
    """Sorted ingestion stamps (ms), event ids and alert count of one worker's database."""
    client = connect(ClickHouseSettings(url=url))
    try:
        stamps = client.query(
            "SELECT toUnixTimestamp64Milli(ingested_at) FROM events ORDER BY ingested_at"
        ).result_columns
        ids = client.query("SELECT toString(event_id) FROM events").result_rows
        [[alerts]] = client.query("SELECT count() FROM alerts").result_rows
    finally:
        client.close()
    ordered = np.asarray(stamps[0] if stamps else [], dtype=np.int64)
    return ordered, {row[0] for row in ids}, int(alerts)


def stats(urls: Sequence[str]) -> dict[str, Any]:
    per_worker: list[Stamps] = []
    union: set[str] = set()
    paths = []
    for url in urls:
        stamps, ids, alerts = read_path(url)
        per_worker.append(stamps)
        union |= ids
        paths.append({"rows": len(stamps), "distinct": len(ids), "alerts": alerts})
    rows, seconds = throughput(per_worker)
    busy_rows, busy_seconds = busy_window(per_worker)
    return {
        "paths": paths,
        "rows": sum(p["rows"] for p in paths),
        "distinct": len(union),
        "rate_rows": rows,
        "rate_seconds": seconds,
        "busy_rows": busy_rows,
        "busy_seconds": busy_seconds,
    }


def main(argv: Sequence[str]) -> None:
    sys.stdout.write(msgspec.json.encode(stats(argv)).decode() + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
