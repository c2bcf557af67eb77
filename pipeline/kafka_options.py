r"""Kafka client options from :class:`~pipeline.config.KafkaSettings`, in one place.

The settings name the connection once (bootstrap, security protocol, SASL, CA file); these helpers
turn them into the keyword arguments of kafka-python (the producer SDK) and aiokafka, and into
Faust's ``broker_credentials``. Secrets leave their ``SecretStr`` only here.

>>> from pipeline.config import KafkaSettings
>>> kafka_python_options(KafkaSettings(bootstrap="k1:9092, k2:9092"))
{'bootstrap_servers': ['k1:9092', 'k2:9092'], 'security_protocol': 'PLAINTEXT'}
>>> sasl = KafkaSettings(security_protocol="sasl_plaintext", sasl_mechanism="SCRAM-SHA-256",
...                      sasl_username="svc", sasl_password="s3cret")
>>> kafka_python_options(sasl)["sasl_plain_password"]
's3cret'
>>> try:
...     kafka_python_options(KafkaSettings(security_protocol="SASL_SSL"))
... except KafkaConfigError as exc:
...     print(exc)
SASL_SSL needs sasl_mechanism, sasl_username, sasl_password
>>> try:
...     ssl_context(KafkaSettings(security_protocol="SSL", ssl_cafile="/nonexistent/ca.pem"))
... except KafkaConfigError as exc:
...     print(str(exc).replace("; ", ";\n"))
COMPUTEWATCH_KAFKA_SSL_CAFILE: cannot read /nonexistent/ca.pem (No such file or directory);
name the PEM file of the CA that signed the broker's certificate
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, Final

from kafka.codec import has_lz4

from pipeline.config import KafkaSettings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaConfigError(ValueError):
    """Kafka settings that cannot make a working client (unknown protocol, missing credentials)."""


def _protocol(kafka: KafkaSettings) -> str:
    protocol = kafka.security_protocol.strip().upper()
    if protocol not in PROTOCOLS:
        raise KafkaConfigError(
            f"unknown security_protocol {kafka.security_protocol!r}; "
            f"use one of {', '.join(PROTOCOLS)}"
        )
    return protocol


def _sasl(kafka: KafkaSettings, protocol: str) -> dict[str, Any]:
    """SASL keyword arguments (the same names in kafka-python and aiokafka)."""
    missing = [
        name
        for name in ("sasl_mechanism", "sasl_username", "sasl_password")
        if not getattr(kafka, name)
    ]
    if missing:
        raise KafkaConfigError(f"{protocol} needs {', '.join(missing)}")
    assert kafka.sasl_mechanism is not None and kafka.sasl_password is not None
    mechanism = kafka.sasl_mechanism.strip().upper()
    if mechanism not in SASL_MECHANISMS:
        raise KafkaConfigError(
            f"unsupported sasl_mechanism {kafka.sasl_mechanism!r}; "
            f"use one of {', '.join(SASL_MECHANISMS)}"
        )
    return {
        "sasl_mechanism": mechanism,
        "sasl_plain_username": kafka.sasl_username,
        "sasl_plain_password": kafka.sasl_password.get_secret_value(),
    }


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """The TLS context every client verifies the broker with: the CA file's certificates (the
    system's when none is set), the broker's host name checked against its certificate.

    A CA file that cannot be read or holds no PEM certificate is a :class:`KafkaConfigError`.
    """
    cafile = kafka.ssl_cafile
    try:
        return ssl.create_default_context(cafile=cafile)
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            reason = f"no PEM certificate in it: {exc.reason or exc}"
        else:
            reason = exc.strerror or str(exc)
        raise KafkaConfigError(
            f"COMPUTEWATCH_KAFKA_SSL_CAFILE: cannot read {cafile} ({reason}); name the PEM file "
            "of the CA that signed the broker's certificate"
        ) from None


def bootstrap_servers(kafka: KafkaSettings) -> list[str]:
    """The comma-separated bootstrap setting as a list of ``host:port``."""
    servers = [part.strip() for part in kafka.bootstrap.split(",") if part.strip()]
    if not servers:
        raise KafkaConfigError("bootstrap is empty; set COMPUTEWATCH_KAFKA_BOOTSTRAP=host:port")
    return servers


def kafka_python_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection keyword arguments for kafka-python clients (producer, consumer, admin).

    SASL fields are used only with a ``SASL_*`` protocol and the CA file only with ``*SSL``
    (read here once, so an unusable file is refused before a client starts).
    """
    protocol = _protocol(kafka)
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(kafka),
        "security_protocol": protocol,
    }
    if protocol.startswith("SASL_"):
        options.update(_sasl(kafka, protocol))
    if protocol.endswith("SSL") and kafka.ssl_cafile:
        ssl_context(kafka)
        options["ssl_cafile"] = kafka.ssl_cafile
    return options


def default_compression() -> str:
    """``lz4`` when the lz4 package is importable (fast, cheap on CPU), else ``gzip``."""
    return "lz4" if has_lz4() else "gzip"


def kafka_python_producer_options(
    kafka: KafkaSettings,
    *,
    linger_ms: int = 20,
    batch_size: int = 256 * 1024,
    compression: str | None = None,
    client_id: str = "computewatch-emitter",
) -> dict[str, Any]:
    """kafka-python producer arguments: connection from settings, idempotent, batched, compressed.

    ``bootstrap_timeout_ms`` is short so a connection attempt to an absent broker gives up soon
    (the emitter retries with backoff); ``max_block_ms`` bounds metadata waits in ``send()``.
    """
    return {
        **kafka_python_options(kafka),
        "client_id": client_id,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": linger_ms,
        "batch_size": batch_size,
        "compression_type": compression or default_compression(),
        "bootstrap_timeout_ms": 5_000,
        "max_block_ms": 10_000,
        "reconnect_backoff_max_ms": 5_000,
    }


def aiokafka_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection keyword arguments for aiokafka clients (what the Faust worker runs on).

    aiokafka takes an ``ssl.SSLContext`` rather than a CA file; one is built for ``*SSL``.
    """
    protocol = _protocol(kafka)
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(kafka),
        "security_protocol": protocol,
    }
    if protocol.startswith("SASL_"):
        options.update(_sasl(kafka, protocol))
    if protocol.endswith("SSL"):
        options["ssl_context"] = ssl_context(kafka)
    return options


def faust_credentials(kafka: KafkaSettings) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for the settings; ``None`` for plain ``PLAINTEXT``.

    Faust derives the protocol from the credentials: SASL with an SSL context is ``SASL_SSL``.
    faust is imported here only, so the producer SDK does not pull it in.
    """
    from faust.auth import SASLCredentials, SSLCredentials

    options = aiokafka_options(kafka)
    protocol = options["security_protocol"]
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return SSLCredentials(options["ssl_context"])
    return SASLCredentials(
        username=options["sasl_plain_username"],
        password=options["sasl_plain_password"],
        mechanism=options["sasl_mechanism"],
        ssl_context=options.get("ssl_context"),
    )
