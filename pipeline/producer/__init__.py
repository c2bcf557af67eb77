"""TelemetryEmitter: the SDK inference servers use to send allocation events to Kafka.

``emit()`` validates the event at the call site (a bad event raises
:class:`~pipeline.events.InvalidEvent`) and puts its contract-v1 bytes on a bounded in-memory
queue; it never waits for Kafka. A background thread connects lazily (retrying with backoff while
the broker is down) and hands events to an idempotent kafka-python producer (``acks='all'``,
batching, compression), keyed by ``tenant_id``. When the queue is full the event is dropped,
counted and passed to ``on_drop``. Counters are in :attr:`TelemetryEmitter.stats`.

The Kafka client is built by ``producer_factory`` (default: :class:`kafka.KafkaProducer`), the one
I/O seam; :class:`MemoryProducer` is its in-memory twin for examples and tests.

>>> from pipeline.config import KafkaSettings
>>> from pipeline.events import example_event
>>> memory = MemoryProducer()
>>> with TelemetryEmitter(KafkaSettings(), producer_factory=lambda options: memory) as emitter:
...     emitter.emit(example_event())
...     with emitter.track(tenant_id="acme", api_key_id="key-1", model="reasoner-large",
...                        server_id="gpu-01", route="deep") as request:
...         request.prompt_tokens, request.reasoning_tokens, request.passes = 700, 4000, 3
True
>>> emitter.stats
EmitterStats(emitted=2, sent=2, dropped=0, failed=0)
>>> [(topic, key) for topic, key, value in memory.messages]
[('compute.events', b'acme'), ('compute.events', b'acme')]
"""

from pipeline.producer.emitter import EmitterStats, TelemetryEmitter
from pipeline.producer.record import RequestRecord
from pipeline.producer.transport import MemoryProducer, Producer, ProducerFactory
from pipeline.producer.wire import to_wire

__all__ = [
    "EmitterStats",
    "MemoryProducer",
    "Producer",
    "ProducerFactory",
    "RequestRecord",
    "TelemetryEmitter",
    "to_wire",
]
