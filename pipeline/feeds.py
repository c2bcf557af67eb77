"""Simulated traffic to its destinations: files, Kafka, or the engine in-process; evaluation.

These are the library halves of ``computewatch simulate``, ``evaluate`` and ``demo``.
"""

from __future__ import annotations

import logging
import math
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.config import Settings
from pipeline.embedded import OutputHandler, replay_file
from pipeline.engine import Engine
from pipeline.evaluation import Membership, Report, evaluate
from pipeline.events import AllocationEvent
from pipeline.progress import ProgressFn
from pipeline.records import Alert, StepOutput
from pipeline.simulate import (
    EventBatch,
    Fleet,
    FleetConfig,
    HorizonTooShort,
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


class UnusableInput(ValueError):
    """The events or labels given to an evaluation cannot give a meaningful score."""


def scenarios_for(
    config: FleetConfig, incidents: bool, fleet: Fleet | None = None
) -> tuple[list[Scenario], list[Incident]]:
    """The default suite placed on ``config``'s fleet (or nothing), and its labels."""
    if not incidents:
        return [], []
    fleet = fleet or build_fleet(config)
    suite = default_suite(config, fleet=fleet)
    for s in suite:
        log.info(
            "scenario %s (%s) on %s %s from %s to %s",
            s.kind,
            s.variant,
            s.entity_type,
            s.entity_id,
            f"{s.start:%Y-%m-%d %H:%M}",
            f"{s.end:%H:%M}",
        )
    return suite, labels_for(suite, fleet)


def simulate_batches(
    config: FleetConfig,
    incidents: bool = True,
    workload: Workload = DEFAULT_WORKLOAD,
    planted: Sequence[Scenario] = (),
) -> tuple[Iterator[EventBatch], list[Incident]]:
    """The ``workload``'s traffic on ``config``'s fleet with the default suite (or none) and the
    ``planted`` scenarios (such as :func:`~pipeline.simulate.planted_misrouting`)."""
    fleet = build_fleet(config)
    suite, labels = scenarios_for(config, incidents, fleet)
    if planted:
        suite = [*suite, *planted]
        labels = labels_for(suite, fleet)
    arrivals = workload.arrivals(fleet)
    return simulate(config, suite, fleet=fleet, arrivals=arrivals), labels


def shortest_suite_hours(config: FleetConfig, step: float = 0.25) -> float | None:
    """The fewest hours, in ``step`` s from ``config.hours`` up to a week, that the default suite
    fits in with ``config``'s fleet, seed and start (None if none does)."""
    for quarter in range(math.ceil(config.hours / step), round(7 * 24 / step) + 1):
        try:
            default_suite(replace(config, hours=quarter * step))
        except HorizonTooShort:
            continue
        return quarter * step
    return None


def simulate_to_files(
    config: FleetConfig,
    out: Path,
    labels: Path | None,
    incidents: bool = True,
    workload: Workload = DEFAULT_WORKLOAD,
    progress: ProgressFn | None = None,
    planted: Sequence[Scenario] = (),
) -> int:
    """Fast-forward ``config`` to a JSONL file (and the labels file); return the event count.

    ``progress`` hears of each batch written (stage ``simulating``); ``planted`` scenarios join
    the suite (see :func:`simulate_batches`).
    """
    log.info("simulating %s for %g h from %s: %d tenants, %g req/s, seed %d", workload.name,
             config.hours, f"{config.start:%Y-%m-%d %H:%M:%S %Z}", config.tenants, config.rate,
             config.seed)  # fmt: skip
    batches, incident_labels = simulate_batches(config, incidents, workload, planted)
    count = write_jsonl(out, batches if progress is None else _reported(batches, progress))
    if labels is not None:
        save_labels(labels, incident_labels)
    return count


def _reported(batches: Iterable[EventBatch], progress: ProgressFn) -> Iterator[EventBatch]:
    done = 0
    for batch in batches:
        yield batch
        done += len(batch)
        if len(batch):
            progress("simulating", done, float(batch.block.ts[-1]) / 1000)


def simulated_events(
    config: FleetConfig, incidents: bool = True, workload: Workload = DEFAULT_WORKLOAD
) -> Iterator[AllocationEvent]:
    """The simulated events, lazily; the suite is built (and a too short horizon refused) now."""
    batches, _ = simulate_batches(config, incidents, workload)
    return (event for batch in batches for event in batch.to_events())


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


def evaluate_files(
    events: Path, labels: Path, settings: Settings, progress: ProgressFn | None = None
) -> tuple[Report, str]:
    """Replay ``events`` through the engine and score its alerts against ``labels``.

    Raises :class:`UnusableInput` when the labels are malformed, the file holds no valid event,
    or an incident lies outside the events' time span (the labels are of other events).
    """
    try:
        incidents = load_labels(labels)
    except ValueError as exc:
        raise UnusableInput(
            f"{labels}: {exc} (labels are written by `computewatch simulate --labels`)"
        ) from None
    alerts: list[Alert] = []
    span, within = _Span(), Membership()
    summary = replay_file(  # the alerts, event times and memberships are read, not metric rows
        events,
        settings,
        [span, lambda out: within.add(out.events), lambda out: alerts.extend(out.alerts)],
        progress=progress,
        metric_rows=False,
    )
    if summary.valid == 0:
        raise UnusableInput(
            f"{events} holds no valid event ({summary.events} lines, {summary.dead_letters} "
            "rejected; see why with `computewatch replay --events FILE --dead-letters-out D`)"
        )
    outside = [i for i in incidents if i.end <= span.first or i.start > span.last]
    if outside:
        raise UnusableInput(
            f"{len(outside)} of the {len(incidents)} incidents in {labels} lie outside the "
            f"events' time span ({span.first:%Y-%m-%d %H:%M} to {span.last:%Y-%m-%d %H:%M} "
            "UTC), so they cannot be scored: use the labels written with these events"
        )
    log.info("%d incidents, events from %s to %s", len(incidents), span.first, span.last)
    return evaluate(alerts, incidents, within), summary.line()


class _Span:
    """The first and last event time of the events the engine accepted."""

    def __init__(self) -> None:
        self.first = datetime.max.replace(tzinfo=UTC)
        self.last = datetime.min.replace(tzinfo=UTC)

    def __call__(self, out: StepOutput) -> None:
        if out.events:
            self.first = min(self.first, min(e.ts for e in out.events))
            self.last = max(self.last, max(e.ts for e in out.events))


def evaluate_suite(
    config: FleetConfig,
    settings: Settings,
    workload: Workload = DEFAULT_WORKLOAD,
    progress: ProgressFn | None = None,
) -> tuple[Report, str]:
    """Simulate the default suite on ``workload`` into a temporary folder and evaluate it."""
    with tempfile.TemporaryDirectory(prefix="computewatch-eval-") as tmp:
        events, labels = Path(tmp) / "events.jsonl", Path(tmp) / "labels.json"
        simulate_to_files(config, events, labels, workload=workload, progress=progress)
        return evaluate_files(events, labels, settings, progress)


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
        self._injected: queue.SimpleQueue[list[AllocationEvent]] = queue.SimpleQueue()

    def inject(self, events: list[AllocationEvent]) -> None:
        """Events from outside the simulation (the demo's OTLP receiver); thread-safe. They go
        through the engine with the next simulated batch, or within a second."""
        self._injected.put(events)

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
                self._wait_until(event.ts)
            pending.append(event)
            if len(pending) >= self.batch:
                self._flush(pending)
                pending = []
        self._flush(pending)

    def _wait_until(self, ts: datetime) -> None:
        """Sleep until ``ts``, putting injected events through the engine at least every second."""
        while (gap := (ts - datetime.now(UTC)).total_seconds()) > 0 and not self.stopping.is_set():
            self.stopping.wait(min(gap, 1.0))
            self._flush([])

    def _flush(self, events: list[AllocationEvent]) -> None:
        while not self._injected.empty():
            events = events + self._injected.get_nowait()
        if events:
            out: StepOutput = self.engine.process_events(events)
            self.handler(out)

    def stop(self) -> None:
        self.stopping.set()
