"""``computewatch doctor``: a deployment's settings checked end to end, one finding per line.

Each check says ``ok``, ``warn`` (it works, but look) or ``fail`` (it does not work; the line
says what to do):

- **kafka**: the broker answers with the configured security (TCP, TLS verified with the CA,
  then a Kafka session, with SASL when configured);
- **topic** (events, alerts, dead letters, the worker's ``<group>.minutes`` and
  ``<group>.norms``): present, with the expected partitions;
- **consumer group**: its lag on the events and minutes topics, and its members;
- **clickhouse**: reachable, and its schema at the version this code needs;
- **webhook** (when configured): answers an HTTP GET (no alert is sent).

Nothing is created or changed: no topic, no store, no database, no committed offset.

>>> Finding("fail", "kafka", "cannot reach Kafka").line()
'fail  kafka: cannot reach Kafka'
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import CoordinatorNotAvailableError, KafkaError

from pipeline.config import ClickHouseSettings, KafkaSettings, Settings
from pipeline.kafka_check import KafkaUnreachable, check_reachable
from pipeline.kafka_options import KafkaConfigError
from pipeline.topics import admin_client, expected_partitions, no_session

__all__ = ["Finding", "Status", "diagnose"]

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: how ``subject`` is, and what to do when it is not ok."""

    status: Status
    subject: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.subject}: {self.detail}"


def diagnose(
    settings: Settings, *, timeout_s: float = 5.0, max_lag: int = 10_000
) -> Iterator[Finding]:
    """Every finding about the deployment ``settings`` describe, as each check ends.

    ``timeout_s`` bounds each network wait (a connection, a handshake, a request); a lag over
    ``max_lag`` messages is a warning.
    """
    yield from kafka_findings(settings.kafka, timeout_s=timeout_s, max_lag=max_lag)
    yield clickhouse_finding(settings.clickhouse)
    yield webhook_finding(settings.worker.webhook_url, timeout_s=timeout_s)


# -- Kafka ------------------------------------------------------------------------------------


def kafka_findings(kafka: KafkaSettings, *, timeout_s: float, max_lag: int) -> Iterator[Finding]:
    """The broker, the topics and the consumer group; nothing more once the broker fails."""
    try:
        server = check_reachable(kafka, timeout_s=timeout_s)
        admin = admin_client(kafka, timeout_s, "computewatch-doctor")
    except (KafkaUnreachable, KafkaConfigError) as exc:
        yield Finding("fail", "kafka", str(exc))
        return
    except KafkaError as exc:
        yield Finding("fail", "kafka", no_session(kafka, exc, timeout_s))
        return
    try:
        brokers = len(admin.describe_cluster()["brokers"])
        yield Finding("ok", "kafka", f"{_count(brokers, 'broker')} at {server}, {_how(kafka)}")
        partitions = yield from topic_findings(admin, kafka)
        for topic in (kafka.events_topic, kafka.minutes_topic):
            if topic in partitions:
                yield lag_finding(admin, kafka, topic, partitions[topic], max_lag, timeout_s)
    except KafkaError as exc:
        yield Finding("fail", "kafka", f"a request to {server} failed ({exc}): see its logs")
    finally:
        admin.close()


def _how(kafka: KafkaSettings) -> str:
    protocol = kafka.security_protocol.strip().upper()
    if protocol.startswith("SASL_"):
        return f"over {protocol} as {kafka.sasl_username} ({kafka.sasl_mechanism})"
    return f"over {protocol}"


def topic_findings(
    admin: KafkaAdminClient, kafka: KafkaSettings
) -> Generator[Finding, None, dict[str, list[int]]]:
    """One finding per topic; returns ``{topic: partition ids}`` of the topics present."""
    expected = expected_partitions(kafka)
    present: dict[str, list[int]] = {}
    described_by_name = {t["name"]: t for t in admin.describe_topics(list(expected))}
    for name, (role, want) in expected.items():
        described = described_by_name[name]
        subject = f"topic {name}"
        if described["error_code"] != 0:
            create = f"create it with {_count(want, 'partition')}"
            fix = f"start `computewatch worker` once (it creates the topic), or {create}"
            yield Finding("fail", subject, f"missing ({role}): {fix}")
            continue
        ids = sorted(p["partition_index"] for p in described["partitions"])
        present[name] = ids
        yield _partitions_finding(subject, role, len(ids), want, name == kafka.events_topic)
    return present


def _partitions_finding(subject: str, role: str, have: int, want: int, events: bool) -> Finding:
    counted = f"{_count(have, 'partition')} ({role})"
    if have == want:
        return Finding("ok", subject, counted)
    setting = f"COMPUTEWATCH_KAFKA_PARTITIONS says {want}"
    if events:
        fix = f"set it to {have} so replay and evaluate split as Kafka does"
        return Finding("warn", subject, f"{counted}, {setting}: {fix}")
    if want == 1:
        fix = "the fleet stage uses partition 0 only; recreate it with 1 partition"
        return Finding("warn", subject, f"{counted}: {fix}")
    return Finding("ok", subject, f"{counted}; {setting}")


def lag_finding(
    admin: KafkaAdminClient,
    kafka: KafkaSettings,
    topic: str,
    partitions: list[int],
    max_lag: int,
    timeout_s: float,
) -> Finding:
    """The consumer group's lag on ``topic`` (messages not yet committed), its members, and
    whether they were given every partition of it."""
    group = kafka.consumer_group
    subject = f"consumer group {group} on {topic}"
    tps = [TopicPartition(topic, p) for p in partitions]
    committed = _committed(admin, group, timeout_s)
    if committed is None:
        return Finding("warn", subject, "its coordinator is not available yet: run doctor again")
    start = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in tps})
    end = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps})
    done = {tp: committed[tp].offset for tp in tps if tp in committed}
    lag = sum(end[tp].offset - done.get(tp, start[tp].offset) for tp in tps)
    members = admin.describe_groups([group])[group]["members"]
    assigned = _assigned(members, topic)
    said = f"lag {lag:,} messages over {_count(len(tps), 'partition')}"
    said += f", {_count(len(members), 'member')}"
    if members and len(assigned) < len(tps):
        fix = "restart the workers (one started before the topic existed never reads it)"
        given = f"{len(assigned)} of {len(tps)} partitions assigned"
        return Finding("warn", subject, f"{said}, {given}: {fix}")
    if lag > 0 and not members:
        fix = "no worker is consuming; start `computewatch worker`"
        return Finding("warn", subject, f"{said}: {fix}")
    if lag > max_lag:
        fix = "add workers (up to one per partition) or see their logs"
        return Finding("warn", subject, f"{said}, over {max_lag:,}: {fix}")
    return Finding("ok", subject, said)


def _assigned(members: list[dict[str, Any]], topic: str) -> set[int]:
    """The partitions of ``topic`` the group's members were given at its last rebalance."""
    partitions: set[int] = set()
    for member in members:
        assignment = member.get("member_assignment")
        if isinstance(assignment, dict):
            for part in assignment.get("assigned_partitions", []):
                if part.get("topic") == topic:
                    partitions.update(part.get("partitions", []))
    return partitions


def _committed(admin: KafkaAdminClient, group: str, timeout_s: float) -> dict[Any, Any] | None:
    """The group's committed offsets, asked again while its coordinator is being elected (a
    fresh broker); ``None`` when it is not there within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            offsets: dict[Any, Any] = admin.list_group_offsets({group: None}).get(group, {})
            return offsets
        except CoordinatorNotAvailableError:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.2)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


# -- ClickHouse and the webhook -----------------------------------------------------------------


def clickhouse_finding(clickhouse: ClickHouseSettings) -> Finding:
    """Whether the store can be opened and its schema is the one this code needs."""
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from pipeline.storage import (
        MigrationError,
        StoreNotFound,
        StoreUnavailable,
        check_schema,
        connect,
        describe_url,
        is_embedded,
    )
    from pipeline.storage.client import StorageConfigError

    subject = f"clickhouse {describe_url(clickhouse.url)}"
    try:
        client = connect(clickhouse, must_exist=True)
    except StoreUnavailable as exc:
        if is_embedded(clickhouse.url):  # chDB lets one process open a directory
            held = "another process (a running worker?) holds this embedded store, so its schema"
            fix = "run doctor while it is stopped, or use a ClickHouse server"
            return Finding("warn", subject, f"{held} was not checked: {fix}")
        return Finding("fail", subject, str(exc))
    except (StoreNotFound, StorageConfigError) as exc:
        return Finding("fail", subject, str(exc))
    except ClickHouseError as exc:
        return Finding("fail", subject, str(exc).strip().splitlines()[0])
    try:
        version = check_schema(client, clickhouse.database)
    except MigrationError as exc:
        return Finding("fail", subject, str(exc))
    finally:
        client.close()
    current = f"database {clickhouse.database} at schema version {version}, the current one"
    return Finding("ok", subject, current)


def webhook_finding(url: str | None, *, timeout_s: float) -> Finding:
    """Whether the webhook's server answers; the URL's path (where a hook keeps its token) is
    never shown."""
    if not url:
        return Finding("ok", "webhook", "none configured (COMPUTEWATCH_WORKER_WEBHOOK_URL)")
    parts = urlsplit(url)
    fix = "check COMPUTEWATCH_WORKER_WEBHOOK_URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Finding("fail", "webhook", f"not an http(s) URL: {fix}")
    port = f":{parts.port}" if parts.port else ""
    subject = f"webhook {parts.scheme}://{parts.hostname}{port}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Finding("fail", subject, f"does not answer ({reason}): {fix}")
    answered = f"answers HTTP {status} to a GET (no alert was sent)"
    if status >= 500:
        return Finding("fail", subject, f"{answered}: the receiver is failing; {fix}")
    if status in (404, 410):
        return Finding("warn", subject, f"{answered}: a mistyped or revoked hook answers so; {fix}")
    return Finding("ok", subject, answered)
