"""``computewatch bench``: throughput, latency and memory of the pipeline against the limit.

One run against the real local broker measures, side by side: a bare consumer (the limit),
the full worker on one process, event-to-alert latency at a sustained rate, ``replay`` against
plain JSON decoding, the engine's peak memory with many keys, and two workers in one group.
:func:`run_bench` returns a :class:`BenchReport`; :func:`markdown` and :func:`text` render it,
:func:`update_readme` puts it between the README's bench markers. One module per part.
"""

from pipeline.bench.config import PARTS, BenchConfig, parse_parts
from pipeline.bench.report import BenchReport
from pipeline.bench.runner import run_bench
from pipeline.bench.table import markdown, text, update_readme

__all__ = [
    "PARTS",
    "BenchConfig",
    "BenchReport",
    "markdown",
    "parse_parts",
    "run_bench",
    "text",
    "update_readme",
]
