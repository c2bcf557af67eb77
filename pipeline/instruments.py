"""What a worker (and the OTLP receiver) tells its operator about itself: the hooks it calls
as it works, and the readings it gives whenever it is asked (a Prometheus scrape).

Transport-free: :mod:`pipeline.prometheus` (the ``metrics`` extra) turns both into Prometheus
metrics; without it the worker calls :class:`NoInstruments`, which does nothing.

>>> reading = PartitionReading("compute.events", 0, offset=41, highwater=50)
>>> reading.lag
8
>>> PartitionReading("compute.events", 1, offset=-1, highwater=None).lag is None
True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pipeline.detectors.base import BoundedStore

if TYPE_CHECKING:
    from pipeline.ingest.batch import MappedBatch
    from pipeline.records import Alert, StepOutput


@dataclass(frozen=True, slots=True)
class PartitionReading:
    """A partition the worker owns: the last offset it processed and the topic's end."""

    topic: str
    partition: int
    offset: int
    highwater: int | None  # None before the consumer has fetched from it

    @property
    def lag(self) -> int | None:
        """Messages on the partition that the worker has not processed yet."""
        return None if self.highwater is None else max(0, self.highwater - self.offset - 1)


@dataclass(frozen=True, slots=True)
class Readings:
    """The worker's state when asked: its partitions, the entities its detectors hold (per
    detector and store) and its webhook's deliveries."""

    partitions: Sequence[PartitionReading] = ()
    entities: Mapping[tuple[str, str], int] = field(default_factory=dict)
    webhook: Mapping[str, int] = field(default_factory=dict)  # sent, failed, dropped, held_back


def entities_held(detectors: Iterable[object]) -> dict[tuple[str, str], int]:
    """Entries of every bounded store of each detector, by (detector name, store name); the
    stores of detectors with one name (one per partition) add up.

    >>> class Volume:
    ...     name = "volume_spike"
    ...     def __init__(self) -> None:
    ...         self.keys = BoundedStore[str, int](max_entries=10)
    ...         self.keys.get_or_create("k1", int)
    >>> entities_held([Volume(), Volume()])
    {('volume_spike', 'keys'): 2}
    """
    held: dict[tuple[str, str], int] = {}
    for detector in detectors:
        name = str(getattr(detector, "name", type(detector).__name__))
        for store, value in vars(detector).items():
            if isinstance(value, BoundedStore):
                held[(name, store)] = held.get((name, store), 0) + len(value)
    return held


@contextmanager
def timed(record: Callable[[float], None]) -> Iterator[None]:
    """Give ``record`` the seconds the block took, if it succeeded.

    >>> took = []
    >>> with timed(took.append):
    ...     pass
    >>> len(took), took[0] < 1.0
    (1, True)
    """
    started = time.perf_counter()
    yield
    record(time.perf_counter() - started)


class Instruments(Protocol):
    """The hooks the worker calls (:mod:`pipeline.stream`)."""

    def stepped(self, out: StepOutput, records: int, seconds: float) -> None:
        """Stage 1 ran a partition's batch of ``records`` messages in ``seconds``."""

    def judged(self, alerts: Sequence[Alert], seconds: float) -> None:
        """The fleet stage judged a batch and raised ``alerts``."""

    def wrote(self, operation: str, seconds: float) -> None:
        """A write to ClickHouse (``operation``: marks, step, flush, alerts) took ``seconds``."""

    def retried(self, paused_s: float) -> None:
        """ClickHouse failed; consumption pauses ``paused_s`` before the next try."""

    def saved(self, stage: str, size: int, seconds: float) -> None:
        """A snapshot of ``stage`` (``partition`` or ``fleet``): ``size`` bytes in ``seconds``."""

    def watch(self, read: Callable[[], Readings]) -> None:
        """Call ``read`` whenever the worker's state is asked for."""


class NoInstruments:
    """Instruments that record nothing (no ``--metrics-port``)."""

    def stepped(self, out: StepOutput, records: int, seconds: float) -> None:
        pass

    def judged(self, alerts: Sequence[Alert], seconds: float) -> None:
        pass

    def wrote(self, operation: str, seconds: float) -> None:
        pass

    def retried(self, paused_s: float) -> None:
        pass

    def saved(self, stage: str, size: int, seconds: float) -> None:
        pass

    def watch(self, read: Callable[[], Readings]) -> None:
        pass


class ReceiverInstruments(Protocol):
    """The hook the OTLP receiver calls (:mod:`pipeline.ingest.receiver`)."""

    def exported(self, status: int, batch: MappedBatch | None, seconds: float) -> None:
        """An export request was answered with HTTP ``status`` after ``seconds`` (Kafka's
        acknowledgement included); ``batch`` is what it mapped to, when it was delivered."""
