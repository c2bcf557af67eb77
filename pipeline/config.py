"""Settings: the only code in computewatch that reads the environment.

Every variable is ``COMPUTEWATCH_<SECTION>_<FIELD>``, e.g. ``COMPUTEWATCH_KAFKA_BOOTSTRAP`` or
``COMPUTEWATCH_CLICKHOUSE_URL``. Build one :class:`Settings` at a composition root (CLI, Faust
app, dashboard data module) and pass it down.

>>> s = Settings(kafka={"bootstrap": "127.0.0.1:9092"})
>>> s.kafka.events_topic
'compute.events'
>>> s.clickhouse.url
'chdb://./data/clickhouse'
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseModel):
    bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "compute.events"
    alerts_topic: str = "compute.alerts"
    dlq_topic: str = "compute.events.dlq"
    partitions: int = Field(4, ge=1)
    consumer_group: str = "computewatch"
    session_timeout_s: float = Field(15.0, gt=0)  # a crashed worker's partitions move after this
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None


class ClickHouseSettings(BaseModel):
    url: str = "chdb://./data/clickhouse"
    database: str = "computewatch"
    username: str = "default"
    password: SecretStr = SecretStr("")
    events_ttl_days: int = Field(400, ge=1)
    batch_rows: int = Field(20_000, ge=1)
    batch_seconds: float = Field(1.0, gt=0)


class WorkerSettings(BaseModel):
    max_message_bytes: int = Field(64 * 1024, ge=1024)
    allowed_lateness_s: float = Field(120.0, ge=0)
    dedupe_max_ids: int = Field(1_000_000, ge=1)
    max_entities: int = Field(200_000, ge=100)
    alert_cooldown_s: float = Field(600.0, ge=0)
    webhook_url: str | None = None


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
    )

    kafka: KafkaSettings = KafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    worker: WorkerSettings = WorkerSettings()
    prices: dict[str, PriceSettings] = Field(default_factory=dict)
    default_price: PriceSettings = PriceSettings()
    dashboard_port: int = Field(8501, ge=1, le=65535)
    dashboard_host: str = "127.0.0.1"  # 0.0.0.0 inside a container whose port is published

    def price_for(self, model: str) -> PriceSettings:
        return self.prices.get(model, self.default_price)
