"""The emitter and the worker over the broker's SASL_SSL listener, configured only through the
settings object (``COMPUTEWATCH_KAFKA_SECURITY_PROTOCOL=SASL_SSL``, ``_SASL_*``, ``_SSL_CAFILE``).

Needs ``scripts/kafka.sh start --ssl`` and the variables it prints (``kafka_ssl_settings``): its
broker certificate is signed by a CA that kafka.sh made with openssl. A wrong CA is one these
tests make with openssl. The plaintext listener of the same broker is used only by the tests
themselves, to produce events, read topics and the consumer group's offsets.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from msgspec.structs import replace

from pipeline.config import KafkaSettings
from pipeline.events import encode_event, example_event, parse_event
from pipeline.kafka_check import KafkaUnreachable, check_reachable
from pipeline.producer import TelemetryEmitter
from pipeline.simulate import FleetConfig, simulate
from tests.fixtures.kafka import committed_total, consume_all, unique_topic_name
from tests.integration.test_worker_kafka import (
    T0,
    produce,
    query,
    start_worker,
    stop_worker,
    wait_consumed,
    worker_env,
)

pytestmark = pytest.mark.kafka


def make_ca(directory: Path) -> Path:
    """A CA certificate (PEM) of our own, made with openssl: it signed nothing the broker has."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-new", "-noenc", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:prime256v1", "-days", "1", "-subj", "/CN=another CA",
         "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.pem")],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return directory / "ca.pem"


def tls_worker_env(tls: KafkaSettings, tmp_path: Path, topic: str, group: str) -> dict[str, str]:
    """The worker's environment on the SASL_SSL listener; the variables kafka.sh printed are
    dropped first, so only what is set here configures the worker."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTEWATCH_KAFKA_")}
    assert tls.sasl_mechanism and tls.sasl_username and tls.sasl_password and tls.ssl_cafile
    return worker_env(tls.bootstrap, tmp_path, topic, group, inherited) | {
        "COMPUTEWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "COMPUTEWATCH_KAFKA_SASL_MECHANISM": tls.sasl_mechanism,
        "COMPUTEWATCH_KAFKA_SASL_USERNAME": tls.sasl_username,
        "COMPUTEWATCH_KAFKA_SASL_PASSWORD": tls.sasl_password.get_secret_value(),
        "COMPUTEWATCH_KAFKA_SSL_CAFILE": tls.ssl_cafile,
    }


def test_the_emitter_sends_over_sasl_ssl(
    kafka_ssl_settings: KafkaSettings, kafka_bootstrap: str, kafka_topic: str
) -> None:
    settings = kafka_ssl_settings.model_copy(update={"events_topic": kafka_topic})
    sent = {str(uuid.uuid4()) for _ in range(200)}
    with TelemetryEmitter(settings) as emitter:
        for event_id in sent:
            assert emitter.emit(replace(example_event(), event_id=event_id))
        assert emitter.flush(timeout=30), emitter.stats
    assert (emitter.stats.sent, emitter.stats.failed) == (200, 0)
    records = consume_all(kafka_bootstrap, kafka_topic, timeout=30)
    assert sorted(parse_event(r.value).event_id for r in records) == sorted(sent)


def test_the_worker_processes_events_over_sasl_ssl(
    kafka_ssl_settings: KafkaSettings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = FleetConfig(tenants=3, rate=4.0, hours=0.25, seed=3, start=T0)
    events = [e for batch in simulate(config) for e in batch.to_events()]
    topic, group = unique_topic_name("tls-events"), unique_topic_name("tls-group")
    produce(kafka_bootstrap, topic, [(e.tenant_id.encode(), encode_event(e)) for e in events])
    env = tls_worker_env(kafka_ssl_settings, tmp_path, topic, group)
    log = tmp_path / "worker.log"

    worker = start_worker(env, log)
    try:
        wait_consumed(worker, kafka_bootstrap, group, topic, timeout=60)
    finally:
        stop_worker(worker, log)

    [[rows, distinct]] = query(env, "SELECT count(), uniqExact(event_id) FROM events")
    assert (rows, distinct) == (len(events), len(events))
    text = log.read_text(errors="replace")
    assert "Authenticated as" in text and "CERTIFICATE_VERIFY_FAILED" not in text
    assert env["COMPUTEWATCH_KAFKA_SASL_PASSWORD"] not in text, "the password reached the log"


def test_a_wrong_ca_stops_the_worker_at_start_in_one_line(
    kafka_ssl_settings: KafkaSettings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group = unique_topic_name("tls-wrong-ca"), unique_topic_name("tls-wrong-ca-group")
    produce(kafka_bootstrap, topic, [(b"t", encode_event(example_event()))])
    wrong = make_ca(tmp_path / "other-ca")
    env = tls_worker_env(kafka_ssl_settings, tmp_path, topic, group)
    env["COMPUTEWATCH_KAFKA_SSL_CAFILE"] = str(wrong)
    log = tmp_path / "worker.log"

    started = time.monotonic()
    worker = start_worker(env, log)
    try:
        code = worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        pytest.fail("the worker kept running with a wrong CA:\n" + log.read_text()[-3000:])
    took = time.monotonic() - started

    lines = log.read_text(errors="replace").splitlines()
    assert code == 1, (code, lines)
    assert len(lines) == 1, lines  # one line, no traceback
    assert lines[0].startswith("error: the certificate of the Kafka broker at "), lines
    assert f"is not signed by a CA in {wrong}" in lines[0]
    assert lines[0].endswith("set COMPUTEWATCH_KAFKA_SSL_CAFILE to the CA that signed it")
    assert took < 15, f"the refusal took {took:.1f} s"
    assert committed_total(kafka_bootstrap, group) == 0, "a refused worker consumed the topic"
    assert not (tmp_path / "clickhouse").exists(), "a refused worker opened the store"


def test_a_wrong_ca_keeps_the_emitter_buffering_and_says_why(
    kafka_ssl_settings: KafkaSettings, kafka_topic: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    wrong = make_ca(tmp_path / "other-ca")
    settings = kafka_ssl_settings.model_copy(
        update={"events_topic": kafka_topic, "ssl_cafile": str(wrong)}
    )
    for message in why_the_emitter_buffers(settings, caplog, timeout_s=20):
        assert f"is not signed by a CA in {wrong}" in message, message
        assert "set COMPUTEWATCH_KAFKA_SSL_CAFILE to the CA that signed it" in message


def why_the_emitter_buffers(
    settings: KafkaSettings, caplog: pytest.LogCaptureFixture, timeout_s: float
) -> list[str]:
    """Emit 20 events to an emitter that cannot connect: emit() must not block, 10 are queued
    and none sent; what it logged at ERROR, once per attempt (it retries with backoff), once it
    said something or ``timeout_s`` passed (kafka-python's own records are left out)."""
    caplog.set_level(logging.ERROR, logger="pipeline.producer")

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name.startswith("pipeline.producer")]

    emitter = TelemetryEmitter(settings, queue_size=10)
    try:
        started = time.perf_counter()
        accepted = [emitter.emit(example_event()) for _ in range(20)]
        assert time.perf_counter() - started < 1.0, "emit() blocked"
        deadline = time.monotonic() + timeout_s
        while not said() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        emitter.close(timeout=0.5)
    assert accepted.count(True) == 10 and emitter.stats.sent == 0
    messages = said()
    assert messages, "nothing said why the emitter cannot connect"
    return messages


def test_a_plaintext_listener_is_named_as_not_tls(
    kafka_ssl_settings: KafkaSettings, kafka_bootstrap: str
) -> None:
    assert check_reachable(kafka_ssl_settings, timeout_s=5) == kafka_ssl_settings.bootstrap
    on_plaintext = kafka_ssl_settings.model_copy(update={"bootstrap": kafka_bootstrap})
    with pytest.raises(KafkaUnreachable, match="is it a TLS listener"):
        check_reachable(on_plaintext, timeout_s=5)
