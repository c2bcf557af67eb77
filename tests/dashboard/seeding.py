"""Seed a ClickHouse database with a few hours of a small simulated fleet, as the dashboard sees it.

The fleet runs the default scenario suite (attacks after a 3 h warm-up), so the store holds
events, 1-minute metrics, usage rollups and alerts; two broken lines add dead letters. The same
function runs in the pytest process (AppTest tests) and, through ``python -m
tests.dashboard.seeding URL DATABASE``, in a short-lived process whose exit releases the
embedded engine's lock before the browser test's Streamlit server opens the path.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final

from pipeline.config import ClickHouseSettings, Settings
from pipeline.embedded import replay_file
from pipeline.simulate import FleetConfig, default_suite, simulate, write_jsonl
from pipeline.storage import open_store

FLEET: Final = FleetConfig(tenants=6, rate=3.0, hours=5.0, seed=7,
                           start=datetime(2026, 3, 2, tzinfo=UTC))
PERIOD: Final = (date(2026, 3, 1), date(2026, 3, 3))
"""A usage period covering the whole simulation ([from, to), as ``computewatch usage``)."""
BROKEN_LINES: Final = (b"{oops", b'{"schema_version":"1"}')


@dataclass(frozen=True)
class Seeded:
    """What was written: the counts the pages should show."""

    events: int
    dead_letters: int
    alerts: int


def seed(settings: Settings, workdir: Path | None = None) -> Seeded:
    """Simulate :data:`FLEET` with the default suite and replay it into ``settings.clickhouse``."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "events.jsonl"
        write_jsonl(path, simulate(FLEET, default_suite(FLEET)))
        with path.open("ab") as fh:
            fh.write(b"\n".join(BROKEN_LINES) + b"\n")
        with open_store(settings) as store:
            summary = replay_file(path, settings, [store.write_step])
    return Seeded(events=summary.valid, dead_letters=summary.dead_letters, alerts=summary.alerts)


def settings_for(url: str, database: str) -> Settings:
    """Default settings around one ClickHouse database."""
    return Settings(clickhouse=ClickHouseSettings(url=url, database=database))


if __name__ == "__main__":
    result = seed(settings_for(sys.argv[1], sys.argv[2]))
    print(f"events={result.events} dead_letters={result.dead_letters} alerts={result.alerts}")
