"""Stage 2: one minute of the whole fleet from every partition's part, and the fleet's detectors.

Stage 1 (:class:`~pipeline.engine.Engine`, one per partition of ``compute.events``) sees only
its partition's tenants: it validates, dedupes, aggregates windows and scores each request
against its context's norm. Judging needs the whole fleet (a key's share of the fleet's
requests, a server against its model's peers, a model's confidence, the tail of every key's
scores), so stage 1 hands each minute it closes and each open minute it peeks at to stage 2 as
a :class:`MinutePart`: the minute's sums per group and, per request detector, per key.

:class:`FleetStage` merges the parts of one due point (a closed minute, or a peek tick) once
every partition's clock has passed it, and judges the merged minute with every detector, as
one engine over the whole stream would, with one cooldown gate. So one alert per kind, entity
and window, however many partitions there are. It also moves the context norms stage 1 scores
against: every partition's reports of a tick, pooled once every clock has passed it
(:mod:`pipeline.detectors.norms`), for every partition to take.

>>> from pipeline.config import Settings
>>> fleet = FleetStage(Settings(), detectors=[], partitions=2)
>>> part = MinutePart(partition=0, minute=0, end_s=60.0, groups=[])
>>> fleet.add([part], clocks={0: 70.0}), fleet.pending
([], 1)
>>> fleet.add([], clocks={1: 70.0}), fleet.pending
([], 0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Final, cast

import msgspec

from pipeline.alerts import CooldownGate, alert_id_for, grade
from pipeline.budgets import BudgetBook, SpendTick, budgets_from_settings
from pipeline.config import Settings
from pipeline.detectors import (
    Finding,
    MinuteView,
    PeekingDetector,
    RequestDetector,
    WindowDetector,
    adopt_new_tests,
)
from pipeline.detectors.base import Group, bound_entities
from pipeline.detectors.norms import (
    Context,
    FleetNorms,
    Learned,
    NormReport,
    NormState,
    NormTick,
    learn,
)
from pipeline.detectors.request_norm import KeyMinute
from pipeline.metrics import WINDOW_S
from pipeline.minute_view import build_minute_view, build_peek_view
from pipeline.records import Alert, Evidence
from pipeline.state_format import seal, unseal

DETECTION_GRACE_S: Final = 5.0  # a minute is scored once events 5 s past its end have been seen
CHUNK_GROUPS: Final = 2_000  # groups per message to the fleet stage (~250 kB)


class MinutePart(msgspec.Struct, frozen=True, kw_only=True):
    """One partition's part of one minute, as far as ``end_s`` reaches.

    ``end_s`` is the minute's end when the minute is closed, or the peek tick it was taken at.
    ``groups`` are the minute's sums per (tenant, api key, model, route, server);
    ``key_minutes`` per request detector the sums of each key's requests' scores.
    """

    partition: int
    minute: int
    end_s: float
    groups: list[Group]
    key_minutes: dict[str, list[tuple[str, KeyMinute]]] = msgspec.field(default_factory=dict)
    chunk: int = 0  # a part too big for one message travels as several chunks (fleet_inputs)

    @property
    def closed(self) -> bool:
        return self.end_s >= self.minute + WINDOW_S

    @property
    def due_s(self) -> float:
        """The event time at which one engine over the whole stream would judge it."""
        return self.minute + WINDOW_S + DETECTION_GRACE_S if self.closed else self.end_s


def request_detectors(detectors: Sequence[WindowDetector]) -> list[RequestDetector]:
    """The detectors that score each request (``observe_event``): stage 1 runs their scoring,
    the fleet stage their judgement."""
    return [cast(RequestDetector, d) for d in detectors if hasattr(d, "observe_event")]


class FleetInput(msgspec.Struct, frozen=True, kw_only=True):
    """What one stage-1 partition sends the fleet stage after a step (``compute.minutes``):
    the parts it made and how far its event time has come (``clock_s``: every part due by then
    is in this message or an earlier one). ``partitions`` is how many partitions the events
    topic has, so the fleet stage knows whose clocks to wait for."""

    partition: int
    partitions: int
    clock_s: float
    parts: list[MinutePart]
    norms: list[NormTick] = msgspec.field(default_factory=list)  # what its requests taught
    spend: list[SpendTick] = msgspec.field(default_factory=list)  # its budget ledger's totals


def fleet_inputs(
    partition: int,
    partitions: int,
    clock_s: float,
    parts: Sequence[MinutePart],
    norms: Sequence[NormTick] = (),
    spend: Sequence[SpendTick] = (),
) -> list[FleetInput]:
    """One stage-1 step as messages of at most :data:`CHUNK_GROUPS` groups or norm reports
    each (a broker takes messages up to 1 MB by default); only the last one moves the
    partition's clock, so the fleet stage judges nothing before it has every chunk.

    >>> from pipeline.detectors import EntityMinute
    >>> group = (("t", "k", "m", "r", "s"), EntityMinute(requests=1))
    >>> part = MinutePart(partition=0, minute=0, end_s=60.0, groups=[group] * 5_000)
    >>> [(len(m.parts[0].groups), m.parts[0].chunk, m.clock_s)
    ...  for m in fleet_inputs(0, 4, 70.0, [part])]
    [(2000, 0, -inf), (2000, 1, -inf), (1000, 2, 70.0)]
    """
    chunks = [
        msgspec.structs.replace(
            part,
            groups=part.groups[start : start + CHUNK_GROUPS],
            key_minutes={
                name: keys[start : start + CHUNK_GROUPS] for name, keys in part.key_minutes.items()
            },
            chunk=start // CHUNK_GROUPS,
        )
        for part in parts
        for start in range(0, _longest(part), CHUNK_GROUPS)
    ]
    messages = [
        FleetInput(partition=partition, partitions=partitions, clock_s=-math.inf, parts=[chunk])
        for chunk in chunks
    ]
    messages += [
        FleetInput(partition=partition, partitions=partitions, clock_s=-math.inf, parts=[],
                   norms=ticks)
        for ticks in _norm_chunks(norms)
    ]  # fmt: skip
    messages += [
        FleetInput(partition=partition, partitions=partitions, clock_s=-math.inf, parts=[],
                   spend=[_spend_chunk(tick, start)])
        for tick in spend
        for start in range(0, len(tick.entries), CHUNK_GROUPS)
    ]  # fmt: skip
    last = messages.pop() if messages else FleetInput(
        partition=partition, partitions=partitions, clock_s=-math.inf, parts=[]
    )  # fmt: skip
    messages.append(msgspec.structs.replace(last, clock_s=clock_s))
    return messages


def _spend_chunk(tick: SpendTick, start: int) -> SpendTick:
    """The tick's entries from ``start``, at most :data:`CHUNK_GROUPS` of them (running totals:
    any piece can be applied alone)."""
    return msgspec.structs.replace(tick, entries=tick.entries[start : start + CHUNK_GROUPS])


def _norm_chunks(norms: Sequence[NormTick]) -> list[list[NormTick]]:
    """The ticks' reports in lists of at most :data:`CHUNK_GROUPS` reports; a tick split over
    several numbers its pieces (:attr:`NormTick.chunk`), so each piece is kept apart."""
    flat = [
        (tick, name, report)
        for tick in norms
        for name, reports in tick.reports.items()
        for report in reports
    ]
    chunks = []
    pieces: dict[float, int] = {}  # per tick, how many pieces so far
    for start in range(0, len(flat), CHUNK_GROUPS):
        grouped: dict[float, dict[str, list[NormReport]]] = {}
        first: dict[float, NormTick] = {}
        for tick, name, report in flat[start : start + CHUNK_GROUPS]:
            grouped.setdefault(tick.tick_s, {}).setdefault(name, []).append(report)
            first.setdefault(tick.tick_s, tick)
        chunk = []
        for tick_s, reports in grouped.items():
            piece = pieces.get(tick_s, 0)
            pieces[tick_s] = piece + 1
            chunk.append(msgspec.structs.replace(first[tick_s], reports=reports, chunk=piece))
        chunks.append(chunk)
    return chunks


def _longest(part: MinutePart) -> int:
    """The length of the part's longest list (at least 1: an empty part is still sent)."""
    return max(len(part.groups), *(len(keys) for keys in part.key_minutes.values()), 1)


def encode_fleet_input(message: FleetInput) -> bytes:
    """MessagePack (it keeps a clock of -inf, which JSON cannot)."""
    return msgspec.msgpack.encode(message)


def decode_fleet_input(raw: bytes) -> FleetInput:
    return msgspec.msgpack.decode(raw, type=FleetInput)


def encode_part(part: MinutePart) -> bytes:
    return msgspec.msgpack.encode(part)


def decode_part(raw: bytes) -> MinutePart:
    return msgspec.msgpack.decode(raw, type=MinutePart)


def encode_norms(norms: FleetNorms | None) -> list[bytes]:
    """The norms as messages of at most :data:`CHUNK_GROUPS` contexts each (under the broker's
    1 MB)."""
    if norms is None:
        return []
    flat = [(name, entry) for name, entries in norms.by_detector.items() for entry in entries]
    messages = []
    for start in range(0, len(flat), CHUNK_GROUPS):
        chunk: dict[str, list[tuple[Context, NormState]]] = {}
        for name, entry in flat[start : start + CHUNK_GROUPS]:
            chunk.setdefault(name, []).append(entry)
        message = FleetNorms(through_s=norms.through_s, by_detector=chunk)
        messages.append(msgspec.msgpack.encode(message))
    return messages


def decode_norms(raw: bytes) -> FleetNorms:
    return msgspec.msgpack.decode(raw, type=FleetNorms)


class FleetStage:
    """Merge the partitions' :class:`MinutePart` s per due point and judge the whole fleet."""

    def __init__(
        self, settings: Settings, detectors: Sequence[WindowDetector], partitions: int
    ) -> None:
        self.detectors = list(detectors)
        self._peekers = [d for d in self.detectors if isinstance(d, PeekingDetector)]
        self.gate = CooldownGate()  # its cooldown: take_settings
        self.clocks = [-math.inf] * partitions  # event time each partition has passed
        self._parts: dict[tuple[float, int, float], dict[tuple[int, int], MinutePart]] = {}
        self._judged_s = -math.inf  # due points at or before this are judged
        self.norms: dict[str, dict[Context, NormState]] = {}  # the fleet's, per detector
        # the partitions' reports per tick, until every partition's clock has passed it
        self._reports: dict[float, dict[tuple[int, int, str], list[NormReport]]] = {}
        self._norms_s = -math.inf  # the last tick the norms learned
        # moved since last handed out: the latest per context (a catch-up learns many ticks)
        self._merged: dict[str, dict[Context, NormState]] = {}
        self.budgets = BudgetBook()  # the budgets and when they alert: take_settings
        self.take_settings(settings)

    def take_settings(self, settings: Settings) -> None:
        """Apply what the stage takes from settings, as opposed to what it learned: the alert
        cooldown, and the budgets of the settings' file with their thresholds and forecast (the
        worker then reads the budgets table). A new stage takes them here, and so does one from
        :meth:`restore`; running cooldowns, spend and what has fired are kept. The detectors'
        caps of per-entity state are taken by :meth:`restore`.
        """
        config = settings.budgets
        self.gate.cooldown_s = settings.worker.alert_cooldown_s
        self.budgets.thresholds, self.budgets.forecast = list(config.thresholds), config.forecast
        self.budgets.set_budgets(budgets_from_settings(settings))

    def snapshot(self) -> bytes:
        """The stage's state (less its waiting parts: :meth:`__getstate__`) as bytes for
        :meth:`restore`, under a header with its format (:mod:`pipeline.state_format`)."""
        return seal(self)

    @classmethod
    def restore(cls, blob: bytes, settings: Settings) -> FleetStage:
        """The stage a :meth:`snapshot` saved (or one pickled whole before formats were
        numbered, format 0), running by ``settings`` (:meth:`take_settings`, and its cap of
        per-entity state); a newer format or bytes that are no snapshot raise
        :class:`~pipeline.state_format.SnapshotError`."""
        _, stage = unseal(blob, settings, cls)
        stage.take_settings(settings)
        adopt_new_tests(stage.detectors, settings.worker.max_entities)
        bound_entities(stage.detectors, settings.worker.max_entities)
        return stage

    def __setstate__(self, state: dict[str, object]) -> None:
        # from before the norms learned per tick: they learn from the next tick on; from
        # before budgets: spend counts from the restore on
        self.__dict__.update(_reports={}, _norms_s=-math.inf, budgets=BudgetBook())
        self.__dict__.update(state)

    @property
    def pending(self) -> int:
        """Due points waiting for a partition's clock."""
        return len(self._parts)

    @property
    def judged_s(self) -> float:
        """Every due point up to this event time is judged."""
        return self._judged_s

    def __getstate__(self) -> dict[str, object]:
        # The parts waiting for a partition's clock are left out: during a catch-up they are
        # most of the state (600 due points pickled in 0.9 s), so the worker saves each part
        # once, apart (pipeline.stream_fleet), and gives them back (keep).
        return {**self.__dict__, "_parts": {}}

    def keep(self, parts: Iterable[MinutePart]) -> None:
        """Keep parts until their due point is judged: parts received, or saved apart from a
        snapshot. A part of a due point already judged (stage 1 sending again after a restart)
        is dropped: the minute was judged once, on what had arrived."""
        for part in parts:
            if part.due_s > self._judged_s:
                key = (part.due_s, part.minute, part.end_s)
                self._parts.setdefault(key, {})[(part.partition, part.chunk)] = part

    def take(self, message: FleetInput) -> list[Alert]:
        """:meth:`add` one stage-1 message (the worker's fleet agent)."""
        if message.partitions > len(self.clocks):  # partitions were added to the topic
            self.clocks += [-math.inf] * (message.partitions - len(self.clocks))
        clocks = {message.partition: message.clock_s}
        return self.add(message.parts, clocks, message.norms, message.spend)

    def add(
        self,
        parts: Iterable[MinutePart],
        clocks: Mapping[int, float],
        norms: Iterable[NormTick] = (),
        spend: Iterable[SpendTick] = (),
    ) -> list[Alert]:
        """Take parts (:meth:`keep`), the partitions' norm reports, spend totals and clocks;
        judge every due point, learn every tick and judge the budgets at every tick all clocks
        have passed."""
        self.keep(parts)
        self.budgets.take(spend)
        for tick in norms:
            if tick.tick_s > self._norms_s:  # else learned already (sent again after a restart)
                at = self._reports.setdefault(tick.tick_s, {})
                for name, reports in tick.reports.items():
                    at[(tick.partition, tick.chunk, name)] = reports
        for partition, clock in clocks.items():
            self.clocks[partition] = max(self.clocks[partition], clock)
        clock = min(self.clocks)
        self._learn_through(clock)
        return self._judge_through(clock) + self.budgets.judge(clock)

    def merged_norms(self) -> FleetNorms | None:
        """The fleet norms moved since the last call, for every partition to take
        (:meth:`Engine.take_norms <pipeline.engine.Engine.take_norms>`); None if none moved."""
        if not self._merged:
            return None
        merged, self._merged = self._merged, {}
        by_detector = {name: list(states.items()) for name, states in merged.items()}
        return FleetNorms(through_s=self._norms_s, by_detector=by_detector)

    def finish(self) -> list[Alert]:
        """Judge everything still waiting (the end of a replay)."""
        self._learn_through(math.inf)
        return self._judge_through(math.inf) + self.budgets.judge(math.inf)

    def _learn_through(self, clock: float) -> None:
        """Move the norms by every tick all partitions have passed: each tick's reports pooled
        (:func:`~pipeline.detectors.norms.learn`), ticks in order."""
        for tick_s in sorted(t for t in self._reports if t <= clock):
            pooled: dict[str, dict[Context, Learned]] = {}
            for (_, _, name), reports in sorted(self._reports.pop(tick_s).items()):
                by_context = pooled.setdefault(name, {})
                for report in reports:
                    by_context.setdefault(report.context, Learned()).add(report.learned)
            for name, by_context in pooled.items():
                fleet = self.norms.setdefault(name, {})
                merged = self._merged.setdefault(name, {})
                for context, learned in by_context.items():
                    fleet[context] = merged[context] = learn(fleet.get(context), learned)
            self._norms_s = tick_s

    def _judge_through(self, clock: float) -> list[Alert]:
        alerts: list[Alert] = []
        for key in sorted(k for k in self._parts if k[0] <= clock):
            due_s, minute, end_s = key
            chunks = self._parts.pop(key)
            parts = [chunks[c] for c in sorted(chunks)]
            alerts.extend(self._judge(minute, end_s, parts))
            self._judged_s = max(self._judged_s, due_s)
        return alerts

    def _judge(self, minute: int, end_s: float, parts: list[MinutePart]) -> list[Alert]:
        groups = [group for part in parts for group in part.groups]
        closed = end_s >= minute + WINDOW_S
        view = (
            build_minute_view(minute, groups) if closed else build_peek_view(minute, groups, end_s)
        )
        for part in parts:
            for name, key_minutes in part.key_minutes.items():
                merged = view.key_minutes.setdefault(name, {})
                for key, acc in key_minutes:
                    if key in merged:  # the overflow key, in several partitions
                        merged[key].add(acc)
                    else:
                        merged[key] = acc
        alerts: list[Alert] = []
        judges = (
            [d.observe_minute for d in self.detectors]
            if closed
            else [p.peek_minute for p in self._peekers]
        )
        for judge in judges:  # one after the other: a detector sees whom the earlier ones named
            for finding in judge(view):
                self._admit(finding, view, alerts)
        return alerts

    def _admit(self, finding: Finding, view: MinuteView, alerts: list[Alert]) -> None:
        view.named.add((finding.entity_type, finding.entity_id))
        if self.gate.admit(finding.kind, finding.entity_type, finding.entity_id, view.end):
            alerts.append(to_alert(finding, view.end))


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
        severity=grade(finding.score, finding.threshold, finding.magnitude, finding.stake),
        summary=finding.summary,
        evidence={k: Evidence(value=v, baseline=b) for k, (v, b) in finding.evidence.items()},
        event_count=finding.event_count,
    )
