"""The two stages over N partitions in one process, as the workers run them.

Production splits ``compute.events`` into partitions by the message key (``tenant_id``, or
``api_key_id`` when ``COMPUTEWATCH_KAFKA_MESSAGE_KEY`` says so) with Kafka's default
partitioner, runs one stage-1 :class:`~pipeline.engine.Engine` per partition and one
:class:`~pipeline.fleet.FleetStage` for the fleet. :class:`Topology` does the same in
one process, so that ``replay`` and ``evaluate`` measure what production does:

>>> from pipeline.config import Settings
>>> from pipeline.records import Message
>>> from pipeline.events import encode_event, example_event
>>> topology = Topology(Settings(), partitions=4)
>>> out = topology.process([Message(encode_event(example_event())), Message(b"{")])
>>> len(out.events), len(out.dead_letters), partition_of("acme", 4)
(1, 1, 0)
>>> len(topology.finish().metrics)
1

Event time moves every partition's clock together: before an event at ``t`` is counted, every
partition whose next minute to score or tick to peek at is due by ``t`` scores and peeks, as
one engine over the whole stream would. So the fleet stage judges each minute on every
partition's part of it, at the same event time as one engine would.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Final

from kafka.partitioner.default import murmur2

from pipeline.config import Settings
from pipeline.detectors import WindowDetector, default_detectors
from pipeline.engine import Engine, count_step, parse_messages
from pipeline.fleet import FleetStage
from pipeline.fleet_judge import FleetJudge
from pipeline.records import Message, StepOutput

# Keys repeat (tenants, api keys), so routing remembers the partition of the most recent ones:
# Kafka's murmur2 in pure Python cost 4 % of a replay. Bounded against floods of fake keys.
ROUTED_KEYS: Final = 2**17


@functools.lru_cache(maxsize=ROUTED_KEYS)
def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a message keyed ``key``."""
    return (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


class Topology:
    """``partitions`` stage-1 engines and one fleet stage, fed one stream in event time."""

    def __init__(
        self,
        settings: Settings,
        partitions: int,
        *,
        metric_rows: bool = True,
        judge_apart: bool = False,
    ) -> None:
        """``metric_rows``: whether closed windows become metric rows (see :class:`Engine`);
        ``judge_apart``: whether the fleet stage judges in a process of its own
        (:class:`~pipeline.fleet_judge.FleetJudge`: the same alerts, in the same order, each
        returned by a later step than in-process; :meth:`close` stops it)."""

        def make() -> list[WindowDetector]:
            return default_detectors(max_entities=settings.worker.max_entities)

        self.max_message_bytes = settings.worker.max_message_bytes
        self.message_key = settings.kafka.message_key  # routes as the producers key
        self.engines = [
            Engine(settings, make(), partition=p, metric_rows=metric_rows)
            for p in range(partitions)
        ]
        # apart, the fleet stage here only pools the norms: it gets no parts, so judges nothing
        self.fleet = FleetStage(settings, [] if judge_apart else make(), partitions)
        self.judge = FleetJudge(settings, partitions) if judge_apart else None
        self.counters = {"events": 0, "valid": 0, "dead_letters": 0, "duplicates": 0, "alerts": 0}
        self._due_s = math.inf  # the earliest event time at which a partition scores or peeks

    @property
    def clock_s(self) -> float:
        """The latest event time any partition has passed."""
        return max(engine.clock_s for engine in self.engines)

    def process(self, messages: Iterable[Message]) -> StepOutput:
        """Route each message to its partition's engine, as :meth:`Engine.process` runs one."""
        out = StepOutput()
        batch = list(messages)
        partitions = len(self.engines)
        for message, event in parse_messages(batch, self.max_message_bytes, out):
            engine = self.engines[partition_of(getattr(event, self.message_key), partitions)]
            epoch = event.ts.timestamp()
            if epoch >= self._due_s and engine.admits(event):  # not a dead letter's clock
                self._advance(epoch, out)
            engine.accept(event, message, out)
            self._due_s = min(self._due_s, engine.due_s)
        for engine in self.engines:
            engine.end_step(out)
        return self._judged(out, len(batch))

    def finish(self) -> StepOutput:
        """Score the last minutes of every partition, judge them, close every window."""
        out = StepOutput()
        for engine in self.engines:
            out.extend(engine.finish())
        self._judge(out)
        out.alerts.extend(self.fleet.finish() if self.judge is None else self.judge.finish())
        count_step(self.counters, out, 0)
        return out

    def close(self) -> None:
        """Stop the fleet judge's process, if it judges apart and still runs."""
        if self.judge is not None:
            self.judge.close()

    def _advance(self, now: float, out: StepOutput) -> None:
        """Every partition scores and peeks what is due by ``now``; the fleet stage judges it
        and every partition takes the fleet's norms, before the event at ``now`` counts."""
        for engine in self.engines:
            out.extend(engine.advance(now))
        self._due_s = min(engine.due_s for engine in self.engines)
        self._judge(out)

    def _judge(self, out: StepOutput) -> None:
        """Hand the parts and norm reports so far and the partitions' clocks to the fleet
        stage; hand the norms it moved to every partition."""
        clocks = {engine.partition: engine.clock_s for engine in self.engines}
        if self.judge is None:
            out.alerts.extend(self.fleet.add(out.parts, clocks, out.norms, out.spend))
        else:
            self.fleet.add([], clocks, out.norms)
            self.judge.add(out.parts, clocks, out.spend)
        out.parts, out.norms, out.spend = [], [], []
        norms = self.fleet.merged_norms()
        for engine in self.engines:
            engine.take_norms(norms)

    def _judged(self, out: StepOutput, messages: int) -> StepOutput:
        self._judge(out)
        if self.judge is not None:
            out.alerts.extend(self.judge.send())
        count_step(self.counters, out, messages)
        return out
