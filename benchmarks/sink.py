"""Sink write cost into the embedded engine: CPU and wall time per event, rows/s.

    .venv/bin/python benchmarks/sink.py [--workload worker|events] [--rows 90000]
                                        [--state-repeat 1] [--baseline REF] [--rounds 3]

Two workloads, both into a fresh engine directory under /tmp (removed afterwards), with the usage
materialized views running on every insert as in production:

- ``worker`` (default): what the worker pays per Kafka batch. A simulated fleet is run through
  the engine in batches of ``--batch-events`` before the clock starts; the timed part is, per
  batch, the write mark (``Store.save_snapshots`` of an empty state), ``Store.write_step`` and
  ``Store.flush`` (events, metric rows, alerts), then the engine snapshot
  (``Store.save_snapshots``), as ``PartitionEngines`` does.
- ``events``: ``ClickHouseSink.add`` for every event (pricing, row building, batching, dedup-id
  memory) plus the final ``flush``.

CPU time is ``time.process_time`` (all threads of the process, so the engine's own threads count);
wall time is noisier on a shared machine. ``--baseline REF`` also measures the code of git
revision ``REF`` (its ``pipeline`` and ``schemas`` extracted to a temporary directory) on the same
workload, alternating with this tree for ``--rounds`` rounds, and prints both with the ratio of
the medians.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clickhouse_connect.driver.client import Client

from pipeline.config import ClickHouseSettings, Settings
from pipeline.engine import Engine
from pipeline.events import AllocationEvent, encode_event, example_event
from pipeline.records import Message, StepOutput
from pipeline.simulate.fleet import FleetConfig
from pipeline.simulate.generate import simulate
from pipeline.storage.client import connect
from pipeline.storage.migrations import migrate
from pipeline.storage.sink import ClickHouseSink
from pipeline.storage.store import Store

T0 = datetime(2026, 3, 1, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Timer:
    """Accumulated CPU (``process_time``) and wall (``perf_counter``) seconds."""

    cpu: float = 0.0
    wall: float = 0.0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu += time.process_time() - cpu
            self.wall += time.perf_counter() - wall


@dataclass
class Result:
    events: int
    rows: int
    timers: dict[str, Timer] = field(default_factory=dict)
    stored: int = 0

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = {"events": self.events, "rows": self.rows, "stored": self.stored}
        for name, timer in self.timers.items():
            out[f"{name}_cpu_s"], out[f"{name}_wall_s"] = timer.cpu, timer.wall
        return out


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


def make_steps(rows: int, batch_events: int) -> list[tuple[int, StepOutput, bytes]]:
    """(last offset, engine output, engine snapshot) per batch of a simulated fleet."""
    config = FleetConfig(tenants=30, rate=40.0, hours=rows / 40.0 / 3600 * 1.6, seed=1)
    events = [e for batch in simulate(config) for e in batch.to_events()][:rows]
    messages = [
        Message(encode_event(e), topic="compute.events", partition=0, offset=i)
        for i, e in enumerate(events)
    ]
    engine = Engine(Settings())
    steps = []
    for start in range(0, len(messages), batch_events):
        chunk = messages[start : start + batch_events]
        steps.append((chunk[-1].offset, engine.process(chunk), engine.snapshot()))
    return steps


@contextmanager
def bench_client(batch_rows: int) -> Iterator[tuple[Settings, Client]]:
    """Settings and a migrated client on a fresh engine directory, removed afterwards."""
    root = tempfile.mkdtemp(prefix="cw-bench-")
    ch = ClickHouseSettings(url=f"chdb://{root}/engine", database="bench", batch_rows=batch_rows)
    client = connect(ch, create_database=True)
    try:
        migrate(client, ch)
        yield Settings(clickhouse=ch), client
    finally:
        client.close()
        shutil.rmtree(root, ignore_errors=True)


def warm_up(sink: ClickHouseSink, store: Store) -> None:
    """One tiny write of each kind, so one-off imports and caches are not timed."""
    sink.add(example_event(event_id=str(uuid.UUID(int=1, version=4)), ts=T0 - timedelta(days=1)))
    sink.flush()
    store.save_snapshots([("warm-up", 0, b"")])


def measure_events(rows: int, batch_rows: int) -> Result:
    """``sink.add`` for every event, then ``flush``."""
    events = make_events(rows)
    result = Result(events=rows, rows=rows, timers={"write": Timer()})
    with bench_client(batch_rows) as (settings, client):
        sink = ClickHouseSink.from_settings(
            client, settings, batch_seconds=3600.0, max_buffer_rows=rows
        )
        warm_up(sink, Store(client, sink))
        with result.timers["write"]():
            for event in events:
                sink.add(event)
            sink.flush()
        result.stored = client.query("SELECT count() FROM events").result_rows[0][0] - 1
    return result


def measure_worker(rows: int, batch_rows: int, batch_events: int, state_repeat: int = 1) -> Result:
    """Per batch: write mark, ``write_step`` + ``flush``, engine snapshot (as the worker).

    ``state_repeat`` > 1 stores each snapshot that many times over in one blob, for the tens of
    megabytes a worker with many keys saves.
    """
    steps = make_steps(rows, batch_events)
    written = sum(
        len(o.events) + len(o.metrics) + len(o.alerts) + len(o.dead_letters) for _, o, _ in steps
    )
    result = Result(
        events=sum(len(o.events) for _, o, _ in steps),
        rows=written,
        timers={"write": Timer(), "snapshots": Timer()},
    )
    write, snapshots = result.timers["write"], result.timers["snapshots"]
    with bench_client(batch_rows) as (settings, client):
        sink = ClickHouseSink.from_settings(client, settings, batch_seconds=3600.0)
        store = Store(client, sink)
        warm_up(sink, store)
        for offset, out, small_state in steps:
            state = small_state * state_repeat
            with snapshots():
                store.save_snapshots([("bench/0#written", offset, b"")])
            with write():
                store.write_step(out)
                store.flush()
            with snapshots():
                store.save_snapshots([("bench/0", offset, state)])
        result.stored = client.query("SELECT count() FROM events").result_rows[0][0] - 1
        assert store.load_snapshot("bench/0") == (steps[-1][0], steps[-1][2] * state_repeat)
    return result


def run(args: argparse.Namespace) -> Result:
    if args.workload == "events":
        return measure_events(args.rows, args.batch_rows)
    return measure_worker(args.rows, args.batch_rows, args.batch_events, args.state_repeat)


@contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """``pipeline`` and ``schemas`` of git revision ``ref`` in a temporary directory."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref, "pipeline", "schemas"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    root = tempfile.mkdtemp(prefix="cw-bench-ref-")
    try:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(root, filter="data")
        yield Path(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_child(code_root: Path, argv: list[str]) -> dict[str, float]:
    """This benchmark, once, with ``code_root``'s ``pipeline`` package; its result."""
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    done = subprocess.run(
        [sys.executable, __file__, *argv, "--json"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout.splitlines()[-1]))


def describe(label: str, result: dict[str, float], timers: list[str]) -> str:
    parts = [f"{label:>9}: events={result['events']:.0f} rows={result['rows']:.0f}"]
    for name in timers:
        cpu, wall = result[f"{name}_cpu_s"], result[f"{name}_wall_s"]
        parts.append(
            f"{name} cpu={cpu:.2f}s ({cpu / result['events'] * 1e6:.1f} µs/event) "
            f"wall={wall:.2f}s ({result['rows'] / wall:,.0f} rows/s)"
            if name == "write"
            else f"{name} cpu={cpu:.2f}s wall={wall:.2f}s"
        )
    return " | ".join(parts)


def compare(args: argparse.Namespace, argv: list[str]) -> None:
    """Alternate the baseline revision and this tree; print each round and the medians."""
    timers = ["write"] if args.workload == "events" else ["write", "snapshots"]
    results: dict[str, list[dict[str, float]]] = {"baseline": [], "this": []}
    with checkout(args.baseline) as old:
        for _ in range(args.rounds):
            for label, root in (("baseline", old), ("this", REPO)):
                result = run_child(root, argv)
                results[label].append(result)
                sys.stdout.write(describe(label, result, timers) + "\n")
                sys.stdout.flush()
    medians = {
        label: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for label, runs in results.items()
    }
    sys.stdout.write(f"median of {args.rounds} (baseline = {args.baseline}):\n")
    for label, result in medians.items():
        sys.stdout.write(describe(label, result, timers) + "\n")
    for name in timers:
        for kind in ("cpu", "wall"):
            key = f"{name}_{kind}_s"
            ratio = medians["baseline"][key] / medians["this"][key]
            sys.stdout.write(f"{name} {kind}: {ratio:.2f}x less time than the baseline\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("worker", "events"), default="worker")
    parser.add_argument("--rows", type=int, default=90_000, help="events")
    parser.add_argument("--batch-rows", type=int, default=20_000, help="the sink's batch_rows")
    parser.add_argument("--batch-events", type=int, default=5_000, help="events per worker batch")
    parser.add_argument(
        "--state-repeat", type=int, default=1, help="store each engine snapshot N times over"
    )
    parser.add_argument("--baseline", metavar="REF", help="also measure git revision REF")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    child_argv = [
        "--workload", args.workload, "--rows", str(args.rows),
        "--batch-rows", str(args.batch_rows), "--batch-events", str(args.batch_events),
        "--state-repeat", str(args.state_repeat),
    ]  # fmt: skip
    if args.baseline:
        compare(args, child_argv)
        return
    result = run(args).as_dict()
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    timers = ["write"] if args.workload == "events" else ["write", "snapshots"]
    sys.stdout.write(describe("this", result, timers) + f" | stored={result['stored']:.0f}\n")


if __name__ == "__main__":
    main()
