"""The CLI on the embedded engine: what a user is told about a store it cannot use.

Every command runs as its own process (``python -m pipeline.cli``), as a user runs it: an
engine path is held by one process at a time, and that is one of the cases under test.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

FILL_FIRST = "run `computewatch migrate`, or `computewatch replay --events FILE --store` to load " \
    "events, first"
HOLD = """
import sys, time
from pipeline.config import ClickHouseSettings
from pipeline.storage import connect
client = connect(ClickHouseSettings(url=sys.argv[1]))
print("holding", flush=True)
time.sleep(120)
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, timeout=180
    )


def usage(url: str, *more: str) -> subprocess.CompletedProcess[str]:
    return cli("usage", "--from", "2026-03-02", "--to", "2026-03-03", "--clickhouse-url", url,
               *more)  # fmt: skip


def test_usage_on_a_store_never_migrated_says_to_migrate_first(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()  # a directory, no database in it
    result = usage(f"chdb://{store}")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: database computewatch does not exist in chdb://{store}: {FILL_FIRST}\n"
    )


def test_writers_say_where_they_create_a_store_and_usage_says_when_nothing_matched(
    tmp_path: Path,
) -> None:
    store, events = tmp_path / "store", tmp_path / "events.jsonl"
    url = f"chdb://{store}"
    made = cli("simulate", "--hours", "1", "--rate", "1", "--no-incidents", "--out", str(events))
    assert made.returncode == 0, made.stderr
    replayed = cli("replay", "--events", str(events), "--store", "--clickhouse-url", url)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stderr == f"creating the embedded store {store} ({url})\n"
    found = usage(url)
    assert found.returncode == 0 and found.stderr == ""
    assert len(found.stdout.splitlines()) > 1
    nothing = usage(url, "--tenant", "no-such-tenant")
    assert nothing.returncode == 0
    assert nothing.stdout.splitlines() == [found.stdout.splitlines()[0]]  # the header only
    assert nothing.stderr == (
        "nothing matched: no usage by tenant 'no-such-tenant' from 2026-03-02 to 2026-03-03 "
        "(exclusive)\n"
    )
    again = cli("migrate", "--clickhouse-url", url)
    assert again.returncode == 0 and again.stderr == ""  # it exists: nothing to say


@pytest.fixture
def held_store(tmp_path: Path) -> Iterator[Path]:
    """An embedded store held open by another process."""
    store = tmp_path / "store"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, f"chdb://{store}"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        yield store
    finally:
        holder.terminate()
        holder.wait(timeout=30)


def test_a_store_held_by_another_process_is_one_line_exit_1(
    held_store: Path, tmp_path: Path
) -> None:
    said = (
        f"error: another process (another computewatch?) holds the embedded store {held_store}:"
        " stop it, or point both at a ClickHouse server (--clickhouse-url http://host:8123)\n"
    )
    result = usage(f"chdb://{held_store}")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", said)
    events, alerts = tmp_path / "events.jsonl", tmp_path / "alerts.jsonl"
    events.write_text("")
    result = cli("replay", "--events", str(events), "--store", "--alerts-out", str(alerts),
                 "--clickhouse-url", f"chdb://{held_store}")  # fmt: skip
    assert (result.returncode, result.stderr) == (1, said)
    assert not alerts.exists()
