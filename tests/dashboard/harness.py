"""Helpers for the dashboard tests: serving a database to the app and reading what pages show.

The app builds its settings from ``COMPUTEWATCH_*`` and caches its client (``st.cache_resource``)
for the whole process, so :func:`serving` points those variables at a database and clears
Streamlit's caches on the way in and out (clearing closes the client).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from clickhouse_connect.driver.client import Client
from streamlit.testing.v1 import AppTest

from pipeline.config import Settings
from tests.dashboard.seeding import Seeded, settings_for

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
APP = DASHBOARDS / "streamlit_app.py"


@dataclass(frozen=True)
class SeededStore:
    """The seeded database's settings, what was written, and a client for expected values."""

    settings: Settings
    seeded: Seeded
    client: Client

    def scalar(self, sql: str, **params: object) -> Any:
        """The one value of a query on the seeded database."""
        return self.client.query(sql, parameters=params).result_rows[0][0]


@contextmanager
def serving(settings: Settings) -> Iterator[None]:
    """Make the app read ``settings.clickhouse`` (fresh caches before and after)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COMPUTEWATCH_CLICKHOUSE_URL", settings.clickhouse.url)
        mp.setenv("COMPUTEWATCH_CLICKHOUSE_DATABASE", settings.clickhouse.database)
        st.cache_resource.clear()
        st.cache_data.clear()
        try:
            yield
        finally:
            st.cache_resource.clear()
            st.cache_data.clear()


def new_database(chdb_path: Path, prefix: str) -> Settings:
    """Settings for a fresh, uniquely named database on the session's engine path."""
    return settings_for(f"chdb://{chdb_path}", f"{prefix}_{uuid.uuid4().hex[:12]}")


def open_page(page: str | None = None) -> AppTest:
    """The app after a first run, switched to ``page`` (e.g. ``app_pages/alerts.py``)."""
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart_titles(at: AppTest) -> list[str]:
    """Titles of the Altair charts on the page."""
    titles = []
    for chart in at.get("vega_lite_chart"):
        title = json.loads(chart.proto.spec).get("title")
        titles.append(str(title.get("text") if isinstance(title, dict) else title))
    return titles


def page_links(at: AppTest) -> list[str]:
    """Labels of the page links on the page."""
    return [str(link.proto.label) for link in at.get("page_link")]


def texts(at: AppTest, kind: str) -> list[str]:
    """The ``value`` of every element of one kind (``markdown``, ``info``, ``caption``...)."""
    return [str(e.value) for e in getattr(at, kind)]


def metric(at: AppTest, label: str) -> str:
    """The displayed value of the metric with this label."""
    values = [m.value for m in at.metric if m.label == label]
    assert len(values) == 1, f"metric {label!r}: {values} in {[m.label for m in at.metric]}"
    return values[0]
