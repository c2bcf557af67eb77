"""Simulated traffic to its destinations: files, Kafka, or the engine in-process; evaluation.

These are the library halves of ``computewatch simulate``, ``evaluate`` and ``demo``.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.alerts import Alert
from pipeline.config import Settings
from pipeline.embedded import OutputHandler, replay_file
from pipeline.engine import Engine, StepOutput
from pipeline.evaluation import Report, evaluate
from pipeline.events import AllocationEvent
from pipeline.simulate import (
    EventBatch,
    Fleet,
    FleetConfig,
    Incident,
    Scenario,
    build_fleet,
    default_suite,
    labels_for,
    load_labels,
    paced,
    save_labels,
    simulate,
    write_jsonl,
)
from pipeline.simulate.workloads import WORKLOADS, Workload

DEFAULT_WORKLOAD = WORKLOADS["default"]

log = logging.getLogger(__name__)


def scenarios_for(
    config: FleetConfig, incidents: bool, fleet: Fleet | None = None
) -> tuple[list[Scenario], list[Incident]]:
    """The default suite placed on ``config``'s fleet (or nothing), and its labels."""
    if not incidents:
        return [], []
    fleet = fleet or build_fleet(config)
    suite = default_suite(config, fleet=fleet)
    return suite, labels_for(suite, fleet)


def simulate_batches(
    config: FleetConfig, incidents: bool = True, workload: Workload = DEFAULT_WORKLOAD
) -> tuple[Iterator[EventBatch], list[Incident]]:
    """The ``workload``'s traffic on ``config``'s fleet with the default suite (or none)."""
    fleet = build_fleet(config)
    suite, labels = scenarios_for(config, incidents, fleet)
    arrivals = workload.arrivals(fleet)
    return simulate(config, suite, fleet=fleet, arrivals=arrivals), labels


def simulate_to_files(
    config: FleetConfig,
    out: Path,
    labels: Path | None,
    incidents: bool = True,
    workload: Workload = DEFAULT_WORKLOAD,
) -> int:
    """Fast-forward ``config`` to a JSONL file (and the labels file); return the event count."""
    batches, incident_labels = simulate_batches(config, incidents, workload)
    count = write_jsonl(out, batches)
    if labels is not None:
        save_labels(labels, incident_labels)
    return count


def simulated_events(
    config: FleetConfig, incidents: bool = True, workload: Workload = DEFAULT_WORKLOAD
) -> Iterator[AllocationEvent]:
    batches, _ = simulate_batches(config, incidents, workload)
    for batch in batches:
        yield from batch.to_events()


def simulate_to_kafka(
    config: FleetConfig,
    settings: Settings,
    *,
    realtime: bool,
    incidents: bool = True,
    progress: Callable[[int], None] | None = None,
    workload: Workload = DEFAULT_WORKLOAD,
) -> int:
    """Send simulated events to the events topic, paced at ``config.rate``/s when ``realtime``."""
    from pipeline.producer import TelemetryEmitter

    if realtime:
        config = replace(config, start=datetime.now(UTC).replace(microsecond=0))
    events = simulated_events(config, incidents, workload)
    stream = paced(events, config.rate) if realtime else events
    sent = 0
    with TelemetryEmitter(settings.kafka) as emitter:
        for event in stream:
            while not emitter.emit(event):  # queue full: wait for the broker, lose nothing
                emitter.flush(timeout=1.0)
            sent += 1
            if progress is not None and sent % 10_000 == 0:
                progress(sent)
        emitter.flush(timeout=60.0)
        stats = emitter.stats
    if stats.dropped or stats.failed:
        raise RuntimeError(f"{stats.dropped} events dropped and {stats.failed} failed")
    return sent


def evaluate_files(events: Path, labels: Path, settings: Settings) -> tuple[Report, str]:
    """Replay ``events`` through the engine and score its alerts against ``labels``."""
    alerts: list[Alert] = []
    summary = replay_file(events, settings, [lambda out: alerts.extend(out.alerts)])
    return evaluate(alerts, load_labels(labels)), summary.line()


def evaluate_suite(
    config: FleetConfig, settings: Settings, workload: Workload = DEFAULT_WORKLOAD
) -> tuple[Report, str]:
    """Simulate the default suite on ``workload`` into a temporary folder and evaluate it."""
    with tempfile.TemporaryDirectory(prefix="computewatch-eval-") as tmp:
        events, labels = Path(tmp) / "events.jsonl", Path(tmp) / "labels.json"
        simulate_to_files(config, events, labels, workload=workload)
        return evaluate_files(events, labels, settings)


class LiveFeed(threading.Thread):
    """A simulated fleet in real time through the engine into ``handler`` (the demo's feed).

    ``backfill_hours`` of history are fast-forwarded first so the dashboard has something to
    show (and the detectors a baseline) at once; then events flow at ``config.rate`` per second.
    """

    def __init__(
        self,
        config: FleetConfig,
        settings: Settings,
        handler: OutputHandler,
        *,
        backfill_hours: float = 3.0,
        batch: int = 500,
    ) -> None:
        super().__init__(name="computewatch-demo-feed", daemon=True)
        self.config = config
        self.engine = Engine(settings)
        self.handler = handler
        self.backfill_hours = backfill_hours
        self.batch = batch
        self.stopping = threading.Event()

    def run(self) -> None:
        start = datetime.now(UTC).replace(second=0, microsecond=0)
        start -= timedelta(hours=self.backfill_hours)
        config = replace(self.config, start=start, hours=self.backfill_hours + self.config.hours)
        events = simulated_events(config, incidents=True)
        pending: list[AllocationEvent] = []
        for event in events:
            if self.stopping.is_set():
                return
            if event.ts > datetime.now(UTC):
                self._flush(pending)
                pending = []
                self.stopping.wait((event.ts - datetime.now(UTC)).total_seconds())
            pending.append(event)
            if len(pending) >= self.batch:
                self._flush(pending)
                pending = []
        self._flush(pending)

    def _flush(self, events: list[AllocationEvent]) -> None:
        if events:
            out: StepOutput = self.engine.process_events(events)
            self.handler(out)

    def stop(self) -> None:
        self.stopping.set()
