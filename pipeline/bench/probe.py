"""``python -m pipeline.bench.probe LOG``: ``computewatch worker`` that logs when alerts land.

The embedded engine cannot be read by a second process while the worker holds it, so the
latency bench cannot poll ClickHouse from outside. This runs the unchanged worker
(:func:`pipeline.stream.run_worker` with the same ``COMPUTEWATCH_*`` settings) with one hook:
after each insert into the ``alerts`` table returns — from then on the rows are queryable — it
appends one JSON line per alert to ``LOG``: ``alert_id``, ``detected_at`` (epoch seconds, event
time) and ``visible_at`` (epoch seconds, wall clock). The hook costs nothing on the event path.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from pipeline.config import Settings
from pipeline.storage import ClickHouseSink


def log_alert_inserts(out: TextIO) -> None:
    """Wrap the sink's insert so every written alert is logged with the time it became visible."""
    insert: Callable[[ClickHouseSink, Any], None] = ClickHouseSink._insert

    def timed_insert(sink: ClickHouseSink, batch: Any) -> None:
        insert(sink, batch)
        if batch.table != "alerts":
            return
        visible_at = time.time()
        ids = batch.data.column("alert_id").to_pylist()
        detected = batch.data.column("detected_at").to_pylist()
        for alert_id, detected_at in zip(ids, detected, strict=True):
            record = {
                "alert_id": str(alert_id),
                "detected_at": detected_at.timestamp(),
                "visible_at": visible_at,
            }
            out.write(json.dumps(record) + "\n")
        out.flush()

    setattr(ClickHouseSink, "_insert", timed_insert)  # noqa: B010  (a method, on purpose)


def main(argv: Sequence[str]) -> None:
    from pipeline.stream import run_worker

    with Path(argv[0]).open("a", encoding="utf-8") as out:
        log_alert_inserts(out)
        run_worker(Settings())


if __name__ == "__main__":
    main(sys.argv[1:])
