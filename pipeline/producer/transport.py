"""The emitter's Kafka seam: the producer protocol, kafka-python, and an in-memory twin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from kafka import KafkaProducer

from pipeline.events import AllocationEvent


class DeliveryFuture(Protocol):
    """What ``send()`` returns: callbacks get the record metadata, errbacks the exception."""

    def add_callback(self, fn: Callable[..., Any], *args: Any) -> Any: ...
    def add_errback(self, fn: Callable[..., Any], *args: Any) -> Any: ...


class Producer(Protocol):
    """The part of :class:`kafka.KafkaProducer` the emitter uses."""

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> DeliveryFuture: ...
    def flush(self, timeout: float | None = None) -> None: ...
    def close(self, timeout: float | None = None) -> None: ...


ProducerFactory = Callable[[dict[str, Any]], Producer]
DropCallback = Callable[[AllocationEvent, str], None]


class _Done:
    """An already-acknowledged delivery: callbacks run at once (for :class:`MemoryProducer`)."""

    def add_callback(self, fn: Callable[..., Any], *args: Any) -> _Done:
        fn(*args, None)
        return self

    def add_errback(self, fn: Callable[..., Any], *args: Any) -> _Done:
        return self


class MemoryProducer:
    """An in-memory :class:`Producer`: every send succeeds and lands in ``messages``."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes | None, bytes | None]] = []

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> _Done:
        self.messages.append((topic, key, value))
        return _Done()

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None


def kafka_producer(options: dict[str, Any]) -> Producer:
    """The default :data:`ProducerFactory`: a :class:`kafka.KafkaProducer`."""
    producer: Producer = KafkaProducer(**options)
    return producer
