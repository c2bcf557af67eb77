"""The command line as a new user meets it: help, one-line errors, no partial output, progress.

Each test runs ``computewatch`` in-process with typer's ``CliRunner`` (stdout and stderr apart)
and asserts what is printed, the exit status (2: bad input, 1: a service is unavailable) and
which files are left behind.
"""

from __future__ import annotations

import io
import json
import re
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.progress import progress_line
from pipeline.simulate import FleetConfig, HorizonTooShort, default_suite

COMMANDS = ("replay", "simulate", "evaluate", "migrate", "usage", "worker", "dashboard", "demo",
            "bench", "advise")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_fits_80_columns_without_truncating_names(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=80)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines and all(len(line) <= 80 for line in lines)
    assert "…" not in result.stdout and "<bool>" not in result.stdout
    assert "│" not in result.stdout  # plain click help, not a rich panel that cuts cells


def test_help_shows_whole_flag_and_variable_names() -> None:
    text = CliRunner().invoke(app, ["simulate", "--help"], terminal_width=80).stdout
    assert "--fast-forward / --no-fast-forward" in text
    assert "COMPUTEWATCH_KAFKA_BOOTSTRAP" in text
    assert "--hours HOURS" in text


# --- one-line errors, and no partial output ----------------------------------------------------


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def one_line_error(result: Result, code: int) -> str:
    """The ``error: ...`` line of a failed command, checked to be its whole stderr."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """6 h of a small fleet with the default suite: an events file and its labels."""
    folder = tmp_path_factory.mktemp("simulated")
    events, labels = folder / "events.jsonl", folder / "labels.json"
    result = run("simulate", "--hours", "6", "--rate", "2", "--out", str(events),
                 "--labels", str(labels))  # fmt: skip
    assert result.exit_code == 0, result.output
    return events, labels


def test_simulate_into_a_missing_directory_says_so_and_writes_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    line = one_line_error(
        run("simulate", "--hours", "6", "--out", str(missing / "e.jsonl"),
            "--labels", str(tmp_path / "l.json")), 2)  # fmt: skip
    assert line == f"error: cannot write {missing / 'e.jsonl'}: directory {missing} does not exist"
    # the labels are checked before the (big) events file is written
    line = one_line_error(
        run("simulate", "--hours", "6", "--out", str(tmp_path / "e.jsonl"),
            "--labels", str(missing / "l.json")), 2)  # fmt: skip
    assert line == f"error: cannot write {missing / 'l.json'}: directory {missing} does not exist"
    assert list(tmp_path.iterdir()) == []


def test_simulate_removes_its_events_file_when_writing_the_labels_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: object, incidents: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pipeline.feeds.save_labels", broken)
    result = run("simulate", "--hours", "6", "--rate", "2", "--out", str(tmp_path / "e.jsonl"),
                 "--labels", str(tmp_path / "l.json"))  # fmt: skip
    assert isinstance(result.exception, OSError)
    assert list(tmp_path.iterdir()) == []


def test_a_too_short_horizon_names_the_fewest_hours_that_work(tmp_path: Path) -> None:
    line = one_line_error(run("simulate", "--hours", "3", "--out", str(tmp_path / "e.jsonl")), 2)
    match = re.fullmatch(
        r"error: 3 h is too short for the default suite after its warm-up: "
        r"use --hours ([\d.]+) or more, or --no-incidents", line)  # fmt: skip
    assert match is not None, line
    least = float(match.group(1))
    config = FleetConfig(hours=3.0)
    default_suite(replace(config, hours=least))  # fits
    with pytest.raises(HorizonTooShort):
        default_suite(replace(config, hours=least - 0.25))
    assert list(tmp_path.iterdir()) == []
    line = one_line_error(run("evaluate", "--hours", "3"), 2)
    assert line.endswith(f"use --hours {least:g} or more")
    # to Kafka: refused before connecting (nothing listens on port 1)
    line = one_line_error(run("simulate", "--hours", "3", "--fast-forward", "--kafka-bootstrap",
                              "127.0.0.1:1"), 2)  # fmt: skip
    assert line.endswith(f"use --hours {least:g} or more, or --no-incidents")


def test_simulate_prints_its_time_span_and_starts_where_asked(tmp_path: Path) -> None:
    out = tmp_path / "e.jsonl"
    result = run("simulate", "--hours", "1", "--rate", "1", "--no-incidents", "--out", str(out),
                 "--start", "2026-05-01T23:30")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1] == (
        "event time 2026-05-01 23:30 to 2026-05-02 00:30 UTC; once stored (replay --store): "
        "computewatch usage --from 2026-05-01 --to 2026-05-03"
    )
    first = json.loads(out.read_bytes().split(b"\n", 1)[0])["ts"]
    assert first.startswith("2026-05-01T23:30")
    result = run("simulate", "--hours", "1", "--rate", "1", "--no-incidents", "--out", str(out),
                 "--start", "now")  # fmt: skip
    last = json.loads(out.read_bytes().splitlines()[-1])["ts"]
    ended = datetime.fromisoformat(last.replace("Z", "+00:00"))
    assert timedelta(0) <= datetime.now(UTC) - ended < timedelta(minutes=2)
    line = one_line_error(run("simulate", "--out", str(out), "--start", "yesterday"), 2)
    assert "--start takes a date (2026-03-02)" in line


@pytest.mark.parametrize(
    "labels",
    [b'[{"kind": "volume_spike"}]', b"{not json", b'{"kind": "volume_spike"}'],
    ids=["incomplete", "malformed", "not-a-list"],
)
def test_evaluate_with_bad_labels_says_so_before_replaying(
    simulated: tuple[Path, Path], tmp_path: Path, labels: bytes
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(labels)
    line = one_line_error(run("evaluate", "--events", str(simulated[0]), "--labels", str(bad)), 2)
    assert line.startswith(f"error: {bad}: invalid labels: ")
    assert line.endswith("(labels are written by `computewatch simulate --labels`)")


def test_evaluate_with_labels_of_other_events_refuses_to_score(
    simulated: tuple[Path, Path], tmp_path: Path
) -> None:
    events, labels = simulated
    first_hour = tmp_path / "first-hour.jsonl"  # the incidents begin after the 3 h warm-up
    first_hour.write_bytes(b"".join(events.read_bytes().splitlines(keepends=True)[:2000]))
    line = one_line_error(run("evaluate", "--events", str(first_hour), "--labels", str(labels)), 2)
    count = len(json.loads(labels.read_bytes()))
    assert re.fullmatch(
        rf"error: {count} of the {count} incidents in {re.escape(str(labels))} lie outside the "
        r"events' time span \(2026-03-02 00:00 to 2026-03-02 00:\d\d UTC\), so they cannot be "
        r"scored: use the labels written with these events", line)  # fmt: skip


def test_evaluate_on_a_file_without_valid_events_is_an_error(
    simulated: tuple[Path, Path], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b'{"schema_version": "1"}\nnot json\n')
    line = one_line_error(run("evaluate", "--events", str(junk), "--labels", str(simulated[1])), 2)
    assert line.startswith(f"error: {junk} holds no valid event (2 lines, 2 rejected; see why")


def test_evaluate_over_several_seeds_adds_them_up_in_one_summary() -> None:
    result = run("evaluate", "--workload", "default", "--seed", "1", "--seed", "2", "--hours",
                 "4.5", "--rate", "3", "--partitions", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    *seeds, together = result.stdout.split("\n### default workload, ")
    assert [s.split(",")[0] for s in seeds[1:]] == ["seed 1", "seed 2"]
    assert together.startswith("seeds 1, 2 together")

    def found(table: str) -> dict[str, list[int]]:  # variant -> [detected, incidents]
        counts: dict[str, list[int]] = {"blatant": [0, 0], "subtle": [0, 0]}
        for line in table.splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) >= 4 and cells[1] in counts and cells[2].isdigit():
                counts[cells[1]][0] += int(cells[3])
                counts[cells[1]][1] += int(cells[2])
        return counts

    each = [found(s) for s in seeds[1:]]
    total = {v: [sum(c[v][i] for c in each) for i in (0, 1)] for v in ("blatant", "subtle")}
    assert found(together) == total and total["blatant"][1] == 12
    last = together.strip().splitlines()[-1]
    assert last.startswith(f"2 seeds, 9 h: blatant {total['blatant'][0]}/12 · subtle "
                           f"{total['subtle'][0]}/12 (")  # fmt: skip
    assert "precision ≥ 0.95 on " in last and last.endswith(" per 24 h)")


def test_replay_to_an_unreachable_clickhouse_is_one_line_and_leaves_no_output(
    simulated: tuple[Path, Path], tmp_path: Path
) -> None:
    alerts = tmp_path / "alerts.jsonl"
    line = one_line_error(
        run("replay", "--events", str(simulated[0]), "--store", "--alerts-out", str(alerts),
            "--clickhouse-url", "http://127.0.0.1:1"), 1)  # fmt: skip
    assert line == (
        "error: cannot reach ClickHouse at http://127.0.0.1:1 (Connection refused): start it, "
        "or set --clickhouse-url or COMPUTEWATCH_CLICKHOUSE_URL"
    )
    assert not alerts.exists()


def test_usage_does_not_create_a_missing_store(tmp_path: Path) -> None:
    store = tmp_path / "data" / "clickhouse"
    line = one_line_error(
        run("usage", "--from", "2026-03-02", "--to", "2026-03-03",
            "--clickhouse-url", f"chdb://{store}"), 2)  # fmt: skip
    assert line.startswith(f"error: no embedded store at {store} (chdb://{store}; name yours")
    assert line.endswith("run `computewatch migrate`, or `computewatch replay --events FILE "
                         "--store` to load events, first")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--to", "2026-03-02"], "error: --to must be after --from (it is exclusive)"),
        (["--format", "csv"], "error: --format must be markdown or json, not 'csv'"),
        (["--tolerance", "1"], "error: --tolerance must be at least 0 and below 1, not 1"),
        (["--from", "March"], "error: dates must be YYYY-MM-DD: Invalid isoformat string: 'March'"),
    ],
)
def test_advise_refuses_bad_flags_in_one_line_before_opening_a_store(
    tmp_path: Path, flags: list[str], said: str
) -> None:
    store = tmp_path / "store"
    args = ["advise", "--from", "2026-03-02", "--to", "2026-03-03", *flags]
    assert one_line_error(run(*args, "--clickhouse-url", f"chdb://{store}"), 2) == said
    assert not store.exists()


def test_advise_does_not_create_a_missing_store_nor_its_output(tmp_path: Path) -> None:
    store, out = tmp_path / "store", tmp_path / "advice.md"
    line = one_line_error(
        run("advise", "--from", "2026-03-02", "--to", "2026-03-03", "--output", str(out),
            "--clickhouse-url", f"chdb://{store}"), 2)  # fmt: skip
    assert line.startswith(f"error: no embedded store at {store} ")
    assert list(tmp_path.iterdir()) == []


def test_simulate_plants_a_labelled_misrouting_only_when_asked(tmp_path: Path) -> None:
    out, labels = tmp_path / "e.jsonl", tmp_path / "l.json"
    result = run("simulate", "--hours", "1", "--rate", "1", "--no-incidents", "--misrouting",
                 "--out", str(out), "--labels", str(labels))  # fmt: skip
    assert result.exit_code == 0, result.output
    (label,) = json.loads(labels.read_bytes())
    assert (label["kind"], label["entity_id"], label["band"], label["routes"]) == (
        "misrouting", "reasoner-large", [0.4, 0.6], ["standard", "deep"]
    )
    assert one_line_error(run("simulate", "--misrouting"), 2) == "error: --misrouting needs --out"


# --- progress ----------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_replay_shows_progress_on_a_terminal_only(
    simulated: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet = run("replay", "--events", str(simulated[0]))
    assert quiet.exit_code == 0 and quiet.stderr == ""  # not a terminal: nothing extra
    terminal = Terminal()
    monkeypatch.setattr("pipeline.cli.progress_line", partial(progress_line, terminal))
    shown = run("replay", "--events", str(simulated[0]))
    assert shown.exit_code == 0 and shown.stderr == ""
    assert shown.stdout.split(" seconds=")[0] == quiet.stdout.split(" seconds=")[0]
    updates = terminal.getvalue().split("\r")[1:]
    assert len(updates) >= 2 and updates[-1] == "\x1b[K"  # cleared at the end
    assert re.fullmatch(
        r"replaying: [\d,]+ events, [\d,]+ events/s, event time 2026-03-02 \d\d:\d\d UTC\x1b\[K",
        updates[0])  # fmt: skip


def test_a_worker_whose_metrics_port_is_taken_says_so_before_it_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["worker", "--metrics-port", str(port)])
    assert result.exit_code == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "choose another --metrics-port" in result.stderr
