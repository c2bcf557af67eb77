"""Budgets on the embedded engine, end to end: ``simulate --budget-burn`` plants a tenant at 3x
its traffic and every tenant's weekly budget; the file is replayed through the two stages (4
partitions) into chDB with those budgets. The forecast must fire at least 24 h of event time
before the planted exhaustion and for no tenant on track; each threshold fires once; the fleet
stage's spend is ``computewatch usage``'s to the nano-dollar; ``computewatch forecast`` reads
the same history back.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Final

import pytest
from typer.testing import CliRunner

from pipeline.budgets import Budget, load_budgets
from pipeline.cli import app
from pipeline.config import Settings
from pipeline.embedded import replay_file
from pipeline.records import Alert
from pipeline.simulate.labels import Incident, load_labels
from pipeline.storage.client import connect, quote_database
from pipeline.storage.store import open_store
from pipeline.storage.usage import usage_report
from pipeline.topology import Topology

SEED: Final = 2  # the development seeds of the forecast were 3, 5 and 8
WEEK: Final = (date(2026, 3, 2), date(2026, 3, 9))


@dataclass
class Replayed:
    settings: Settings
    alerts: list[Alert]
    topology: Topology
    burn: Incident
    budgets: list[Budget]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory, chdb_path: Path) -> Iterator[Replayed]:
    work = tmp_path_factory.mktemp("budgets")
    events, labels, budgets = work / "e.jsonl", work / "l.json", work / "b.toml"
    runner = CliRunner()
    result = runner.invoke(app, [
        "simulate", "--hours", "132", "--rate", "1", "--tenants", "12", "--seed", str(SEED),
        "--no-incidents", "--out", str(events), "--labels", str(labels), "--budget-burn",
        "--budgets-out", str(budgets),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    settings = Settings(
        clickhouse={"url": f"chdb://{chdb_path}", "database": "cw_budgets_test"},
        budgets={"file": budgets},
    )
    topology = Topology(settings, 4)
    alerts: list[Alert] = []
    with open_store(settings) as store:
        replay_file(events, settings, [store.write_step, lambda out: alerts.extend(out.alerts)],
                    engine=topology)  # fmt: skip
    (burn,) = [i for i in load_labels(labels) if i.kind == "budget_burn"]
    yield Replayed(settings, alerts, topology, burn, load_budgets(budgets))
    client = connect(settings.clickhouse)
    client.command(f"DROP DATABASE IF EXISTS {quote_database(settings.clickhouse.database)}")
    client.close()


def budget_alerts(alerts: list[Alert], forecast: bool) -> list[Alert]:
    return [
        a for a in alerts
        if a.kind == "budget_overrun" and ("forecast" in a.evidence) == forecast
    ]  # fmt: skip


def test_the_forecast_fires_a_day_before_the_planted_exhaustion(replayed: Replayed) -> None:
    burn = replayed.burn
    assert burn.budget is not None and burn.exhausted_at is not None
    (alert,) = [a for a in budget_alerts(replayed.alerts, True) if a.entity_id == burn.entity_id]
    lead = burn.exhausted_at - alert.detected_at
    assert lead >= timedelta(hours=24), lead
    assert alert.detected_at >= burn.start  # it saw the burn, not noise before it
    assert alert.entity_type == "tenant" and alert.evidence["budget"].value == burn.budget.usd
    assert alert.evidence["projected_low"].value >= burn.budget.usd
    assert alert.summary.startswith(f"forecast: {burn.entity_id} will run out of its $")


def test_no_forecast_for_a_tenant_on_track(replayed: Replayed) -> None:
    others = [a for a in budget_alerts(replayed.alerts, True)
              if a.entity_id != replayed.burn.entity_id]  # fmt: skip
    assert others == []
    on_track = {b.entity_id for b in replayed.budgets} - {replayed.burn.entity_id}
    assert len(on_track) >= 10  # every other tenant had a budget, 1.25x its usual week


def test_each_threshold_once_and_the_burning_tenant_runs_out(replayed: Replayed) -> None:
    alerts = budget_alerts(replayed.alerts, False)
    counts = Counter((a.entity_id, a.evidence["threshold"].value) for a in alerts)
    assert set(counts.values()) == {1}
    burn = replayed.burn
    assert {t for (e, t) in counts if e == burn.entity_id} == {0.5, 0.8, 1.0}
    mine = [a for a in alerts if a.entity_id == burn.entity_id]
    (full,) = [a for a in mine if a.evidence["threshold"].value == 1.0]
    assert burn.exhausted_at is not None
    # the fleet stage judges spend every 15 s of event time: within a tick of the true moment
    assert timedelta(0) <= full.detected_at - burn.exhausted_at <= timedelta(seconds=20)
    assert not any(t == 1.0 for (e, t) in counts if e != burn.entity_id)


def test_spend_agrees_exactly_with_usage(replayed: Replayed) -> None:
    book = replayed.topology.fleet.budgets
    client = connect(replayed.settings.clickhouse)
    try:
        tenants = usage_report(client, replayed.settings, *WEEK).to_pylist()
        keys = usage_report(client, replayed.settings, *WEEK, group_by="api_key").to_pylist()
    finally:
        client.close()
    assert len(tenants) == 12 and len(keys) > 12
    at = replayed.burn.start
    for entity_type, rows, column in (("tenant", tenants, "tenant_id"),
                                      ("api_key", keys, "api_key_id")):  # fmt: skip
        for row in rows:
            for unit, field, scale in (("usd", "cost_usd", 10**9), ("gpu_hours", "gpu_ms", 1000)):
                budget = Budget(entity_type=entity_type, entity_id=row[column], period="week",
                                unit=unit, amount=Decimal(1))  # type: ignore[arg-type]
                assert book.spend(budget, at)[0] == row[field] * scale, (row, unit)
                assert book.spend(budget, at)[1] == row["requests"]


def test_forecast_command_reads_the_same_history(replayed: Replayed) -> None:
    runner = CliRunner()
    url = f"chdb://{replayed.settings.clickhouse.url.removeprefix('chdb://')}"
    env = {"COMPUTEWATCH_CLICKHOUSE_DATABASE": replayed.settings.clickhouse.database}
    burn = replayed.burn
    assert burn.budget is not None
    at = (burn.start + timedelta(hours=8)).isoformat()
    result = runner.invoke(app, ["forecast", "--tenant", burn.entity_id, "--period", "week",
                                 "--at", at, "--format", "json", "--clickhouse-url", url],
                           env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["low_usd"] <= report["projected_usd"] <= report["high_usd"]
    assert report["projected_usd"] > burn.budget.usd > report["spend_to_date_usd"] > 0
    assert report["history_hours"] == 80
    assert report["budget_usd"] == burn.budget.usd  # replay --store seeded the budgets file
    assert burn.start < datetime.fromisoformat(report["exhausted_at"]) < datetime.fromisoformat(
        report["end"])
    markdown = runner.invoke(app, ["forecast", "--tenant", burn.entity_id, "--period", "week",
                                   "--at", at, "--clickhouse-url", url], env=env)  # fmt: skip
    assert markdown.exit_code == 0 and "- projected total: $" in markdown.stdout
    unknown = runner.invoke(app, ["forecast", "--tenant", "nobody", "--clickhouse-url", url],
                            env=env)  # fmt: skip
    assert unknown.exit_code == 2
    assert unknown.output == "error: no usage of tenant 'nobody' in the store\n"
    early = runner.invoke(app, ["forecast", "--tenant", burn.entity_id, "--at",
                                "2026-03-03T12:00", "--clickhouse-url", url], env=env)  # fmt: skip
    assert early.exit_code == 2 and "a forecast needs 72 h" in early.output
