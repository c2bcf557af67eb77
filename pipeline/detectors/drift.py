"""Slow drifts: a server's GPU-ms per token (``efficiency_degradation``) and a model's
confidence (``confidence_collapse``).

Efficiency is measured *relative to the server's peers*: each minute, a server's log GPU-ms per
token minus the shift its model's servers share that minute (the median, over them, of each
one's cost against its own usual level). A fleet-wide rollout that makes a model dearer
everywhere moves that shift with it and alerts nobody; one throttled GPU stands out, and, unlike
against the median cost, it does not hide half its rise by overtaking a peer.
Baselines learn slowly and skip minutes more than 3 standard deviations out, so a ramp is not
absorbed into the baseline it is measured against. Besides the 2-minute window, a one-sided
CUSUM of each minute's z-score against the server's own spread (``S <- max(0, S + z - k)``,
alarm at ``h``, once the server is at least 10 % dearer than usual) adds up a slow ramp that no
single window shows: a GPU throttling by a few percent a minute is found within minutes of its
start; a run that has not become a fault within an hour ends (the server settled a little off
its old level). While a server's last two minutes stand out, its peers' baselines do not learn:
the median they are measured against has moved with it. A server whose minutes go 3 of its
spreads out more often than a Gaussian's would (a real token mix makes some servers' minutes
heavy-tailed) is judged, by both tests, on a spread widened until they would not
(:mod:`pipeline.detectors.tails`; each excursion counted for at most the window's 2 minutes:
how often they start is the noise, how long a fault lasts is not).

>>> from datetime import UTC, datetime, timedelta
>>> from pipeline.detectors.base import EntityMinute, MinuteView
>>> det = EfficiencyDriftDetector()
>>> t0 = datetime(2026, 3, 2, tzinfo=UTC)
>>> def minute(i, slow):
...     servers = {f"s{j}": EntityMinute(requests=50, token_passes=50_000,
...                gpu_ms=50_000.0 * (slow if j == 0 else 1.0) * (1 + 0.01 * (j % 3)))
...                for j in range(4)}
...     start = t0 + timedelta(minutes=i)
...     return MinuteView(start, start + timedelta(minutes=1), {"server": servers},
...                       EntityMinute(), model_of_server={s: "m" for s in servers})
>>> any(det.observe_minute(minute(i, 1.0)) for i in range(60))
False
>>> [f.entity_id for f in det.observe_minute(minute(60, 2.0))]
['s0']
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import datetime
from typing import Any

from pipeline.detectors.base import (
    AdaptiveThreshold,
    BoundedStore,
    EntityMinute,
    Finding,
    Horizon,
    MinuteView,
)
from pipeline.detectors.baseline import EWBaseline
from pipeline.detectors.tails import GAUSSIAN_TAIL, SUSPECT_Z, learn_excursion, widening

CUSUM_K = 0.5  # standard deviations of drift per minute that the sequential test ignores
CUSUM_H = 10.0  # ... and the sum at which it alarms
CUSUM_MIN_RATIO = 1.1  # ... once the server is at least this much dearer than usual
CUSUM_CLIP = 2.5  # one minute adds at most this many standard deviations (heavy tails)
CUSUM_MATURE = 120  # minutes a server's baseline has learned before the sequential test runs
# A run of the sequential test that has not become a fault (the server CUSUM_MIN_RATIO dearer)
# within this many minutes ends: the server has settled a few percent off its old level, and
# its baseline, which a run keeps from learning, learns the new one.
CUSUM_MAX_RUN_S = 60 * 60
SUSPECT_MAX_S = 6 * 60 * 60  # a server standing out from its peers holds their learning this long
# A model's confidence standing out from its baseline this long is its new level: the baseline,
# which does not learn minutes that stand out, starts over (a large tenant moving to harder
# problems for good lowers a model's confidence for good; paged for an hour, not for a day).
CONFIDENCE_MAX_S = 60 * 60
ROUTE_FADING = 0.01  # per minute: a (model, route)'s usual confidence follows about 100 minutes
ROUTE_KNOWN = 100.0  # requests (exponentially weighted) behind it before a minute is judged on it


class _DriftState:
    __slots__ = ("baseline", "cusum", "cusum_start", "horizon", "run", "suspect_since", "tail")

    def __init__(self, minutes: int, min_sd: float) -> None:
        self.horizon = Horizon[tuple[float, EntityMinute]](minutes)
        self.baseline = EWBaseline(fading=0.01, min_sd=min_sd, warm_up=30)
        self.cusum = 0.0
        self.cusum_start: datetime | None = None
        # standing out since (a server: from its peers; a model: below its own confidence)
        self.suspect_since: datetime | None = None
        self.tail, self.run = GAUSSIAN_TAIL, 0  # its own tail (pipeline.detectors.tails)

    def __setstate__(self, state: tuple[None, dict[str, object]]) -> None:
        self.cusum, self.cusum_start = 0.0, None  # absent from snapshots taken before it
        self.suspect_since = None
        self.tail, self.run = GAUSSIAN_TAIL, 0
        for name, value in state[1].items():
            setattr(self, name, value)


class EfficiencyDriftDetector:
    """GPU-ms per token of each server relative to its model's peers."""

    def __init__(
        self,
        horizon_minutes: int = 2,
        score_floor: float = 6.0,
        min_ratio: float = 1.15,
        min_requests: int = 10,
        max_entities: int = 50_000,
    ) -> None:
        self.name = "efficiency_degradation"
        self.horizon_minutes = horizon_minutes
        self.min_log_ratio = math.log(min_ratio)
        self.min_requests = min_requests
        self.threshold = AdaptiveThreshold(score_floor)
        self.states: BoundedStore[str, _DriftState] = BoundedStore(max_entities)

    def observe_minute(self, view: MinuteView) -> list[Finding]:
        costs: dict[str, float] = {}
        for server, minute in view.entities("server").items():
            per_token = minute.gpu_ms_per_token
            if minute.requests >= self.min_requests and per_token:
                costs[server] = math.log(per_token)
        peers: dict[str, dict[str, float]] = defaultdict(dict)
        for server, cost in costs.items():
            peers[view.model_of_server.get(server, "")][server] = cost
        findings = []
        for servers in peers.values():
            if len(servers) < 3:  # too few busy peers this minute to tell drift from a rollout
                continue
            shared = self._shared_shift(servers)
            suspects = {s for s, c in servers.items() if self._suspect(s, c - shared, view)}
            for server, cost in servers.items():
                minute = view.entities("server")[server]
                learn = not suspects - {server}
                finding = self._observe(server, cost - shared, minute, view, learn=learn)
                if finding is not None:
                    findings.append(finding)
        return findings

    def _shared_shift(self, costs: dict[str, float]) -> float:
        """How far the peers' costs moved together this minute: the median, over the servers,
        of each one's log cost less its own usual level relative to its peers (the plain
        median cost stands in for a server whose baseline is not warm yet). A server that
        moves alone barely moves it; and unlike the median cost itself, it does not jump when
        one server's move reorders the others (a 5 % gap between two servers would otherwise
        move every peer's relative cost by 5 % for as long as the incident lasts, and back)."""
        median = statistics.median(costs.values())
        moved = []
        for server, cost in costs.items():
            state = self.states.get(server)
            base = state.baseline if state is not None else None
            moved.append(cost - base.level if base is not None and base.warm else median)
        return statistics.median(moved)

    def _suspect(self, server: str, relative: float, view: MinuteView) -> bool:
        """Its last two minutes' mean cost relative to its peers is SUSPECT_Z of its own,
        learned spread above its usual, for less than six hours: while it lasts, its peers'
        baselines do not learn, since the median they are measured against has moved with it
        (they would learn the shift, and drift back up from it once the incident is over). A
        server that stays apart longer is not holding its peers' learning back for good."""
        state = self.states.get(server)
        if state is None or state.baseline.n < CUSUM_MATURE:  # its spread is not known yet
            return False
        recent = state.horizon.peek(view.start, (relative, EntityMinute()))
        mean_relative = sum(r for _, (r, _) in recent) / len(recent)
        if state.baseline.score_one(mean_relative) < SUSPECT_Z:
            state.suspect_since = None
            return False
        if state.suspect_since is None:
            state.suspect_since = view.start
        return (view.start - state.suspect_since).total_seconds() < SUSPECT_MAX_S

    def _observe(
        self, server: str, relative: float, minute: EntityMinute, view: MinuteView, *, learn: bool
    ) -> Finding | None:
        """Judge one server's cost relative to its peers; its baseline learns it if ``learn``
        (no peer stands out) and it is ordinary."""
        state = self.states.get_or_create(server, lambda: _DriftState(self.horizon_minutes, 0.03))
        recent = state.horizon.push(view.start, (relative, minute))
        mean_relative = sum(r for r, _ in recent) / len(recent)
        base = state.baseline
        z, raw = base.score_one(relative), base.score_one(mean_relative)
        widen = widening(state.tail)  # as learned before this minute
        score = raw / widen
        if base.warm:
            self.threshold.update(score, server)
            state.tail, state.run = learn_excursion(
                state.tail, state.run, z, max_run=self.horizon_minutes
            )
        threshold = self.threshold.value
        excess = mean_relative - base.level
        sequential = self._sequential(state, z / widen, view.start)
        if excess < math.log(CUSUM_MIN_RATIO):  # a slow wander of a few percent is not a fault
            sequential = None
            started = state.cusum_start
            if started is not None and (view.end - started).total_seconds() > CUSUM_MAX_RUN_S:
                state.cusum, state.cusum_start = 0.0, None
        windowed = base.warm and score >= threshold and excess >= self.min_log_ratio
        if not windowed and sequential is None:
            if learn and raw < SUSPECT_Z and state.cusum < CUSUM_H / 2:
                base.learn_one(relative)  # a drifting server must not teach its baseline
            return None
        if sequential is not None and not windowed:
            start, minutes = sequential, max(1, round((view.end - sequential).total_seconds() / 60))
            score, threshold = state.cusum, CUSUM_H
            how = f"drifting up for {minutes} min (sequential test {score:.0f}, threshold "
            how += f"{threshold:.0f})"
        else:
            start, how = state.horizon.start, f"over {len(recent)} min"
        state.cusum, state.cusum_start = 0.0, None
        total = EntityMinute.total([m for _, m in recent])
        per_token = total.gpu_ms_per_token or 0.0
        usual = per_token / math.exp(excess)
        model = view.model_of_server.get(server, "?")
        summary = (
            f"server {server} ({model}) used {per_token * 1000:,.0f} GPU-ms per 1k tokens {how}, "
            f"{math.exp(excess):.2f}x its usual cost relative to its peers ({usual * 1000:,.0f})"
        )
        return Finding(
            kind="efficiency_degradation",
            entity_type="server",
            entity_id=server,
            window_start=start,
            window_end=view.end,
            score=score,
            threshold=threshold,
            summary=summary,
            evidence={"gpu_ms_per_1k_tokens": (per_token * 1000, usual * 1000)},
            event_count=total.requests,
            magnitude=math.exp(excess),
            stake=(
                total.gpu_ms * (1 - math.exp(-excess)) / (view.fleet.gpu_ms * len(recent))
                if view.fleet.gpu_ms > 0
                else None
            ),
        )

    def _sequential(self, state: _DriftState, z: float, now: datetime) -> datetime | None:
        """Add this minute's z-score to the server's CUSUM; the run's start when it alarms."""
        if state.baseline.n < CUSUM_MATURE:  # a young baseline's level is still settling
            return None
        state.cusum = max(0.0, state.cusum + min(z, CUSUM_CLIP) - CUSUM_K)
        if state.cusum == 0.0:
            state.cusum_start = None
            return None
        if state.cusum_start is None:
            state.cusum_start = now
        return state.cusum_start if state.cusum >= CUSUM_H else None


class _RouteConfidence:
    """A (model, route)'s usual confidence: the mean of its requests' confidence, weighted by
    request and exponentially by minute (:data:`ROUTE_FADING`)."""

    __slots__ = ("mean", "weight")

    def __init__(self) -> None:
        self.mean = 0.0
        self.weight = 0.0  # requests behind the mean (exponentially weighted)

    def learn(self, part: EntityMinute) -> None:
        self.weight = (1.0 - ROUTE_FADING) * self.weight + part.confidence_count
        self.mean += (part.confidence_sum - part.confidence_count * self.mean) / self.weight


class ConfidenceCollapseDetector:
    """Mean answer confidence of each model, **given its requests' routes**, against its own
    baseline; judged on a spread widened by the model's own tail of falls, as a server's cost
    is. Each (model, route) learns its usual confidence from the model's ordinary minutes, and
    a minute is judged by how far its confidence falls short of what its routes usually give:
    harder problems go to deeper routes, whose answers are less sure, so a tenant moving to
    harder problems shifts a model's mix of routes, and its confidence with it, and is no
    collapse. A fall that has stood out for :data:`CONFIDENCE_MAX_S` is the model's new level:
    its baseline starts over (and warms up again).

    >>> from datetime import UTC, datetime, timedelta
    >>> from pipeline.detectors.base import EntityMinute, MinuteView
    >>> det = ConfidenceCollapseDetector()
    >>> t0 = datetime(2026, 3, 2, tzinfo=UTC)
    >>> def minute(i, fast, deep, fall=0.0):  # requests on each route; deep is less sure
    ...     routes = {("m", r): EntityMinute(requests=n, confidence_sum=n * (c - fall),
    ...                                      confidence_count=n, gpu_ms=1e3 * n)
    ...               for r, n, c in (("fast", fast, 0.85 + 0.01 * (i % 3)), ("deep", deep, 0.6))}
    ...     model = EntityMinute()
    ...     for part in routes.values():
    ...         model.add(part)
    ...     start = t0 + timedelta(minutes=i)
    ...     return MinuteView(start, start + timedelta(minutes=1), {"model": {"m": model}},
    ...                       model, model_route=routes)
    >>> any(det.observe_minute(minute(i, 80, 20)) for i in range(60))
    False
    >>> det.observe_minute(minute(60, 20, 80))  # harder problems: most requests go deep
    []
    >>> det.observe_minute(minute(61, 80, 20, fall=0.3))[0].kind
    'confidence_collapse'
    """

    def __init__(
        self,
        horizon_minutes: int = 2,
        score_floor: float = 6.0,
        min_drop: float = 0.05,
        min_samples: int = 20,
        max_entities: int = 10_000,
    ) -> None:
        self.name = "confidence_collapse"
        self.horizon_minutes = horizon_minutes
        self.min_drop = min_drop
        self.min_samples = min_samples
        self.threshold = AdaptiveThreshold(score_floor)
        # per model, the baseline of its minutes' confidence less what their routes give
        self.states: BoundedStore[str, _DriftState] = BoundedStore(max_entities)
        self.compute: BoundedStore[str, EWBaseline] = BoundedStore(max_entities)
        self.routes: BoundedStore[tuple[str, str], _RouteConfidence] = BoundedStore(max_entities)

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "routes" not in state:  # saved before routes: its baselines judged raw confidence
            state["routes"] = BoundedStore(state["states"].max_entries)
            for _, drift in state["states"].items():
                drift.baseline = drift.baseline.fresh()
        self.__dict__.update(state)

    def observe_minute(self, view: MinuteView) -> list[Finding]:
        return self._judge(view, peek=False)

    def peek_minute(self, view: MinuteView) -> list[Finding]:
        """The open minute so far (a mean, so no scaling); nothing is learned."""
        return self._judge(view, peek=True)

    @staticmethod
    def _settled_lower(state: _DriftState, raw: float, view: MinuteView) -> bool:
        """Whether the model's last minutes have stood :data:`SUSPECT_Z` spreads below its
        baseline for :data:`CONFIDENCE_MAX_S`: its baseline then starts over (warming up on
        the new level, nothing judged meanwhile)."""
        if raw < SUSPECT_Z:
            state.suspect_since = None
            return False
        if state.suspect_since is None:
            state.suspect_since = view.start
            return False
        if (view.end - state.suspect_since).total_seconds() <= CONFIDENCE_MAX_S:
            return False
        state.baseline = state.baseline.fresh()
        state.suspect_since = None
        return True

    def _judge(self, view: MinuteView, *, peek: bool) -> list[Finding]:
        by_model: defaultdict[str, list[tuple[str, EntityMinute]]] = defaultdict(list)
        for (model, route), part in view.model_route.items():
            by_model[model].append((route, part))
        findings = []
        for model, minute in view.entities("model").items():
            if minute.confidence_count < self.min_samples:
                continue
            routes = by_model.get(model) or [("", minute)]  # a view without routes: one
            judged = self._against_routes(model, routes, minute)
            if judged is None:  # its routes' usual confidence is not known yet
                if not peek:
                    self._learn_routes(model, routes)
                continue
            finding = self._observe(model, judged, minute, routes, view, peek)
            if finding is not None:
                findings.append(finding)
        return findings

    def _against_routes(
        self, model: str, routes: list[tuple[str, EntityMinute]], minute: EntityMinute
    ) -> tuple[float, EntityMinute] | None:
        """How much confidence the minute's requests fell short of what their routes usually
        give (summed over its requests on routes whose usual is known), with those requests'
        sums; None with fewer than ``min_samples`` of them."""
        shortfall = 0.0
        known = EntityMinute(requests=minute.requests, gpu_ms=minute.gpu_ms)
        for route, part in routes:
            usual = self.routes.get((model, route))
            if usual is None or usual.weight < ROUTE_KNOWN or not part.confidence_count:
                continue
            shortfall += part.confidence_count * usual.mean - part.confidence_sum
            known.confidence_sum += part.confidence_sum
            known.confidence_count += part.confidence_count
        if known.confidence_count < self.min_samples:
            return None
        return shortfall, known

    def _learn_routes(self, model: str, routes: list[tuple[str, EntityMinute]]) -> None:
        for route, part in routes:
            if part.confidence_count:
                self.routes.get_or_create((model, route), _RouteConfidence).learn(part)

    def _observe(
        self,
        model: str,
        judged: tuple[float, EntityMinute],
        minute: EntityMinute,
        routes: list[tuple[str, EntityMinute]],
        view: MinuteView,
        peek: bool,
    ) -> Finding | None:
        shortfall = judged[0] / judged[1].confidence_count  # this minute's, per request
        if peek:
            state, compute = self.states.get(model), self.compute.get(model)
            if state is None or compute is None or not state.baseline.warm:
                return None
            recent = state.horizon.peek(view.start, judged)
        else:
            state = self.states.get_or_create(
                model, lambda: _DriftState(self.horizon_minutes, 0.01)
            )
            compute = self.compute.get_or_create(model, lambda: EWBaseline(fading=0.01, warm_up=30))
            state.horizon.push(view.start, judged)
            recent = list(state.horizon.recent)
        total = EntityMinute.total([m for _, (_, m) in recent])
        mean_shortfall = sum(s for _, (s, _) in recent) / total.confidence_count
        base = state.baseline
        raw = base.score_one(mean_shortfall)
        score = raw / widening(state.tail)
        if base.warm and not peek:
            self.threshold.update(score, model)
            state.tail, state.run = learn_excursion(
                state.tail, state.run, base.score_one(shortfall), max_run=self.horizon_minutes
            )
            if self._settled_lower(state, raw, view):
                self._learn(model, state, compute, shortfall, minute, routes)
                return None
        threshold = self.threshold.value
        drop = mean_shortfall - base.level
        gpu_per_request = total.gpu_ms / total.requests
        if not base.warm or score < threshold or drop < self.min_drop:
            if not peek:
                if raw < SUSPECT_Z:
                    self._learn(model, state, compute, shortfall, minute, routes)
                else:
                    compute.learn_one(minute.gpu_ms / minute.requests)
            return None
        mean_confidence = total.confidence_mean or 0.0
        usual = mean_confidence + drop  # what its requests' routes usually give
        minutes = math.ceil((view.end - recent[0][0]).total_seconds() / 60)
        summary = (
            f"model {model}: mean confidence fell to {mean_confidence:.2f} from the "
            f"{usual:.2f} its requests' routes usually give, over {minutes} min, while GPU-ms "
            f"per request stayed at {gpu_per_request:,.0f} (usual {compute.level:,.0f})"
        )
        return Finding(
            kind="confidence_collapse",
            entity_type="model",
            entity_id=model,
            window_start=recent[0][0],
            window_end=view.end,
            score=score,
            threshold=threshold,
            summary=summary,
            evidence={
                "confidence_mean": (mean_confidence, usual),
                "gpu_ms_per_request": (gpu_per_request, compute.level),
            },
            event_count=total.requests,
            # a fall to half the usual confidence counts as 2x from normal
            magnitude=usual / max(mean_confidence, 1e-6),
            stake=(
                total.requests / (view.fleet.requests * minutes) if view.fleet.requests else None
            ),
        )

    def _learn(
        self,
        model: str,
        state: _DriftState,
        compute: EWBaseline,
        shortfall: float,
        minute: EntityMinute,
        routes: list[tuple[str, EntityMinute]],
    ) -> None:
        """An ordinary minute: the model's usual shortfall, its compute, its routes' usual."""
        state.baseline.learn_one(shortfall)
        compute.learn_one(minute.gpu_ms / minute.requests)
        self._learn_routes(model, routes)
