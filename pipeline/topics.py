"""The worker's topics: which it needs, with how many partitions, and creating the missing ones.

A Faust consumer subscribes to the topics that exist when it joins its group: one that is
created a moment later (by a producer, or by the broker's auto-creation) is never read until the
worker restarts. The worker therefore creates what is missing *before* it joins
(:func:`create_missing`), each topic with the partitions :func:`expected_partitions` gives it.

>>> from pipeline.config import KafkaSettings
>>> for name, (role, partitions) in expected_partitions(KafkaSettings()).items():
...     print(f"{name:<24} {partitions}  {role}")
compute.events           4  events
compute.alerts           4  alerts
compute.events.dlq       4  dead letters
computewatch.minutes     1  to the fleet stage
computewatch.norms       1  from the fleet stage
"""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, TopicAuthorizationFailedError

from pipeline.config import KafkaSettings
from pipeline.kafka_options import kafka_python_options

__all__ = [
    "TopicsUnavailable", "admin_client", "create_missing", "expected_partitions", "no_session"
]

BROKER_DEFAULT_REPLICATION = -1  # KIP-464: the broker's default.replication.factor


class TopicsUnavailable(RuntimeError):
    """A topic the worker needs is missing and could not be created; the message says what to do."""


def expected_partitions(kafka: KafkaSettings) -> dict[str, tuple[str, int]]:
    """Topic -> (its role, the partitions it should have)."""
    return {
        kafka.events_topic: ("events", kafka.partitions),
        kafka.alerts_topic: ("alerts", kafka.partitions),
        kafka.dlq_topic: ("dead letters", kafka.partitions),
        kafka.minutes_topic: ("to the fleet stage", 1),
        kafka.norms_topic: ("from the fleet stage", 1),
    }


def admin_client(kafka: KafkaSettings, timeout_s: float, client_id: str) -> KafkaAdminClient:
    """An admin client with a Kafka session, or :class:`~kafka.errors.KafkaError` when none
    opens within ``timeout_s`` (retrying at least every second, so a refused login is logged
    as such: ``SaslAuthenticationFailed``)."""
    ms = max(int(timeout_s * 1000), 1)
    return KafkaAdminClient(
        **kafka_python_options(kafka),
        client_id=client_id,
        bootstrap_timeout_ms=ms,
        request_timeout_ms=ms,
        reconnect_backoff_max_ms=min(ms, 1000),
    )


def no_session(kafka: KafkaSettings, exc: KafkaError, timeout_s: float) -> str:
    """What to check when the broker takes connections but no Kafka session opens."""
    protocol = kafka.security_protocol.strip().upper()
    check = "the SASL settings (COMPUTEWATCH_KAFKA_SASL_*) and " if "SASL" in protocol else ""
    return (
        f"the broker accepts connections but no Kafka session opened within {timeout_s:g} s "
        f"({type(exc).__name__}): check {check}that its listener is {protocol} "
        "(COMPUTEWATCH_KAFKA_SECURITY_PROTOCOL)"
    )


def create_missing(kafka: KafkaSettings, timeout_s: float = 15.0) -> list[str]:
    """Create the topics of :func:`expected_partitions` that do not exist; return their names.

    A topic another worker creates meanwhile counts as present. Raises :class:`TopicsUnavailable`
    when no session opens (refused credentials, for example) or the broker refuses (no
    ``CREATE`` permission).
    """
    ms = max(int(timeout_s * 1000), 1)
    try:
        admin = admin_client(kafka, timeout_s, "computewatch-topics")
    except KafkaError as exc:
        raise TopicsUnavailable(no_session(kafka, exc, timeout_s)) from exc
    try:
        expected = expected_partitions(kafka)
        present = set(admin.list_topics())
        missing = [name for name in expected if name not in present]
        created = []
        for name in missing:
            role, partitions = expected[name]
            try:
                admin.create_topics(
                    [NewTopic(name, partitions, BROKER_DEFAULT_REPLICATION)],
                    timeout_ms=ms,
                    wait_for_metadata=True,
                )
            except TopicAlreadyExistsError:
                continue
            except (TopicAuthorizationFailedError, KafkaError) as exc:
                raise TopicsUnavailable(
                    f"topic {name} ({role}) is missing and could not be created "
                    f"({type(exc).__name__}): create it with {partitions} partition"
                    f"{'s' if partitions != 1 else ''}, or allow this principal to create topics"
                ) from exc
            created.append(name)
        return created
    finally:
        admin.close()
