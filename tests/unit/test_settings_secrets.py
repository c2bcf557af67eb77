"""Secrets in the settings object: from the environment or a mounted file, never shown.

``pipeline.config`` is the only reader of the environment; these tests set ``COMPUTEWATCH_*``
variables and check what :class:`Settings` makes of them, what its ``repr``, dumps and
validation errors show, and what the Kafka options and the dashboard's connection receive.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import ClickHouseSettings, KafkaSettings, Settings
from pipeline.kafka_options import aiokafka_options, faust_credentials, kafka_python_options

CH_SECRET = "ch-Zq9-s3cret"
SASL_SECRET = "sasl-Zq9-s3cret"
DASH_SECRET = "dash-Zq9-s3cret"
SECRETS = (CH_SECRET, SASL_SECRET, DASH_SECRET)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No COMPUTEWATCH_* from the outer environment (a test broker's SASL variables, say)."""
    for name in list(os.environ):
        if name.startswith("COMPUTEWATCH_"):
            monkeypatch.delenv(name)
    yield


def secret_file(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content)
    path.chmod(0o600)
    return path


def shown(settings: Settings) -> str:
    """Everything a log line or an error could print of the settings."""
    return " ".join([repr(settings), str(settings), str(settings.model_dump()),
                     settings.model_dump_json(), repr(settings.dashboard_clickhouse())])


def test_passwords_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPUTEWATCH_CLICKHOUSE_PASSWORD_FILE",
                       str(secret_file(tmp_path, "ch", CH_SECRET + "\n")))
    monkeypatch.setenv("COMPUTEWATCH_KAFKA_SASL_PASSWORD_FILE",
                       str(secret_file(tmp_path, "sasl", SASL_SECRET + "\r\n")))
    monkeypatch.setenv("COMPUTEWATCH_DASHBOARD_CLICKHOUSE_USERNAME", "cw_dashboard")
    monkeypatch.setenv("COMPUTEWATCH_DASHBOARD_CLICKHOUSE_PASSWORD_FILE",
                       str(secret_file(tmp_path, "dash", DASH_SECRET)))
    settings = Settings()
    assert settings.clickhouse.password.get_secret_value() == CH_SECRET
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == SASL_SECRET
    dashboard = settings.dashboard_clickhouse()
    assert (dashboard.username, dashboard.password.get_secret_value()) == ("cw_dashboard",
                                                                            DASH_SECRET)
    assert (dashboard.url, dashboard.database) == (settings.clickhouse.url,
                                                   settings.clickhouse.database)
    assert not any(secret in shown(settings) for secret in SECRETS)


def test_passwords_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPUTEWATCH_CLICKHOUSE_PASSWORD", CH_SECRET)
    monkeypatch.setenv("COMPUTEWATCH_KAFKA_SASL_PASSWORD", SASL_SECRET)
    monkeypatch.setenv("COMPUTEWATCH_DASHBOARD_CLICKHOUSE_USERNAME", "cw_dashboard")
    monkeypatch.setenv("COMPUTEWATCH_DASHBOARD_CLICKHOUSE_PASSWORD", DASH_SECRET)
    settings = Settings()
    assert settings.clickhouse.password.get_secret_value() == CH_SECRET
    assert settings.dashboard_clickhouse().password.get_secret_value() == DASH_SECRET
    assert "**********" in repr(settings)
    assert not any(secret in shown(settings) for secret in SECRETS)


def test_without_dashboard_credentials_the_dashboard_uses_the_main_user() -> None:
    settings = Settings(clickhouse=ClickHouseSettings(username="ops", password=CH_SECRET))
    assert settings.dashboard_clickhouse() is settings.clickhouse


@pytest.mark.parametrize("section", ["CLICKHOUSE_PASSWORD", "KAFKA_SASL_PASSWORD",
                                     "DASHBOARD_CLICKHOUSE_PASSWORD"])
def test_a_password_and_a_password_file_together_are_refused(
    section: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPUTEWATCH_DASHBOARD_CLICKHOUSE_USERNAME", "cw_dashboard")
    monkeypatch.setenv(f"COMPUTEWATCH_{section}", CH_SECRET)
    monkeypatch.setenv(f"COMPUTEWATCH_{section}_FILE",
                       str(secret_file(tmp_path, "s", SASL_SECRET)))
    with pytest.raises(ValidationError, match=f"both COMPUTEWATCH_{section} and") as refused:
        Settings()
    assert CH_SECRET not in str(refused.value) and SASL_SECRET not in str(refused.value)


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read .*: No such file"), ("", "is empty"), ("\n", "is empty"),
    (b"\xff\xfe", "not UTF-8 text"),
])
def test_an_unusable_password_file_is_refused_by_name(
    content: str | bytes | None, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ch_password"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    monkeypatch.setenv("COMPUTEWATCH_CLICKHOUSE_PASSWORD_FILE", str(path))
    with pytest.raises(ValidationError,
                       match=f"COMPUTEWATCH_CLICKHOUSE_PASSWORD_FILE: .*{message}"):
        Settings()


def test_a_dashboard_password_needs_a_dashboard_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPUTEWATCH_DASHBOARD_CLICKHOUSE_PASSWORD", DASH_SECRET)
    with pytest.raises(ValidationError, match="without COMPUTEWATCH_DASHBOARD_CLICKHOUSE_USER"):
        Settings()


def test_the_users_mode_needs_a_users_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPUTEWATCH_DASHBOARD_AUTH", "users")
    with pytest.raises(ValidationError, match="needs COMPUTEWATCH_DASHBOARD_USERS_FILE"):
        Settings()
    monkeypatch.setenv("COMPUTEWATCH_DASHBOARD_AUTH", "anyone")
    with pytest.raises(ValidationError, match="dashboard_auth"):
        Settings()


def test_validation_errors_elsewhere_do_not_print_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPUTEWATCH_CLICKHOUSE_PASSWORD", CH_SECRET)
    monkeypatch.setenv("COMPUTEWATCH_CLICKHOUSE_BATCH_ROWS", "0")
    monkeypatch.setenv("COMPUTEWATCH_KAFKA_SASL_PASSWORD", SASL_SECRET)
    monkeypatch.setenv("COMPUTEWATCH_KAFKA_PARTITIONS", "0")
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "batch_rows" in str(refused.value) and "partitions" in str(refused.value)
    assert CH_SECRET not in str(refused.value) and SASL_SECRET not in str(refused.value)
    result = CliRunner().invoke(app, ["migrate"])  # the CLI's one-line error
    assert result.exit_code == 2 and "invalid COMPUTEWATCH_* setting" in result.output
    assert CH_SECRET not in result.output and SASL_SECRET not in result.output


def test_the_sasl_password_file_reaches_every_kafka_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPUTEWATCH_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("COMPUTEWATCH_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("COMPUTEWATCH_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("COMPUTEWATCH_KAFKA_SASL_PASSWORD_FILE",
                       str(secret_file(tmp_path, "sasl", SASL_SECRET + "\n")))
    kafka = Settings().kafka
    assert kafka_python_options(kafka)["sasl_plain_password"] == SASL_SECRET
    options = aiokafka_options(kafka)
    assert options["sasl_plain_password"] == SASL_SECRET and "ssl_context" in options
    credentials = faust_credentials(kafka)
    assert credentials is not None and credentials.password == SASL_SECRET  # type: ignore[attr-defined]
    assert SASL_SECRET not in repr(kafka)


def test_files_are_read_when_settings_are_built_directly_too(tmp_path: Path) -> None:
    """Constructed in code (tests, flags), the same rules apply as from the environment."""
    path = secret_file(tmp_path, "ch", CH_SECRET + "\n")
    assert ClickHouseSettings(password_file=path).password.get_secret_value() == CH_SECRET
    kafka = KafkaSettings(sasl_password_file=path)
    assert kafka.sasl_password is not None and kafka.sasl_password.get_secret_value() == CH_SECRET
    with pytest.raises(ValidationError, match="both"):
        ClickHouseSettings(password=SecretStr("other"), password_file=path)
