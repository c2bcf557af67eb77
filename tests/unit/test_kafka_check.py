"""check_reachable without a broker: refused ports, silent listeners, unusable CA files."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import KafkaSettings
from pipeline.kafka_check import KafkaUnreachable, check_reachable
from pipeline.kafka_options import KafkaConfigError


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """``host:port`` of a socket that accepts connections (the kernel's backlog) and never
    says a word: a TLS handshake with it can only time out."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_a_refused_port_is_said_with_what_to_do() -> None:
    server = closed_port()
    with pytest.raises(KafkaUnreachable) as raised:
        check_reachable(KafkaSettings(bootstrap=server), timeout_s=1)
    assert str(raised.value) == (
        f"cannot reach Kafka at {server} (Connection refused): start it, or set "
        "COMPUTEWATCH_KAFKA_BOOTSTRAP"
    )


def test_the_first_server_that_answers_is_enough(silent_listener: str) -> None:
    settings = KafkaSettings(bootstrap=f"{closed_port()},{silent_listener}")
    assert check_reachable(settings, timeout_s=1) == silent_listener


def test_a_silent_tls_listener_times_out_within_the_timeout(silent_listener: str) -> None:
    settings = KafkaSettings(bootstrap=silent_listener, security_protocol="SSL")
    started = time.monotonic()
    with pytest.raises(KafkaUnreachable, match=r"did not answer the TLS handshake within 0\.5 s"):
        check_reachable(settings, timeout_s=0.5)
    assert time.monotonic() - started < 2


def test_every_failure_is_counted_in_one_line() -> None:
    first, second = closed_port(), closed_port()
    with pytest.raises(KafkaUnreachable) as raised:
        check_reachable(KafkaSettings(bootstrap=f"{first},{second}"), timeout_s=1)
    message = str(raised.value)
    assert message.startswith(f"cannot reach Kafka at {first} ") and "\n" not in message
    assert message.endswith("(and 1 more bootstrap servers)")


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "No such file or directory"), ("not a certificate\n", "no PEM certificate in it")],
)
def test_an_unusable_ca_file_is_a_setting_error(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    cafile = tmp_path / "ca.pem"
    if content is not None:
        cafile.write_text(content)
    settings = KafkaSettings(security_protocol="SSL", ssl_cafile=str(cafile))
    with pytest.raises(KafkaConfigError) as raised:
        check_reachable(settings)
    assert str(raised.value).startswith(f"COMPUTEWATCH_KAFKA_SSL_CAFILE: cannot read {cafile} (")
    assert reason in str(raised.value)


def test_the_worker_refuses_an_unusable_ca_file_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    result = CliRunner().invoke(app, ["worker"], env={
        "COMPUTEWATCH_KAFKA_SECURITY_PROTOCOL": "SSL",
        "COMPUTEWATCH_KAFKA_SSL_CAFILE": str(missing),
        "COMPUTEWATCH_CLICKHOUSE_URL": f"chdb://{tmp_path / 'store'}",
    })  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        f"error: COMPUTEWATCH_KAFKA_SSL_CAFILE: cannot read {missing} (No such file or "
        "directory); name the PEM file of the CA that signed the broker's certificate"
    ]
    assert not (tmp_path / "store").exists()


def test_the_worker_refuses_an_unreachable_broker_in_one_line(tmp_path: Path) -> None:
    server = closed_port()
    result = CliRunner().invoke(app, ["worker", "--kafka-bootstrap", server], env={
        "COMPUTEWATCH_CLICKHOUSE_URL": f"chdb://{tmp_path / 'store'}",
    })  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        f"error: cannot reach Kafka at {server} (Connection refused): start it, or set "
        "COMPUTEWATCH_KAFKA_BOOTSTRAP"
    ]
