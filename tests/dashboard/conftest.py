"""The seeded store for the dashboard tests.

It lives on the session's one embedded-engine path (``chdb_path``), next to the storage tests'
databases, because one process can hold only one path at a time; AppTest runs the app in this
same process, exactly as ``computewatch demo`` runs it next to its writer. Module scope: the
app's cached client is closed when a module's tests are done.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.storage import connect
from pipeline.storage.client import quote_database
from tests.dashboard.harness import SeededStore, new_database, serving
from tests.dashboard.seeding import seed


@pytest.fixture(scope="module")
def store(chdb_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededStore]:
    """Five hours of a six-tenant fleet with attacks, replayed into a fresh database."""
    settings = new_database(chdb_path, "cw_dashboard")
    seeded = seed(settings, tmp_path_factory.mktemp("dashboard_seed"))
    client = connect(settings.clickhouse)
    try:
        with serving(settings):
            yield SeededStore(settings, seeded, client)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {quote_database(settings.clickhouse.database)}")
        client.close()
