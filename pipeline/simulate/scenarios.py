"""Named, composable scenarios: attacks, faults, and benign shifts that must not alert.

A scenario targets one entity during ``[start, end)`` with an ``intensity`` whose meaning each
class documents. It acts through hooks the generator calls per time chunk: extra arrivals
(:meth:`Scenario.extra_arrivals`), thinning (:meth:`Scenario.keep`), and column edits at a stage
of the request model (:meth:`Scenario.apply`, see :mod:`pipeline.simulate.workload`). Scenarios
compose: any number can run at once; each draws from its own random stream, so adding one never
changes the traffic it does not touch.

>>> from datetime import UTC, datetime
>>> s = make_scenario("volume_spike", entity_id="ak-1", intensity=8.0,
...                   start=datetime(2026, 3, 2, 6, tzinfo=UTC),
...                   end=datetime(2026, 3, 2, 6, 30, tzinfo=UTC))
>>> s.kind, s.entity_type, s.benign, s.incident().intensity
('volume_spike', 'api_key', False, 8.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import msgspec
import numpy as np
from numpy.typing import NDArray

from pipeline.simulate.fleet import Fleet, IntArray
from pipeline.simulate.labels import ALL_ENTITIES, EntityType, Incident, Variant
from pipeline.simulate.router import Router
from pipeline.simulate.workload import TIMEOUT, TRUNCATED, U_KEEP, U_PASSES, Block, Stage

Mask = NDArray[np.bool_]
_COLUMN = {"api_key": "key", "tenant": "tenant", "server": "server", "model": "model"}


@dataclass(frozen=True, slots=True)
class Context:
    """What a scenario hook may use: the fleet, the router and the scenario's own generator."""

    fleet: Fleet
    router: Router
    rng: np.random.Generator


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """Base class. Subclasses set ``kind``, ``benign``, allowed entity types and their hooks."""

    kind: ClassVar[str] = "other"
    benign: ClassVar[bool] = False
    entity_types: ClassVar[tuple[EntityType, ...]] = ("api_key",)
    persistent: ClassVar[bool] = False
    """True when the change stays after ``end`` (the window is the transition)."""

    entity_id: str
    start: datetime
    end: datetime
    intensity: float
    variant: Variant = "blatant"
    entity_type: EntityType = "api_key"

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError(f"{self.kind}: start and end must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"{self.kind}: end must be after start")
        if self.entity_type not in self.entity_types:
            raise ValueError(f"{self.kind}: entity_type must be one of {self.entity_types}")

    @property
    def start_ms(self) -> int:
        return round(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return round(self.end.timestamp() * 1000)

    def affects(self, t0_ms: int, t1_ms: int) -> bool:
        """Whether the scenario can change traffic in ``[t0_ms, t1_ms)``."""
        return t1_ms > self.start_ms and (self.persistent or t0_ms < self.end_ms)

    def entity_rows(self, block: Block, fleet: Fleet) -> Mask:
        """Rows of the target entity."""
        if self.entity_id == ALL_ENTITIES:
            return np.ones(len(block), dtype=bool)
        column: IntArray = getattr(block, _COLUMN[self.entity_type])
        return np.asarray(column == fleet.index(self.entity_type, self.entity_id))

    def rows(self, block: Block, fleet: Fleet) -> Mask:
        """Rows of the target entity inside ``[start, end)``."""
        inside = (block.ts >= self.start_ms) & (block.ts < self.end_ms)
        return inside & self.entity_rows(block, fleet)

    def progress(self, ts: IntArray) -> NDArray[np.float64]:
        """0 at ``start`` rising linearly to 1 at ``end`` (clipped outside)."""
        span = max(self.end_ms - self.start_ms, 1)
        return np.clip((ts - self.start_ms) / span, 0.0, 1.0)

    def extra_arrivals(self, ctx: Context, t0_ms: int, t1_ms: int) -> tuple[IntArray, IntArray]:
        """Additional requests in the chunk: ``(key index, ts)`` arrays (none by default)."""
        empty = np.empty(0, dtype=np.int64)
        return empty, empty

    def keep(self, block: Block, ctx: Context) -> Mask | None:
        """Rows of fresh arrivals to keep, or ``None`` to keep all."""
        return None

    def apply(self, stage: Stage, block: Block, ctx: Context) -> None:
        """Edit ``block`` in place after ``stage`` of the request model (no-op by default)."""

    def incident(self, fleet: Fleet | None = None) -> Incident:
        """The label of this scenario; ``fleet`` resolves the tenant of an api key."""
        tenant_id = self.entity_id if self.entity_type == "tenant" else None
        if self.entity_type == "api_key" and fleet is not None:
            tenant_id = fleet.tenants[fleet.keys[fleet.index("api_key", self.entity_id)].tenant].id
        return Incident(
            kind=self.kind, benign=self.benign, entity_type=self.entity_type,
            entity_id=self.entity_id, tenant_id=tenant_id, start=self.start, end=self.end,
            intensity=float(self.intensity), variant=self.variant,
        )  # fmt: skip


def _sample(mask: Mask, fraction: float, rng: np.random.Generator) -> Mask:
    """A random ``fraction`` of the rows in ``mask`` (draws for every row: stable streams)."""
    return mask & (rng.random(mask.shape[0]) < fraction)


@dataclass(frozen=True, kw_only=True)
class ReasoningInflation(Scenario):
    """OverThink-style decoys: a ``fraction`` of a key's requests spend ``intensity``× the
    reasoning their route and difficulty warrant (capped by the budget); confidence is no better.
    """

    kind: ClassVar[str] = "reasoning_inflation"
    fraction: float = 0.5

    def apply(self, stage: Stage, block: Block, ctx: Context) -> None:
        if stage == "tokens":
            hit = _sample(self.rows(block, ctx.fleet), self.fraction, ctx.rng)
            block.reasoning = np.where(hit, np.floor(block.reasoning * self.intensity),
                                       block.reasoning)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class RunawayGeneration(Scenario):
    """Requests that never converge: a share ``intensity`` of the entity's requests think until
    the budget (truncated) or, for ``timeout_share`` of them, until the server's time limit.
    """

    kind: ClassVar[str] = "runaway_generation"
    entity_types: ClassVar[tuple[EntityType, ...]] = ("api_key", "model")
    timeout_share: float = 0.3

    def apply(self, stage: Stage, block: Block, ctx: Context) -> None:
        if stage == "tokens":
            hit = _sample(self.rows(block, ctx.fleet), self.intensity, ctx.rng)
            timeout = hit & (ctx.rng.random(len(block)) < self.timeout_share)
            thinks = ctx.fleet.arrays.model_reasoning[block.model] > 0
            budget = block.budget.astype(float)  # a non-reasoning model rambles in its answer
            block.reasoning = np.where(hit & thinks, budget, block.reasoning)
            block.completion = np.where(hit & ~thinks, budget, block.completion)
            block.forced = np.where(hit, np.where(timeout, TIMEOUT, TRUNCATED), block.forced)


@dataclass(frozen=True, kw_only=True)
class PassExplosion(Scenario):
    """A ``fraction`` of a key's requests run about ``intensity``× their route's maximum passes
    (extra passes that do not help the answer)."""

    kind: ClassVar[str] = "pass_explosion"
    fraction: float = 0.6

    def apply(self, stage: Stage, block: Block, ctx: Context) -> None:
        if stage == "plan":
            hit = _sample(self.rows(block, ctx.fleet), self.fraction, ctx.rng)
            cap = ctx.router.max_passes[block.route]
            jitter = ctx.rng.uniform(0.8, 1.2, len(block))
            exploded = np.maximum(np.ceil(cap * self.intensity * jitter), cap + 1)
            block.passes = np.where(hit, exploded.astype(np.int64), block.passes)


@dataclass(frozen=True, kw_only=True)
class VolumeSpike(Scenario):
    """A leaked key or denial of wallet: the key sends ``intensity``× its usual rate of
    ordinary-looking requests."""

    kind: ClassVar[str] = "volume_spike"

    def extra_arrivals(self, ctx: Context, t0_ms: int, t1_ms: int) -> tuple[IntArray, IntArray]:
        a, b = max(t0_ms, self.start_ms), min(t1_ms, self.end_ms)
        if b <= a:
            return super().extra_arrivals(ctx, t0_ms, t1_ms)
        key = ctx.fleet.index("api_key", self.entity_id)
        rate = ctx.fleet.key_rate(key, (a + b) / 2) * (self.intensity - 1.0)
        n = int(ctx.rng.poisson(max(rate, 0.0) * (b - a) / 1000.0))
        ts = a + np.floor(ctx.rng.random(n) * (b - a)).astype(np.int64)
        return np.full(n, key, dtype=np.int64), ts


@dataclass(frozen=True, kw_only=True)
class EfficiencyDegradation(Scenario):
    """A failing or throttled GPU: one server's GPU-ms (and decode time) per token ramps up to
    ``intensity``× over the first ``ramp`` share of the window, then holds until ``end``."""

    kind: ClassVar[str] = "efficiency_degradation"
    entity_types: ClassVar[tuple[EntityType, ...]] = ("server",)
    entity_type: EntityType = "server"
    ramp: float = 0.5

    def apply(self, stage: Stage, block: Block, ctx: Context) -> None:
        if stage == "cost":
            rows = self.rows(block, ctx.fleet)
            span = max((self.end_ms - self.start_ms) * self.ramp, 1.0)
            level = np.clip((block.ts - self.start_ms) / span, 0.0, 1.0)
            factor = 1.0 + (self.intensity - 1.0) * level
            block.slowdown = np.where(rows, block.slowdown * factor, block.slowdown)


@dataclass(frozen=True, kw_only=True)
class ConfidenceCollapse(Scenario):
    """A bad deployment: the model's confidence drops by a share ``intensity`` while its compute
    stays the same."""

    kind: ClassVar[str] = "confidence_collapse"
    entity_types: ClassVar[tuple[EntityType, ...]] = ("model", "server")
    entity_type: EntityType = "model"

    def apply(self, stage: Stage, block: Block, ctx: Context) -> None:
        if stage == "confidence":
            rows = self.rows(block, ctx.fleet)
            dropped = np.round(block.confidence * (1.0 - self.intensity), 3)
            block.confidence = np.where(rows, np.maximum(dropped, 0.0), block.confidence)


@dataclass(frozen=True, kw_only=True)
class HarderProblems(Scenario):
    """Benign: a tenant moves to harder problems. Its difficulty moves a share ``intensity`` of
    the way to 1, ramping over the window and staying; route, passes and reasoning follow it
    through the router, so per-route-and-difficulty compute stays normal."""

    kind: ClassVar[str] = "harder_problems"
    benign: ClassVar[bool] = True
    persistent: ClassVar[bool] = True
    entity_types: ClassVar[tuple[EntityType, ...]] = ("tenant",)
    entity_type: EntityType = "tenant"

    def apply(self, stage: Stage, block: Block, ctx: Context) -> None:
        if stage == "difficulty":
            shift = self.intensity * self.progress(block.ts) * self.entity_rows(block, ctx.fleet)
            block.difficulty = np.round(block.difficulty + shift * (1 - block.difficulty), 3)


@dataclass(frozen=True, kw_only=True)
class NewTenant(Scenario):
    """Benign: a tenant that sent nothing before ``start`` ramps up linearly to ``intensity``×
    its normal traffic at ``end`` and stays there."""

    kind: ClassVar[str] = "new_tenant"
    benign: ClassVar[bool] = True
    persistent: ClassVar[bool] = True
    entity_types: ClassVar[tuple[EntityType, ...]] = ("tenant",)
    entity_type: EntityType = "tenant"

    def affects(self, t0_ms: int, t1_ms: int) -> bool:
        return True

    def keep(self, block: Block, ctx: Context) -> Mask | None:
        level = self.intensity * self.progress(block.ts)
        kept = block.u[U_KEEP] < level  # the request's own draw: other streams stay put
        return np.asarray(kept | ~self.entity_rows(block, ctx.fleet))


@dataclass(frozen=True, kw_only=True)
class FleetRollout(Scenario):
    """Benign: a new version of a model rolls out at ``start`` on all its servers alike,
    changing its GPU-ms (and decode time) per token by the ratio ``intensity`` from then on."""

    kind: ClassVar[str] = "fleet_rollout"
    benign: ClassVar[bool] = True
    persistent: ClassVar[bool] = True
    entity_types: ClassVar[tuple[EntityType, ...]] = ("model",)
    entity_type: EntityType = "model"

    def apply(self, stage: Stage, block: Block, ctx: Context) -> None:
        if stage == "cost":
            rows = (block.ts >= self.start_ms) & self.entity_rows(block, ctx.fleet)
            block.slowdown = np.where(rows, block.slowdown * self.intensity, block.slowdown)


@dataclass(frozen=True, kw_only=True)
class DailyPeak(Scenario):
    """Benign, label only: the daily peak of the diurnal curve (``intensity`` = peak load
    factor), fleet-wide (``entity_id="*"``). The load itself comes from the fleet's cycle."""

    kind: ClassVar[str] = "daily_peak"
    benign: ClassVar[bool] = True
    entity_types: ClassVar[tuple[EntityType, ...]] = ("tenant",)
    entity_type: EntityType = "tenant"
    entity_id: str = ALL_ENTITIES


@dataclass(frozen=True, kw_only=True)
class Misrouting(Scenario):
    """Opt-in, for the allocation advisor: a share ``intensity`` of one model's requests with
    difficulty in ``[low, high)`` that the router sends to ``from_route`` go to ``to_route``
    instead (its budget and passes), and the extra compute buys nothing: the answer is the one
    ``from_route`` would have given (confidence follows the reasoning its budget allowed and its
    passes). Labelled benign: a steady routing policy is not an anomaly for the detectors.
    """

    kind: ClassVar[str] = "misrouting"
    benign: ClassVar[bool] = True
    helps: ClassVar[bool] = False
    entity_types: ClassVar[tuple[EntityType, ...]] = ("model",)
    entity_type: EntityType = "model"
    low: float
    high: float
    from_route: str
    to_route: str

    def _routes(self, ctx: Context) -> tuple[int, int]:
        names = ctx.router.names
        if self.from_route not in names or self.to_route not in names:
            raise ValueError(f"{self.kind}: routes must be among {names}")
        return names.index(self.from_route), names.index(self.to_route)

    def _band(self, block: Block, ctx: Context) -> Mask:
        natural = ctx.router.route(block.difficulty) == self._routes(ctx)[0]
        inside = (block.difficulty >= self.low) & (block.difficulty < self.high)
        return self.rows(block, ctx.fleet) & inside & natural

    def apply(self, stage: Stage, block: Block, ctx: Context) -> None:
        if stage == "plan":
            to = self._routes(ctx)[1]
            moved = _sample(self._band(block, ctx), self.intensity, ctx.rng)
            block.route = np.where(moved, to, block.route)
            block.budget = np.where(moved, ctx.router.budget[to], block.budget)
            passes = ctx.router.passes(block.route, block.difficulty, block.u[U_PASSES])
            block.passes = np.where(moved, passes, block.passes)
            if self.helps:
                block.eff_passes = np.where(moved, passes, block.eff_passes)
        elif stage == "tokens" and not self.helps:
            moved = self._band(block, ctx) & (block.route == self._routes(ctx)[1])
            natural = ctx.router.budget[ctx.router.route(block.difficulty)]
            wasted = np.floor(block.reasoning * natural / block.budget)
            block.eff_reasoning = np.where(moved, wasted, block.eff_reasoning)

    def incident(self, fleet: Fleet | None = None) -> Incident:
        """The label, with the difficulty band and the ``(from, to)`` routes."""
        label = super().incident(fleet)
        return msgspec.structs.replace(
            label, band=(self.low, self.high), routes=(self.from_route, self.to_route)
        )


@dataclass(frozen=True, kw_only=True)
class RouteTrial(Misrouting):
    """Opt-in, the advisor's benign twin of :class:`Misrouting`: the same share of the band goes
    to ``to_route`` and its extra compute helps the answer as that route's always does."""

    kind: ClassVar[str] = "route_trial"
    helps: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class BudgetBurn(Scenario):
    """Opt-in, for budgets: from ``start`` on, a tenant's every key sends ``intensity``× its
    usual rate of ordinary requests (a new batch workload), so the tenant burns through a budget
    set for its usual spend. Labelled benign: a lasting rise a tenant chose is not an attack;
    what should notice it is the budget's forecast (:mod:`pipeline.budgets`)."""

    kind: ClassVar[str] = "budget_burn"
    benign: ClassVar[bool] = True
    persistent: ClassVar[bool] = True
    entity_types: ClassVar[tuple[EntityType, ...]] = ("tenant",)
    entity_type: EntityType = "tenant"

    def extra_arrivals(self, ctx: Context, t0_ms: int, t1_ms: int) -> tuple[IntArray, IntArray]:
        a = max(t0_ms, self.start_ms)
        if t1_ms <= a:
            return super().extra_arrivals(ctx, t0_ms, t1_ms)
        tenant = ctx.fleet.index("tenant", self.entity_id)
        keys, times = [], []
        for key in (i for i, k in enumerate(ctx.fleet.keys) if k.tenant == tenant):
            rate = ctx.fleet.key_rate(key, (a + t1_ms) / 2) * (self.intensity - 1.0)
            n = int(ctx.rng.poisson(max(rate, 0.0) * (t1_ms - a) / 1000.0))
            keys.append(np.full(n, key, dtype=np.int64))
            times.append(a + np.floor(ctx.rng.random(n) * (t1_ms - a)).astype(np.int64))
        return np.concatenate(keys), np.concatenate(times)


SCENARIOS: dict[str, type[Scenario]] = {
    cls.kind: cls
    for cls in (
        ReasoningInflation, RunawayGeneration, PassExplosion, VolumeSpike,
        EfficiencyDegradation, ConfidenceCollapse,
        HarderProblems, NewTenant, FleetRollout, DailyPeak, Misrouting, RouteTrial,
        BudgetBurn,
    )
}  # fmt: skip
"""Scenario classes by kind."""


def labels_for(scenarios: Sequence[Scenario], fleet: Fleet | None = None) -> list[Incident]:
    """The labels of ``scenarios``, sorted by start then kind."""
    incidents = [s.incident(fleet) for s in scenarios]
    return sorted(incidents, key=lambda i: (i.start, i.kind, i.entity_id))


def make_scenario(kind: str, **params: Any) -> Scenario:
    """Build a scenario by its kind name; raise ``ValueError`` for an unknown kind."""
    try:
        cls = SCENARIOS[kind]
    except KeyError:
        raise ValueError(f"unknown scenario kind {kind!r}; known: {sorted(SCENARIOS)}") from None
    return cls(**params)
