"""The single processing step: wire messages in; events, metric rows, alerts, dead letters out.

The engine is transport-free and driven by event time only: the Faust worker, ``replay`` and
``demo`` all feed it the same way and get the same results for the same input.

>>> from pipeline.config import Settings
>>> from pipeline.events import encode_event, example_event
>>> engine = Engine(Settings())
>>> out = engine.process([Message(encode_event(example_event())), Message(b"not json")])
>>> len(out.events), out.dead_letters[0].reason.split(":")[0]
(1, 'invalid_json')
>>> len(engine.finish().metrics)
1
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from pipeline.alerts import Alert, CooldownGate, Evidence, alert_id_for, grade
from pipeline.config import Settings
from pipeline.detectors import (
    EntityMinute,
    Finding,
    MinuteView,
    WindowDetector,
    default_detectors,
)
from pipeline.events import AllocationEvent, InvalidEvent, parse_event
from pipeline.metrics import WINDOW_S, MetricRow, WindowAggregator, WindowTotals
from pipeline.pricing import PriceTable

DETECTION_GRACE_S = 5.0  # a minute is scored once events 5 s past its end have been seen
ENTITY_TYPES = ("api_key", "tenant", "model", "route", "server")


class Message(msgspec.Struct, frozen=True):
    """One wire message and where it came from (topic/partition/offset, or file/line)."""

    value: bytes
    topic: str = ""
    partition: int = -1
    offset: int = -1


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A rejected message: the original bytes, the reason and its source."""

    reason: str
    rule: str
    payload: bytes
    topic: str
    partition: int
    offset: int


@dataclass(slots=True)
class StepOutput:
    events: list[AllocationEvent] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    metrics: list[MetricRow] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0
    too_late: int = 0


class SeenIds:
    """Recently seen event ids, bounded by count; the same event_id twice counts once."""

    def __init__(self, max_ids: int) -> None:
        self.max_ids = max_ids
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> bool:
        """Record ``event_id``; False if it was already seen."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.max_ids:
            self._ids.popitem(last=False)
        return True


class Engine:
    """Validate -> dedupe -> metrics windows -> detectors -> alerts, in event time."""

    def __init__(
        self, settings: Settings, detectors: Sequence[WindowDetector] | None = None
    ) -> None:
        worker = settings.worker
        self.max_message_bytes = worker.max_message_bytes
        self.prices = PriceTable(settings.prices, settings.default_price)
        lateness = max(worker.allowed_lateness_s, DETECTION_GRACE_S)
        self.aggregator = WindowAggregator(self.prices, allowed_lateness_s=lateness)
        self.detectors = (
            list(detectors)
            if detectors is not None
            else default_detectors(max_entities=worker.max_entities)
        )
        self._request_detectors = [d for d in self.detectors if hasattr(d, "observe_event")]
        self.gate = CooldownGate(cooldown_s=worker.alert_cooldown_s)
        self.seen = SeenIds(worker.dedupe_max_ids)
        self.next_minute: int | None = None
        self.counters = {"events": 0, "valid": 0, "dead_letters": 0, "duplicates": 0, "alerts": 0}

    def process(self, messages: Iterable[Message]) -> StepOutput:
        out = StepOutput()
        for message in messages:
            try:
                event = parse_event(message.value, max_bytes=self.max_message_bytes)
            except InvalidEvent as exc:
                out.dead_letters.append(_dead_letter(message, exc))
                continue
            self._ingest(event, out)
        self._advance(out)
        self._count(out, len(out.events) + len(out.dead_letters) + out.duplicates)
        return out

    def process_events(self, events: Iterable[AllocationEvent]) -> StepOutput:
        """Like :meth:`process` for events that are already parsed (the in-process demo)."""
        out = StepOutput()
        for event in events:
            self._ingest(event, out)
        self._advance(out)
        self._count(out, len(out.events) + out.duplicates)
        return out

    def finish(self) -> StepOutput:
        """Score the last minutes and close every window (end of a replay)."""
        out = StepOutput()
        if self.next_minute is not None:
            last = self.aggregator.max_event_s
            while self.next_minute <= last:
                self._score_minute(self.next_minute, out)
                self.next_minute += WINDOW_S
        out.metrics.extend(self.aggregator.close_all())
        self._count(out, 0)
        return out

    def snapshot(self) -> bytes:
        """All state (windows, detectors, cooldowns, seen ids) as bytes for restore."""
        return pickle.dumps(self.__dict__, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, blob: bytes) -> Engine:
        engine = cls.__new__(cls)
        engine.__dict__.update(pickle.loads(blob))
        return engine

    def _ingest(self, event: AllocationEvent, out: StepOutput) -> None:
        if not self.seen.add(event.event_id):
            out.duplicates += 1
            return
        if self.next_minute is None:
            self.next_minute = int(event.ts.timestamp() // WINDOW_S) * WINDOW_S
        cost = self.aggregator.cost(event)
        if not self.aggregator.add(event, cost):
            out.too_late += 1
        else:
            for detector in self._request_detectors:
                detector.observe_event(event)
        out.events.append(event)
        out.costs.append(cost)

    def _advance(self, out: StepOutput) -> None:
        """Score every minute that is complete in event time, then close ripe windows."""
        if self.next_minute is None:
            return
        latest = self.aggregator.max_event_s
        while self.next_minute + WINDOW_S <= latest - DETECTION_GRACE_S:
            self._score_minute(self.next_minute, out)
            self.next_minute += WINDOW_S
        out.metrics.extend(self.aggregator.close_ready())

    def _score_minute(self, minute: int, out: StepOutput) -> None:
        view = build_minute_view(minute, self.aggregator.open_groups(minute))
        for detector in self.detectors:
            for finding in detector.observe_minute(view):
                view.named.add((finding.entity_type, finding.entity_id))
                alert = self._admit(finding, view.end)
                if alert is not None:
                    out.alerts.append(alert)

    def _admit(self, finding: Finding, detected_at: datetime) -> Alert | None:
        if not self.gate.admit(finding.kind, finding.entity_type, finding.entity_id, detected_at):
            return None
        return to_alert(finding, detected_at)

    def _count(self, out: StepOutput, messages: int) -> None:
        c = self.counters
        c["events"] += messages
        c["valid"] += len(out.events)
        c["dead_letters"] += len(out.dead_letters)
        c["duplicates"] += out.duplicates
        c["alerts"] += len(out.alerts)


def to_alert(finding: Finding, detected_at: datetime) -> Alert:
    return Alert(
        alert_id=alert_id_for(finding.kind, finding.entity_type, finding.entity_id, detected_at),
        kind=finding.kind,  # type: ignore[arg-type]
        entity_type=finding.entity_type,  # type: ignore[arg-type]
        entity_id=finding.entity_id,
        window_start=finding.window_start,
        window_end=finding.window_end,
        detected_at=detected_at,
        score=round(finding.score, 4),
        severity=grade(finding.score, finding.threshold),
        summary=finding.summary,
        evidence={k: Evidence(value=v, baseline=b) for k, (v, b) in finding.evidence.items()},
        event_count=finding.event_count,
    )


def build_minute_view(
    minute: int, groups: list[tuple[tuple[int, str, str, str, str, str], WindowTotals]]
) -> MinuteView:
    """Roll one minute's open window groups up to every entity type and the fleet."""
    start = datetime.fromtimestamp(minute, UTC)
    end = datetime.fromtimestamp(minute + WINDOW_S, UTC)
    by_type: dict[str, dict[str, EntityMinute]] = {t: {} for t in ENTITY_TYPES}
    view = MinuteView(start, end, by_type, EntityMinute())
    for (_, tenant, api_key, model, route, server), acc in groups:
        part = EntityMinute(
            requests=acc.requests,
            prompt_tokens=acc.prompt_tokens,
            generated_tokens=acc.completion_tokens + acc.reasoning_tokens,
            reasoning_tokens=acc.reasoning_tokens,
            passes=acc.passes,
            token_passes=acc.token_passes,
            gpu_ms=acc.gpu_ms,
            runaway=acc.truncated + acc.timeouts,
            confidence_sum=acc.confidence_sum,
            confidence_count=acc.confidence_count,
        )
        view.fleet.add(part)
        for entity_type, entity_id in zip(
            ENTITY_TYPES, (api_key, tenant, model, route, server), strict=True
        ):
            bucket = by_type[entity_type].get(entity_id)
            if bucket is None:
                bucket = by_type[entity_type][entity_id] = EntityMinute()
            bucket.add(part)
        pair = view.key_model.get((api_key, model))
        if pair is None:
            pair = view.key_model[(api_key, model)] = EntityMinute()
        pair.add(part)
        view.tenant_of_key[api_key] = tenant
        view.model_of_server[server] = model
    return view


def _dead_letter(message: Message, exc: InvalidEvent) -> DeadLetter:
    return DeadLetter(
        reason=exc.reason,
        rule=exc.rule,
        payload=message.value,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
    )
