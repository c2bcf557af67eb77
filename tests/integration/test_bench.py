"""Smoke test of ``computewatch bench``: every part at tiny sizes, on the real broker.

Only the shape is checked — every row present with positive numbers, exactly once, and a
README block that can be regenerated. No target is asserted: numbers on a shared machine are
noise at these sizes (the real run is ``computewatch bench`` with its defaults).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.bench import PARTS, BenchConfig, markdown, parse_parts, run_bench
from pipeline.bench.table import END_MARKER, START_MARKER, replace_block
from pipeline.cli import app

NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def tiny(bootstrap: str, workdir: Path, parts: str) -> BenchConfig:
    return BenchConfig(
        parts=parse_parts(parts),
        bootstrap=bootstrap,
        workdir=workdir,
        events=25_000,  # several worker batches: the rate is measured after the first
        rates=(300.0,),
        live_seconds=16.0,
        history_minutes=61.0,  # volume: 30 min warm-up, then 30 min of each key's own spread
        # a spiking key's spread is learned from its per-minute counts: at 6 events/s (about 7
        # a minute per key) Poisson noise alone gave it a spread that hid a 5x spike half the time
        history_rate=24.0,
        spikes_per_minute=2,
        replay_events=20_000,
        keys=1_000,
        rss_events=5_000,
    )


def first_number(text: str) -> float:
    match = NUMBER.search(text)
    assert match, text
    return float(match.group().replace(",", ""))


@pytest.mark.kafka
@pytest.mark.timeout(180)
def test_bench_every_part_tiny(kafka_bootstrap: str, tmp_path: Path) -> None:
    report = run_bench(tiny(kafka_bootstrap, tmp_path, ",".join(PARTS)))

    assert report.errors == {}
    assert report.limit and report.limit.events_per_s > 0
    assert report.worker and report.worker.exactly_once and report.worker.events_per_s > 0
    assert report.faust and report.faust.messages == report.worker.events
    assert report.faust.events_per_s > 0
    assert report.scaleout and report.scaleout.exactly_once and report.scaleout.events_per_s > 0
    [latency] = report.latency
    assert latency.clickhouse_s and latency.topic_s
    assert all(s > 0 for s in latency.clickhouse_s + latency.topic_s)
    assert report.replay and report.replay.events == 20_000
    assert report.rss and report.rss.keys == 1_000 and report.rss.peak_bytes > 0

    block = markdown(report)
    rows = [line for line in block.splitlines() if line.startswith("| ") and "---" not in line]
    results = {cells[1].strip(): cells[2] for cells in (r.split("|") for r in rows[1:])}
    expected = ["bare consumer", "Faust alone", "`computewatch worker`", "queryable in ClickHouse",
                "`compute.alerts`", "`computewatch replay`", "peak RSS", "scale-out"]  # fmt: skip
    for name in expected:
        [result] = [v for k, v in results.items() if name in k]
        assert first_number(result) > 0, (name, result)
    assert block.count("- ") >= 6  # one verdict per target
    readme = f"intro\n{START_MARKER}\nold\n{END_MARKER}\nrest\n"
    assert "### `computewatch bench`" in replace_block(readme, block)


def test_bench_command_rejects_unknown_part() -> None:
    result = CliRunner().invoke(app, ["bench", "--only", "limit,warp"])
    assert result.exit_code == 2
    assert "unknown bench part 'warp'" in result.output


def test_bench_command_without_broker_parts(tmp_path: Path) -> None:
    """Replay and RSS need no broker: the command runs them and writes the Markdown."""
    out = tmp_path / "bench.md"
    result = CliRunner().invoke(
        app,
        [
            *("bench", "--only", "replay,rss", "--replay-events", "3000"),
            *("--keys", "200", "--rss-events", "2000", "--markdown-out", str(out)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "`computewatch replay`, 3,000 events" in out.read_text()
    assert "peak RSS of the engine, 200 api keys" in result.output
