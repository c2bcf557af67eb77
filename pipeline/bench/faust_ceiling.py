"""The Faust ceiling: the worker's Faust app with an agent that only counts its batches.

Run as ``python -m pipeline.bench.faust_ceiling RESULT_FILE EXPECTED`` with the worker's
``COMPUTEWATCH_*`` variables. Same app settings, same topic and the same batching as
``computewatch worker`` (:func:`pipeline.stream.faust_app`, :func:`pipeline.stream.take_batches`),
but no engine, no storage and no snapshots: how fast Faust alone hands one process the
messages. Once ``EXPECTED`` messages have arrived it writes one JSON object to RESULT_FILE
(messages, and messages and seconds from the end of the first batch to the last, as the other
rates are counted) and waits to be stopped.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import faust

from pipeline.config import Settings
from pipeline.faust_delivery import RecordBatch
from pipeline.stream import faust_app, records, take_batches


def create_counting_app(settings: Settings, result: Path, expected: int) -> faust.App:
    app, events_topic = faust_app(settings)

    @app.agent(events_topic)
    async def count(stream: faust.StreamT[RecordBatch]) -> None:
        seen, first_count, first_done = 0, 0, 0.0
        async for batch in take_batches(stream):
            seen += records(batch)
            if not first_done:
                first_count, first_done = seen, time.perf_counter()
            if seen >= expected and not result.exists():
                found = {
                    "messages": seen,
                    "rate_messages": seen - first_count,
                    "seconds": time.perf_counter() - first_done,
                }
                result.write_text(json.dumps(found))

    return app


def main(argv: list[str]) -> None:
    from faust.worker import Worker

    result, expected = Path(argv[0]), int(argv[1])
    app = create_counting_app(Settings(), result, expected)
    Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
