"""The allocation advisor on the embedded engine: it finds the planted misrouting, prices it as
the raw events do (and as capping it really saves: the same fleet simulated without it), and
recommends no saving where the extra compute pays.

Each test stores 3 h of a small simulated fleet (about 27,000 events) through the sink, with
the planted scenarios of :mod:`pipeline.simulate.scenarios`: a ``Misrouting`` (half of one
band's requests on a dearer route that buys nothing) and/or a ``RouteTrial`` (the same on another
model's band, where the dearer route helps).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Final

import pytest
from clickhouse_connect.driver.client import Client
from typer.testing import CliRunner

from pipeline.advisor import Advice
from pipeline.cli import app
from pipeline.config import Settings
from pipeline.events import AllocationEvent
from pipeline.pricing import PriceTable
from pipeline.simulate import FleetConfig, Incident, Misrouting, RouteTrial, Scenario, simulate
from pipeline.storage.allocation import allocation_advice
from pipeline.storage.sink import ClickHouseSink

CONFIG: Final = FleetConfig(tenants=12, rate=4.0, hours=3.0, seed=5)
DAY: Final = date(2026, 3, 2)
WHOLE: Final = dict(start=CONFIG.start, end=CONFIG.start + timedelta(hours=CONFIG.hours),
                    intensity=0.5)  # fmt: skip
MISROUTED: Final = Misrouting(entity_id="reasoner-large", low=0.4, high=0.6,
                              from_route="standard", to_route="deep", **WHOLE)  # type: ignore[arg-type]
TRIAL: Final = RouteTrial(entity_id="reasoner-medium", low=0.2, high=0.4, from_route="fast",
                          to_route="standard", **WHOLE)  # type: ignore[arg-type]


def store(
    client: Client, settings: Settings, scenarios: Sequence[Scenario]
) -> list[AllocationEvent]:
    """Simulate ``CONFIG`` with ``scenarios`` and store it; return the raw events."""
    events = [e for batch in simulate(CONFIG, scenarios) for e in batch.to_events()]
    sink = ClickHouseSink.from_settings(client, settings, batch_rows=50_000)
    for event in events:
        sink.add_event(event)
    sink.flush()
    return events


def true_saving(events: list[AllocationEvent], prices: PriceTable, label: Incident) -> float:
    """(cost per request on the dearer route - on the natural one) x the dearer route's requests
    per day, in the labelled band, straight from the raw events and the price table."""
    assert label.band is not None and label.routes is not None
    low, high = label.band
    band = [
        e for e in events
        if e.model == label.entity_id and e.difficulty is not None and low <= e.difficulty < high
    ]  # fmt: skip
    cheap, dear = ([prices.event_cost(e) for e in band if e.route == r] for r in label.routes)
    days = (label.end - label.start) / timedelta(days=1)
    return (statistics.fmean(dear) - statistics.fmean(cheap)) * len(dear) / days


def saving_of_capping(
    events: list[AllocationEvent], prices: PriceTable, without: Sequence[Scenario]
) -> float:
    """What capping really saves per day: the same fleet simulated ``without`` the misrouting
    (each request keeps its id and noise) costs this much less."""
    plain = {e.event_id: e for batch in simulate(CONFIG, without) for e in batch.to_events()}
    moved = [e for e in events if e.route != plain[e.event_id].route]
    assert moved
    extra = sum(prices.event_cost(e) - prices.event_cost(plain[e.event_id]) for e in moved)
    return extra / (CONFIG.hours / 24)


def advise(client: Client) -> Advice:
    return allocation_advice(client, DAY, DAY + timedelta(days=1))


def test_the_top_recommendation_is_the_planted_misrouting_priced_within_5_percent(
    clickhouse_client: Client, storage_settings: Settings
) -> None:
    events = store(clickhouse_client, storage_settings, [MISROUTED, TRIAL])
    label = MISROUTED.incident()
    prices = PriceTable(storage_settings.prices, storage_settings.default_price)
    truth = true_saving(events, prices, label)
    advice = advise(clickhouse_client)
    top = advice.recommendations[0]
    assert (top.action, top.step.model, top.step.band) == ("cap", label.entity_id, label.band)
    assert (top.step.cheap, top.step.dear) == label.routes
    assert top.usd_per_day == pytest.approx(truth, rel=0.05), (top.usd_per_day, truth)
    really = saving_of_capping(events, prices, [TRIAL])
    assert top.usd_per_day == pytest.approx(really, rel=0.05), (top.usd_per_day, really)
    assert top.step.confidence_gain.high <= advice.options.tolerance
    assert top.step.gpu_ratio.value > 3
    # the trial's dearer route pays: more compute is recommended there, never a cap
    assert [(r.action, r.step.model) for r in advice.recommendations[1:]] == [
        ("raise", "reasoner-medium")
    ]
    print(f"saving {top.usd_per_day:.4f} $/day; from the raw events {truth:.4f} "
          f"({top.usd_per_day / truth - 1:+.2%}); capping really saves {really:.4f} "
          f"({top.usd_per_day / really - 1:+.2%})")  # fmt: skip


@pytest.mark.parametrize("planted", [[], [TRIAL]], ids=["plain", "route-trial"])
def test_no_saving_is_recommended_on_a_fleet_without_misrouting(
    clickhouse_client: Client, storage_settings: Settings, planted: list[Scenario]
) -> None:
    store(clickhouse_client, storage_settings, planted)
    advice = advise(clickhouse_client)
    assert [r for r in advice.recommendations if r.action == "cap"] == []
    assert len(advice.rows) > 20  # every model, band and route is still tabulated
    if planted:  # the comparison ran, and found the dearer route worth it
        (step,) = advice.steps
        assert (step.model, step.cheap, step.dear) == ("reasoner-medium", "fast", "standard")
        assert step.confidence_gain.low > advice.options.tolerance
        assert [r.action for r in advice.recommendations] == ["raise"]
    else:  # the router splits each band cleanly by difficulty: nothing like for like
        assert advice.steps == [] and advice.recommendations == []


def test_advise_command_prints_markdown_and_json_on_the_stored_events(
    clickhouse_client: Client, storage_settings: Settings, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    store(clickhouse_client, storage_settings, [MISROUTED])
    ch = storage_settings.clickhouse
    monkeypatch.setenv("COMPUTEWATCH_CLICKHOUSE_DATABASE", ch.database)
    args = ["advise", "--from", "2026-03-02", "--to", "2026-03-03", "--clickhouse-url", ch.url]
    markdown = CliRunner().invoke(app, args)
    assert markdown.exit_code == 0, markdown.output
    assert "1. difficulty 0.4-0.6 on reasoner-large routed `deep`: " in markdown.stdout
    assert "capping it at `standard` saves $" in markdown.stdout
    out = tmp_path / "advice.json"
    result = CliRunner().invoke(app, [*args, "--format", "json", "--output", str(out)])
    assert result.exit_code == 0 and result.stdout == ""
    doc = json.loads(out.read_bytes())
    (rec,) = doc["recommendations"]
    assert (rec["action"], rec["model"], rec["band"], rec["from_route"], rec["to_route"]) == (
        "cap", "reasoner-large", [0.4, 0.6], "deep", "standard"
    )
    assert rec["summary"] in markdown.stdout
    only = CliRunner().invoke(app, [*args, "--model", "chat-lite"])
    assert only.exit_code == 0 and "None: no band has two routes" in only.stdout
    nothing = CliRunner().invoke(app, [*args, "--model", "no-such-model"])
    assert nothing.exit_code == 0
    assert nothing.stderr == (
        "nothing matched: no events of model no-such-model from 2026-03-02 to 2026-03-03 "
        "(exclusive)\n"
    )
