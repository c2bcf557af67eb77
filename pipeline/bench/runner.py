"""One bench run: every selected part in order, into one :class:`BenchReport`.

A part that fails is recorded (its row says FAILED with the reason) and the run goes on. The
throughput parts share one topic of N pre-produced events; the scale-out part produces the
same events again into a topic of its own. Work files (chDB paths, the replay file, worker
logs) go to a temporary directory, removed at the end unless ``workdir`` is given.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from pipeline.bench.config import BenchConfig
from pipeline.bench.kafka import Broker, bench_name, produce_sync
from pipeline.bench.latency import measure_latency
from pipeline.bench.limit import measure_limit
from pipeline.bench.machine import describe_machine
from pipeline.bench.replay import measure_replay
from pipeline.bench.report import BenchReport
from pipeline.bench.rss import measure_rss
from pipeline.bench.scaleout import measure_scaleout
from pipeline.bench.traffic import Wire, fleet_wire, throughput_fleet
from pipeline.bench.worker import measure_faust_ceiling, measure_worker
from pipeline.config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

Progress = Callable[[str], None]


@contextmanager
def bench_workdir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    path = Path(tempfile.mkdtemp(prefix="computewatch-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class _Run:
    """The state shared by the parts of one run."""

    def __init__(self, config: BenchConfig, workdir: Path, broker: Broker | None) -> None:
        self.config = config
        self.workdir = workdir
        self.broker = broker
        self._wire: Wire | None = None
        self._topic: str | None = None

    def need_broker(self) -> Broker:
        if self.broker is None:
            raise RuntimeError("this part needs the Kafka broker")
        return self.broker

    @property
    def wire(self) -> Wire:
        if self._wire is None:
            c = self.config
            fleet = throughput_fleet(
                tenants=c.tenants, rate=c.fleet_rate, events=c.events, seed=c.seed
            )
            key = Settings().kafka.message_key  # as the environment tells producers
            self._wire = fleet_wire(fleet, limit=c.events, message_key=key)
        return self._wire

    @property
    def topic(self) -> str:
        """The shared topic with the N events, produced on first use."""
        if self._topic is None:
            broker = self.need_broker()
            topic = broker.create_topic(bench_name("events"), self.config.partitions)
            produce_sync(broker.bootstrap, topic, self.wire)
            self._topic = topic
        return self._topic

    def limit(self, report: BenchReport) -> None:
        broker = self.need_broker()
        ends = broker.end_offsets(self.topic)
        report.limit = measure_limit(broker.bootstrap, self.topic, ends, len(self.wire))

    def faust(self, report: BenchReport) -> None:
        report.faust = self._over_topic(measure_faust_ceiling)

    def worker(self, report: BenchReport) -> None:
        report.worker = self._over_topic(measure_worker)

    def _over_topic(self, measure: Callable[[Broker, str, int, Path, int, float], T]) -> T:
        """A measurement of a process consuming the whole shared topic."""
        c = self.config
        return measure(
            self.need_broker(),
            self.topic,
            len(self.wire),
            self.workdir,
            c.partitions,
            c.worker_timeout_s,
        )

    def latency(self, report: BenchReport) -> None:
        for rate in self.config.rates:
            found = measure_latency(self.need_broker(), self.config, rate, self.workdir)
            report.latency.append(found)

    def replay(self, report: BenchReport) -> None:
        c = self.config
        report.replay = measure_replay(
            c.replay_events, c.tenants, c.fleet_rate, c.seed, self.workdir
        )
        (self.workdir / "replay.jsonl").unlink(missing_ok=True)

    def rss(self, report: BenchReport) -> None:
        c = self.config
        report.rss = measure_rss(c.keys, c.rss_events, c.tenants, c.seed, self.workdir)

    def scaleout(self, report: BenchReport) -> None:
        c = self.config
        report.scaleout = measure_scaleout(
            self.need_broker(), self.wire, self.workdir, c.partitions, c.worker_timeout_s
        )


def run_bench(
    config: BenchConfig, progress: Progress | None = None, command: str = "computewatch bench"
) -> BenchReport:
    """Run the selected parts; ``progress`` gets one line as each part starts and ends;
    ``command`` is how the run was asked for (shown with the results)."""
    say = progress or (lambda line: log.info("%s", line))
    report = BenchReport(machine=describe_machine(), config=config, command=command)
    started = time.perf_counter()
    with bench_workdir(config.workdir) as workdir:
        broker = Broker(config.bootstrap) if config.needs_broker else None
        run = _Run(config, workdir, broker)
        try:
            for n, part in enumerate(config.parts, start=1):
                say(f"[{n}/{len(config.parts)}] {part} ...")
                began = time.perf_counter()
                try:
                    getattr(run, part)(report)
                except Exception as exc:  # one failed part must not lose the others
                    log.debug("bench part %s failed", part, exc_info=True)
                    report.errors[part] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                    say(f"[{n}/{len(config.parts)}] {part} FAILED: {report.errors[part]}")
                    continue
                say(f"[{n}/{len(config.parts)}] {part} done in {time.perf_counter() - began:.0f} s")
        finally:
            if broker is not None:
                broker.close()
    report.seconds = time.perf_counter() - started
    report.load_after = os.getloadavg()
    return report
