"""The default scenario suite: every attack and fault twice (blatant, subtle), every benign shift.

Placement, for a fleet built from ``config`` and a placement ``seed`` (default ``config.seed``):

* nothing starts before the warm-up (default 3 h), so detectors can learn a baseline;
* the daily peak (``peak_hour`` ± 90 min, every day fully after the warm-up) is labelled as a
  benign ``daily_peak`` and kept free of other incidents, so no label overlaps it;
* the other incidents last 20–60 min, in a seed-shuffled order, spread evenly over the free
  time; when they do not fit one after another (short horizons) they run on parallel tracks,
  always on different entities;
* entities are chosen so the incident is detectable and unambiguous: an api key must send at
  least ``min_key_rpm`` requests per minute at the incident's time of day (twice that for a
  subtle variant, whose signal is weaker); each key, server and model is used once while
  enough remain, and key incidents go to different tenants while enough remain; reasoning
  attacks go to keys of tenants that mostly use reasoning models;
* the tenants of ``harder_problems`` and ``new_tenant`` are chosen first and get no other
  incident (a new tenant sends nothing before its start); they send at least 5× the key
  threshold, and a new tenant is never among the two largest;
* ``efficiency_degradation`` avoids servers of a model already changed by ``fleet_rollout``.

>>> config = FleetConfig(hours=24.0, seed=7)
>>> suite = default_suite(config)
>>> len(suite), sum(s.benign for s in suite)
(16, 4)
>>> default_suite(config) == suite, default_suite(config, seed=8) == suite
(True, False)
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np

from pipeline.simulate.fleet import Fleet, FleetConfig, build_fleet
from pipeline.simulate.labels import Variant
from pipeline.simulate.scenarios import (
    BudgetBurn,
    DailyPeak,
    Misrouting,
    Scenario,
    make_scenario,
)

VARIANTS: Final[dict[str, dict[Variant, dict[str, float]]]] = {
    "reasoning_inflation": {
        "blatant": {"intensity": 5.0, "fraction": 0.6},
        "subtle": {"intensity": 2.0, "fraction": 0.3},
    },
    "runaway_generation": {"blatant": {"intensity": 0.5}, "subtle": {"intensity": 0.12}},
    "pass_explosion": {
        "blatant": {"intensity": 6.0, "fraction": 0.7},
        "subtle": {"intensity": 2.5, "fraction": 0.3},
    },
    "volume_spike": {"blatant": {"intensity": 8.0}, "subtle": {"intensity": 2.5}},
    "efficiency_degradation": {"blatant": {"intensity": 3.0}, "subtle": {"intensity": 1.5}},
    "confidence_collapse": {"blatant": {"intensity": 0.5}, "subtle": {"intensity": 0.2}},
}
"""Parameters of each attack or fault kind's variants (``intensity`` as each class defines)."""

BENIGN: Final[dict[str, dict[str, float]]] = {
    "harder_problems": {"intensity": 0.5},
    "new_tenant": {"intensity": 1.0},
    "fleet_rollout": {"intensity": 1.3},
}
"""Benign shifts, at full strength (labelled ``blatant``: the hardest test for false alerts)."""

MINUTE: Final = timedelta(minutes=1)
PEAK_HALF_WIDTH: Final = timedelta(minutes=90)
_GAP: Final = timedelta(minutes=10)


class HorizonTooShort(ValueError):
    """The period after the warm-up cannot hold the suite's incidents."""


def default_suite(
    config: FleetConfig,
    *,
    seed: int | None = None,
    warmup: timedelta = timedelta(hours=3),
    minutes: tuple[int, int] = (20, 60),
    min_key_rpm: float = 4.0,
    fleet: Fleet | None = None,
) -> list[Scenario]:
    """Place the suite on ``config``'s fleet; see the module docstring for the rules.

    Parameters
    ----------
    config
        The fleet and period the suite is for.
    seed
        Placement seed (order, durations, entities); defaults to ``config.seed``.
    warmup
        Incident-free time from ``config.start`` for detectors to learn.
    minutes
        Range of incident durations in minutes (daily peaks last 3 h).
    min_key_rpm
        Traffic an attacked api key needs at the incident's time (×2 for subtle variants).
    fleet
        ``build_fleet(config)`` if not given.

    Returns
    -------
    list[Scenario]
        Sorted by start; label them with :func:`~pipeline.simulate.labels_for`.

    Raises
    ------
    HorizonTooShort
        When the period after the warm-up cannot hold the incidents.
    """
    fleet = fleet or build_fleet(config)
    rng = np.random.default_rng([config.seed if seed is None else seed, 4])
    begin = config.start + warmup
    end = config.start + timedelta(hours=config.hours)
    peaks = _daily_peaks(config, begin, end)
    free = _free_segments(begin, end - _GAP, [(p.start, p.end) for p in peaks])
    specs: list[tuple[str, Variant, dict[str, float]]] = [
        (kind, variant, params) for kind, by in VARIANTS.items() for variant, params in by.items()
    ]
    specs += [(kind, "blatant", params) for kind, params in BENIGN.items()]
    order = rng.permutation(len(specs))
    durations = [int(rng.integers(minutes[0], minutes[1] + 1)) * MINUTE for _ in specs]
    windows = _layout(free, [durations[i] for i in order])
    picker = _Picker(fleet, rng, min_key_rpm)
    timed = sorted(zip(order, windows, strict=True), key=lambda p: p[1][0])
    # tenant-level shifts first: their tenants are then off limits to key-level incidents
    timed.sort(key=lambda p: specs[p[0]][0] not in TENANT_KINDS)
    placed: list[Scenario] = list(peaks)
    for i, (start, stop) in timed:
        kind, variant, params = specs[i]
        entity = picker.pick(kind, variant, start, stop)
        placed.append(_scenario(kind, variant, params, entity, start, stop))
    return sorted(placed, key=lambda s: (s.start, s.kind))


def planted_misrouting(config: FleetConfig, share: float = 0.5) -> Misrouting:
    """What ``computewatch simulate --misrouting`` plants: for the whole period, ``share`` of
    the first model's requests of difficulty 0.4-0.6 go to ``deep`` instead of ``standard``,
    whose extra compute buys nothing (:class:`~pipeline.simulate.scenarios.Misrouting`).

    >>> planted_misrouting(FleetConfig(hours=2.0)).incident().routes
    ('standard', 'deep')
    """
    return Misrouting(
        entity_id=config.models[0].name, start=config.start,
        end=config.start + timedelta(hours=config.hours), intensity=share, low=0.4, high=0.6,
        from_route="standard", to_route="deep",
    )  # fmt: skip


BURN_HISTORY_DAYS: Final = 3  # days of ordinary spend before a planted budget burn


def planted_budget_burn(config: FleetConfig, intensity: float = 3.0) -> BudgetBurn:
    """What ``computewatch simulate --budget-burn`` plants: from the first midnight after
    :data:`BURN_HISTORY_DAYS` days of traffic to the end, the second-largest tenant sends
    ``intensity``× its usual traffic (:class:`~pipeline.simulate.scenarios.BudgetBurn`).

    >>> burn = planted_budget_burn(FleetConfig(hours=120.0))
    >>> burn.entity_id, burn.start.isoformat(), burn.intensity
    ('tenant-02', '2026-03-05T00:00:00+00:00', 3.0)
    """
    fleet = build_fleet(config)
    tenant = sorted(fleet.tenants, key=lambda t: -t.share)[1]
    first = config.start.astimezone(UTC)
    midnight = datetime(first.year, first.month, first.day, tzinfo=UTC)
    start = midnight + timedelta(days=BURN_HISTORY_DAYS + (first > midnight))
    end = config.start + timedelta(hours=config.hours)
    if end <= start + timedelta(days=1):
        days = BURN_HISTORY_DAYS + 2
        raise HorizonTooShort(f"--budget-burn needs {days} days of events (--hours {days * 24})")
    return BudgetBurn(entity_id=tenant.id, start=start, end=end, intensity=intensity)


def _scenario(
    kind: str, variant: Variant, params: dict[str, float], entity: tuple[str, str],
    start: datetime, end: datetime,
) -> Scenario:  # fmt: skip
    kwargs: dict[str, Any] = dict(params)
    return make_scenario(
        kind, entity_type=entity[0], entity_id=entity[1], start=start, end=end,
        variant=variant, **kwargs,
    )  # fmt: skip


def _daily_peaks(config: FleetConfig, begin: datetime, end: datetime) -> list[DailyPeak]:
    day = config.start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    peaks = []
    while day < end:
        top = day + timedelta(hours=config.peak_hour)
        if begin <= top - PEAK_HALF_WIDTH and top + PEAK_HALF_WIDTH <= end:
            peaks.append(
                DailyPeak(start=top - PEAK_HALF_WIDTH, end=top + PEAK_HALF_WIDTH,
                          intensity=1.0 + config.diurnal_amplitude)
            )  # fmt: skip
        day += timedelta(days=1)
    return peaks


Segment = tuple[datetime, datetime]


def _free_segments(begin: datetime, end: datetime, busy: list[Segment]) -> list[Segment]:
    free, cursor = [], begin
    for b0, b1 in sorted(busy):
        if b0 - _GAP > cursor:
            free.append((cursor, b0 - _GAP))
        cursor = max(cursor, b1 + _GAP)
    if end > cursor:
        free.append((cursor, end))
    return free


def _layout(free: list[Segment], durations: list[timedelta]) -> list[Segment]:
    """Windows for ``durations``, evenly spaced in ``free`` time, on as few tracks as fit."""
    total = sum((b - a for a, b in free), timedelta())
    if not free or total < max(durations) + 2 * _GAP:
        raise HorizonTooShort("the horizon after the warm-up is too short for the suite")
    needed = sum(durations, timedelta()) + len(durations) * _GAP
    for tracks in range(max(1, math.ceil(needed / total)), len(durations) + 1):
        placed = [_place(free, durations[t::tracks]) for t in range(tracks)]
        if all(p is not None for p in placed):
            by_track = [p for p in placed if p is not None]
            return [by_track[i % tracks][i // tracks] for i in range(len(durations))]
    raise HorizonTooShort("the horizon after the warm-up is too short for the suite")


def _place(free: list[Segment], durations: list[timedelta]) -> list[Segment] | None:
    """One track: sequential windows spread evenly over ``free``; ``None`` if they do not fit.

    A window that would cross the end of a free segment moves to the start of the next one.
    """
    total = sum((b - a for a, b in free), timedelta())
    gap = (total - sum(durations, timedelta())) / (len(durations) + 1)
    if gap < _GAP:
        return None
    windows, seg, cursor = [], 0, free[0][0]
    for duration in durations:
        start = _ceil_minute(cursor + gap)
        while start + duration > free[seg][1]:
            seg += 1
            if seg == len(free):
                return None
            start = max(start, _ceil_minute(free[seg][0] + gap / 2))
        windows.append((start, start + duration))
        cursor = start + duration
    return windows


def _ceil_minute(t: datetime) -> datetime:
    floor = t.replace(second=0, microsecond=0)
    return floor if floor == t else floor + MINUTE


REASONING_KINDS: Final = ("reasoning_inflation", "runaway_generation", "pass_explosion")
KEY_KINDS: Final = (*REASONING_KINDS, "volume_spike")
TENANT_KINDS: Final = ("harder_problems", "new_tenant")


class _Picker:
    """Chooses a detectable, not yet used entity for each incident, in time order."""

    def __init__(self, fleet: Fleet, rng: np.random.Generator, min_key_rpm: float) -> None:
        self.fleet, self.rng, self.min_rpm = fleet, rng, min_key_rpm
        self.used: set[tuple[str, str]] = set()
        self.used_tenants: set[int] = set()
        self.reserved: set[int] = set()  # tenants of tenant-level shifts: no key incidents
        self.rolled_out: set[int] = set()
        thinks = fleet.arrays.model_reasoning > 0
        weights = np.array([t.model_weights for t in fleet.tenants])
        self.reasoning_share = (weights * thinks).sum(axis=1)
        load = np.zeros(len(fleet.models))
        for k in fleet.keys:
            load += k.rate * weights[k.tenant]
        self.server_rpm = (
            60
            * load[[s.model for s in fleet.servers]]
            / np.array([fleet.models[s.model].servers for s in fleet.servers])
        )

    def pick(self, kind: str, variant: Variant, start: datetime, end: datetime) -> tuple[str, str]:
        need = self.min_rpm * (2.0 if variant == "subtle" else 1.0)
        if kind in KEY_KINDS:
            return "api_key", self._key(kind, need, start, end)
        if kind == "efficiency_degradation":
            return "server", self._server(need)
        if kind in ("confidence_collapse", "fleet_rollout"):
            return "model", self._model(kind)
        return "tenant", self._tenant(kind, need, start, end)

    def _rpm(self, start: datetime, end: datetime) -> np.ndarray:
        """Each key's lowest expected requests/minute over the window."""
        times = [t.timestamp() * 1000 for t in (start, start + (end - start) / 2, end)]
        return 60 * np.min([self.fleet.key_rates(t) for t in times], axis=0)

    def _choose(self, pools: list[list[int]]) -> int:
        """A random member of the first non-empty pool (pools go from strict to relaxed)."""
        for pool in pools:
            if pool:
                return int(pool[int(self.rng.integers(len(pool)))])
        raise ValueError("no entity left for an incident")

    def _key(self, kind: str, need: float, start: datetime, end: datetime) -> str:
        rpm = self._rpm(start, end)
        keys = self.fleet.keys
        free = [
            i for i, k in enumerate(keys)
            if ("api_key", k.id) not in self.used and k.tenant not in self.reserved
        ]  # fmt: skip
        busy = [i for i in free if rpm[i] >= need]
        fresh = [i for i in busy if keys[i].tenant not in self.used_tenants]
        fit = [
            i for i in fresh
            if kind not in REASONING_KINDS or self.reasoning_share[keys[i].tenant] >= 0.6
        ]  # fmt: skip
        by_rate = sorted(free, key=lambda i: -rpm[i])[:3]
        chosen = self._choose([fit, fresh, busy, by_rate])
        self.used.add(("api_key", keys[chosen].id))
        self.used_tenants.add(keys[chosen].tenant)
        return keys[chosen].id

    def _server(self, need: float) -> str:
        servers = self.fleet.servers
        free = [i for i, s in enumerate(servers) if ("server", s.id) not in self.used]
        busy = [i for i in free if self.server_rpm[i] >= need]
        fit = [i for i in busy if servers[i].model not in self.rolled_out]
        chosen = self._choose([fit, busy, free])
        self.used.add(("server", servers[chosen].id))
        return servers[chosen].id

    def _model(self, kind: str) -> str:
        models = self.fleet.models
        free = [i for i, m in enumerate(models) if ("model", m.name) not in self.used]
        chosen = self._choose([free, list(range(len(models)))])
        self.used.add(("model", models[chosen].name))
        if kind == "fleet_rollout":
            self.rolled_out.add(chosen)
        return models[chosen].name

    def _tenant(self, kind: str, need: float, start: datetime, end: datetime) -> str:
        rpm = self._rpm(start, end)
        tenant_rpm = np.zeros(len(self.fleet.tenants))
        np.add.at(tenant_rpm, self.fleet.arrays.key_tenant, rpm)
        smallest_rank = 2 if kind == "new_tenant" else 0  # tenants are sorted largest first
        free = [i for i in range(smallest_rank, len(tenant_rpm)) if i not in self.reserved]
        busy = [i for i in free if tenant_rpm[i] >= 5 * need]  # a shift with traffic to judge
        chosen = self._choose([busy, [i for i in free if tenant_rpm[i] >= need], free])
        self.reserved.add(chosen)
        self.used_tenants.add(chosen)
        return self.fleet.tenants[chosen].id
