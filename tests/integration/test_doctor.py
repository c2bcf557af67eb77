"""``computewatch doctor`` against the real local broker and an embedded ClickHouse store.

Each test builds a deployment of its own on the shared broker (its own topics and consumer
group, named through the settings) and a fresh database on the session's chDB path, then breaks
one thing and expects exactly that line to fail.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from typer.testing import CliRunner, Result

from pipeline.cli import app
from pipeline.config import ClickHouseSettings, KafkaSettings
from pipeline.storage import connect
from pipeline.storage.migrations import SCHEMA_DIR, migrate
from pipeline.topics import expected_partitions
from tests.fixtures.kafka import unique_topic_name
from tests.integration.test_tls_kafka import make_ca

pytestmark = pytest.mark.kafka

PARTITIONS = 4


class Deployment:
    """Topics and a consumer group on the broker, named through ``COMPUTEWATCH_KAFKA_*``."""

    def __init__(self, bootstrap: str, admin: KafkaAdminClient) -> None:
        group = unique_topic_name("doctor-group")
        self.bootstrap = bootstrap
        self.admin = admin
        self.kafka = KafkaSettings(
            bootstrap=bootstrap,
            events_topic=unique_topic_name("doctor-events"),
            alerts_topic=unique_topic_name("doctor-alerts"),
            dlq_topic=unique_topic_name("doctor-dlq"),
            consumer_group=group,
            partitions=PARTITIONS,
        )
        self.env = {
            "COMPUTEWATCH_KAFKA_BOOTSTRAP": bootstrap,
            "COMPUTEWATCH_KAFKA_EVENTS_TOPIC": self.kafka.events_topic,
            "COMPUTEWATCH_KAFKA_ALERTS_TOPIC": self.kafka.alerts_topic,
            "COMPUTEWATCH_KAFKA_DLQ_TOPIC": self.kafka.dlq_topic,
            "COMPUTEWATCH_KAFKA_CONSUMER_GROUP": group,
            "COMPUTEWATCH_KAFKA_PARTITIONS": str(PARTITIONS),
        }

    def create_topics(self, *, leave_out: str | None = None) -> None:
        topics = [
            NewTopic(name, partitions, 1)
            for name, (_, partitions) in expected_partitions(self.kafka).items()
            if name != leave_out
        ]
        self.admin.create_topics(topics, timeout_ms=30_000, wait_for_metadata=True)

    def produce(self, topic: str, count: int) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        for i in range(count):
            producer.send(topic, key=f"tenant-{i % 7}".encode(), value=b"{}")
        producer.flush(30)
        producer.close()

    def commit_to_end(self, *topics: str) -> None:
        """Commit the group's offsets at the end of ``topics``: a worker that has caught up."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.kafka.consumer_group,
            enable_auto_commit=False,
        )
        try:
            tps = [
                TopicPartition(topic, p)
                for topic in topics
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            end = consumer.end_offsets(tps)
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, end[tp])
            consumer.commit()
        finally:
            consumer.close()

    def delete(self) -> None:
        names = list(expected_partitions(self.kafka))
        self.admin.delete_topics(names, timeout_ms=30_000, raise_errors=False)


@pytest.fixture
def deployment(kafka_bootstrap: str, kafka_admin: KafkaAdminClient) -> Iterator[Deployment]:
    made = Deployment(kafka_bootstrap, kafka_admin)
    yield made
    made.delete()


@pytest.fixture
def webhook() -> Iterator[str]:
    """A local receiver that answers GET with 405, as a POST-only hook does."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(405)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/secret-token"
    server.shutdown()
    server.server_close()


def store_env(clickhouse: ClickHouseSettings) -> dict[str, str]:
    return {
        "COMPUTEWATCH_CLICKHOUSE_URL": clickhouse.url,
        "COMPUTEWATCH_CLICKHOUSE_DATABASE": clickhouse.database,
    }


def doctor(env: dict[str, str], *args: str) -> tuple[Result, list[str], float]:
    started = time.monotonic()
    result = CliRunner().invoke(app, ["doctor", *args], env=env)
    took = time.monotonic() - started
    return result, result.stdout.splitlines(), took


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_a_good_deployment_is_ok_on_every_line(
    deployment: Deployment, clickhouse_client: Client, clickhouse_settings: ClickHouseSettings,
    webhook: str,
) -> None:  # fmt: skip
    deployment.create_topics()
    deployment.produce(deployment.kafka.events_topic, 50)
    deployment.commit_to_end(deployment.kafka.events_topic, deployment.kafka.minutes_topic)
    env = deployment.env | store_env(clickhouse_settings)
    env["COMPUTEWATCH_WORKER_WEBHOOK_URL"] = webhook

    result, lines, took = doctor(env)

    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in lines] == ["ok"] * len(lines), lines
    subjects = [line[6:].split(": ", 1)[0] for line in lines]
    kafka = deployment.kafka
    assert subjects == [
        "kafka",
        *(f"topic {name}" for name in expected_partitions(kafka)),
        f"consumer group {kafka.consumer_group} on {kafka.events_topic}",
        f"consumer group {kafka.consumer_group} on {kafka.minutes_topic}",
        f"clickhouse {clickhouse_settings.url}",
        webhook.rsplit("/services", 1)[0].replace("http:", "webhook http:"),
    ]
    assert f"topic {kafka.events_topic}: 4 partitions (events)" in lines[1]
    assert "lag 0 messages over 4 partitions, 0 members" in lines[6]
    assert "at schema version" in lines[8] and "the current one" in lines[8]
    assert "secret-token" not in result.output, "the hook's token was shown"
    assert result.stderr.strip() == f"{len(lines)} ok, 0 warn, 0 fail"
    assert took < 15, f"doctor took {took:.1f} s"


def test_a_missing_topic_fails_its_line_only(
    deployment: Deployment, clickhouse_client: Client, clickhouse_settings: ClickHouseSettings
) -> None:
    norms = deployment.kafka.norms_topic
    deployment.create_topics(leave_out=norms)
    deployment.commit_to_end(deployment.kafka.events_topic, deployment.kafka.minutes_topic)

    result, lines, _ = doctor(deployment.env | store_env(clickhouse_settings))

    assert result.exit_code == 1, result.output
    failed = [line for line in lines if not line.startswith("ok ")]
    assert failed == [
        f"fail  topic {norms}: missing (from the fleet stage): start `computewatch worker` once "
        "(it creates the topic), or create it with 1 partition"
    ]
    assert norms not in deployment.admin.list_topics(), "the doctor created the topic it checked"


def test_an_unmigrated_store_fails_and_says_to_migrate(
    deployment: Deployment, clickhouse_settings: ClickHouseSettings, tmp_path: Path
) -> None:
    deployment.create_topics()
    deployment.commit_to_end(deployment.kafka.events_topic, deployment.kafka.minutes_topic)
    older = tmp_path / "schema"  # the first three migrations only: an older computewatch's
    older.mkdir()
    for path in sorted(SCHEMA_DIR.glob("*.sql"))[:3]:
        shutil.copy(path, older)
    client = connect(clickhouse_settings, create_database=True)
    try:
        migrate(client, clickhouse_settings, schema_dir=older)
        result, lines, _ = doctor(deployment.env | store_env(clickhouse_settings))
    finally:
        client.command(f"DROP DATABASE IF EXISTS {clickhouse_settings.database}")
        client.close()

    assert result.exit_code == 1, result.output
    latest = len(list(SCHEMA_DIR.glob("*.sql")))
    assert [line for line in lines if not line.startswith("ok ")] == [
        f"fail  clickhouse {clickhouse_settings.url}: database {clickhouse_settings.database} "
        f"is at schema version 3, this computewatch needs {latest}: run `computewatch migrate`"
    ]


def test_an_unreachable_broker_fails_fast_and_the_store_is_still_checked(
    clickhouse_client: Client, clickhouse_settings: ClickHouseSettings
) -> None:
    server = closed_port()
    env = {"COMPUTEWATCH_KAFKA_BOOTSTRAP": server} | store_env(clickhouse_settings)

    result, lines, took = doctor(env, "--timeout", "1")

    assert result.exit_code == 1, result.output
    assert lines[0] == (
        f"fail  kafka: cannot reach Kafka at {server} (Connection refused): start it, or set "
        "COMPUTEWATCH_KAFKA_BOOTSTRAP"
    )
    assert [line.split()[0] for line in lines[1:]] == ["ok", "ok"], lines  # store, webhook
    assert took < 5, f"doctor took {took:.1f} s"


def test_a_silent_broker_fails_within_the_timeout(
    clickhouse_client: Client, clickhouse_settings: ClickHouseSettings
) -> None:
    with socket.socket() as silent:  # accepts (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        server = f"127.0.0.1:{silent.getsockname()[1]}"
        env = {"COMPUTEWATCH_KAFKA_BOOTSTRAP": server} | store_env(clickhouse_settings)
        result, lines, took = doctor(env, "--timeout", "1")

    assert result.exit_code == 1, result.output
    assert lines[0].startswith("fail  kafka: the broker accepts connections but no Kafka "
                               "session opened within 1 s")  # fmt: skip
    assert took < 6, f"doctor took {took:.1f} s"


def test_lag_and_an_idle_group_are_warnings(
    deployment: Deployment, clickhouse_client: Client, clickhouse_settings: ClickHouseSettings
) -> None:
    deployment.create_topics()
    deployment.commit_to_end(deployment.kafka.events_topic, deployment.kafka.minutes_topic)
    deployment.produce(deployment.kafka.events_topic, 30)

    result, lines, _ = doctor(deployment.env | store_env(clickhouse_settings), "--max-lag", "5")

    assert result.exit_code == 0, result.output  # a warning alone does not fail
    kafka = deployment.kafka
    assert [line for line in lines if not line.startswith("ok ")] == [
        f"warn  consumer group {kafka.consumer_group} on {kafka.events_topic}: lag 30 messages "
        "over 4 partitions, 0 members: no worker is consuming; start `computewatch worker`"
    ]


def test_doctor_checks_the_broker_over_sasl_ssl_with_the_configured_ca(
    kafka_ssl_settings: KafkaSettings, clickhouse_client: Client,
    clickhouse_settings: ClickHouseSettings, tmp_path: Path,
) -> None:  # fmt: skip
    assert kafka_ssl_settings.sasl_password and kafka_ssl_settings.ssl_cafile
    env = store_env(clickhouse_settings) | {
        "COMPUTEWATCH_KAFKA_BOOTSTRAP": kafka_ssl_settings.bootstrap,
        "COMPUTEWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "COMPUTEWATCH_KAFKA_SASL_MECHANISM": str(kafka_ssl_settings.sasl_mechanism),
        "COMPUTEWATCH_KAFKA_SASL_USERNAME": str(kafka_ssl_settings.sasl_username),
        "COMPUTEWATCH_KAFKA_SASL_PASSWORD": kafka_ssl_settings.sasl_password.get_secret_value(),
        "COMPUTEWATCH_KAFKA_SSL_CAFILE": kafka_ssl_settings.ssl_cafile,
        "COMPUTEWATCH_KAFKA_CONSUMER_GROUP": unique_topic_name("doctor-tls"),
    }
    _, lines, _ = doctor(env)
    assert lines[0] == (
        f"ok    kafka: 1 broker at {kafka_ssl_settings.bootstrap}, over SASL_SSL as "
        f"{kafka_ssl_settings.sasl_username} ({kafka_ssl_settings.sasl_mechanism})"
    )

    wrong = make_ca(tmp_path / "other-ca")
    result, lines, _ = doctor(env | {"COMPUTEWATCH_KAFKA_SSL_CAFILE": str(wrong)})
    assert result.exit_code == 1
    assert lines[0] == (
        f"fail  kafka: the certificate of the Kafka broker at {kafka_ssl_settings.bootstrap} "
        f"is not signed by a CA in {wrong} (unable to get local issuer certificate): set "
        "COMPUTEWATCH_KAFKA_SSL_CAFILE to the CA that signed it"
    )

    result, lines, _ = doctor(env | {"COMPUTEWATCH_KAFKA_SASL_PASSWORD": "wrong"}, "--timeout", "2")
    assert result.exit_code == 1
    assert lines[0].startswith(
        f"fail  kafka: Kafka at {kafka_ssl_settings.bootstrap} refused the SASL "
        f"{kafka_ssl_settings.sasl_mechanism} login of '{kafka_ssl_settings.sasl_username}' "
        "(SaslAuthenticationFailed: "
    ), lines[0]
    assert "invalid credentials" in lines[0] and "COMPUTEWATCH_KAFKA_SASL_PASSWORD" in lines[0]
    assert "wrong" not in lines[0]


def test_a_webhook_that_does_not_answer_fails_without_showing_its_path(
    deployment: Deployment, clickhouse_client: Client, clickhouse_settings: ClickHouseSettings
) -> None:
    deployment.create_topics()
    deployment.commit_to_end(deployment.kafka.events_topic, deployment.kafka.minutes_topic)
    hook = closed_port()
    env = deployment.env | store_env(clickhouse_settings)
    env["COMPUTEWATCH_WORKER_WEBHOOK_URL"] = f"http://{hook}/services/T0/B0/secret-token"

    result, lines, _ = doctor(env, "--timeout", "1")

    assert result.exit_code == 1, result.output
    assert [line for line in lines if not line.startswith("ok ")] == [
        f"fail  webhook http://{hook}: does not answer ([Errno 111] Connection refused): check "
        "COMPUTEWATCH_WORKER_WEBHOOK_URL"
    ]


def test_a_member_that_was_not_given_the_events_topic_is_a_warning(
    deployment: Deployment, clickhouse_client: Client, clickhouse_settings: ClickHouseSettings
) -> None:
    """A worker started before its events topic existed is in the group without reading it."""
    kafka = deployment.kafka
    deployment.create_topics()
    deployment.produce(kafka.events_topic, 12)
    member = KafkaConsumer(
        kafka.minutes_topic, bootstrap_servers=deployment.bootstrap, group_id=kafka.consumer_group
    )
    try:
        deadline = time.monotonic() + 30
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(timeout_ms=200)
        result, lines, _ = doctor(deployment.env | store_env(clickhouse_settings))
    finally:
        member.close()

    assert result.exit_code == 0, result.output
    assert [line for line in lines if not line.startswith("ok ")] == [
        f"warn  consumer group {kafka.consumer_group} on {kafka.events_topic}: lag 12 messages "
        "over 4 partitions, 1 member, 0 of 4 partitions assigned: restart the workers (one "
        "started before the topic existed never reads it)"
    ]


def test_an_embedded_store_held_by_another_process_is_a_warning(
    clickhouse_client: Client, clickhouse_settings: ClickHouseSettings
) -> None:
    """This test process holds the session's chDB path, as a running worker holds its store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTEWATCH_")}
    env |= store_env(clickhouse_settings) | {"COMPUTEWATCH_KAFKA_BOOTSTRAP": closed_port()}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "doctor", "--timeout", "1"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert done.returncode == 1 and lines[0].startswith("fail  kafka: cannot reach"), done
    assert lines[1] == (
        f"warn  clickhouse {clickhouse_settings.url}: another process (a running worker?) holds "
        "this embedded store, so its schema was not checked: run doctor while it is stopped, or "
        "use a ClickHouse server"
    )
