"""Reading an unsettled step back from the broker (:func:`pipeline.stream.read_spans`): each
partition's span of offsets exactly, and what there is of a span that runs past the topic's end.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from kafka import KafkaProducer

from pipeline.config import KafkaSettings
from pipeline.stream import read_spans

pytestmark = pytest.mark.kafka


def test_each_partitions_span_is_read_back_exactly(
    kafka_bootstrap: str, kafka_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for partition in (0, 1):
        for i in range(50):
            producer.send(kafka_topic, value=f"{partition}:{i}".encode(), partition=partition)
    producer.flush(60)
    producer.close()
    kafka = KafkaSettings(bootstrap=kafka_bootstrap, events_topic=kafka_topic)

    read = asyncio.run(read_spans(kafka, {0: (10, 19), 1: (45, 60)}))

    assert [(m.partition, m.offset, m.value) for m in read[0]] == [
        (0, i, f"0:{i}".encode()) for i in range(10, 20)
    ]
    assert [m.offset for m in read[1]] == list(range(45, 50))  # the topic ends at 49
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "partition 1: offsets 45 to 60 could not all be read back (5 read); the step is "
        "replayed in part"
    ]
