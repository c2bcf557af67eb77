"""Prometheus metrics of the worker, the OTLP receiver and an emitter's host process (the
``metrics`` extra).

:class:`PrometheusInstruments` records what the worker's hooks report
(:class:`~pipeline.instruments.Instruments`) and reads its state at every scrape;
:class:`ReceiverMetrics` records the OTLP receiver's answers. Every metric is named
``computewatch_*`` and listed in the README's operations section. :func:`serving` serves a
registry over HTTP (``computewatch worker --metrics-port``, ``computewatch ingest otlp
--metrics-port``).

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> from pipeline.records import StepOutput
>>> registry = CollectorRegistry()
>>> instruments = PrometheusInstruments(registry)
>>> instruments.stepped(StepOutput(duplicates=2), records=2, seconds=0.01)
>>> registry.get_sample_value("computewatch_events_total", {"outcome": "duplicate"})
2.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.instruments import Readings
from pipeline.records import ALERT_KINDS, SEVERITIES

if TYPE_CHECKING:
    from pipeline.ingest.batch import MappedBatch
    from pipeline.producer.emitter import TelemetryEmitter
    from pipeline.records import Alert, StepOutput

NAMESPACE = "computewatch"
EVENT_OUTCOMES = ("valid", "duplicate", "dead_letter")
WRITES = ("marks", "step", "flush", "alerts")
SNAPSHOTS = ("partition", "fleet")
MESSAGE_BUCKETS = (1, 10, 100, 1_000, 5_000, 10_000, 20_000, 50_000, 100_000)
SPAN_OUTCOMES = ("event", "dead_letter", "skipped")
BYTE_BUCKETS = tuple(float(4**i * 1024) for i in range(1, 12))  # 4 KiB .. 4 GiB


class PrometheusInstruments:
    """The worker's :class:`~pipeline.instruments.Instruments` as Prometheus metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        counter = partial(Counter, namespace=NAMESPACE, registry=registry)
        histogram = partial(Histogram, namespace=NAMESPACE, registry=registry)
        self.messages = counter("messages", "Messages read from the events topic.")
        self.events = counter(
            "events", "Messages by what they were: a valid event (stored), a duplicate of one "
            "already seen, or a dead letter.", ["outcome"],
        )  # fmt: skip
        self.dead_letters = counter(
            "dead_letters", "Messages sent to the dead-letter topic, by the rule they broke.",
            ["rule"],
        )  # fmt: skip
        self.late = counter(
            "late_events", "Valid events too late for their metric window (stored, not counted)."
        )
        self.step_seconds = histogram(
            "step_seconds", "Time stage 1 took to run one partition's batch."
        )
        self.batch_messages = histogram(
            "batch_messages", "Messages in one partition's batch.", buckets=MESSAGE_BUCKETS
        )
        self.judge_seconds = histogram(
            "fleet_judge_seconds", "Time the fleet stage took to judge one batch of parts."
        )
        self.alerts = counter(
            "alerts", "Alerts raised, by kind and severity.", ["kind", "severity"]
        )
        self.write_seconds = histogram(
            "clickhouse_write_seconds", "Time a write to ClickHouse took, by what it wrote.",
            ["operation"],
        )  # fmt: skip
        self.retries = counter(
            "clickhouse_retries", "Writes to ClickHouse that failed and were retried."
        )
        self.paused = counter(
            "clickhouse_paused_seconds", "Seconds consumption paused, waiting for ClickHouse."
        )
        self.snapshot_bytes = histogram(
            "snapshot_bytes", "Size of a state snapshot, by stage.", ["stage"],
            buckets=BYTE_BUCKETS,
        )  # fmt: skip
        self.snapshot_seconds = histogram(
            "snapshot_seconds", "Time a state snapshot took to save, by stage.", ["stage"]
        )
        for outcome in EVENT_OUTCOMES:  # every series exists from the start, at 0
            self.events.labels(outcome)
        for kind in ALERT_KINDS:
            for severity in SEVERITIES:
                self.alerts.labels(kind, severity)
        for operation in WRITES:
            self.write_seconds.labels(operation)
        for stage in SNAPSHOTS:
            self.snapshot_bytes.labels(stage)
            self.snapshot_seconds.labels(stage)
        ProcessCollector(namespace=NAMESPACE, registry=registry)

    def stepped(self, out: StepOutput, records: int, seconds: float) -> None:
        self.messages.inc(records)
        self.events.labels("valid").inc(len(out.events))
        self.events.labels("duplicate").inc(out.duplicates)
        self.events.labels("dead_letter").inc(len(out.dead_letters))
        for dead in out.dead_letters:
            self.dead_letters.labels(dead.rule).inc()
        self.late.inc(out.too_late)
        self.step_seconds.observe(seconds)
        self.batch_messages.observe(records)

    def judged(self, alerts: Sequence[Alert], seconds: float) -> None:
        for alert in alerts:
            self.alerts.labels(alert.kind, alert.severity).inc()
        self.judge_seconds.observe(seconds)

    def wrote(self, operation: str, seconds: float) -> None:
        self.write_seconds.labels(operation).observe(seconds)

    def retried(self, paused_s: float) -> None:
        self.retries.inc()
        self.paused.inc(paused_s)

    def saved(self, stage: str, size: int, seconds: float) -> None:
        self.snapshot_bytes.labels(stage).observe(size)
        self.snapshot_seconds.labels(stage).observe(seconds)

    def watch(self, read: Callable[[], Readings]) -> None:
        self.registry.register(_ReadingsCollector(read))


class _ReadingsCollector(Collector):
    """The worker's state at each scrape: partitions, detectors' entities, webhook."""

    def __init__(self, read: Callable[[], Readings]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        readings = self.read()
        lag = GaugeMetricFamily(
            f"{NAMESPACE}_partition_lag", "Messages of an owned partition not processed yet.",
            labels=["topic", "partition"],
        )  # fmt: skip
        offset = GaugeMetricFamily(
            f"{NAMESPACE}_partition_offset",
            "The last offset of an owned partition processed (and, after its batch, committed).",
            labels=["topic", "partition"],
        )
        for p in readings.partitions:
            offset.add_metric([p.topic, str(p.partition)], float(p.offset))
            if p.lag is not None:
                lag.add_metric([p.topic, str(p.partition)], float(p.lag))
        entities = GaugeMetricFamily(
            f"{NAMESPACE}_detector_entities", "Entities a detector holds state for, per store.",
            labels=["detector", "store"],
        )  # fmt: skip
        for (detector, store), count in sorted(readings.entities.items()):
            entities.add_metric([detector, store], float(count))
        webhook = CounterMetricFamily(
            f"{NAMESPACE}_webhook_deliveries",
            "Alerts for the webhook: sent, failed after retries, dropped (queue full), or held "
            "back (below the minimum severity).",
            labels=["outcome"],
        )
        for outcome, count in sorted(readings.webhook.items()):
            webhook.add_metric([outcome], float(count))
        yield from (lag, offset, entities, webhook)


class EmitterCollector(Collector):
    """A :class:`~pipeline.producer.emitter.TelemetryEmitter`'s queue and counters, for the
    registry of the process that hosts it.

    >>> from prometheus_client import CollectorRegistry
    >>> from pipeline.config import KafkaSettings
    >>> from pipeline.events import example_event
    >>> from pipeline.producer.emitter import TelemetryEmitter
    >>> def no_broker(options):
    ...     raise OSError("no broker")
    >>> emitter = TelemetryEmitter(KafkaSettings(), producer_factory=no_broker)
    >>> registry = CollectorRegistry()
    >>> registry.register(EmitterCollector(emitter))
    >>> emitter.emit(example_event())  # Kafka is down: the event waits
    True
    >>> registry.get_sample_value("computewatch_emitter_queue_depth")
    1.0
    >>> emitter.close(timeout=0)
    >>> registry.get_sample_value("computewatch_emitter_events_total", {"outcome": "dropped"})
    1.0
    """

    def __init__(self, emitter: TelemetryEmitter) -> None:
        self.emitter = emitter

    def collect(self) -> Iterator[Metric]:
        stats = self.emitter.stats
        events = CounterMetricFamily(
            f"{NAMESPACE}_emitter_events",
            "Events given to the emitter, by what became of them (pending: not yet acknowledged).",
            labels=["outcome"],
        )
        for outcome in ("sent", "dropped", "failed"):
            events.add_metric([outcome], float(getattr(stats, outcome)))
        pending = GaugeMetricFamily(
            f"{NAMESPACE}_emitter_pending", "Events emitted and not yet sent, failed or dropped."
        )
        pending.add_metric([], float(stats.pending))
        depth = GaugeMetricFamily(
            f"{NAMESPACE}_emitter_queue_depth", "Events waiting in the emitter's queue."
        )
        depth.add_metric([], float(self.emitter.queue_depth))
        yield from (events, pending, depth)


class ReceiverMetrics:
    """The OTLP receiver's :class:`~pipeline.instruments.ReceiverInstruments`: requests by HTTP
    status, spans by what became of them, and the time to answer.

    >>> from pipeline.ingest.batch import MappedBatch
    >>> registry = CollectorRegistry()
    >>> metrics = ReceiverMetrics(registry)
    >>> metrics.exported(200, MappedBatch(spans=3, skipped=1), seconds=0.02)
    >>> metrics.exported(401, None, seconds=0.001)
    >>> registry.get_sample_value("computewatch_otlp_requests_total", {"status": "401"})
    1.0
    >>> registry.get_sample_value("computewatch_otlp_spans_total", {"outcome": "skipped"})
    1.0
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        counter = partial(Counter, namespace=NAMESPACE, registry=registry)
        self.requests = counter(
            "otlp_requests", "Export requests answered, by HTTP status (503: Kafka did not take "
            "the batch; the exporter retries).", ["status"],
        )  # fmt: skip
        self.spans = counter(
            "otlp_spans", "Spans of delivered requests: GenAI spans sent as events or as dead "
            "letters, other spans skipped.", ["outcome"],
        )  # fmt: skip
        self.seconds = Histogram(
            "otlp_request_seconds", "Time to answer an export request, Kafka's "
            "acknowledgement included.", namespace=NAMESPACE, registry=registry,
        )  # fmt: skip
        for status in ("200", "400", "401", "413", "415", "503"):
            self.requests.labels(status)
        for outcome in SPAN_OUTCOMES:
            self.spans.labels(outcome)
        ProcessCollector(namespace=NAMESPACE, registry=registry)

    def exported(self, status: int, batch: MappedBatch | None, seconds: float) -> None:
        self.requests.labels(str(status)).inc()
        self.seconds.observe(seconds)
        if batch is not None:
            self.spans.labels("event").inc(len(batch.events))
            self.spans.labels("dead_letter").inc(batch.rejected)
            self.spans.labels("skipped").inc(batch.skipped)


def serving(port: int, host: str = "127.0.0.1") -> CollectorRegistry:
    """A registry of its own, served at ``http://host:port/metrics`` from a daemon thread."""
    registry = CollectorRegistry()
    start_http_server(port, addr=host, registry=registry)
    return registry
