"""What detectors see and say: per-minute entity statistics in, findings out.

Detectors learn online and are driven by event time only. Two shapes exist:

* a *request* detector scores every event against the norm of its context
  (``observe_event``), and
* a *window* detector scores each entity's closed minute (``observe_minute``).

Both return :class:`Finding` objects; the engine turns findings into contract alerts
(cooldown, severity, ids).
"""

from __future__ import annotations

import math
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar, runtime_checkable

from river import stats

from pipeline.events import AllocationEvent

if TYPE_CHECKING:
    from pipeline.detectors.request_norm import KeyMinute

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
MAX_OVER: Final = 10_000  # entities an AdaptiveThreshold remembers as over its bar


@dataclass(slots=True)
class EntityMinute:
    """Sums over one entity's events in one minute (mergeable by addition)."""

    requests: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    reasoning_tokens: int = 0
    passes: int = 0
    token_passes: int = 0  # generated tokens x passes, the decode work behind gpu_ms
    gpu_ms: float = 0.0
    runaway: int = 0  # truncated + timeout
    confidence_sum: float = 0.0
    confidence_count: int = 0

    @classmethod
    def total(cls, minutes: list[EntityMinute]) -> EntityMinute:
        out = cls()
        for m in minutes:
            out.add(m)
        return out

    def subtract(self, other: EntityMinute) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) - getattr(other, f.name))

    def add(self, other: EntityMinute) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.generated_tokens += other.generated_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.passes += other.passes
        self.token_passes += other.token_passes
        self.gpu_ms += other.gpu_ms
        self.runaway += other.runaway
        self.confidence_sum += other.confidence_sum
        self.confidence_count += other.confidence_count

    @property
    def confidence_mean(self) -> float | None:
        return self.confidence_sum / self.confidence_count if self.confidence_count else None

    @property
    def gpu_ms_per_token(self) -> float | None:
        """GPU-ms per generated token and pass: what a server's speed shows in."""
        return self.gpu_ms / self.token_passes if self.token_passes else None


GROUP_FIELDS: Final = ("tenant", "api_key", "model", "route", "server")
GroupIds = tuple[str, str, str, str, str]  # one of each of GROUP_FIELDS
Group = tuple[GroupIds, EntityMinute]  # the sums of one group's requests in a minute


@dataclass(slots=True)
class MinuteView:
    """Every entity's statistics for one closed minute of event time."""

    start: datetime
    end: datetime
    by_type: dict[str, dict[str, EntityMinute]]
    fleet: EntityMinute
    tenant_of_key: dict[str, str] = field(default_factory=dict)
    model_of_server: dict[str, str] = field(default_factory=dict)
    named: set[tuple[str, str]] = field(default_factory=set)  # (entity type, id) already found
    groups: Sequence[Group] = ()  # what the minute was rolled up from
    model_route: dict[tuple[str, str], EntityMinute] = field(default_factory=dict)
    # per request detector (by name), each api key's sums of its requests' scores in the minute
    key_minutes: dict[str, dict[str, KeyMinute]] = field(default_factory=dict)

    def without(
        self, entity_type: str, keys: Collection[str], servers: Collection[str] = ()
    ) -> dict[str, EntityMinute]:
        """Each model's or server's minute (``entity_type``) without the traffic of the api keys
        ``keys`` and the servers ``servers`` (incidents already named), for those that had any.

        >>> from datetime import UTC, datetime
        >>> t = datetime(2026, 3, 2, tzinfo=UTC)
        >>> groups = [(("t", key, "m", "r", server), EntityMinute(requests=n))
        ...           for key, server, n in [("k1", "s1", 5), ("k1", "s2", 3), ("k2", "s2", 4)]]
        >>> view = MinuteView(t, t, {"model": {"m": EntityMinute(requests=12)}}, EntityMinute(),
        ...                   groups=groups)
        >>> view.without("model", {"k1"}, {"s2"})["m"].requests  # k1 and s2 overlap in 3
        0
        >>> view.without("model", {"k2"})["m"].requests
        8
        """
        at = GROUP_FIELDS.index(entity_type)
        named: defaultdict[str, EntityMinute] = defaultdict(EntityMinute)
        for ids, sums in self.groups:
            if ids[1] in keys or ids[4] in servers:
                named[ids[at]].add(sums)
        rest = {}
        for entity_id, part in named.items():
            minute = EntityMinute()
            minute.add(self.entities(entity_type)[entity_id])
            minute.subtract(part)
            rest[entity_id] = minute
        return rest

    def entities(self, entity_type: str) -> dict[str, EntityMinute]:
        return self.by_type.get(entity_type, {})


@dataclass(frozen=True, slots=True)
class Finding:
    """A detector's verdict on one entity, before cooldown and grading.

    ``score`` past ``threshold`` says the finding is statistically sure; ``magnitude`` says how
    far from the entity's own normal it is (how many times its usual level or spread, >= 1);
    ``stake`` is the compute at stake: the share of the fleet's GPU time (or requests) in the
    window that the finding accounts for beyond normal, or None where a detector cannot tell.
    :func:`pipeline.alerts.grade` turns the three into a severity.
    """

    kind: str
    entity_type: str
    entity_id: str
    window_start: datetime
    window_end: datetime
    score: float
    threshold: float
    summary: str
    evidence: dict[str, tuple[float, float]]
    event_count: int
    magnitude: float = 1.0
    stake: float | None = None


class WindowDetector(Protocol):
    name: str

    def observe_minute(self, view: MinuteView) -> list[Finding]: ...


class RequestDetector(WindowDetector, Protocol):
    """Scores each request where it is seen (stage 1, per partition) and judges keys on the
    sums of their minute (:meth:`hand_over`, :attr:`MinuteView.key_minutes`) where every
    partition's minute is seen (the fleet stage)."""

    def observe_event(self, event: AllocationEvent, minute: int) -> None:
        """Score one request of ``minute`` (the start of its window, in epoch seconds)."""
        ...

    def hand_over(self, minute: int, *, closed: bool) -> list[tuple[str, KeyMinute]]: ...


@runtime_checkable
class EntityBounded(Protocol):
    """A detector whose per-entity state is capped by the settings' ``max_entities``."""

    def entity_stores(self) -> list[BoundedStore[Any, Any]]:
        """Its stores of per-entity state (api keys, tenants), each holding at most
        ``max_entities``."""
        ...


def bound_entities(detectors: Iterable[object], max_entities: int) -> None:
    """Hold every per-entity store of ``detectors`` to ``max_entities`` (a restored engine's
    detectors take the current settings' cap, and evict down to it)."""
    for detector in detectors:
        if isinstance(detector, EntityBounded):
            for store in detector.entity_stores():
                store.bound(max_entities)


@runtime_checkable
class PeekingDetector(WindowDetector, Protocol):
    """A detector that can judge part of a minute: ``peek_minute`` scores the open minute so far
    (``view.end`` is how far it reaches) and learns nothing from it; the closed minute still
    comes to ``observe_minute``. Every statistic it uses must be a rate, a share or a tail
    bound that accounts for the number of requests, so that a part of a minute is judged on the
    evidence it holds. A peek's view holds api keys, tenants, models and servers (and each
    key's tenant, each server's model, each model's routes and the groups), not routes."""

    def peek_minute(self, view: MinuteView) -> list[Finding]: ...


class BoundedStore(Generic[K, V]):
    """Per-entity state with a hard cap: least recently used entities are evicted first.

    >>> store = BoundedStore[str, int](max_entries=2)
    >>> store.get_or_create("a", int); store.get_or_create("b", int); store.get_or_create("c", int)
    0
    0
    0
    >>> sorted(store.keys())
    ['b', 'c']
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[K, V] = OrderedDict()

    def get_or_create(self, key: K, make: Callable[[], V]) -> V:
        item = self._items.get(key)
        if item is None:
            item = make()
            self._items[key] = item
            if len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        return item

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def bound(self, max_entries: int) -> None:
        """Hold at most ``max_entries`` from now on, the least recently used beyond it evicted.

        >>> store = BoundedStore[str, int](max_entries=3)
        >>> for key in "abc":
        ...     _ = store.get_or_create(key, int)
        >>> store.bound(2); sorted(store.keys())
        ['b', 'c']
        """
        self.max_entries = max_entries
        while len(self._items) > max_entries:
            self._items.popitem(last=False)

    def evict_stale(self, stale: Callable[[V], bool]) -> None:
        """Evict the least recently used entries for as long as ``stale`` holds of the oldest:
        for a store whose entries are used in order of time (and so go stale in that order).

        >>> store = BoundedStore[str, list[int]](max_entries=5)
        >>> for key, minute in (("a", 1), ("b", 2), ("c", 3), ("a", 4)):
        ...     store.get_or_create(key, list).append(minute)
        >>> store.evict_stale(lambda minutes: minutes[-1] < 3)
        >>> sorted(store.keys())
        ['a', 'c']
        """
        items = self._items
        while items and stale(next(iter(items.values()))):
            items.popitem(last=False)

    def keys(self) -> Iterator[K]:
        return iter(self._items.keys())

    def items(self) -> Iterator[tuple[K, V]]:
        """Every entry, least recently used first (reading them does not reorder them)."""
        return iter(self._items.items())

    def __len__(self) -> int:
        return len(self._items)


class Horizon(Generic[V]):
    """One entity's last ``minutes`` minutes of event time (the short alerting horizon).

    >>> from datetime import UTC, datetime, timedelta
    >>> h = Horizon[int](minutes=3)
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> _ = h.push(t0, 1); _ = h.push(t0 + timedelta(minutes=1), 2)
    >>> h.push(t0 + timedelta(minutes=5), 3)
    [3]
    """

    __slots__ = ("minutes", "recent")

    def __init__(self, minutes: int) -> None:
        self.minutes = minutes
        # a list, not a deque: it holds a few minutes, and an empty deque costs ~600 bytes
        # (~250 MiB over the 800k horizons of 100k keys)
        self.recent: list[tuple[datetime, V]] = []

    def push(self, start: datetime, item: V) -> list[V]:
        """Add this minute's item and return the items still inside the horizon."""
        self.recent.append((start, item))
        while (start - self.recent[0][0]).total_seconds() >= self.minutes * 60:
            del self.recent[0]
        return [m for _, m in self.recent]

    def peek(self, start: datetime, item: V) -> list[tuple[datetime, V]]:
        """What :meth:`push` would keep, with the minute's start, without changing anything.

        >>> from datetime import UTC, datetime, timedelta
        >>> h = Horizon[int](minutes=2)
        >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
        >>> _ = h.push(t0, 1); _ = h.push(t0 + timedelta(minutes=1), 2)
        >>> [m for _, m in h.peek(t0 + timedelta(minutes=2), 3)], len(h.recent)
        ([2, 3], 2)
        """
        limit = self.minutes * 60
        kept = [(t, m) for t, m in self.recent if (start - t).total_seconds() < limit]
        kept.append((start, item))
        return kept

    @property
    def start(self) -> datetime:
        return self.recent[0][0]

    def out_of_reach(self, now: datetime) -> bool:
        """Whether its newest minute is out of it at the minute starting ``now``: a push or a
        peek from then on keeps none of what it holds."""
        return (now - self.recent[-1][0]).total_seconds() >= self.minutes * 60


class AdaptiveThreshold:
    """A score threshold that follows the tail of recent *normal* scores, never below a floor.

    Scores of twice the current threshold or more are not learned, so an attack cannot raise
    the bar it is measured against, while a noisier-than-expected normal tail still can. Nor
    is a run of one entity's scores over the bar, past its first: how often entities go over
    it is the noise, how long a fault keeps one there is not (as for an entity's own tail,
    :mod:`pipeline.detectors.tails`). Without that, a long subtle incident on one entity
    raised the bar for all of them, until a blatant one elsewhere no longer cleared it.

    >>> t = AdaptiveThreshold(floor=5.0, q=0.99)
    >>> for s in range(3000):
    ...     t.update(s % 100 / 10 + 0.5)
    >>> t.value > 9.0
    True
    >>> t.update(1e9); t.value < 12
    True
    >>> t = AdaptiveThreshold(floor=5.0, q=0.99, min_samples=100)
    >>> for s in range(300):
    ...     t.update(1.0, "quiet")
    ...     t.update(9.0, "in an incident")  # 300 minutes over the bar: learned once
    >>> t.value
    5.0
    """

    def __init__(self, floor: float, q: float = 0.999, min_samples: int = 1_000) -> None:
        self.floor = floor
        self.min_samples = min_samples
        self._quantile = stats.Quantile(q)
        self._seen = 0
        self._over: dict[Hashable, None] = {}  # entities whose last score was over the bar

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_over", {})  # saved before runs over the bar were told apart
        self.__dict__.update(state)

    def update(self, score: float, key: Hashable = None) -> None:
        """Learn ``score``, the latest of entity ``key``'s (None: of no entity in particular)."""
        bar = self.value
        if key is not None:
            if score < bar:
                self._over.pop(key, None)
            elif key in self._over:
                return
            else:
                self._over[key] = None
                if len(self._over) > MAX_OVER:  # forget the longest over the bar
                    del self._over[next(iter(self._over))]
        if math.isfinite(score) and score < 2 * bar:
            self._quantile.update(score)
            self._seen += 1

    @property
    def value(self) -> float:
        if self._seen < self.min_samples:
            return self.floor
        q = self._quantile.get()
        return max(self.floor, q) if q is not None else self.floor


def poisson_surprise(observed: float, expected: float) -> float:
    """Decades of surprise of seeing ``observed`` counts when ``expected`` were due (Chernoff).

    Zero when ``observed <= expected``; ~6 means "about one in a million".

    >>> round(poisson_surprise(30, 10), 1)
    5.6
    >>> poisson_surprise(5, 10)
    0.0
    """
    if observed <= expected or expected <= 0:
        return 0.0 if expected > 0 or observed == 0 else float("inf")
    nats = observed * math.log(observed / expected) - (observed - expected)
    return nats / math.log(10)


def binomial_surprise(k: int, n: int, p: float) -> float:
    """Decades of surprise of ``k`` hits in ``n`` trials at base rate ``p`` (upper tail only).

    >>> round(binomial_surprise(30, 100, 0.05), 1)
    14.1
    >>> binomial_surprise(3, 100, 0.05)
    0.0
    """
    if n == 0 or k <= n * p:
        return 0.0
    p = min(max(p, 1e-9), 1 - 1e-9)
    f = k / n
    kl = f * math.log(f / p) + ((1 - f) * math.log((1 - f) / (1 - p)) if f < 1 else 0.0)
    return n * kl / math.log(10)
