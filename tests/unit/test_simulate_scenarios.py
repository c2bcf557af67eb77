"""Each scenario's statistical signature shows in the generated events; benign shifts stay normal.

One 3-hour fleet (10 tenants, 10 requests/s) is simulated plain, with all attacks and faults at
once (blatant, then subtle; each on its own entity during 01:30–02:30), and with the benign
shifts. Reasoning is judged against its context: the plain fleet's mean for the same model,
route and difficulty (1/20 bins), which is what a detector should compare against.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import numpy as np
import pytest

from pipeline.simulate import (
    ConfidenceCollapse,
    EfficiencyDegradation,
    FleetConfig,
    FleetRollout,
    HarderProblems,
    NewTenant,
    PassExplosion,
    ReasoningInflation,
    RunawayGeneration,
    Scenario,
    VolumeSpike,
    build_fleet,
    collect,
    diurnal,
    simulate,
)
from pipeline.simulate.labels import Variant

Arrays = dict[str, np.ndarray]
CONFIG: Final = FleetConfig(tenants=10, rate=10.0, hours=3.0, seed=5)
FLEET: Final = build_fleet(CONFIG)
START: Final = CONFIG.start + timedelta(hours=1.5)
END: Final = CONFIG.start + timedelta(hours=2.5)
INTENSITY: Final = {
    "blatant": {"inflation": 5.0, "runaway": 0.5, "passes": 6.0, "spike": 8.0, "slowdown": 3.0,
                "drop": 0.5},
    "subtle": {"inflation": 2.0, "runaway": 0.12, "passes": 2.5, "spike": 2.5, "slowdown": 1.5,
               "drop": 0.2},
}  # fmt: skip
FRACTION: Final = {
    "blatant": {"inflation": 0.6, "passes": 0.7},
    "subtle": {"inflation": 0.3, "passes": 0.3},
}
ROUTE_MAX: Final = {"fast": 1, "standard": 2, "deep": 4}
DEGRADED: Final = FLEET.servers[FLEET.servers_of(0)[0]]
COLLAPSED: Final = "reasoner-medium"


def _busiest_keys_of_distinct_tenants() -> list[str]:
    out, seen = [], set()
    for key in sorted(FLEET.keys, key=lambda k: -k.rate):
        if key.tenant not in seen:
            seen.add(key.tenant)
            out.append(key.id)
    return out


KEYS: Final = _busiest_keys_of_distinct_tenants()
INFLATED, RUNAWAY, EXPLODED, SPIKED = KEYS[:4]


def _attacks(variant: Variant) -> list[Scenario]:
    x, f = INTENSITY[variant], FRACTION[variant]
    start, end = START, END
    return [
        ReasoningInflation(entity_id=INFLATED, intensity=x["inflation"],
                           fraction=f["inflation"], start=start, end=end, variant=variant),
        RunawayGeneration(entity_id=RUNAWAY, intensity=x["runaway"], start=start, end=end,
                          variant=variant),
        PassExplosion(entity_id=EXPLODED, intensity=x["passes"], fraction=f["passes"],
                      start=start, end=end, variant=variant),
        VolumeSpike(entity_id=SPIKED, intensity=x["spike"], start=start, end=end,
                    variant=variant),
        EfficiencyDegradation(entity_id=DEGRADED.id, intensity=x["slowdown"], start=start,
                              end=end, variant=variant),
        ConfidenceCollapse(entity_id=COLLAPSED, intensity=x["drop"], start=start, end=end,
                           variant=variant),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def plain() -> Arrays:
    return collect(simulate(CONFIG))


@pytest.fixture(scope="module", params=["blatant", "subtle"])
def attacked(request: pytest.FixtureRequest) -> tuple[Variant, Arrays]:
    return request.param, collect(simulate(CONFIG, _attacks(request.param)))


def _window(a: Arrays, start: datetime = START, end: datetime = END) -> np.ndarray:
    lo, hi = (t.timestamp() * 1000 for t in (start, end))
    return np.asarray((a["ts_ms"] >= lo) & (a["ts_ms"] < hi))


def _context_ratio(a: Arrays, rows: np.ndarray, plain: Arrays, column: str) -> float:
    """Sum of ``column`` over ``rows`` / the plain fleet's mean for the same context."""

    def context(x: Arrays) -> np.ndarray:
        bins = np.minimum((x["difficulty"] * 20).astype(int), 19)
        return np.char.add(np.char.add(x["model"], x["route"]), bins.astype(str))

    keys, inverse = np.unique(context(plain), return_inverse=True)
    means = np.bincount(inverse, weights=plain[column]) / np.bincount(inverse)
    pos = np.searchsorted(keys, context(a)[rows])
    known = keys[np.minimum(pos, len(keys) - 1)] == context(a)[rows]
    return float(a[column][rows][known].sum() / means[pos[known]].sum())


def _gpu_per_token_pass(a: Arrays, rows: np.ndarray) -> float:
    work = (a["reasoning_tokens"] + a["completion_tokens"]) * a["passes"]
    return float(a["gpu_ms"][rows].sum() / work[rows].sum())


def _rows(a: Arrays, column: str, value: str) -> np.ndarray:
    return np.asarray(a[column] == value)


# --- attacks and faults -----------------------------------------------------------------------


def test_reasoning_inflation_spends_more_than_the_context_warrants(
    attacked: tuple[Variant, Arrays], plain: Arrays
) -> None:
    variant, a = attacked
    key, win = _rows(a, "api_key_id", INFLATED), _window(a)
    ratio = _context_ratio(a, key & win, plain, "reasoning_tokens")
    assert ratio >= {"blatant": 2.0, "subtle": 1.15}[variant]
    assert 0.85 <= _context_ratio(a, key & ~win, plain, "reasoning_tokens") <= 1.15
    # the decoy tokens buy no confidence
    assert np.nanmean(a["confidence"][key & win]) <= np.nanmean(a["confidence"][key & ~win]) + 0.01


def test_runaway_generation_hits_budget_or_time_limit(
    attacked: tuple[Variant, Arrays], plain: Arrays
) -> None:
    variant, a = attacked
    key, win = _rows(a, "api_key_id", RUNAWAY), _window(a)
    stuck = np.isin(a["status"], ["truncated", "timeout"])
    fleet_rate = np.isin(plain["status"], ["truncated", "timeout"]).mean()
    rate = stuck[key & win].mean()
    assert rate >= 5 * max(stuck[key & ~win].mean(), 0.005)
    assert rate >= {"blatant": 10.0, "subtle": 2.5}[variant] * fleet_rate
    truncated = key & win & (a["status"] == "truncated")
    used = a["reasoning_tokens"] + a["completion_tokens"]
    assert (used[truncated] == a["budget_tokens"][truncated]).all()
    assert (a["status"][key & win] == "timeout").sum() > 0


def test_pass_explosion_exceeds_the_route_maximum(attacked: tuple[Variant, Arrays]) -> None:
    variant, a = attacked
    key, win = _rows(a, "api_key_id", EXPLODED), _window(a)
    cap = np.vectorize(ROUTE_MAX.__getitem__)(a["route"])
    over = a["passes"] > cap
    assert not over[~(key & win)].any()  # never happens naturally
    assert over[key & win].mean() >= {"blatant": 0.6, "subtle": 0.2}[variant]
    assert (a["passes"][key & win] / cap[key & win]).mean() >= {"blatant": 3.0, "subtle": 1.3}[
        variant
    ]


def test_volume_spike_multiplies_the_rate_with_normal_requests(
    attacked: tuple[Variant, Arrays], plain: Arrays
) -> None:
    variant, a = attacked
    key, win = _rows(a, "api_key_id", SPIKED), _window(a)
    usual = (_rows(plain, "api_key_id", SPIKED) & _window(plain)).sum()
    assert (key & win).sum() / usual >= {"blatant": 6.0, "subtle": 2.0}[variant]
    before = _window(a, START - timedelta(hours=1), START)
    assert (key & before).sum() <= 1.3 * (key & win).sum() / INTENSITY[variant]["spike"]
    assert 0.85 <= _context_ratio(a, key & win, plain, "reasoning_tokens") <= 1.15
    assert 0.9 <= _context_ratio(a, key & win, plain, "passes") <= 1.1


def test_efficiency_degradation_raises_one_servers_gpu_per_token(
    attacked: tuple[Variant, Arrays],
) -> None:
    variant, a = attacked
    late = _window(a, START + (END - START) / 2, END)  # after the ramp
    server = _rows(a, "server_id", DEGRADED.id)
    peers = (
        _rows(a, "model", FLEET.models[DEGRADED.model].name)
        & _rows(a, "gpu_type", DEGRADED.gpu_type)
        & ~server
    )
    own_before = _gpu_per_token_pass(a, server & ~_window(a)) / _gpu_per_token_pass(
        a, peers & ~_window(a)
    )
    now = _gpu_per_token_pass(a, server & late) / _gpu_per_token_pass(a, peers & late)
    assert 0.8 <= own_before <= 1.25  # peers of the same model and GPU look alike
    assert now / own_before >= {"blatant": 2.5, "subtle": 1.35}[variant]


def test_confidence_collapse_keeps_compute(attacked: tuple[Variant, Arrays]) -> None:
    variant, a = attacked
    model, win = _rows(a, "model", COLLAPSED), _window(a)
    drop = 1 - np.nanmean(a["confidence"][model & win]) / np.nanmean(a["confidence"][model & ~win])
    assert drop >= {"blatant": 0.4, "subtle": 0.15}[variant]
    compute = _gpu_per_token_pass(a, model & win) / _gpu_per_token_pass(a, model & ~win)
    assert 0.9 <= compute <= 1.1


# --- benign shifts ------------------------------------------------------------------------------

HARDER, NEWCOMER, ROLLED = "tenant-02", "tenant-04", "reasoner-large"
SHIFT_END: Final = START + timedelta(minutes=30)


@pytest.fixture(scope="module")
def shifted() -> Arrays:
    start, end = START, SHIFT_END
    scenarios: list[Scenario] = [
        HarderProblems(entity_id=HARDER, intensity=0.5, start=start, end=end),
        NewTenant(entity_id=NEWCOMER, intensity=1.0, start=start, end=end),
        FleetRollout(entity_id=ROLLED, intensity=1.3, start=start, end=end),
    ]
    return collect(simulate(CONFIG, scenarios))


def test_harder_problems_move_route_and_reasoning_together(shifted: Arrays, plain: Arrays) -> None:
    a = shifted
    tenant = _rows(a, "tenant_id", HARDER)
    before = tenant & (a["ts_ms"] < START.timestamp() * 1000)
    after = tenant & (a["ts_ms"] >= SHIFT_END.timestamp() * 1000)
    assert a["difficulty"][after].mean() >= a["difficulty"][before].mean() + 0.15
    assert (a["route"][after] == "deep").mean() >= 2 * (a["route"][before] == "deep").mean()
    assert a["reasoning_tokens"][after].mean() >= 1.5 * a["reasoning_tokens"][before].mean()
    # ... yet per route and difficulty, nothing is unusual
    for column in ("reasoning_tokens", "passes"):
        assert 0.85 <= _context_ratio(a, after, plain, column) <= 1.15
    same_models = after & ~_rows(a, "model", ROLLED)  # the rollout runs in the same fleet
    per_token = _gpu_per_token_pass(a, same_models) / _gpu_per_token_pass(a, before)
    assert per_token <= 1.15  # harder problems cost more per request, not per token
    cap = np.vectorize(ROUTE_MAX.__getitem__)(a["route"])
    assert (a["passes"][after] <= cap[after]).all()
    stuck = np.isin(a["status"], ["truncated", "timeout"])
    for route in ROUTE_MAX:
        mine, fleet = after & (a["route"] == route), ~tenant & (a["route"] == route)
        if mine.sum() > 200:
            assert stuck[mine].mean() <= 2 * stuck[fleet].mean() + 0.01


def test_new_tenant_appears_then_ramps_to_ordinary_traffic(shifted: Arrays, plain: Arrays) -> None:
    a = shifted
    tenant = _rows(a, "tenant_id", NEWCOMER)
    assert not (tenant & (a["ts_ms"] < START.timestamp() * 1000)).any()
    mid = START + (SHIFT_END - START) / 2
    first, second = (
        (tenant & _window(a, START, mid)).sum(),
        (tenant & _window(a, mid, SHIFT_END)).sum(),
    )
    assert 0 < first < second
    after = _window(a, SHIFT_END, CONFIG.start + timedelta(hours=CONFIG.hours))
    usual = _rows(plain, "tenant_id", NEWCOMER) & _window(
        plain, SHIFT_END, CONFIG.start + timedelta(hours=CONFIG.hours)
    )
    assert (tenant & after).sum() == usual.sum()  # full size after the ramp, same requests
    assert 0.85 <= _context_ratio(a, tenant, plain, "reasoning_tokens") <= 1.15


def test_fleet_rollout_changes_every_server_of_the_model_alike(shifted: Arrays) -> None:
    a = shifted
    before = a["ts_ms"] < START.timestamp() * 1000
    ratios = []
    for index in FLEET.servers_of(FLEET.index("model", ROLLED)):
        server = _rows(a, "server_id", FLEET.servers[index].id)
        ratios.append(
            _gpu_per_token_pass(a, server & ~before) / _gpu_per_token_pass(a, server & before)
        )
    assert len(ratios) >= 3
    assert ratios == pytest.approx([1.3] * len(ratios), rel=0.05)
    assert max(ratios) / min(ratios) <= 1.06
    other = _rows(a, "model", "reasoner-small")
    unchanged = _gpu_per_token_pass(a, other & ~before) / _gpu_per_token_pass(a, other & before)
    assert unchanged == pytest.approx(1.0, rel=0.05)


def test_daily_peak_comes_from_the_diurnal_cycle() -> None:
    day = FleetConfig(tenants=10, rate=4.0, hours=24.0, seed=5, chunk_seconds=600)
    ts = collect(simulate(day))["ts_ms"]
    hour = ((ts - day.start_ms) // 3_600_000).astype(int)
    per_hour = np.bincount(hour, minlength=24)
    peak, trough = per_hour[14:17].mean(), per_hour[[2, 3, 4]].mean()
    expected = float(diurnal(15.0, 15.0, 0.45) / diurnal(3.0, 15.0, 0.45))
    assert peak / trough == pytest.approx(expected, rel=0.2)
    assert per_hour.mean() / 3600 / day.rate == pytest.approx(1.0, rel=0.05)
