"""A real Prometheus (Debian's package) scrapes a worker during a real run on the real broker:
its counters are what was sent and what ClickHouse stored, it loads the alert rules, and every
query of the Grafana dashboard returns series."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.events import encode_event
from pipeline.simulate import FleetConfig, simulate
from tests.integration.test_worker_crash import fresh_worker_env
from tests.integration.test_worker_kafka import (
    INVALID,
    T0,
    produce,
    query,
    start_worker,
    stop_worker,
    wait_consumed,
)

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "dashboards" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "dashboards" / "grafana" / "computewatch.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prometheus_binary() -> str:
    """Debian's prometheus; skipped with a message when absent, except under CI=true."""
    found = shutil.which("prometheus")
    if found is None:
        message = "prometheus not found: install Debian's prometheus package to run this test"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: it must run)")
        pytest.skip(message)
    return found


class Prometheus:
    """A Prometheus server scraping one target every second, with computewatch's rules."""

    def __init__(self, directory: Path, target: str) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "computewatch", "static_configs": [{"targets": [target]}]}
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = directory / "prometheus.log"
        self.process = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("prometheus exited:\n" + self.log.read_text()[-2000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise AssertionError("prometheus not ready:\n" + self.log.read_text()[-2000:])

    def value(self, expr: str) -> float | None:
        """The value of a query with one series (None when it has none)."""
        result = self.api("/api/v1/query", query=expr)["result"]
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, expected: float, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while (found := self.value(expr)) != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr} = {found}, not {expected}")
            time.sleep(1.0)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def prometheus(tmp_path: Path, metrics_port: int) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path, f"127.0.0.1:{metrics_port}")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_prometheus_scrapes_what_the_worker_read_and_stored(
    kafka_bootstrap: str, tmp_path: Path, prometheus: Prometheus, metrics_port: int
) -> None:
    env, topic, group = fresh_worker_env(kafka_bootstrap, tmp_path)
    env["COMPUTEWATCH_WORKER_METRICS_PORT"] = str(metrics_port)
    config = FleetConfig(tenants=4, rate=10.0, hours=0.25, seed=5, start=T0)
    events = [e for batch in simulate(config) for e in batch.to_events()]
    sent = [(e.tenant_id.encode(), encode_event(e)) for e in events]
    sent += sent[:40]  # sent twice: duplicates
    sent += [(None, value) for value in INVALID]
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        produce(kafka_bootstrap, topic, sent)
        wait_consumed(worker, kafka_bootstrap, group, topic)
        prometheus.wait_for("sum(computewatch_messages_total)", len(sent))
        counted = {
            outcome: prometheus.value(f'computewatch_events_total{{outcome="{outcome}"}}')
            for outcome in ("valid", "duplicate", "dead_letter")
        }
        assert counted == {"valid": len(events), "duplicate": 40, "dead_letter": len(INVALID)}
        assert prometheus.value("sum(computewatch_dead_letters_total)") == len(INVALID)
        assert prometheus.value('up{job="computewatch"}') == 1
        assert prometheus.value(f'sum(computewatch_partition_lag{{topic="{topic}"}})') == 0
        rules = prometheus.api("/api/v1/rules")["groups"]
        loaded = {rule["name"] for group in rules for rule in group["rules"]}
        groups = yaml.safe_load(RULES.read_text())["groups"]
        assert loaded == {rule["alert"] for group in groups for rule in group["rules"]}
        empty = [
            panel["title"]
            for panel in json.loads(DASHBOARD.read_text())["panels"]
            for target in panel["targets"]
            if not prometheus.api("/api/v1/query", query=target["expr"])["result"]
        ]
        assert empty == [], "dashboard panels without series"
    finally:
        stop_worker(worker, log)
    [[stored]] = query(env, "SELECT count() FROM events")
    [[dead]] = query(env, "SELECT count() FROM dead_letters")
    assert (stored, dead) == (counted["valid"], counted["dead_letter"])


def test_the_alert_rules_pass_promtool() -> None:
    prometheus_binary()
    promtool = shutil.which("promtool")
    assert promtool is not None, "Debian's prometheus package ships promtool"
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
