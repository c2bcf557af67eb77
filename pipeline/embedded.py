"""In-process runner: the worker's engine fed from a JSONL file (``replay``) or a simulated fleet.

>>> import tempfile, pathlib
>>> from pipeline.config import Settings
>>> from pipeline.events import encode_event, example_event
>>> path = pathlib.Path(tempfile.mkdtemp()) / "events.jsonl"
>>> _ = path.write_bytes(encode_event(example_event()) + b"\\n{oops\\n")
>>> summary = replay_file(path, Settings())
>>> summary.line().split(" seconds=")[0]
'events=2 valid=1 dead_letters=1 alerts=0'
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import msgspec

from pipeline.alerts import encode_alert
from pipeline.collector import long_run_collector
from pipeline.config import Settings
from pipeline.engine import Engine
from pipeline.progress import ProgressFn
from pipeline.records import DeadLetter, Message, StepOutput
from pipeline.topology import Topology

OutputHandler = Callable[[StepOutput], None]
APART_MIN_BYTES: Final = 16_000_000  # about 40,000 events: a replay of several seconds

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    events: int
    valid: int
    dead_letters: int
    duplicates: int
    alerts: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"events={self.events} valid={self.valid} dead_letters={self.dead_letters} "
            f"alerts={self.alerts} seconds={self.seconds:.2f} events_per_s={self.events_per_s:.0f}"
        )


def read_messages(path: Path, batch_size: int = 5_000) -> Iterator[list[Message]]:
    """Batches of messages from a JSONL file; the source is the file and the line number."""
    topic = str(path)
    batch: list[Message] = []
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            value = line.rstrip(b"\r\n")
            if not value.strip():
                continue
            batch.append(Message(value, topic=topic, partition=0, offset=lineno))
            if len(batch) >= batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


def replay_file(
    path: Path,
    settings: Settings,
    handlers: list[OutputHandler] | None = None,
    engine: Engine | Topology | None = None,
    progress: ProgressFn | None = None,
    metric_rows: bool = True,
) -> ReplaySummary:
    """Run the pipeline over a JSONL file in event time and hand every step's output on;
    ``progress`` hears of each step (stage ``replaying``). The pipeline is by default the
    two stages over the production partition count (``kafka.partitions``), whose steps carry
    metric rows only if ``metric_rows`` (no handler that reads them, no need to build them),
    with the fleet stage judging in a process of its own when :func:`judges_apart` says so."""
    with contextlib.ExitStack() as made:  # closes the topology made here (its judge)
        if engine is None:
            topology = Topology(
                settings,
                settings.kafka.partitions,
                metric_rows=metric_rows,
                judge_apart=judges_apart(path),
            )
            engine = made.enter_context(contextlib.closing(topology))
        log.info("replaying %s (%.1f MB)", path, path.stat().st_size / 1e6)
        with long_run_collector():
            started = time.perf_counter()
            steps = (engine.process(batch) for batch in read_messages(path))
            for out in _with_finish(steps, engine):
                for handler in handlers or ():
                    handler(out)
                if out.alerts and log.isEnabledFor(logging.INFO):
                    _log_alerts(out)
                if progress is not None:
                    progress("replaying", engine.counters["events"], engine.clock_s)
    c = engine.counters
    return ReplaySummary(
        events=c["events"],
        valid=c["valid"],
        dead_letters=c["dead_letters"],
        duplicates=c["duplicates"],
        alerts=c["alerts"],
        seconds=time.perf_counter() - started,
    )


def judges_apart(path: Path) -> bool:
    """Whether a replay of ``path`` judges the fleet in a process of its own
    (:class:`~pipeline.fleet_judge.FleetJudge`): with two CPUs or more to run on, for a file
    of :data:`APART_MIN_BYTES` or more (starting the process takes about a second)."""
    return _usable_cpus() >= 2 and path.stat().st_size >= APART_MIN_BYTES


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the CPUs this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _log_alerts(out: StepOutput) -> None:
    for alert in out.alerts:
        when = f"{alert.detected_at:%Y-%m-%d %H:%M}"
        log.info("alert %s %s on %s %s at %s: %s", alert.severity, alert.kind,
                 alert.entity_type, alert.entity_id, when, alert.summary)  # fmt: skip


def _with_finish(steps: Iterator[StepOutput], engine: Engine | Topology) -> Iterator[StepOutput]:
    yield from steps
    yield engine.finish()


class AlertsWriter:
    """Writes each alert as one JSON line (the ``--alerts-out`` file)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh

    def __call__(self, out: StepOutput) -> None:
        for alert in out.alerts:
            self.fh.write(encode_alert(alert) + b"\n")


class DeadLettersWriter:
    """Writes each dead letter as one JSON line: reason, source and the original payload."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh

    def __call__(self, out: StepOutput) -> None:
        for dead in out.dead_letters:
            self.fh.write(encode_dead_letter(dead) + b"\n")


def encode_dead_letter(dead: DeadLetter) -> bytes:
    """JSON for a dead letter; the payload is text when it is UTF-8, else base64."""
    try:
        payload: dict[str, str] = {"payload": dead.payload.decode("utf-8")}
    except UnicodeDecodeError:
        payload = {"payload_base64": base64.b64encode(dead.payload).decode("ascii")}
    record = {
        "reason": dead.reason,
        "rule": dead.rule,
        "topic": dead.topic,
        "partition": dead.partition,
        "offset": dead.offset,
        **payload,
    }
    return msgspec.json.encode(record)
