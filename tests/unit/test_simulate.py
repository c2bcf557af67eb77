"""Fleet simulator: determinism, contract validity, labels, the default suite and pacing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import pytest
from jsonschema import Draft202012Validator, FormatChecker

import pipeline.simulate as sim
from pipeline.events import parse_event
from pipeline.records import ALERT_KINDS
from pipeline.simulate import (
    BENIGN_KINDS,
    FleetConfig,
    Incident,
    VolumeSpike,
    build_fleet,
    collect,
    default_suite,
    labels_for,
    load_labels,
    paced,
    save_labels,
    simulate,
    write_jsonl,
)
from pipeline.simulate.bench import run_benchmark

SCHEMA_PATH: Final = Path(__file__).parents[2] / "schemas" / "allocation_event.v1.json"
SMALL: Final = FleetConfig(tenants=6, rate=6.0, hours=0.5, seed=21)


def _bytes(config: FleetConfig, scenarios: list[sim.Scenario] | None = None) -> bytes:
    return b"".join(b.to_jsonl() for b in simulate(config, scenarios or []))


def test_public_api_is_sorted_and_importable() -> None:
    names = sim.__all__
    isort_style = sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert names == isort_style
    assert all(hasattr(sim, n) for n in names)


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    first = _bytes(SMALL)
    assert first == _bytes(SMALL)
    assert first != _bytes(FleetConfig(tenants=6, rate=6.0, hours=0.5, seed=22))
    assert len(first.splitlines()) > 5000


def test_fleet_is_deterministic_and_skewed() -> None:
    config = FleetConfig(seed=3)
    fleet = build_fleet(config)
    assert fleet == fleet and build_fleet(config).keys == fleet.keys
    shares = [t.share for t in fleet.tenants]
    assert shares == sorted(shares, reverse=True)
    assert shares[0] > 10 * shares[-1]  # a few large tenants, a long tail
    assert sum(k.rate for k in fleet.keys) == pytest.approx(config.rate)
    assert len({k.id for k in fleet.keys}) == len(fleet.keys)


@pytest.fixture(scope="module")
def suite_lines() -> list[bytes]:
    config = FleetConfig(tenants=8, rate=8.0, hours=6.0, seed=4)
    return _bytes(config, default_suite(config, warmup=timedelta(hours=1))).splitlines()


def _sample(lines: list[bytes], n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    return [lines[i] for i in rng.choice(len(lines), n, replace=False)]


@pytest.mark.skipif(not SCHEMA_PATH.exists(), reason=f"{SCHEMA_PATH} not present")
def test_events_match_the_published_json_schema(suite_lines: list[bytes]) -> None:
    validator = Draft202012Validator(
        json.loads(SCHEMA_PATH.read_text()), format_checker=FormatChecker()
    )
    for raw in _sample(suite_lines, 1000):
        validator.validate(json.loads(raw))


def test_events_parse_and_are_in_time_order(suite_lines: list[bytes]) -> None:
    lines = suite_lines
    events = [parse_event(raw) for raw in _sample(lines, 3000)]
    assert {e.status for e in events} >= {"ok", "truncated"}
    assert all(e.event_id == e.event_id.lower() and e.ts.tzinfo is not None for e in events)
    stamps = [json.loads(raw)["ts"] for raw in lines[:: max(len(lines) // 5000, 1)]]
    assert stamps == sorted(stamps)
    assert all(s.endswith("Z") and len(s) == 24 for s in stamps)
    ids = [json.loads(raw)["event_id"] for raw in lines[:20000]]
    assert len(set(ids)) == len(ids)


def test_jitter_delivers_slightly_out_of_order() -> None:
    config = FleetConfig(tenants=6, rate=6.0, hours=0.25, seed=21, jitter_ms=500.0)
    ts = collect(simulate(config))["ts_ms"]
    steps = np.diff(ts)
    assert (steps < 0).any() and steps.min() > -10_000


def test_batches_convert_to_typed_events_and_dicts() -> None:
    batch = next(simulate(SMALL))
    events, dicts = batch.to_events(), batch.to_dicts()
    assert len(events) == len(dicts) == len(batch)
    assert events[0].event_id == dicts[0]["event_id"]
    assert list(dicts[0]) == list(json.loads(batch.to_jsonl().splitlines()[0]))


def test_scenario_leaves_untouched_traffic_unchanged() -> None:
    fleet = build_fleet(SMALL)
    key = max(fleet.keys, key=lambda k: k.rate)
    spike = VolumeSpike(
        entity_id=key.id,
        start=SMALL.start + timedelta(minutes=10),
        end=SMALL.start + timedelta(minutes=20),
        intensity=5.0,
    )
    base = [json.loads(x) for x in _bytes(SMALL).splitlines()]
    attacked = [json.loads(x) for x in _bytes(SMALL, [spike]).splitlines()]
    assert len(attacked) > len(base)
    assert [e for e in attacked if e["api_key_id"] != key.id] == [
        e for e in base if e["api_key_id"] != key.id
    ]


def test_write_jsonl_counts_lines(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    count = write_jsonl(out, simulate(SMALL))
    assert count == len(out.read_bytes().splitlines()) > 0


def test_labels_round_trip_with_tenant_of_keys(tmp_path: Path) -> None:
    config = FleetConfig(seed=9)
    fleet = build_fleet(config)
    labels = labels_for(default_suite(config, fleet=fleet), fleet)
    save_labels(tmp_path / "labels.json", labels)
    loaded = load_labels(tmp_path / "labels.json")
    assert loaded == labels
    raw = json.loads((tmp_path / "labels.json").read_text())
    assert set(raw[0]) >= {"kind", "benign", "entity_type", "entity_id", "start", "end"}
    for inc in loaded:
        if inc.entity_type == "api_key":
            key = fleet.keys[fleet.index("api_key", inc.entity_id)]
            assert inc.tenant_id == fleet.tenants[key.tenant].id
    with pytest.raises(ValueError):
        sim.decode_labels(b'[{"kind": "x"}]')


def _overlap(a: Incident, b: Incident) -> bool:
    return a.start < b.end and b.start < a.end


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_suite_places_every_kind_detectably(seed: int) -> None:
    config = FleetConfig(seed=seed)
    fleet = build_fleet(config)
    suite = default_suite(config, fleet=fleet)
    labels = labels_for(suite, fleet)
    attacks = [i for i in labels if not i.benign]
    assert {(i.kind, i.variant) for i in attacks} == {
        (k, v) for k in sim.VARIANTS for v in ("blatant", "subtle")
    }
    assert all(i.kind in ALERT_KINDS for i in attacks)
    assert {i.kind for i in labels if i.benign} == set(BENIGN_KINDS)
    warm = config.start + timedelta(hours=3)
    end = config.start + timedelta(hours=config.hours)
    peak = next(i for i in labels if i.kind == "daily_peak")
    for inc in labels:
        assert warm <= inc.start < inc.end <= end
        if inc is not peak:
            assert timedelta(minutes=20) <= inc.end - inc.start <= timedelta(minutes=60)
            assert not _overlap(inc, peak)
    for a in labels:
        for b in labels:
            if a is not b and (a.entity_type, a.entity_id) == (b.entity_type, b.entity_id):
                assert not _overlap(a, b)
    for inc in attacks:
        if inc.entity_type == "api_key":
            mid = inc.start + (inc.end - inc.start) / 2
            key = fleet.index("api_key", inc.entity_id)
            assert fleet.key_rate(key, mid.timestamp() * 1000) * 60 >= 4.0


def test_default_suite_placement_depends_on_seed_only() -> None:
    config = FleetConfig(seed=0)
    assert default_suite(config) == default_suite(config)
    assert default_suite(config, seed=5) != default_suite(config)


def test_default_suite_fits_short_horizons_on_parallel_tracks() -> None:
    config = FleetConfig(tenants=20, rate=20.0, hours=4.0, seed=2)
    suite = default_suite(config, warmup=timedelta(hours=1))
    assert len([s for s in suite if s.kind != "daily_peak"]) == 15
    assert all(s.start >= config.start + timedelta(hours=1) for s in suite)
    with pytest.raises(ValueError):
        default_suite(FleetConfig(hours=1.0), warmup=timedelta(hours=1))


def test_scenarios_validate_their_parameters() -> None:
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    with pytest.raises(ValueError):
        VolumeSpike(entity_id="k", start=t0, end=t0, intensity=2.0)
    with pytest.raises(ValueError):
        sim.EfficiencyDegradation(
            entity_id="k", entity_type="api_key", start=t0, end=t0 + timedelta(1), intensity=2
        )
    with pytest.raises(ValueError, match="unknown scenario kind"):
        sim.make_scenario("meteor_strike")
    with pytest.raises(ValueError):
        FleetConfig(start=datetime(2026, 3, 2))  # noqa: DTZ001 - naive on purpose


def test_paced_keeps_the_rate_with_an_injected_clock() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    out = list(paced(range(5), 10.0, clock=lambda: now[0], sleep=sleep))
    assert out == [0, 1, 2, 3, 4]
    assert now[0] == pytest.approx(100.4)
    assert all(s == pytest.approx(0.1) for s in slept)


def test_paced_does_not_burst_after_a_stall() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    times = []
    for i in paced(range(4), 1.0, clock=lambda: now[0], sleep=sleep, max_lag_s=1.0):
        times.append(now[0])
        if i == 0:
            now[0] += 5.0  # the consumer stalls
    assert times == [0.0, 5.0, 6.0, 7.0]
    with pytest.raises(ValueError):
        list(paced([1], 0.0))


def test_benchmark_reports_throughput(tmp_path: Path) -> None:
    result = run_benchmark(tmp_path / "e.jsonl", hours=0.2, tenants=5, rate=10.0)
    assert result.events > 1000 and result.events_per_s > 0
