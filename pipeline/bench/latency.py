"""End-to-end latency: from producing the event that completes a detection minute to its alert
being queryable in ClickHouse, at a fixed sustained rate.

Alerts are raised in *event* time: the engine scores minute ``[E-60, E)`` once it has seen an
event stamped ``E + DETECTION_GRACE_S`` or later (5 s), and peeks at the open minute every
``PEEK_S`` (15 s) once an event stamped at or after the tick arrives; that event completes the
detection (:func:`trigger_s`). The bench therefore

1. preloads ``history_minutes`` of the simulated fleet (so every detector is past warm-up)
   and lets the worker consume it;
2. produces the live phase at ``rate`` events/s for ``live_seconds``, each event sent when the
   wall clock reaches its scheduled time; event time runs at wall-clock speed (``ts`` = send
   time + a constant that joins the live phase to the history, placing the first minute
   boundary 10 s into it); ``spikes_per_minute`` keys send 6x their traffic in each live
   minute, so alerts fire at every boundary;
3. for every alert raised by the live phase: latency = the wall time its row became queryable
   (the alerts insert returned in the worker, logged by :mod:`pipeline.bench.probe`) minus the
   wall time at which the first event stamped at or after the trigger was handed to the
   producer. The producer is given the events in slices every few ms and the slice's start
   time is used, so the latency is rounded up, never down.

The worker sends an alert to ``compute.alerts`` right after the engine step, *before* the
batch is flushed to ClickHouse, so arrival on the topic is earlier than queryable; it is
reported alongside as a second number. The trigger is the first such event on any partition;
each partition runs its own engine, so its own trigger may come up to one inter-arrival time
(well under 1 ms at 5,000 events/s over 4 partitions) later: that also rounds up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from numpy.typing import NDArray

from pipeline.bench.config import BenchConfig
from pipeline.bench.kafka import PRODUCER_OPTIONS, Broker, bench_name, produce_sync
from pipeline.bench.processes import WorkerEnv, start_worker
from pipeline.bench.traffic import Wire, fleet_wire
from pipeline.bench.worker import stop_all
from pipeline.config import KafkaSettings
from pipeline.engine import DETECTION_GRACE_S
from pipeline.metrics import WINDOW_S
from pipeline.simulate import FleetConfig, VolumeSpike, build_fleet

log = logging.getLogger(__name__)

FIRST_BOUNDARY_S = 10.0  # the first minute boundary, seconds into the live phase
SPIKE_INTENSITY = 6.0
SPIKE_MAX_SHARE = 0.02  # spike keys sending at most 2 % of the fleet's traffic
SLICE_S = 0.005
PROBE = (sys.executable, "-m", "pipeline.bench.probe")


@dataclass(frozen=True, slots=True)
class LivePlan:
    """Event time of the history and the live phase; the live phase starts at ``start``."""

    history: FleetConfig
    live: FleetConfig
    spikes: tuple[VolumeSpike, ...]
    boundaries: tuple[datetime, ...]

    @property
    def start(self) -> datetime:
        return self.live.start


@dataclass(frozen=True, slots=True)
class LiveRun:
    """The live phase: send time and lateness of each event, alert arrivals on the topic,
    seconds from the last send until the group had committed everything."""

    sent: NDArray[np.float64]
    late: NDArray[np.float64]
    arrivals: dict[str, tuple[float, float]]
    drained_after_s: float


@dataclass(frozen=True, slots=True)
class LatencyResult:
    rate: float
    achieved_rate: float
    producer_late_p99_s: float
    clickhouse_s: tuple[float, ...]
    topic_s: tuple[float, ...]
    boundaries: int
    drained_after_s: float
    worker_peak_rss_bytes: int = 0


def plan_live(config: BenchConfig, rate: float, now: datetime) -> LivePlan:
    """Where history, live phase, minute boundaries and spikes fall in event time.

    The live base rate is lowered by what the spikes add, so the live phase sends ``rate``
    events/s on average, spikes included.

    >>> now = datetime(2026, 3, 2, 9, 0, 30, tzinfo=UTC)
    >>> plan = plan_live(BenchConfig(live_seconds=150), 5000.0, now)
    >>> plan.start.isoformat(), [b.strftime("%H:%M") for b in plan.boundaries], len(plan.spikes)
    ('2026-03-02T09:00:50+00:00', ['09:01', '09:02', '09:03'], 12)
    >>> round(plan.live.rate)  # plus the spikes' extra traffic: 5,000 events/s on average
    3884
    """
    minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = minute - timedelta(seconds=FIRST_BOUNDARY_S)
    base = FleetConfig(tenants=config.tenants, seed=config.seed, diurnal_amplitude=0.0)
    history = replace(
        base,
        rate=config.history_rate,
        start=start - timedelta(minutes=config.history_minutes),
        hours=config.history_minutes / 60.0,
    )
    boundaries = []
    edge = minute
    while (edge - start).total_seconds() + DETECTION_GRACE_S < config.live_seconds:
        boundaries.append(edge)
        edge += timedelta(minutes=1)
    per_minute = config.spikes_per_minute
    keys = spike_keys(base, len(boundaries) * per_minute)
    spikes = tuple(
        VolumeSpike(
            entity_id=keys[i * per_minute + j][0],
            start=max(start, edge - timedelta(minutes=1)),
            end=edge,
            intensity=SPIKE_INTENSITY,
        )
        for i, edge in enumerate(boundaries)
        for j in range(per_minute)
    )
    extra = sum(share for _, share in keys) * (SPIKE_INTENSITY - 1) / max(len(boundaries), 1)
    live = replace(base, rate=rate / (1 + extra), start=start, hours=config.live_seconds / 3600.0)
    return LivePlan(history, live, spikes, tuple(boundaries))


def spike_keys(config: FleetConfig, count: int) -> list[tuple[str, float]]:
    """(key, share of fleet traffic) of the busiest key of each tenant whose busiest key has at
    most :data:`SPIKE_MAX_SHARE`, busiest first, repeating when more are asked for."""
    fleet = build_fleet(config)
    total = sum(key.rate for key in fleet.keys)
    best: dict[int, tuple[float, str]] = {}
    for key in fleet.keys:
        if key.tenant not in best or key.rate > best[key.tenant][0]:
            best[key.tenant] = (key.rate, key.id)
    ranked = sorted(best.values(), reverse=True)
    small = [(k, r / total) for r, k in ranked if r / total <= SPIKE_MAX_SHARE]
    pool = small or [(k, r / total) for r, k in ranked]
    return [pool[i % len(pool)] for i in range(count)]


async def send_paced(
    producer: AIOKafkaProducer, topic: str, wire: Wire, origin_ms: int, start_wall: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Send each message when the wall clock reaches its slot (event time ``origin_ms`` is
    ``start_wall``); return the send times and how late each was against its slot."""
    due = start_wall + (wire.ts_ms - origin_ms) / 1000.0
    sent = np.empty(len(wire))
    failures: list[BaseException] = []

    def check(future: asyncio.Future[object]) -> None:
        if not future.cancelled() and future.exception() is not None:
            failures.append(future.exception())  # type: ignore[arg-type]

    i = 0
    while i < len(wire):
        now = time.time()
        j = int(np.searchsorted(due, now, side="right"))
        if j <= i:
            await asyncio.sleep(min(SLICE_S, float(due[i]) - now))
            continue
        sent[i:j] = now
        for k in range(i, j):
            future = await producer.send(topic, wire.values[k], key=wire.keys[k])
            future.add_done_callback(check)
        i = j
    await producer.flush()
    if failures:
        raise RuntimeError(f"{len(failures)} live events failed to send: {failures[0]!r}")
    return sent, sent - due


async def record_arrivals(
    consumer: AIOKafkaConsumer, arrivals: dict[str, tuple[float, float]], stop: asyncio.Event
) -> None:
    """Note (detected_at, arrival wall time) of each alert on the alerts topic, by alert_id."""
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=100)
        now = time.time()
        for records in batches.values():
            for record in records:
                alert = json.loads(record.value)
                detected_at = datetime.fromisoformat(alert["detected_at"]).timestamp()
                arrivals.setdefault(alert["alert_id"], (detected_at, now))


async def live_phase(
    broker: Broker,
    env: WorkerEnv,
    wire: Wire,
    origin: datetime,
    alive: Callable[[], None],
    timeout: float,
) -> LiveRun:
    """Produce ``wire`` in real time while watching the alerts topic; wait for the worker to
    drain, both stages."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, **PRODUCER_OPTIONS)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await producer.start()
    await consumer.start()
    arrivals: dict[str, tuple[float, float]] = {}
    stop = asyncio.Event()
    try:
        consumer.assign([TopicPartition(env.alerts_topic, p) for p in range(env.partitions)])
        watcher = asyncio.create_task(record_arrivals(consumer, arrivals, stop))
        origin_ms = round(origin.timestamp() * 1000)
        sent, late = await send_paced(
            producer, env.events_topic, wire, origin_ms, time.time() + 0.2
        )
        # stage 1 has sent its minutes when it commits the events; the fleet stage has sent
        # its alerts when it commits the minutes
        minutes = KafkaSettings(consumer_group=env.group).minutes_topic
        for topic in (env.events_topic, minutes):
            ends = await asyncio.to_thread(broker.end_offsets, topic)
            await asyncio.to_thread(broker.wait_committed, env.group, topic, ends, alive, timeout)
        drained = time.time() - float(sent[-1])
        await asyncio.sleep(1.0)
        stop.set()
        await watcher
    finally:
        await consumer.stop()
        await producer.stop()
    return LiveRun(sent, late, arrivals, drained)


def trigger_latencies(
    records: dict[str, tuple[float, float]],
    live: Wire,
    sent: NDArray[np.float64],
    history_end_ms: int,
) -> dict[str, float]:
    """Latency of each alert the live phase triggered: ``records`` maps alert_id to
    (detected_at, seen_at) in epoch seconds; the trigger is the first live event stamped at or
    after :func:`trigger_s` of ``detected_at``. Alerts the history triggered are left out.

    >>> wire = Wire([b"t"] * 4, [b"{}"] * 4, np.array([59_000, 65_000, 66_000, 75_000]))
    >>> sent = np.array([100.0, 106.0, 107.0, 116.0])
    >>> records = {"a": (60.0, 106.4), "b": (0.0, 101.0), "peek": (75.0, 116.2)}
    >>> trigger_latencies(records, wire, sent, 58_000)
    {'a': 0.4, 'peek': 0.2}
    """
    out = {}
    for alert_id, (detected_at, seen_at) in records.items():
        threshold = round(trigger_s(detected_at) * 1000)
        index = int(np.searchsorted(live.ts_ms, threshold, side="left"))
        if threshold <= history_end_ms or index >= len(live):
            continue
        out[alert_id] = round(seen_at - float(sent[index]), 6)
    return out


def trigger_s(detected_at: float) -> float:
    """The event time whose arrival raises an alert detected at ``detected_at`` (epoch s).

    A closed minute's alerts are detected at its end, a minute boundary, and wait
    :data:`DETECTION_GRACE_S` more; a peek's are detected at its tick, inside a minute.

    >>> trigger_s(120.0), trigger_s(135.0)
    (125.0, 135.0)
    """
    return detected_at + DETECTION_GRACE_S if detected_at % WINDOW_S == 0 else detected_at


def read_probe(path: Path) -> dict[str, tuple[float, float]]:
    """alert_id -> (detected_at, visible_at) from the probe's log (first insert wins)."""
    found: dict[str, tuple[float, float]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            found.setdefault(row["alert_id"], (row["detected_at"], row["visible_at"]))
    return found


def measure_latency(
    broker: Broker, config: BenchConfig, rate: float, workdir: Path
) -> LatencyResult:
    """Preload history, run the probed worker, produce the live phase at ``rate``, match alerts."""
    plan = plan_live(config, rate, datetime.now(UTC))
    history, live = fleet_wire(plan.history), fleet_wire(plan.live, plan.spikes)
    log.info("latency: %d history and %d live events", len(history), len(live))
    group = bench_name("latency")
    env = WorkerEnv(
        bootstrap=broker.bootstrap,
        events_topic=broker.create_topic(bench_name("latency"), config.partitions),
        alerts_topic=broker.create_topic(bench_name("alerts"), config.partitions),
        dlq_topic=broker.create_topic(bench_name("dlq"), config.partitions),
        group=group,
        clickhouse_url=f"chdb://{workdir / f'{group}.chdb'}",
        partitions=config.partitions,
    )
    produce_sync(broker.bootstrap, env.events_topic, history)
    probe_log = workdir / f"{group}-alerts.jsonl"
    child = start_worker(f"latency-{rate:g}", env, workdir, argv=(*PROBE, str(probe_log)))
    try:
        ends = broker.end_offsets(env.events_topic)
        timeout = config.worker_timeout_s
        broker.wait_committed(group, env.events_topic, ends, child.check_alive, timeout)
        run = asyncio.run(live_phase(broker, env, live, plan.start, child.check_alive, timeout))
        peak = child.peak_rss_bytes()
    finally:
        stop_all([child])
    found = summarise(rate, plan, history, live, run, read_probe(probe_log))
    return replace(found, worker_peak_rss_bytes=peak)


def summarise(
    rate: float,
    plan: LivePlan,
    history: Wire,
    live: Wire,
    run: LiveRun,
    visible: dict[str, tuple[float, float]],
) -> LatencyResult:
    history_end = int(history.ts_ms.max()) if len(history) else 0
    in_clickhouse = trigger_latencies(visible, live, run.sent, history_end)
    on_topic = trigger_latencies(run.arrivals, live, run.sent, history_end)
    span = float(run.sent[-1] - run.sent[0]) if len(live) > 1 else 0.0
    return LatencyResult(
        rate=rate,
        achieved_rate=(len(live) - 1) / span if span > 0 else 0.0,
        producer_late_p99_s=float(np.percentile(run.late, 99)) if len(live) else 0.0,
        clickhouse_s=tuple(sorted(in_clickhouse.values())),
        topic_s=tuple(sorted(on_topic.values())),
        boundaries=len(plan.boundaries),
        drained_after_s=run.drained_after_s,
    )
