"""The Faust worker on the broker's SASL/SCRAM listener, configured only through the settings
object (``COMPUTEWATCH_KAFKA_SECURITY_PROTOCOL`` and ``COMPUTEWATCH_KAFKA_SASL_*``).

Needs ``scripts/kafka.sh start --sasl`` and the variables it prints (``kafka_sasl_settings``).
The plaintext listener of the same broker is used only by the test itself, to produce the events
and to read the consumer group's offsets.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from pipeline.config import KafkaSettings
from pipeline.events import encode_event
from pipeline.kafka_check import KafkaUnreachable, check_reachable
from pipeline.simulate import FleetConfig, simulate
from tests.fixtures.kafka import committed_total, unique_topic_name
from tests.integration.test_tls_kafka import why_the_emitter_buffers
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


def sasl_worker_env(sasl: KafkaSettings, tmp_path: Path, topic: str, group: str) -> dict[str, str]:
    """The worker's environment with SASL settings.

    The variables ``scripts/kafka.sh`` printed are dropped first, so only what is set here
    configures the worker.
    """
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTEWATCH_KAFKA_")}
    assert sasl.sasl_mechanism and sasl.sasl_username and sasl.sasl_password
    return worker_env(sasl.bootstrap, tmp_path, topic, group, inherited) | {
        "COMPUTEWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "COMPUTEWATCH_KAFKA_SASL_MECHANISM": sasl.sasl_mechanism,
        "COMPUTEWATCH_KAFKA_SASL_USERNAME": sasl.sasl_username,
        "COMPUTEWATCH_KAFKA_SASL_PASSWORD": sasl.sasl_password.get_secret_value(),
    }


def test_worker_processes_events_through_the_sasl_listener(
    kafka_sasl_settings: KafkaSettings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = FleetConfig(tenants=3, rate=4.0, hours=0.25, seed=3, start=T0)
    events = [e for batch in simulate(config) for e in batch.to_events()]
    topic, group = unique_topic_name("sasl-events"), unique_topic_name("sasl-group")
    produce(kafka_bootstrap, topic, [(e.tenant_id.encode(), encode_event(e)) for e in events])
    env = sasl_worker_env(kafka_sasl_settings, tmp_path, topic, group)
    log = tmp_path / "worker.log"

    worker = start_worker(env, log)
    try:
        wait_consumed(worker, kafka_bootstrap, group, topic, timeout=60)
    finally:
        stop_worker(worker, log)

    [[rows, distinct]] = query(env, "SELECT count(), uniqExact(event_id) FROM events")
    assert (rows, distinct) == (len(events), len(events))
    text = log.read_text(errors="replace")
    assert "Authenticated as" in text and "SaslAuthenticationFailed" not in text
    assert env["COMPUTEWATCH_KAFKA_SASL_PASSWORD"] not in text, "the password reached the log"


def test_a_wrong_password_fails_clearly_and_processes_nothing(
    kafka_sasl_settings: KafkaSettings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic, group = unique_topic_name("sasl-denied"), unique_topic_name("sasl-denied-group")
    events = [
        e
        for batch in simulate(FleetConfig(tenants=2, rate=2.0, hours=0.05, seed=4, start=T0))
        for e in batch.to_events()
    ]
    produce(kafka_bootstrap, topic, [(e.tenant_id.encode(), encode_event(e)) for e in events])
    env = sasl_worker_env(kafka_sasl_settings, tmp_path, topic, group)
    wrong = "not-" + env.pop("COMPUTEWATCH_KAFKA_SASL_PASSWORD")
    secret = tmp_path / "sasl_password"  # a mounted secret, read through the settings object
    secret.write_text(wrong + "\n")
    env["COMPUTEWATCH_KAFKA_SASL_PASSWORD_FILE"] = str(secret)
    log = tmp_path / "worker.log"

    worker = start_worker(env, log)
    try:
        code = worker.wait(timeout=45)  # the worker gives up on the refused bootstrap and exits
    except subprocess.TimeoutExpired:
        stop_worker(worker, log)
        pytest.fail(
            "the worker kept running with refused credentials:\n"
            + log.read_text(errors="replace")[-3000:]
        )
    text = log.read_text(errors="replace")
    assert code != 0, f"the refused worker exited with {code}"
    assert "SaslAuthenticationFailed" in text and "invalid credentials" in text, text[-3000:]
    assert "SCRAM-SHA-256" in text
    assert wrong not in text, "the password reached the log"
    assert committed_total(kafka_bootstrap, group) == 0, "a refused worker consumed the topic"
    assert not (tmp_path / "clickhouse").exists(), "a refused worker opened the store"


def test_the_startup_check_logs_in_and_names_a_refused_login(
    kafka_sasl_settings: KafkaSettings,
) -> None:
    assert check_reachable(kafka_sasl_settings, timeout_s=5) == kafka_sasl_settings.bootstrap
    wrong = kafka_sasl_settings.model_copy(update={"sasl_password": SecretStr("not-the-password")})
    for _ in range(5):  # the broker's answer, every time (the clients' bootstrap can lose it)
        with pytest.raises(KafkaUnreachable) as refused:
            check_reachable(wrong, timeout_s=5)
        message = str(refused.value)
        assert "refused the SASL SCRAM-SHA-256 login" in message, message
        assert "invalid credentials" in message and "COMPUTEWATCH_KAFKA_SASL_PASSWORD" in message
        assert "not-the-password" not in message and "\n" not in message


def test_the_startup_check_names_a_mechanism_or_listener_without_sasl(
    kafka_sasl_settings: KafkaSettings, kafka_bootstrap: str
) -> None:
    plain = kafka_sasl_settings.model_copy(update={"sasl_mechanism": "PLAIN"})
    with pytest.raises(KafkaUnreachable, match=r"does not offer SASL PLAIN .*SASL_MECHANISM"):
        check_reachable(plain, timeout_s=5)
    on_plaintext = kafka_sasl_settings.model_copy(update={"bootstrap": kafka_bootstrap})
    with pytest.raises(KafkaUnreachable, match="takes no SASL login on this listener"):
        check_reachable(on_plaintext, timeout_s=5)


def test_a_wrong_password_keeps_the_emitter_buffering_and_says_why(
    kafka_sasl_settings: KafkaSettings, kafka_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-password"
    settings = kafka_sasl_settings.model_copy(
        update={"events_topic": kafka_topic, "sasl_password": SecretStr(wrong)}
    )
    for message in why_the_emitter_buffers(settings, caplog, timeout_s=30):
        assert "refused the SASL SCRAM-SHA-256 login" in message, message
        assert "invalid credentials" in message and wrong not in message
