"""Settings: the only code in computewatch that reads the environment.

Every variable is ``COMPUTEWATCH_<SECTION>_<FIELD>``, e.g. ``COMPUTEWATCH_KAFKA_BOOTSTRAP`` or
``COMPUTEWATCH_CLICKHOUSE_URL``. Build one :class:`Settings` at a composition root (CLI, Faust
app, dashboard data module) and pass it down.

>>> s = Settings(kafka={"bootstrap": "127.0.0.1:9092"})
>>> s.kafka.events_topic
'compute.events'
>>> s.clickhouse.url
'chdb://./data/clickhouse'

Secrets are :class:`~pydantic.SecretStr` (``repr`` and ``str`` show ``**********``) and may come
from a file instead of the environment, as container secrets are mounted: each ``*_PASSWORD``
has a ``*_PASSWORD_FILE`` twin (``COMPUTEWATCH_CLICKHOUSE_PASSWORD_FILE``,
``COMPUTEWATCH_KAFKA_SASL_PASSWORD_FILE``, ``COMPUTEWATCH_DASHBOARD_CLICKHOUSE_PASSWORD_FILE``;
the receiver's ``COMPUTEWATCH_INGEST_TOKEN`` has ``COMPUTEWATCH_INGEST_TOKEN_FILE``)
whose file is read here, once, with one trailing newline dropped. Giving both is an error.

>>> ClickHouseSettings(password="s3cret")
ClickHouseSettings(url='chdb://./data/clickhouse', ..., password=SecretStr('**********'), ...)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def read_secret_file(path: Path, variable: str) -> SecretStr:
    """The secret in ``path``, one trailing newline dropped; errors name the file, not its text."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"{variable}: cannot read {path}: {reason}") from None
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise ValueError(f"{variable}: {path} is empty")
    return SecretStr(secret)


def _from_file(
    value: SecretStr | None, path: Path | None, variable: str
) -> SecretStr | None:
    """``value``, or the secret in ``path`` when a file is named (giving both is an error)."""
    if path is None:
        return value
    if value is not None and value.get_secret_value():
        raise ValueError(
            f"both {variable} and {variable}_FILE are set; keep one (the file is preferred)"
        )
    return read_secret_file(path, f"{variable}_FILE")


class KafkaSettings(BaseModel):
    bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "compute.events"
    alerts_topic: str = "compute.alerts"
    dlq_topic: str = "compute.events.dlq"
    # what producers key events by (so which partition each goes to): the contract's tenant_id,
    # or api_key_id to spread a fleet whose traffic a few tenants dominate (README: scale-out)
    message_key: Literal["tenant_id", "api_key_id"] = "tenant_id"
    # stage 1 -> the fleet stage (one partition); by default one per consumer group, so two
    # deployments (or benchmarks) on one broker never read each other's minutes
    minutes_topic: str = ""
    norms_topic: str = ""  # the fleet stage -> every worker: merged context norms
    partitions: int = Field(4, ge=1)
    consumer_group: str = "computewatch"
    session_timeout_s: float = Field(15.0, gt=0)  # a crashed worker's partitions move after this
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None  # read into sasl_password (container secrets)
    ssl_cafile: str | None = None

    @model_validator(mode="after")
    def _minutes_topic_of_group(self) -> Self:
        self.minutes_topic = self.minutes_topic or f"{self.consumer_group}.minutes"
        self.norms_topic = self.norms_topic or f"{self.consumer_group}.norms"
        return self

    @model_validator(mode="after")
    def _sasl_password_from_file(self) -> Self:
        self.sasl_password = _from_file(
            self.sasl_password, self.sasl_password_file, "COMPUTEWATCH_KAFKA_SASL_PASSWORD"
        )
        return self


class ClickHouseSettings(BaseModel):
    url: str = "chdb://./data/clickhouse"
    database: str = "computewatch"
    username: str = "default"
    password: SecretStr = SecretStr("")
    password_file: Path | None = None  # read into password (container secrets)
    events_ttl_days: int = Field(400, ge=1)
    batch_rows: int = Field(20_000, ge=1)
    batch_seconds: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _password_from_file(self) -> Self:
        password = _from_file(
            self.password, self.password_file, "COMPUTEWATCH_CLICKHOUSE_PASSWORD"
        )
        self.password = password or SecretStr("")
        return self


class WorkerSettings(BaseModel):
    max_message_bytes: int = Field(64 * 1024, ge=1024)
    allowed_lateness_s: float = Field(120.0, ge=0)
    dedupe_max_ids: int = Field(1_000_000, ge=1)
    max_entities: int = Field(200_000, ge=100)
    alert_cooldown_s: float = Field(600.0, ge=0)
    webhook_url: str | None = None
    webhook_min_severity: Literal["low", "medium", "high", "critical"] = "medium"
    future_horizon_s: float = Field(3600.0, gt=0)  # events further ahead of event time wait
    data_dir: Path = Path("data/worker")  # Faust's state, in a subdirectory per consumer group
    metrics_port: int | None = Field(None, ge=1, le=65535)  # Prometheus metrics, if set
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 for a scraper on another host or container
    # after SIGTERM or SIGINT, the worker exits by itself if it has not stopped by then (exit
    # code 75): as SIGKILL, this loses and duplicates nothing (pipeline.stream.run_worker)
    stop_timeout_s: float = Field(30.0, gt=0)


class IngestSettings(BaseModel):
    """``computewatch ingest otlp``: where it listens, who may send, and how much at once."""

    host: str = "127.0.0.1"
    port: int = Field(4318, ge=0, le=65535)  # the OTLP/HTTP port; 0 picks a free one
    token: SecretStr | None = None  # required as "Authorization: Bearer <token>" when set
    token_file: Path | None = None  # read into token (container secrets)
    mapping_file: Path | None = None  # TOML: see pipeline/ingest/mapping.py
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)  # after gzip is undone, too
    max_spans: int = Field(10_000, ge=1)  # per export request
    delivery_timeout_s: float = Field(30.0, gt=0)  # Kafka acknowledgement per request
    metrics_port: int | None = Field(None, ge=1, le=65535)  # Prometheus metrics, if set
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 for a scraper on another host or container

    @model_validator(mode="after")
    def _token_from_file(self) -> Self:
        self.token = _from_file(self.token, self.token_file, "COMPUTEWATCH_INGEST_TOKEN")
        return self


class BudgetSettings(BaseModel):
    """Budgets (``pipeline/budgets.py``): the TOML file that seeds them, and when they alert."""

    file: Path | None = None  # TOML: [[budget]] tables; seeds the ClickHouse budgets table
    thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.8, 1.0])  # of the budget
    forecast: bool = True  # also alert when the period's projected spend runs out the budget
    refresh_s: float = Field(30.0, gt=0)  # the worker re-reads the budgets table this often

    @model_validator(mode="after")
    def _thresholds_sorted(self) -> Self:
        if not self.thresholds or any(not 0 < t <= 10 for t in self.thresholds):
            raise ValueError(
                "COMPUTEWATCH_BUDGETS_THRESHOLDS: fractions in (0, 10], e.g. [0.5, 0.8, 1.0]"
            )
        self.thresholds = sorted(set(self.thresholds))
        return self


class PriceSettings(BaseModel):
    """Per-model prices. A request costs ``gpu_ms / 3.6e6 * gpu_hour_usd`` plus token prices."""

    gpu_hour_usd: float = Field(2.5, ge=0)
    per_1k_prompt_usd: float = Field(0.0, ge=0)
    per_1k_output_usd: float = Field(0.0, ge=0)


class Settings(BaseSettings):
    """All of computewatch's configuration, from ``COMPUTEWATCH_*`` variables and flags."""

    model_config = SettingsConfigDict(
        env_prefix="COMPUTEWATCH_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
        hide_input_in_errors=True,  # errors name the setting; a short secret is not truncated
    )

    kafka: KafkaSettings = KafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    worker: WorkerSettings = WorkerSettings()
    ingest: IngestSettings = IngestSettings()
    budgets: BudgetSettings = BudgetSettings()
    prices: dict[str, PriceSettings] = Field(default_factory=dict)
    default_price: PriceSettings = PriceSettings()
    dashboard_port: int = Field(8501, ge=1, le=65535)
    dashboard_host: str = "127.0.0.1"  # 0.0.0.0 inside a container whose port is published
    # The dashboard's own ClickHouse user (server mode; see schemas/clickhouse/roles/): when
    # set, the dashboard connects as this user instead of COMPUTEWATCH_CLICKHOUSE_USERNAME.
    dashboard_clickhouse_username: str | None = None
    dashboard_clickhouse_password: SecretStr | None = None
    dashboard_clickhouse_password_file: Path | None = None
    # Who may look (dashboards/access.py): unset or "auto" = Streamlit OIDC when secrets.toml
    # has an [auth] section, else the users file when set, else the open local-operator mode.
    dashboard_auth: Literal["auto", "oidc", "users", "none"] | None = None
    dashboard_users_file: Path | None = None

    @model_validator(mode="after")
    def _dashboard_credentials(self) -> Self:
        self.dashboard_clickhouse_password = _from_file(
            self.dashboard_clickhouse_password,
            self.dashboard_clickhouse_password_file,
            "COMPUTEWATCH_DASHBOARD_CLICKHOUSE_PASSWORD",
        )
        if self.dashboard_clickhouse_password and not self.dashboard_clickhouse_username:
            raise ValueError(
                "COMPUTEWATCH_DASHBOARD_CLICKHOUSE_PASSWORD is set without "
                "COMPUTEWATCH_DASHBOARD_CLICKHOUSE_USERNAME"
            )
        if self.dashboard_auth == "users" and self.dashboard_users_file is None:
            raise ValueError(
                "COMPUTEWATCH_DASHBOARD_AUTH=users needs COMPUTEWATCH_DASHBOARD_USERS_FILE"
            )
        return self

    def dashboard_clickhouse(self) -> ClickHouseSettings:
        """The ClickHouse settings the dashboard connects with: its own user when one is set.

        >>> s = Settings(dashboard_clickhouse_username="viewer",
        ...              dashboard_clickhouse_password="pw")
        >>> ch = s.dashboard_clickhouse()
        >>> ch.username, ch.password.get_secret_value(), s.clickhouse.username
        ('viewer', 'pw', 'default')
        """
        if not self.dashboard_clickhouse_username:
            return self.clickhouse
        return self.clickhouse.model_copy(update={
            "username": self.dashboard_clickhouse_username,
            "password": self.dashboard_clickhouse_password or SecretStr(""),
            "password_file": None,
        })

    def price_for(self, model: str) -> PriceSettings:
        return self.prices.get(model, self.default_price)
