"""Arrival models and recorded traces: the shapes the evaluation runs on besides the smooth one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.simulate import FleetConfig, build_fleet, collect, simulate
from pipeline.simulate.arrivals import BUILTIN_TRACE, TraceError, load_trace
from pipeline.simulate.workloads import WORKLOADS, Workload


def per_minute(config: FleetConfig, workload: Workload, tenant: str | None = None) -> np.ndarray:
    fleet = build_fleet(config)
    cols = collect(simulate(config, fleet=fleet, arrivals=workload.arrivals(fleet)))
    ts = cols["ts_ms"] if tenant is None else cols["ts_ms"][cols["tenant_id"] == tenant]
    return np.bincount((ts - config.start_ms) // 60_000, minlength=round(config.hours * 60))


def test_the_builtin_trace_is_mooncakes_hour_of_chat_traffic() -> None:
    trace = load_trace(BUILTIN_TRACE)
    assert len(trace) == 12_031
    assert 3_500_000 < trace.span_ms <= 3_600_000
    assert (BUILTIN_TRACE.parent / "LICENSE-APACHE-mooncake").is_file()


def test_a_csv_trace_takes_seconds_or_iso_times(tmp_path: Path) -> None:
    seconds = tmp_path / "s.csv"
    seconds.write_text("timestamp,prompt_tokens,completion_tokens\n10.5,100,7\n10,50,3\n")
    iso = tmp_path / "azure.csv"
    iso.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,4808,10\n2023-11-16 18:15:50.9951690,3180,8\n"
    )
    assert load_trace(seconds).offset_ms.tolist() == [0, 500]
    assert load_trace(iso).offset_ms.tolist() == [0, 4314]  # each time to the millisecond
    assert load_trace(iso).prompt.tolist() == [4808, 3180]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timestamp,prompt\n1,2\n", "needs the columns"),
        ("timestamp,prompt_tokens,completion_tokens\nyesterday,1,2\n2,1,1\n", "neither seconds"),
        ("timestamp,prompt_tokens,completion_tokens\n1,-5,2\n2,1,1\n", ">= 0"),
        ('{"timestamp": 0, "input_length": 1}\n', "not a Mooncake trace line"),
        ("timestamp,prompt_tokens,completion_tokens\n1,2,3\n", "at least 2"),
    ],
)
def test_a_bad_trace_is_refused_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(TraceError, match=message):
        load_trace(path)


def test_the_trace_workload_follows_the_trace_and_the_requested_rate() -> None:
    config = FleetConfig(tenants=6, rate=10.0, hours=2.0, seed=1)
    counts = per_minute(config, WORKLOADS["trace"])
    fleet = build_fleet(config)
    due = [60 * fleet.key_rates(config.start_ms + 60_000 * m + 30_000).sum() for m in range(120)]
    assert 0.9 < counts.sum() / sum(due) < 1.1  # the fleet's rate under its daily cycle


def test_a_trace_is_looped_so_its_bursts_recur_every_hour(tmp_path: Path) -> None:
    # one hour: 10 requests a minute, 100 in minute 10
    times = [m * 60 + i * 60 / (100 if m == 10 else 10) for m in range(60)
             for i in range(100 if m == 10 else 10)]  # fmt: skip
    trace = tmp_path / "burst.csv"
    trace.write_text("timestamp,prompt_tokens,completion_tokens\n"
                     + "".join(f"{t},100,10\n" for t in times))  # fmt: skip
    config = FleetConfig(tenants=1, rate=1.0, hours=3.0, seed=1, diurnal_amplitude=0.0)
    counts = per_minute(config, Workload.from_trace(trace))
    quiet = np.delete(counts, [10, 70, 130]).mean()
    assert all(counts[m] > 5 * quiet for m in (10, 70, 130))


def test_the_bursty_workload_is_far_rougher_than_poisson() -> None:
    config = FleetConfig(tenants=20, rate=25.0, hours=4.0, seed=2)
    bursty = per_minute(config, WORKLOADS["bursty"])
    smooth = per_minute(config, WORKLOADS["default"])
    assert bursty.var() / bursty.mean() > 20
    assert smooth.var() / smooth.mean() < 10  # Poisson plus the daily cycle's drift


def test_simulate_replays_a_trace_given_with_arrivals(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    rows = "".join(f"{i * 0.5},{1000 + i},{200 + i}\n" for i in range(240))
    trace.write_text("timestamp,prompt_tokens,completion_tokens\n" + rows)
    out = tmp_path / "e.jsonl"
    result = CliRunner().invoke(app, ["simulate", "--arrivals", str(trace), "--hours", "0.1",
                                      "--rate", "4", "--tenants", "3", "--no-incidents",
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = out.read_bytes().splitlines()
    fleet = build_fleet(FleetConfig(tenants=3, rate=4.0, hours=0.1))
    due = 360 * fleet.key_rates(fleet.config.start_ms).sum()  # 4 req/s under the daily cycle
    assert 0.8 * due < len(lines) < 1.2 * due
    assert b'"prompt_tokens":1' in lines[0]


def test_simulate_refuses_an_unknown_workload_and_a_bad_trace(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", "--workload", "spiky", "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "unknown workload 'spiky'" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("when,what\n1,2\n")
    result = runner.invoke(app, ["simulate", "--arrivals", str(bad), "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "needs the columns" in result.output
    assert not (tmp_path / "e").exists()
