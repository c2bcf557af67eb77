"""Runaway generation: truncation and timeout rate per api key, server and model against baseline.

Requests that never converge hit their budget (``truncated``) or the deadline (``timeout``).
Two tests judge the count of such requests against the entity's own usual rate:

* over the last 3 minutes, a binomial tail bound (a blatant runaway is paged within a minute);
* a sequential test (a Bernoulli CUSUM) of each minute's count: the log-likelihood ratio of its
  requests at ``shift_ratio``x the entity's slower usual rate (count-weighted, ~100 minutes)
  against that rate, summed while it stays above zero. A few percent of a key's requests
  truncated for half an hour add up here where no 3-minute window is sure. It restarts after
  it alarms, and falls back to zero once the rate is usual again, so a finished incident stops
  paging. A run that has not reached the bar in 30 minutes starts over, so a rate that rose for
  good (a tenant moving to harder problems) is learned as the new normal.

The usual rates are learned from minutes that alarm neither test (a minute in a run that
already looks like a fault is not learned either). A key's usual rate is judged given its
requests' contexts (model x route x difficulty band, ``contexts_from``: the request detector
whose contexts learn the fleet's rate of each): a minute whose requests' contexts give twice the
rate its usual ones give is judged against twice its usual rate, so a tenant moving to harder
problems, whose longer reasoning hits the budget more often, is not a runaway.

Who runs away is told apart by what the others explain: keys are judged first, servers without
the keys named, models without both (:meth:`RunawayDetector._unexplained`), and a key named
whose requests on the other servers are usual is dropped again: the server explains it
(:meth:`RunawayDetector._drop_keys_explained_by_servers`).

>>> from datetime import UTC, datetime, timedelta
>>> from pipeline.detectors.base import EntityMinute, MinuteView
>>> det = RunawayDetector(entity_types=("api_key",))
>>> t0 = datetime(2026, 3, 2, tzinfo=UTC)
>>> def minute(i, runaway):
...     m = EntityMinute(requests=100, runaway=runaway)
...     start = t0 + timedelta(minutes=i)
...     return MinuteView(start, start + timedelta(minutes=1), {"api_key": {"k": m}}, m)
>>> quiet = [det.observe_minute(minute(i, 2)) for i in range(60)]
>>> any(quiet)
False
>>> det.observe_minute(minute(60, 40))[0].kind
'runaway_generation'

A share too small for any 3-minute window adds up in the sequential test:

>>> slow = RunawayDetector(entity_types=("api_key",))
>>> quiet = [slow.observe_minute(minute(i, i % 2)) for i in range(60)]
>>> found = [slow.observe_minute(minute(60 + i, 3)) for i in range(10)]
>>> [i for i, f in enumerate(found) if f], found[8][0].summary
([8], 'api key k: 3% of 900 requests were truncated or timed out over 9 min, 4.5x the usual 0.7%')

Part of a minute can be judged too, learning nothing from it (``peek_minute``):

>>> start = t0 + timedelta(minutes=61)
>>> half = EntityMinute(requests=50, runaway=20)
>>> view = MinuteView(start, start + timedelta(seconds=30), {"api_key": {"k": half}}, half)
>>> [(f.kind, f.window_end == view.end) for f in det.peek_minute(view)]
[('runaway_generation', True)]
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from pipeline.detectors.base import (
    AdaptiveThreshold,
    BoundedStore,
    EntityMinute,
    Finding,
    Horizon,
    MinuteView,
    binomial_surprise,
)
from pipeline.detectors.baseline import EWBaseline
from pipeline.detectors.request_norm import KeyMinute

MIN_RATE = 0.005
MAX_RATE = 0.5
SLOW_FADING = 0.01  # the sequential test's usual rate: a count-weighted memory of ~100 minutes
MAX_RUN = timedelta(minutes=30)  # a run that has not reached the bar by then starts over
# requests of known context (count-weighted, like the slow rate) before a key's usual contexts'
# rate is used to judge it given its requests' contexts
MIN_CONTEXT_KNOWN = 100.0


class _Run:
    """The sequential test's current run: its log-likelihood ratio and the minutes it holds."""

    __slots__ = ("llr", "start", "total")

    def __init__(self, start: datetime) -> None:
        self.llr = 0.0
        self.start = start
        self.total = EntityMinute()


class _EntityState:
    __slots__ = (
        "baseline",
        "horizon",
        "run",
        "slow_context",
        "slow_known",
        "slow_requests",
        "slow_runaway",
    )

    def __init__(self, minutes: int) -> None:
        self.horizon = Horizon[EntityMinute](minutes)
        self.baseline = EWBaseline(fading=0.02, min_sd=0.001, warm_up=15)
        self.run: _Run | None = None
        self.slow_requests = 0.0
        self.slow_runaway = 0.0
        # what its requests' contexts give (a key's), over the requests whose context has a
        # rate, count-weighted as the slow rate is
        self.slow_context = 0.0
        self.slow_known = 0.0

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        slots = {"slow_context": 0.0, "slow_known": 0.0} | state[1]
        if "run" not in slots:  # saved before the sequential test: its slow rate starts at the
            # fast one's level, as if learned from the entity's recent traffic
            recent = [m.requests for _, m in slots["horizon"].recent]
            requests = sum(recent) / len(recent) / SLOW_FADING if recent else 0.0
            slots |= {"run": None, "slow_requests": requests}
            slots["slow_runaway"] = requests * slots["baseline"].level
        for name, value in slots.items():
            setattr(self, name, value)

    def fast_rate(self, context: float = 1.0) -> float:
        """The usual rate the 3-minute bound judges against (its recent level), times
        ``context``."""
        return min(max(self.baseline.level * context, MIN_RATE), MAX_RATE)

    def slow_rate(self, context: float = 1.0) -> float:
        """The usual rate the sequential test judges against (its own, count-weighted), times
        ``context``."""
        rate = self.slow_runaway / self.slow_requests if self.slow_requests else 0.0
        return min(max(rate * context, MIN_RATE), MAX_RATE)

    def context_ratio(self, key: KeyMinute | None) -> float:
        """How many times the rate its usual requests' contexts give this minute's requests'
        contexts give (1 for a model, or without a known context)."""
        if key is None or not key.runaway_known or self.slow_known < MIN_CONTEXT_KNOWN:
            return 1.0
        usual = self.slow_context / self.slow_known
        now = key.runaway_expected / key.runaway_known
        return now / usual if usual > 0 else 1.0

    def learn(self, minute: EntityMinute, key: KeyMinute | None) -> None:
        if minute.requests:
            self.baseline.learn_one(minute.runaway / minute.requests)
        keep = 1 - SLOW_FADING
        self.slow_requests = keep * self.slow_requests + minute.requests
        self.slow_runaway = keep * self.slow_runaway + minute.runaway
        self.slow_context = keep * self.slow_context + (key.runaway_expected if key else 0.0)
        self.slow_known = keep * self.slow_known + (key.runaway_known if key else 0)


class RunawayDetector:
    def __init__(
        self,
        entity_types: tuple[str, ...] = ("api_key", "server", "model"),
        horizon_minutes: int = 3,
        score_floor: float = 8.0,
        min_ratio: float = 3.0,
        min_count: int = 5,
        shift_ratio: float = 6.0,
        max_entities: int = 200_000,
        contexts_from: str | None = None,
    ) -> None:
        self.name = "runaway_generation"
        # the request detector whose key minutes say what a key's requests' contexts give
        self.contexts_from = contexts_from
        self.entity_types = entity_types
        self.horizon_minutes = horizon_minutes
        self.min_ratio = min_ratio
        self.min_count = min_count
        self.shift_ratio = shift_ratio
        self.threshold = AdaptiveThreshold(score_floor)
        self.states: BoundedStore[str, _EntityState] = BoundedStore(max_entities)

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("shift_ratio", 6.0)  # saved before the sequential test
        state.setdefault("contexts_from", "reasoning_inflation")  # ... before contexts
        if state.get("entity_types") == ("api_key", "model"):  # ... before servers were judged
            state["entity_types"] = ("api_key", "server", "model")
        self.__dict__.update(state)

    def entity_stores(self) -> list[BoundedStore[Any, Any]]:
        return [self.states]

    @property
    def sequential_bar(self) -> float:
        """The sequential test's bar in nats: the threshold's floor, in decades."""
        return self.threshold.floor * math.log(10)

    def observe_minute(self, view: MinuteView) -> list[Finding]:
        return self._judge(view, peek=False)

    def peek_minute(self, view: MinuteView) -> list[Finding]:
        """The open minute so far with the horizon before it; nothing is learned."""
        return self._judge(view, peek=True)

    def _judge(self, view: MinuteView, *, peek: bool) -> list[Finding]:
        findings: list[Finding] = []
        contexts = view.key_minutes.get(self.contexts_from or "", {})
        for entity_type in self.entity_types:
            rest = (
                self._unexplained(view, entity_type, findings) if entity_type != "api_key" else {}
            )
            for entity_id, minute in view.entities(entity_type).items():
                minute = rest.get(entity_id, minute)
                key = contexts.get(entity_id) if entity_type == "api_key" else None
                finding = self._judge_one(entity_type, entity_id, minute, key, view, peek=peek)
                if finding is not None:
                    findings.append(finding)
        return self._drop_keys_explained_by_servers(view, findings)

    def _drop_keys_explained_by_servers(
        self, view: MinuteView, findings: list[Finding]
    ) -> list[Finding]:
        """The findings less those on keys whose requests on the other servers are usual this
        minute: the servers named (judged without those keys) explain them. A throttled or hung
        server times out the requests of every key it serves; a runaway key's requests run away
        on every server, and a key sent to one server alone leaves it usual without the key."""
        servers = {f.entity_id for f in findings if f.entity_type == "server"}
        if not servers:
            return findings
        elsewhere = view.without("api_key", (), servers)
        return [
            f
            for f in findings
            if f.entity_type != "api_key"
            or f.entity_id not in elsewhere
            or self._shifted(elsewhere[f.entity_id], f.evidence["truncated_or_timeout_rate"][1])
        ]

    @staticmethod
    def _unexplained(
        view: MinuteView, entity_type: str, findings: list[Finding]
    ) -> dict[str, EntityMinute]:
        """The servers' or models' minutes without what the entities already named explain.

        A server is judged without the keys already named: one runaway key is not a broken
        server. A model is judged without those keys and without its servers already named,
        while they are at most half of the servers it ran on this minute: one server timing
        out (throttled, or hung) is not a broken model; most of them at once is the model.
        """
        keys = {f.entity_id for f in findings if f.entity_type == "api_key"}
        servers: set[str] = set()
        if entity_type == "model":
            model_of = view.model_of_server
            named = {f.entity_id for f in findings if f.entity_type == "server"}
            ran = Counter(model_of.values())  # each model's servers this minute
            down = Counter(model_of.get(s, "") for s in named)
            servers = {
                s for s in named if 2 * down[model_of.get(s, "")] <= ran[model_of.get(s, "")]
            }
        return view.without(entity_type, keys, servers) if keys or servers else {}

    def _judge_one(
        self,
        entity_type: str,
        entity_id: str,
        minute: EntityMinute,
        key: KeyMinute | None,
        view: MinuteView,
        *,
        peek: bool,
    ) -> Finding | None:
        """Judge one entity's minute; a ``peek`` judges the open minute so far with the horizon
        before it, and changes nothing."""
        name = f"{entity_type}:{entity_id}"
        if peek:
            state = self.states.get(name)
            if state is None or not state.baseline.warm:
                return None
            recent = state.horizon.peek(view.start, minute)
        else:
            state = self.states.get_or_create(name, lambda: _EntityState(self.horizon_minutes))
            # the two counts judged, not the view's whole minute (about 200 bytes less per
            # entity and minute kept)
            state.horizon.push(
                view.start, EntityMinute(requests=minute.requests, runaway=minute.runaway)
            )
            recent = state.horizon.recent
            if not state.baseline.warm:
                state.learn(minute, key)
                return None
        total = EntityMinute.total([m for _, m in recent])
        context = state.context_ratio(key)
        base = state.fast_rate(context)
        score = binomial_surprise(total.runaway, total.requests, base)
        if not peek:
            self.threshold.update(score, (entity_type, entity_id))
        if self._alarming(score, total, base):
            if not peek:
                state.run = None
            return self._finding(entity_type, entity_id, recent[0][0], total, base, score, view)
        slow = state.slow_rate(context)
        run = self._extend(_copy(state.run) if peek else state.run, view.start, minute, slow)
        if run is not None and self._run_alarming(run, slow):
            if not peek:
                state.run = None
            return self._run_finding(entity_type, entity_id, run, slow, view)
        if peek:
            return None
        state.run = run
        if run is None or run.llr < self.sequential_bar / 2 or not self._shifted(run.total, slow):
            state.learn(minute, key)
        return None

    def _extend(
        self, run: _Run | None, start: datetime, minute: EntityMinute, rate: float
    ) -> _Run | None:
        """The run with this minute's log-likelihood ratio added; None once it falls to zero."""
        if run is not None and start - run.start >= MAX_RUN:
            run = None  # no fault after this long: a new normal, to be learned
        shifted = min(self.shift_ratio * rate, (1 + MAX_RATE) / 2)
        llr = minute.runaway * math.log(shifted / rate) + (
            minute.requests - minute.runaway
        ) * math.log((1 - shifted) / (1 - rate))
        if run is None:
            if llr <= 0:
                return None
            run = _Run(start)
        run.llr += llr
        if run.llr <= 0:
            return None
        run.total.add(minute)
        return run

    def _run_alarming(self, run: _Run, rate: float) -> bool:
        return run.llr >= self.sequential_bar and self._shifted(run.total, rate)

    def _shifted(self, total: EntityMinute, base: float) -> bool:
        """At least ``min_count`` runaways at ``min_ratio``x the usual rate or more."""
        return (
            total.runaway >= self.min_count
            and total.runaway >= self.min_ratio * base * total.requests
        )

    def _run_finding(
        self, entity_type: str, entity_id: str, run: _Run, rate: float, view: MinuteView
    ) -> Finding:
        score = run.llr / math.log(10)
        return self._finding(entity_type, entity_id, run.start, run.total, rate, score, view)

    def _alarming(self, score: float, total: EntityMinute, base: float) -> bool:
        return score >= self.threshold.value and self._shifted(total, base)

    def _finding(
        self,
        entity_type: str,
        entity_id: str,
        start: datetime,
        total: EntityMinute,
        base: float,
        score: float,
        view: MinuteView,
    ) -> Finding:
        rate = total.runaway / total.requests
        minutes = math.ceil((view.end - start).total_seconds() / 60)
        summary = (
            f"{entity_type.replace('_', ' ')} {entity_id}: {rate:.0%} of {total.requests} requests "
            f"were truncated or timed out over {minutes} min, "
            f"{rate / base:.1f}x the usual {base:.1%}"
        )
        return Finding(
            kind="runaway_generation",
            entity_type=entity_type,
            entity_id=entity_id,
            window_start=start,
            window_end=view.end,
            score=score,
            threshold=self.threshold.value,
            summary=summary,
            evidence={"truncated_or_timeout_rate": (rate, base)},
            event_count=total.requests,
            magnitude=rate / base,
            stake=(
                (total.runaway - base * total.requests) / (view.fleet.requests * minutes)
                if view.fleet.requests
                else None
            ),
        )


def _copy(run: _Run | None) -> _Run | None:
    """A run a peek can extend without changing the entity's."""
    if run is None:
        return None
    copy = _Run(run.start)
    copy.llr = run.llr
    copy.total.add(run.total)
    return copy
