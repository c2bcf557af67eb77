"""``computewatch replay`` on a simulated file, against plain JSON decoding of the same file.

The file is written once; the bench then times reading it line by line with
``msgspec.json.decode`` on each line (untyped: no validation, no engine) in this process, and
runs ``computewatch replay --events FILE`` in a child process, taking the ``events_per_s`` of
its summary line (the replay's own clock: reading, parsing, engine; not interpreter start-up).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from pipeline.bench.processes import ChildFailed
from pipeline.bench.traffic import throughput_fleet, write_events

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    events: int
    file_bytes: int
    replay_events_per_s: float
    decode_events_per_s: float
    alerts: int

    @property
    def ratio(self) -> float:
        decode = self.decode_events_per_s
        return self.replay_events_per_s / decode if decode > 0 else 0.0


def decode_rate(path: Path) -> float:
    """Events/s of reading ``path`` and JSON-decoding every line (no validation)."""
    decode = msgspec.json.decode
    count = 0
    started = time.perf_counter()
    with path.open("rb") as lines:
        for line in lines:
            decode(line)
            count += 1
    return count / (time.perf_counter() - started)


def parse_summary(line: str) -> dict[str, str]:
    """``key=value`` pairs of the replay summary line.

    >>> parse_summary("events=3 valid=3 dead_letters=0 alerts=0 seconds=0.01 events_per_s=300")
    ... # doctest: +ELLIPSIS
    {'events': '3', 'valid': '3', ..., 'events_per_s': '300'}
    """
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def replay_rate(path: Path, workdir: Path) -> dict[str, str]:
    """Run ``computewatch replay --events path`` and return its summary."""
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "replay", "--events", str(path)],
        cwd=workdir,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise ChildFailed("computewatch replay failed:\n" + result.stderr.decode()[-2_000:])
    return parse_summary(result.stdout.decode().strip().splitlines()[-1])


def measure_replay(
    events: int, tenants: int, fleet_rate: float, seed: int, workdir: Path
) -> ReplayResult:
    path = workdir / "replay.jsonl"
    config = throughput_fleet(tenants=tenants, rate=fleet_rate, events=events, seed=seed)
    written = write_events(path, config, events)
    decoded = decode_rate(path)
    summary = replay_rate(path, workdir)
    log.info("replay: %s; decode %.0f events/s", summary, decoded)
    return ReplayResult(
        events=written,
        file_bytes=path.stat().st_size,
        replay_events_per_s=int(summary["events"]) / float(summary["seconds"]),
        decode_events_per_s=decoded,
        alerts=int(summary["alerts"]),
    )
