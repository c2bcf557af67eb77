"""Budget alerts through the real two stages (in-process topology, as replay runs them): once per
threshold and period at any partition count and key, nothing again after a restore from
snapshots, duplicates not counted, and the forecast on synthetic hourly histories."""

from __future__ import annotations

import pickle
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import msgspec
import numpy as np
import pytest

from pipeline.budgets import Budget, BudgetBook, SpendLedger, format_budgets
from pipeline.config import Settings
from pipeline.engine import Engine
from pipeline.events import encode_event, example_event, parse_event
from pipeline.fleet import FleetStage
from pipeline.forecast import project
from pipeline.pricing import PriceTable, cost_units
from pipeline.records import Alert, Message
from pipeline.topology import Topology

START = datetime(2026, 3, 2, tzinfo=UTC)
TENANTS = ("acme", "globex")


def messages(days: int = 2, step_s: int = 60) -> list[Message]:
    """Both tenants, two keys each, a request every ``step_s`` per key, for ``days`` days."""
    base = example_event()
    out = []
    for i in range(days * 86_400 // step_s):
        ts = START + timedelta(seconds=i * step_s)
        for t, tenant in enumerate(TENANTS):
            for k in range(2):
                event = msgspec.structs.replace(
                    base, event_id=str(uuid.UUID(int=i * 4 + t * 2 + k)), ts=ts, tenant_id=tenant,
                    api_key_id=f"{tenant}-key-{k}", gpu_ms=900.0 + 37 * k + (i % 7),
                )  # fmt: skip
                out.append(Message(encode_event(event)))
    return out


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """acme: $1.50 a day (it spends about $1.80); globex: 1.75 GPU-hours a week (it spends
    about 1.47 in two days); a key of acme: $0.40 a day (it spends about $0.92)."""
    budgets = [
        Budget(entity_type="tenant", entity_id="acme", period="day", unit="usd",
               amount=Decimal("1.5")),
        Budget(entity_type="tenant", entity_id="globex", period="week", unit="gpu_hours",
               amount=Decimal("1.75")),
        Budget(entity_type="api_key", entity_id="acme-key-1", period="day", unit="usd",
               amount=Decimal("0.4")),
    ]  # fmt: skip
    path = tmp_path / "budgets.toml"
    path.write_text(format_budgets(budgets))
    return Settings(budgets={"file": path, "forecast": False})


def run(settings: Settings, partitions: int, stream: list[Message]) -> list[Alert]:
    topology = Topology(settings, partitions)
    alerts = []
    for start in range(0, len(stream), 5_000):
        alerts += topology.process(stream[start : start + 5_000]).alerts
    return alerts + topology.finish().alerts


def budget_alerts(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.kind == "budget_overrun"]


def test_each_threshold_fires_once_per_period(settings: Settings) -> None:
    alerts = budget_alerts(run(settings, 4, messages()))
    seen = Counter(
        (a.entity_id, a.evidence["threshold"].value, a.window_start.date()) for a in alerts
    )
    assert set(seen.values()) == {1}
    days = [date.date() for date in (START, START + timedelta(days=1))]
    assert {k for k in seen if k[0] == "acme"} == {
        ("acme", t, d) for t in (0.5, 0.8, 1.0) for d in days
    }
    assert {k for k in seen if k[0] == "acme-key-1"} == {
        ("acme-key-1", t, d) for t in (0.5, 0.8, 1.0) for d in days
    }
    globex = sorted((k[1], k[2]) for k in seen if k[0] == "globex")
    assert globex == [(0.5, days[0]), (0.8, days[0])]  # the week from 2026-03-02, 84 % in all
    full = next(a for a in alerts if a.entity_id == "acme" and a.evidence["threshold"].value == 1)
    assert full.evidence["spend"].value >= full.evidence["budget"].value == 1.5
    assert full.severity == "high" and full.entity_type == "tenant"
    assert full.window_start == START and full.detected_at < START + timedelta(days=1)


def test_the_same_alerts_at_any_partition_count_and_key(settings: Settings) -> None:
    stream = messages()
    one = budget_alerts(run(settings, 1, stream))
    assert one
    assert budget_alerts(run(settings, 4, stream)) == one
    assert budget_alerts(run(settings, 16, stream)) == one
    by_key = settings.model_copy(update={"kafka": settings.kafka.model_copy(
        update={"message_key": "api_key_id"})})  # fmt: skip
    assert budget_alerts(run(by_key, 4, stream)) == one


def test_a_restore_from_snapshots_fires_nothing_again(settings: Settings) -> None:
    """As the worker does: each partition's engine and the fleet stage snapshotted, restored
    into new objects (the budgets from the settings), and the stream read on; also a partition
    that goes back to its snapshot and sends its totals again."""
    stream = messages()
    whole = budget_alerts(run(settings, 4, stream))
    topology = Topology(settings, 4)
    half = len(stream) // 2
    before = budget_alerts(topology.process(stream[:half]).alerts)
    assert before and len(before) < len(whole)
    snapshots = [engine.snapshot() for engine in topology.engines]
    fleet = topology.fleet.snapshot()
    restored = Topology(settings, 4)
    restored.engines = [Engine.restore(blob, settings) for blob in snapshots]
    restored.fleet = FleetStage.restore(fleet, settings)
    after = budget_alerts(restored.process(stream[half:]).alerts + restored.finish().alerts)
    assert before + after == whole
    # a partition restored from an older snapshot sends totals the fleet has seen: no change
    again = Engine.restore(snapshots[0], settings)
    resent = again.process(stream[half - 2_000 : half])
    assert restored.fleet.add([], {}, [], resent.spend) == []


def test_a_duplicate_event_costs_nothing(settings: Settings) -> None:
    stream = messages(days=1)[:4_000]
    topology = Topology(settings, 4)
    topology.process(stream)
    topology.process(stream[:1_000])  # sent again
    topology.finish()
    book = topology.fleet.budgets
    prices = PriceTable(settings.prices, settings.default_price)
    expected = sum(
        cost_units(prices.event_cost(e))
        for e in map(lambda m: parse_event(m.value), stream)
        if e.tenant_id == "acme"
    )
    budget = Budget(entity_type="tenant", entity_id="acme", period="day", unit="usd",
                    amount=Decimal(1))  # fmt: skip
    assert book.spend(budget, START)[0] == expected


def hourly(days: int, level: float = 1.0, seed: int = 0) -> np.ndarray:
    """A spender with a daily cycle (busy afternoons) and gamma noise per hour."""
    rng = np.random.default_rng(seed)
    cycle = 1.0 + 0.8 * np.sin((np.arange(24) - 9) / 24 * 2 * np.pi)
    return np.tile(cycle, days) * level * rng.gamma(8.0, 1 / 8.0, days * 24)


@pytest.mark.parametrize("seed", range(5))
def test_a_projection_on_track_stays_inside_its_interval(seed: int) -> None:
    history = hourly(10, seed=seed)
    future = hourly(14, seed=seed + 100)[240 : 240 + 4 * 24]
    p = project(history, hours_left=len(future), spend_to_date=0.0, end_hour=240)
    assert p is not None
    assert p.low <= future.sum() <= p.high
    assert p.exhaustion_hours(float(future.sum()) * 1.3) is None


def test_a_burn_shows_in_the_rate_and_the_projection() -> None:
    """12 h at 3x after 6 steady days: the rate is the chosen window's (the steady history
    picks a day), so it lags the burn; the projection still rises past the steady one's
    interval."""
    history = np.concatenate([hourly(6), hourly(1, level=3.0, seed=9)[:12]])
    p = project(history, hours_left=48, spend_to_date=0.0, end_hour=len(history))
    steady = project(hourly(6), hours_left=48, spend_to_date=0.0, end_hour=6 * 24)
    assert p is not None and steady is not None
    assert p.window_hours == 24 and p.rate > 1.25
    assert p.low > steady.high


def test_a_book_restored_without_budgets_gets_them_back() -> None:
    budget = Budget(entity_type="tenant", entity_id="a", period="day", unit="usd",
                    amount=Decimal(1))  # fmt: skip
    book = BudgetBook([budget])
    assert pickle.loads(pickle.dumps(book)).budgets == {}  # configuration, not state
    stage = FleetStage(Settings(), [], 1)
    assert isinstance(pickle.loads(pickle.dumps(stage)).budgets, BudgetBook)


def test_a_ledger_counts_the_first_keys_of_a_day_and_reports_what_a_snapshot_left() -> None:
    """Keys past the cap count for their tenant only, the first ones of the day tracked in the
    order their events came; a ledger pickled before its pending slots (totals changed since
    its last report kept in ``_changed``) reports those totals at its next report."""
    ledger = SpendLedger(max_keys=2)
    for key in ("k1", "k2", "k3", "k1"):
        ledger.add(msgspec.structs.replace(example_event(), api_key_id=key), 0.001)
    reported = {(e.entity_type, e.entity_id): e.requests for e in ledger.report()}
    assert reported == {("tenant", "acme"): 4, ("api_key", "k1"): 2, ("api_key", "k2"): 1}
    assert ledger.untracked == 1 and ledger.report() == []
    old = dict(vars(ledger), _changed={("tenant", "acme", 1772409600)})
    del old["_pending"], old["_unreported"]
    restored = SpendLedger.__new__(SpendLedger)
    restored.__setstate__(old)
    assert [(e.entity_id, e.requests) for e in restored.report()] == [("acme", 4)]
