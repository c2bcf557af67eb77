"""Stage 2: one minute of the whole fleet from every partition's part, and the fleet's detectors.

Stage 1 (:class:`~pipeline.engine.Engine`, one per partition of ``compute.events``) sees only
its partition's tenants. Whatever judges a key against the fleet (its share of the fleet's
requests, a server against its model's peers, a model's confidence) needs every partition's
part of the minute, so stage 1 hands each minute it scores and each open minute it peeks at
to stage 2 as a :class:`MinutePart`, with the findings of its own (per-request) detectors.

:class:`FleetStage` merges the parts of one due point (a closed minute, or a peek tick) once
every partition's clock has passed it, and judges the merged minute exactly as one engine over
the whole stream would: it admits stage 1's findings first (their stake re-taken against the
whole fleet), then runs the fleet's detectors, with one cooldown gate for all of them. So one
alert per kind, entity and window, however many partitions there are.

>>> from pipeline.config import Settings
>>> fleet = FleetStage(Settings(), detectors=[], partitions=2)
>>> part = MinutePart(partition=0, minute=0, end_s=60.0, groups=[], findings=[],
...                   fleet_requests=0)
>>> fleet.add([part], clocks={0: 70.0}), fleet.pending
([], 1)
>>> fleet.add([], clocks={1: 70.0}), fleet.pending
([], 0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Final, cast

import msgspec

from pipeline.alerts import Alert, CooldownGate, Evidence, alert_id_for, grade
from pipeline.config import Settings
from pipeline.detectors import (
    Finding,
    MinuteView,
    PeekingDetector,
    RequestDetector,
    WindowDetector,
)
from pipeline.metrics import WINDOW_S
from pipeline.minute_view import Group, build_minute_view, build_peek_view

DETECTION_GRACE_S: Final = 5.0  # a minute is scored once events 5 s past its end have been seen


class MinutePart(msgspec.Struct, frozen=True, kw_only=True):
    """One partition's part of one minute, as far as ``end_s`` reaches.

    ``end_s`` is the minute's end when the minute is closed, or the peek tick it was taken at.
    ``groups`` are the minute's sums per (tenant, api key, model, route, server); ``findings``
    what stage 1's detectors found in it; ``fleet_requests`` the requests of the partition they
    were judged against (their stake is a share of it).
    """

    partition: int
    minute: int
    end_s: float
    groups: list[Group]
    findings: list[Finding]
    fleet_requests: int

    @property
    def closed(self) -> bool:
        return self.end_s >= self.minute + WINDOW_S

    @property
    def due_s(self) -> float:
        """The event time at which one engine over the whole stream would judge it."""
        return self.minute + WINDOW_S + DETECTION_GRACE_S if self.closed else self.end_s


def split_detectors(
    detectors: Sequence[WindowDetector],
) -> tuple[list[RequestDetector], list[WindowDetector]]:
    """(stage 1's, stage 2's): detectors that score each request (``observe_event``) learn from
    events, which only stage 1 sees; every other detector judges minutes against the fleet."""
    per_request = [cast(RequestDetector, d) for d in detectors if hasattr(d, "observe_event")]
    return per_request, [d for d in detectors if not hasattr(d, "observe_event")]


class FleetStage:
    """Merge the partitions' :class:`MinutePart` s per due point and judge the whole fleet."""

    def __init__(
        self, settings: Settings, detectors: Sequence[WindowDetector], partitions: int
    ) -> None:
        self.detectors = list(detectors)
        self._peekers = [d for d in self.detectors if isinstance(d, PeekingDetector)]
        self.gate = CooldownGate(cooldown_s=settings.worker.alert_cooldown_s)
        self.clocks = [-math.inf] * partitions  # event time each partition has passed
        self._parts: dict[tuple[float, int, float], dict[int, MinutePart]] = {}
        self._judged_s = -math.inf  # due points at or before this are judged

    @property
    def pending(self) -> int:
        """Due points waiting for a partition's clock."""
        return len(self._parts)

    def add(self, parts: Iterable[MinutePart], clocks: Mapping[int, float]) -> list[Alert]:
        """Take parts and partitions' clocks; judge every due point all clocks have passed.

        A part for a due point already judged (stage 1 sending again after a restart) is
        ignored: the minute was judged once, on what had arrived.
        """
        for part in parts:
            key = (part.due_s, part.minute, part.end_s)
            if part.due_s > self._judged_s:
                self._parts.setdefault(key, {})[part.partition] = part
        for partition, clock in clocks.items():
            self.clocks[partition] = max(self.clocks[partition], clock)
        return self._judge_through(min(self.clocks))

    def finish(self) -> list[Alert]:
        """Judge everything still waiting (the end of a replay)."""
        return self._judge_through(math.inf)

    def _judge_through(self, clock: float) -> list[Alert]:
        alerts: list[Alert] = []
        for key in sorted(k for k in self._parts if k[0] <= clock):
            due_s, minute, end_s = key
            by_partition = self._parts.pop(key)
            parts = [by_partition[p] for p in sorted(by_partition)]
            alerts.extend(self._judge(minute, end_s, parts))
            self._judged_s = max(self._judged_s, due_s)
        return alerts

    def _judge(self, minute: int, end_s: float, parts: list[MinutePart]) -> list[Alert]:
        groups = [group for part in parts for group in part.groups]
        closed = end_s >= minute + WINDOW_S
        view = (
            build_minute_view(minute, groups) if closed else build_peek_view(minute, groups, end_s)
        )
        alerts: list[Alert] = []
        for part in parts:  # stage 1's findings first, as one engine would have found them
            scale = part.fleet_requests / view.fleet.requests if view.fleet.requests else 1.0
            for finding in part.findings:
                if finding.stake is not None:
                    finding = replace(finding, stake=finding.stake * scale)
                self._admit(finding, view, alerts)
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
