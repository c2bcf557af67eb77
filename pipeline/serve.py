"""Serve the Streamlit dashboard in this process, alone or with the embedded demo feed.

The embedded engine (chDB) lets one process hold a data directory. So ``computewatch demo``
runs the simulated feed, the engine and the sink in a background thread of the same process
that serves the dashboard: both use the same ``chdb://`` path, and the dashboard sees rows as
soon as the sink flushes them (about every second).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import IngestSettings, Settings
from pipeline.records import StepOutput
from pipeline.simulate import FleetConfig

if TYPE_CHECKING:
    from pipeline.feeds import LiveFeed
    from pipeline.ingest.batch import MappedBatch
    from pipeline.ingest.mapping import SpanMapping

log = logging.getLogger(__name__)

APP = Path(__file__).resolve().parent.parent / "dashboards" / "streamlit_app.py"


def _run_streamlit(settings: Settings) -> None:
    from streamlit.web import bootstrap

    if not APP.is_file():
        raise FileNotFoundError(f"dashboard app not found at {APP}")
    # The dashboard builds its own Settings from the environment: pass the overrides on.
    os.environ["COMPUTEWATCH_CLICKHOUSE_URL"] = settings.clickhouse.url
    os.environ["COMPUTEWATCH_CLICKHOUSE_DATABASE"] = settings.clickhouse.database
    flags = {
        "server.port": settings.dashboard_port,
        "server.address": settings.dashboard_host,
        "server.headless": True,
        "browser.gatherUsageStats": False,
        "server.fileWatcherType": "none",
    }
    bootstrap.load_config_options(flag_options=flags)
    bootstrap.run(str(APP), False, [], flags)


def serve_dashboard(settings: Settings) -> None:
    """Serve the dashboard (127.0.0.1 by default) until interrupted (blocking)."""
    _run_streamlit(settings)


def serve_demo(
    settings: Settings,
    config: FleetConfig,
    backfill_hours: float,
    *,
    otlp: SpanMapping | None = None,
) -> None:
    """Feed a simulated fleet through the engine into ClickHouse while serving the dashboard;
    with an ``otlp`` mapping, GenAI spans received on ``settings.ingest`` join the feed."""
    from pipeline.feeds import LiveFeed
    from pipeline.storage import open_store

    with open_store(settings) as store:

        def write(out: StepOutput) -> None:
            store.write_step(out)
            store.sink.flush_due()

        feed = LiveFeed(config, settings, write, backfill_hours=backfill_hours)
        feed.start()
        log.info("demo feed started: %g req/s, %d tenants", config.rate, config.tenants)
        try:
            with contextlib.ExitStack() as stack:
                if otlp is not None:
                    url = stack.enter_context(receive_into(feed, settings.ingest, otlp))
                    log.warning("demo: receiving OTLP traces on %s", url)
                _run_streamlit(settings)
        finally:
            feed.stop()
            feed.join(timeout=10)


def receive_into(
    feed: LiveFeed, ingest: IngestSettings, mapping: SpanMapping
) -> contextlib.AbstractContextManager[str]:
    """The OTLP receiver with the demo feed as its sink: each GenAI span's event goes through
    the embedded engine with the simulated fleet, no Kafka (spans it cannot map are answered
    as rejected, not stored)."""
    from pipeline.ingest.receiver import receiving

    return receiving(ingest, mapping, FeedSink(feed))


class FeedSink:
    """A receiver sink that injects events into the demo's feed (see ``ingest.sink.Sink``)."""

    def __init__(self, feed: LiveFeed) -> None:
        self._feed = feed

    async def start(self) -> None:
        return None

    async def deliver(self, batch: MappedBatch) -> None:
        self._feed.inject([event for event, _raw in batch.events])

    async def stop(self) -> None:
        return None
