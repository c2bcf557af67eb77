"""Volume spikes (leaked keys, denial of wallet): request and GPU-ms rate against baseline.

Each api key's and tenant's *share of fleet traffic* is learned online. The share is what
makes the baseline seasonal without a calendar: the daily peak lifts every entity alike and
leaves shares unchanged, while a leaked key's share jumps. A new entity is in warm-up until
it has been seen for ``warm_up`` minutes, so a tenant ramping up is learned, not paged.

The fleet total a share is taken of is winsorised by tenant (:func:`robust_fleet`): each tenant
counts for at most ``TENANT_CAP`` times the median tenant, so one tenant flooding the stream
(or spiking) cannot dilute every other entity's share, hide their spikes while it lasts and
page on them when it stops.

>>> from datetime import UTC, datetime, timedelta
>>> from pipeline.detectors.base import EntityMinute, MinuteView
>>> det = VolumeDetector(entity_types=("api_key",))
>>> t0 = datetime(2026, 3, 2, tzinfo=UTC)
>>> def minute(i, key_requests):
...     key = EntityMinute(requests=key_requests, gpu_ms=100.0 * key_requests)
...     fleet = EntityMinute(requests=1000 + key_requests, gpu_ms=1e5 + 100.0 * key_requests)
...     start = t0 + timedelta(minutes=i)
...     return MinuteView(start, start + timedelta(minutes=1), {"api_key": {"k": key}}, fleet)
>>> any(det.observe_minute(minute(i, 20)) for i in range(90))
False
>>> det.observe_minute(minute(90, 200))[0].kind
'volume_spike'
"""

from __future__ import annotations

from datetime import datetime
from statistics import median
from typing import Final

from pipeline.detectors.base import (
    AdaptiveThreshold,
    BoundedStore,
    EntityMinute,
    Finding,
    Horizon,
    MinuteView,
    poisson_surprise,
)
from pipeline.detectors.baseline import EWBaseline

TENANT_CAP: Final = 3.0  # in the fleet total, a tenant counts for at most 3x the median tenant


class _ShareState:
    __slots__ = ("gpu_share", "horizon", "share")

    def __init__(self, minutes: int, warm_up: int) -> None:
        self.horizon = Horizon[tuple[EntityMinute, EntityMinute]](minutes)
        self.share = EWBaseline(fading=0.05, min_sd=1e-6, warm_up=warm_up)
        self.gpu_share = EWBaseline(fading=0.05, min_sd=1e-6, warm_up=warm_up)


class VolumeDetector:
    def __init__(
        self,
        entity_types: tuple[str, ...] = ("api_key", "tenant"),
        horizons_min: tuple[int, ...] = (2, 5),
        warm_up: int = 30,
        score_floor: float = 8.0,
        min_ratio: float = 2.0,
        max_entities: int = 200_000,
    ) -> None:
        self.name = "volume_spike"
        self.entity_types = entity_types
        self.horizons_min = horizons_min
        self.warm_up = warm_up
        self.min_ratio = min_ratio
        self.threshold = AdaptiveThreshold(score_floor)
        self.states: BoundedStore[str, _ShareState] = BoundedStore(max_entities)

    def observe_minute(self, view: MinuteView) -> list[Finding]:
        return self._judge(view, peek=False)

    def peek_minute(self, view: MinuteView) -> list[Finding]:
        """The open minute so far against the fleet's same part of it; nothing is learned.

        Shares need no scaling to the elapsed time: the key's requests and the fleet's come
        from the same seconds.
        """
        return self._judge(view, peek=True)

    def _judge(self, view: MinuteView, *, peek: bool) -> list[Finding]:
        if not view.fleet.requests:
            return []
        findings: list[Finding] = []
        fleet = robust_fleet(view)
        for entity_type in self.entity_types:
            # A tenant whose key already alerted is the same incident: name the key only.
            covered = {view.tenant_of_key.get(f.entity_id) for f in findings}
            for entity_id, minute in view.entities(entity_type).items():
                if entity_type == "tenant" and entity_id in covered:
                    continue
                finding = self._observe(entity_type, entity_id, minute, view, fleet, peek)
                if finding is not None:
                    findings.append(finding)
        return findings

    def _observe(
        self,
        entity_type: str,
        entity_id: str,
        minute: EntityMinute,
        view: MinuteView,
        fleet: EntityMinute,
        peek: bool,
    ) -> Finding | None:
        name = f"{entity_type}:{entity_id}"
        if peek:
            found = self.states.get(name)
            if found is None or not found.share.warm:
                return None
            state = found
            recent = state.horizon.peek(view.start, (minute, fleet))
        else:
            state = self.states.get_or_create(
                name, lambda: _ShareState(max(self.horizons_min), self.warm_up)
            )
            state.horizon.push(view.start, (minute, fleet))
            recent = list(state.horizon.recent)
            if not state.share.warm:
                self._learn(state, minute, fleet)
                return None
        best = max(
            (self._score(state, recent, view, minutes) for minutes in self.horizons_min),
            key=lambda scored: scored[0],
        )
        score, observed, expected, observed_gpu, expected_gpu, minutes = best
        ratio = observed / expected if expected > 0 else float("inf")
        gpu_ratio = observed_gpu / expected_gpu if expected_gpu > 0 else float("inf")
        if not peek:
            self.threshold.update(score)
        threshold = self.threshold.value
        if score < threshold or ratio < self.min_ratio or gpu_ratio < self.min_ratio / 2:
            if ratio < self.min_ratio and not peek:  # a spike must not teach its baseline
                self._learn(state, minute, fleet)
            return None
        label = entity_type.replace("_", " ")
        summary = (
            f"{label} {entity_id} sent {observed} requests using {observed_gpu / 1000:,.0f} GPU-s "
            f"in {minutes} min, {ratio:.1f}x its usual share of fleet traffic "
            f"({expected:,.0f} requests expected; GPU-ms {gpu_ratio:.1f}x)"
        )
        return Finding(
            kind="volume_spike",
            entity_type=entity_type,
            entity_id=entity_id,
            window_start=recent[0][0],
            window_end=view.end,
            score=score,
            threshold=threshold,
            summary=summary,
            evidence={
                "requests": (float(observed), expected),
                "gpu_ms": (observed_gpu, expected_gpu),
            },
            event_count=observed,
        )

    def _score(
        self,
        state: _ShareState,
        horizon: list[tuple[datetime, tuple[EntityMinute, EntityMinute]]],
        view: MinuteView,
        minutes: int,
    ) -> tuple[float, int, float, float, float, int]:
        """Poisson surprise of the last ``minutes``' request count against the usual share.

        Scored on request counts; GPU-ms per request is too heavy-tailed to count on, so the
        GPU-ms share is evidence and must have risen as well.
        """
        recent = [
            item for start, item in horizon if (view.start - start).total_seconds() < minutes * 60
        ]
        observed = sum(m.requests for m, _ in recent)
        expected = state.share.level * sum(f.requests for _, f in recent)
        observed_gpu = sum(m.gpu_ms for m, _ in recent)
        expected_gpu = state.gpu_share.level * sum(f.gpu_ms for _, f in recent)
        score = poisson_surprise(observed, expected)
        return score, observed, expected, observed_gpu, expected_gpu, len(recent)

    @staticmethod
    def _learn(state: _ShareState, minute: EntityMinute, fleet: EntityMinute) -> None:
        if fleet.requests <= 0:
            return
        state.share.learn_one(minute.requests / fleet.requests)
        if fleet.gpu_ms > 0:
            state.gpu_share.learn_one(minute.gpu_ms / fleet.gpu_ms)


def robust_fleet(view: MinuteView) -> EntityMinute:
    """The minute's fleet requests and GPU-ms, each tenant capped at ``TENANT_CAP`` times the
    median tenant (the whole fleet when there are fewer than three tenants to compare).

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 3, 2, tzinfo=UTC)
    >>> sizes = {"a": 100, "b": 80, "c": 60, "flood": 10_000}
    >>> tenants = {k: EntityMinute(requests=n, gpu_ms=10.0 * n) for k, n in sizes.items()}
    >>> fleet = EntityMinute(requests=sum(sizes.values()))
    >>> robust_fleet(MinuteView(t, t, {"tenant": tenants}, fleet)).requests  # 100+80+60+270
    510
    """
    tenants = list(view.entities("tenant").values())
    if len(tenants) < 3:
        return view.fleet
    cap_requests = TENANT_CAP * median(t.requests for t in tenants)
    cap_gpu_ms = TENANT_CAP * median(t.gpu_ms for t in tenants)
    return EntityMinute(
        requests=round(sum(min(t.requests, cap_requests) for t in tenants)),
        gpu_ms=sum(min(t.gpu_ms, cap_gpu_ms) for t in tenants),
    )
