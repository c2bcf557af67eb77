"""The single processing step: wire messages in; events, metric rows, alerts, dead letters out.

The engine is transport-free and driven by event time only: the Faust worker, ``replay`` and
``demo`` all feed it the same way and get the same results for the same input.

>>> from pipeline.config import Settings
>>> from pipeline.events import encode_event, example_event
>>> engine = Engine(Settings())
>>> out = engine.process([Message(encode_event(example_event())), Message(b"not json")])
>>> len(out.events), out.dead_letters[0].reason.split(":")[0]
(1, 'invalid_json')
>>> len(engine.finish().metrics)
1

Event time is trusted within limits (:meth:`Engine.process` documents them): times storage cannot
hold are dead letters, and an event far ahead of the latest event time is held back until the
stream either confirms its time (a run of such events) or contradicts it (then a dead letter
``future_timestamp``), so one bad clock cannot close every window or stall detection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Final

import msgspec

from pipeline.budgets import SpendLedger, SpendTick
from pipeline.config import Settings
from pipeline.detectors import WindowDetector, adopt_new_tests, default_detectors
from pipeline.detectors.base import bound_entities
from pipeline.detectors.norms import FleetNorms, NormTick, shares_norms
from pipeline.events import AllocationEvent, InvalidEvent, encode_event, parse_events
from pipeline.fleet import (
    DETECTION_GRACE_S,
    FleetStage,
    MinutePart,
    request_detectors,
)
from pipeline.metrics import COST_LIMIT_USD, WINDOW_S, WindowAggregator, window_of
from pipeline.minute_view import groups_of
from pipeline.pricing import PriceTable
from pipeline.records import DeadLetter, Message, StepOutput
from pipeline.state_format import seal, unseal

PEEK_S: Final = 15  # the open minute is peeked at every 15 s of event time (see Engine._on_clock)
# Times ClickHouse can store: metrics_1m and usage_hourly use DateTime (1970-01-01 to
# 2106-02-07); outside it an insert fails (and is retried forever) or the rollups wrap.
EARLIEST_TS: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TS: Final = datetime(2106, 1, 1, tzinfo=UTC)
FUTURE_CONFIRM: Final = 10  # far-ahead events in a row that show event time has moved on
ID_SEPARATOR: Final = "\x00"  # between event ids in a snapshot
OPEN_WINDOWS: Final = 4  # about how many 1-minute windows are open at once (lateness 120 s)


class _Generation:
    """One generation of seen ids, in arrival order, and how many of them are saved as chunks.

    A dict of ``str`` keys (values None) rather than a set: the collector never tracks it, while
    a set of 500k ids cost every full collection ~40 ms. In arrival order,
    :meth:`SeenIds.unsaved` hands out only the ids not yet saved as chunks.
    """

    __slots__ = ("ids", "number", "saved")

    def __init__(self, text: str = "", number: int = 0) -> None:
        self.ids: dict[str, None] = dict.fromkeys(text.split(ID_SEPARATOR)) if text else {}
        self.number = number  # counts the generations since the engine began
        self.saved = 0  # how many of ids are in saved chunks

    def text(self) -> str:
        """Every id, joined by :data:`ID_SEPARATOR`."""
        return ID_SEPARATOR.join(self.ids)


@dataclass(frozen=True, slots=True)
class SeenChunk:
    """The ids of generation ``generation`` that arrived last before it held ``end`` ids,
    joined by :data:`ID_SEPARATOR`: a piece of :class:`SeenIds` saved apart from the engine."""

    generation: int
    end: int
    ids: str


class SeenIds:
    """Recently seen event ids, bounded by count; the same event_id twice counts once.

    Two generations of ids, cheaper to keep and to snapshot than one ordered map: when the
    current one holds half of ``max_ids`` it becomes the previous one and the oldest
    generation is forgotten. An id is remembered while at least ``max_ids // 2`` newer ones
    arrive, and never more than ``max_ids`` are kept.

    >>> seen = SeenIds(max_ids=4)
    >>> [seen.add(event_id) for event_id in ("a", "b", "a", "c")]  # a: 2 newer ids, still seen
    [True, True, False, True]
    >>> seen.add("d"), seen.add("a"), len(seen)  # a forgotten after 3 newer ids
    (True, True, 3)

    The worker saves them apart from the rest of the engine, as chunks of the ids added since
    the last save (:meth:`unsaved`, :meth:`saved`), and restores them from a head (:meth:`head`:
    no ids) and those chunks (:meth:`load`), so each batch's snapshot stays small:

    >>> chunks = seen.unsaved()
    >>> [(c.generation, c.end, c.ids.split(ID_SEPARATOR)) for c in chunks]
    [(1, 2, ['c', 'd']), (2, 1, ['a'])]
    >>> seen.saved(chunks)
    >>> seen.add("e"), [(c.generation, c.end, c.ids) for c in seen.unsaved()]
    (True, [(2, 2, 'e')])
    >>> again = seen.head()
    >>> again.load([*chunks, *seen.unsaved()])
    >>> [again.add(i) for i in "daeb"] == [seen.add(i) for i in "daeb"], len(again) == len(seen)
    (True, True)
    """

    def __init__(self, max_ids: int) -> None:
        self.bound(max_ids)
        self._current = _Generation()
        self._previous = _Generation()
        self.awaiting_chunks = False

    def __len__(self) -> int:
        return len(self._current.ids) + len(self._previous.ids)

    def bound(self, max_ids: int) -> None:
        """Keep at most ``max_ids`` from now on: ids already remembered stay; a generation that
        is already larger than the new half ends at the next id, so within one generation
        :meth:`add` keeps the new bound."""
        self.max_ids = max_ids
        self._generation = max(1, max_ids // 2)

    @property
    def generation(self) -> int:
        """The number of the current generation (the previous one is one less)."""
        return self._current.number

    def __getstate__(self) -> dict[str, object]:
        # one string per generation: a million ids pickle in 0.14 s instead of 0.34 s (ids
        # hold no NUL: the contract makes them UUIDs). A head (no ids) keeps the generation
        # numbers; the worker's snapshots are heads, their ids saved as chunks.
        if self.awaiting_chunks:
            return {"max_ids": self.max_ids, "generation": self.generation, "head": True}
        return {
            "max_ids": self.max_ids,
            "generation": self.generation,
            "current": self._current.text(),
            "previous": self._previous.text(),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.bound(state["max_ids"])
        number = state.get("generation", 1)
        self._current, self._previous = _Generation(number=number), _Generation(number=number - 1)
        self.awaiting_chunks = state.get("head", False)
        if "_ids" in state:  # from before the ids were kept in generations
            for event_id in state["_ids"]:
                self.add(event_id)
        elif not self.awaiting_chunks:
            self._current = _Generation(state["current"], number)
            self._previous = _Generation(state["previous"], number - 1)

    def add(self, event_id: str) -> bool:
        """Record ``event_id``; False if it was already seen."""
        current = self._current.ids
        if event_id in current or event_id in self._previous.ids:
            return False
        current[event_id] = None
        if len(current) >= self._generation:
            self._previous = self._current
            self._current = _Generation(number=self._previous.number + 1)
        return True

    def head(self) -> SeenIds:
        """An empty copy with the same bound and generation numbers, to be pickled in place of
        this one when the ids are saved as chunks; :meth:`load` fills it."""
        head = SeenIds(self.max_ids)
        head._current.number, head._previous.number = self.generation, self.generation - 1
        head.awaiting_chunks = True
        return head

    def unsaved(self) -> list[SeenChunk]:
        """The ids added since the chunks last passed to :meth:`saved`, per generation."""
        return [
            SeenChunk(g.number, len(g.ids), ID_SEPARATOR.join(islice(g.ids, g.saved, None)))
            for g in (self._previous, self._current)
            if g.saved < len(g.ids)
        ]

    def saved(self, chunks: Sequence[SeenChunk]) -> None:
        """Note that ``chunks`` (from :meth:`unsaved`) are stored."""
        for generation in (self._previous, self._current):
            for chunk in chunks:
                if chunk.generation == generation.number:
                    generation.saved = max(generation.saved, chunk.end)

    def load(self, chunks: Iterable[SeenChunk]) -> None:
        """Fill a head (:meth:`head`) with the chunks of its two generations, in order; chunks
        of other generations are ignored, and ids in several chunks count once."""
        for chunk in sorted(chunks, key=lambda c: (c.generation, c.end)):
            for generation in (self._previous, self._current):
                if chunk.generation == generation.number and chunk.ids:
                    generation.ids.update(dict.fromkeys(chunk.ids.split(ID_SEPARATOR)))
        for generation in (self._previous, self._current):
            generation.saved = len(generation.ids)
        self.awaiting_chunks = False


class Engine:
    """Validate -> dedupe -> metrics windows -> detectors -> alerts, in event time.

    Alone (the default) it is the whole pipeline for the stream it is fed: it hands each minute
    to a :class:`~pipeline.fleet.FleetStage` of its own, which judges it with every detector. As
    stage 1 of a partitioned topology (``partition`` given), it only scores requests, and its
    parts (:class:`~pipeline.fleet.MinutePart`, in :attr:`StepOutput.parts`) go to the fleet
    stage the caller runs for every partition (:mod:`pipeline.topology`, the worker).
    """

    def __init__(
        self,
        settings: Settings,
        detectors: Sequence[WindowDetector] | None = None,
        *,
        partition: int | None = None,
        metric_rows: bool = True,
    ) -> None:
        self.aggregator = WindowAggregator(PriceTable({}))  # priced and bounded: take_settings
        if detectors is None:
            detectors = default_detectors(max_entities=settings.worker.max_entities)
        self._request_detectors = request_detectors(detectors)
        self.partition = partition or 0
        self.fleet = None if partition is not None else FleetStage(settings, detectors, 1)
        self.clock_s = -math.inf  # the latest event time this engine has passed
        self._due_s = -math.inf  # event time of the next minute to score or peek
        self._peeked_s = -math.inf  # the last tick peeked at
        self._norms_s = -math.inf  # the last tick the context norms learned at
        self.seen = SeenIds(max_ids=1)  # bounded: take_settings
        self.ledger = SpendLedger()  # exact spend per tenant, key and day, for budgets
        self.next_minute: int | None = None
        self.held: list[tuple[Message | None, AllocationEvent]] = []  # far ahead, undecided
        self.counters = {"events": 0, "valid": 0, "dead_letters": 0, "duplicates": 0, "alerts": 0}
        # whether closed windows become metric rows (StepOutput.metrics): a replay that stores
        # nothing reads none, and building them was 7 % of its time
        self.metric_rows = metric_rows
        self.take_settings(settings)

    def take_settings(self, settings: Settings) -> None:
        """Apply what the engine takes from settings, as opposed to what it learned: the limits
        of a message and of event time ahead, the prices, the windows' allowed lateness and
        bounds, and how many event ids are remembered. (Its fleet stage, if it has one, takes
        its own when it is made and when :meth:`restore` brings it back:
        :meth:`FleetStage.take_settings <pipeline.fleet.FleetStage.take_settings>`.)

        The one place for them: a new engine takes them here, and so does one from
        :meth:`restore`, so a restarted worker runs by its current settings. Windows, seen
        ids, the detectors' baselines and running cooldowns are kept. The detectors' caps of
        per-entity state (``max_entities``) are taken by :meth:`restore` (a new engine's
        detectors keep the caps they were made with); their other parameters are the code's.
        """
        worker = settings.worker
        self.max_message_bytes = worker.max_message_bytes
        self.future_horizon_s = worker.future_horizon_s
        self.prices = PriceTable(settings.prices, settings.default_price)
        self.aggregator.configure(  # bounded against floods of fake ids
            self.prices,
            allowed_lateness_s=max(worker.allowed_lateness_s, DETECTION_GRACE_S),
            max_groups=OPEN_WINDOWS * worker.max_entities,
            max_keys_per_tenant=max(1, worker.max_entities // 10),
        )
        self.seen.bound(worker.dedupe_max_ids)

    def process(self, messages: Iterable[Message]) -> StepOutput:
        """Run one batch of wire messages; each becomes an event, a duplicate or a dead letter.

        A valid event whose cost storage cannot hold (``Decimal(18, 9)``) is a dead letter
        (``out_of_range: cost_usd``). Event-time rules: a ``ts`` before :data:`EARLIEST_TS` or from
        :data:`LATEST_TS` on is a dead letter (``past_timestamp`` / ``future_timestamp``); an
        event more than ``worker.future_horizon_s`` ahead of the latest event time is held in
        :attr:`held` (in no step's output yet) until the next event within the horizon makes it
        a dead letter (``future_timestamp``), or until :data:`FUTURE_CONFIRM` such events in a
        row (an idle partition resuming, a replay across a gap) make them all events, as
        :meth:`finish` does. Events older than the open windows are still events (``too_late``).
        """
        out = StepOutput()
        batch = list(messages)
        for message, event in parse_messages(batch, self.max_message_bytes, out):
            self.accept(event, message, out)
        self.end_step(out)
        count_step(self.counters, out, len(batch))
        return out

    def process_events(self, events: Iterable[AllocationEvent]) -> StepOutput:
        """Like :meth:`process` for events that are already parsed (the in-process demo)."""
        out = StepOutput()
        count = 0
        for event in events:
            count += 1
            self.accept(event, None, out)
        self.end_step(out)
        count_step(self.counters, out, count)
        return out

    @property
    def detectors(self) -> list[WindowDetector]:
        """Every detector this engine runs: alone, all of them (its fleet stage judges);
        as stage 1, those that score requests."""
        return self.fleet.detectors if self.fleet is not None else [*self._request_detectors]

    def as_stage_one(self, partition: int) -> None:
        """Make an engine restored from a snapshot taken alone (before the worker ran two
        stages) stage 1 of ``partition``: it keeps its windows, seen ids and context norms;
        what its detectors learned of keys and of the fleet is dropped (the fleet stage learns
        anew)."""
        self.partition, self.fleet = partition, None

    @property
    def due_s(self) -> float:
        """The event time at which this engine next scores a minute or peeks at one."""
        return self._due_s if self.next_minute is not None else math.inf

    def advance(self, now: float) -> StepOutput:
        """Event time has reached ``now`` on the stream this engine's partition belongs to:
        score and peek what is due, as an event at ``now`` would (a partitioned replay moves
        every partition's clock together)."""
        out = StepOutput()
        self.clock_s = max(self.clock_s, now)
        if self.next_minute is not None and now >= self._due_s:
            self._on_clock(now, out)
        else:
            self._learn_norms(now, out)
        return out

    def finish(self) -> StepOutput:
        """Score the last minutes and close every window (end of a replay)."""
        out = StepOutput()
        self._release_held(out, as_events=True)  # nothing came to contradict their time
        if self.next_minute is not None:
            self._score_through(self.aggregator.max_event_s, out)
        self._report_spend(self.clock_s, out)
        if self.fleet is not None:
            self._to_fleet(out, self.clock_s)
            out.alerts.extend(self.fleet.finish())
        out.metrics.extend(self.aggregator.close_all(rows=self.metric_rows))
        count_step(self.counters, out, 0)
        return out

    def snapshot(self, *, seen_ids: bool = True) -> bytes:
        """All state (windows, detectors, cooldowns, seen ids) as bytes for restore, under a
        header with its format (:mod:`pipeline.state_format`).

        With ``seen_ids=False`` the seen ids are left out (a head keeps their generation
        numbers): the caller saves them as chunks (:meth:`SeenIds.unsaved`) and gives them to
        :meth:`SeenIds.load` after :meth:`restore`.
        """
        state = self.__dict__ if seen_ids else {**self.__dict__, "seen": self.seen.head()}
        return seal(state)

    @classmethod
    def restore(cls, blob: bytes, settings: Settings) -> Engine:
        """The engine a :meth:`snapshot` saved, running by ``settings`` (:meth:`take_settings`;
        its detectors hold at most the settings' ``max_entities`` of each entity's state).

        A snapshot from before formats were numbered (format 0) is migrated
        (:func:`_from_format_0`); one of a newer format, or bytes that are no snapshot, raise
        :class:`~pipeline.state_format.SnapshotError` with what to do.
        """
        version, state = unseal(blob, settings, dict)
        engine = cls.__new__(cls)
        if version == 0:
            _from_format_0(engine, state, settings)
        else:
            engine.__dict__.update(state)
        engine.take_settings(settings)
        adopt_new_tests(engine._request_detectors, settings.worker.max_entities)
        bound_entities(engine._request_detectors, settings.worker.max_entities)
        if engine.fleet is not None:
            engine.fleet.take_settings(settings)
            adopt_new_tests(engine.fleet.detectors, settings.worker.max_entities)
            bound_entities(engine.fleet.detectors, settings.worker.max_entities)
        return engine

    def accept(self, event: AllocationEvent, message: Message | None, out: StepOutput) -> None:
        """Apply the storage and event-time rules of :meth:`process` to one valid event (end
        the step with :meth:`end_step`)."""
        cost = self.prices.event_cost(event)
        reason = _unstorable(event, cost)
        if reason is not None:
            _reject(out, event, message, reason)
            return
        epoch = event.ts.timestamp()
        if self._far_ahead(epoch):
            self._hold(event, message, out)
            return
        if self.held:
            self._release_held(out, as_events=False)
        self._ingest(event, out, cost, epoch)

    def admits(self, event: AllocationEvent) -> bool:
        """Whether :meth:`accept` would count ``event`` now: not a dead letter, not held."""
        reason = _unstorable(event, self.prices.event_cost(event))
        return reason is None and not self._far_ahead(event.ts.timestamp())

    def _far_ahead(self, epoch: float) -> bool:
        latest = self.aggregator.max_event_s  # -inf until the first event is in a window
        return latest > -math.inf and epoch - latest > self.future_horizon_s

    def _hold(self, event: AllocationEvent, message: Message | None, out: StepOutput) -> None:
        """Keep a far-ahead event until the stream confirms or contradicts its time."""
        if self.held:
            run = [e.ts.timestamp() for _, e in self.held]
            epoch = event.ts.timestamp()
            if not min(run) - self.future_horizon_s <= epoch <= max(run) + self.future_horizon_s:
                self._release_held(out, as_events=False)  # not one clock: a new run starts
        self.held.append((message, event))
        if len(self.held) >= FUTURE_CONFIRM:
            self._release_held(out, as_events=True)

    def _release_held(self, out: StepOutput, *, as_events: bool) -> None:
        held, self.held = self.held, []
        for message, event in held:
            if as_events:
                self._ingest(event, out)
                continue
            ahead = event.ts.timestamp() - self.aggregator.max_event_s
            latest = datetime.fromtimestamp(self.aggregator.max_event_s, UTC)
            reason = (
                f"future_timestamp: ts {event.ts.isoformat()} is {ahead:.0f} s ahead of the "
                f"latest event time {latest.isoformat()} (limit {self.future_horizon_s:.0f} s)"
            )
            _reject(out, event, message, reason)

    def _ingest(
        self,
        event: AllocationEvent,
        out: StepOutput,
        cost: float | None = None,
        epoch: float | None = None,
    ) -> None:
        if not self.seen.add(event.event_id):
            out.duplicates += 1
            return
        if epoch is None:
            epoch = event.ts.timestamp()
        if self.next_minute is None:
            self.next_minute = int(epoch // WINDOW_S) * WINDOW_S
        if epoch >= self._due_s:  # before this event counts: the evidence is all older
            self._on_clock(epoch, out)
        if epoch > self.clock_s:
            self.clock_s = epoch
        if cost is None:
            cost = self.prices.event_cost(event)
        self.ledger.add(event, cost, epoch)
        group = self.aggregator.add(event, cost, epoch)
        if group is None:
            out.too_late += 1
        else:
            seen = event if group[2] == event.api_key_id else _as_in(group, event)
            for detector in self._request_detectors:
                detector.observe_event(seen, group[0])
        out.events.append(event)
        out.costs.append(cost)

    def _on_clock(self, now: float, out: StepOutput) -> None:
        """Event time reached a due point: peek at the open minutes, then score the complete ones.

        Called per event, before the event that reached the point is counted, so scoring does
        not wait for the end of a batch. A minute is complete :data:`DETECTION_GRACE_S` after
        its end. Every :data:`PEEK_S` of event time, detectors that can judge part of a minute
        (:class:`PeekingDetector`) score the open minute so far without learning from it. A
        peek at tick ``t`` sees only events before ``t`` (an event at or after ``t`` triggers
        it), so its alerts are detected at ``t``. Ticks passed without an event (a quiet
        partition) are peeked at too, on what came before them: the fleet stage merges every
        partition's part of each tick.
        """
        assert self.next_minute is not None
        tick = int(now // PEEK_S) * PEEK_S
        for minute in self.aggregator.open_windows():
            if minute < self.next_minute:  # scored already
                continue
            for peek in range(minute + PEEK_S, minute + WINDOW_S, PEEK_S):
                if self._peeked_s < peek <= tick:
                    self._judge(minute, peek, out)
        self._peeked_s = max(self._peeked_s, tick)
        self._score_through(now - DETECTION_GRACE_S - WINDOW_S, out)
        next_tick = tick + PEEK_S if (tick + PEEK_S) % WINDOW_S else tick + 2 * PEEK_S
        self._due_s = min(next_tick, self.next_minute + WINDOW_S + DETECTION_GRACE_S)
        self._learn_norms(now, out)
        self._to_fleet(out, now)

    def _learn_norms(self, now: float, out: StepOutput) -> None:
        """At the first point in event time past a tick, the context norms learn what the
        requests since the previous tick taught (:mod:`pipeline.detectors.norms`): reported to
        the fleet stage, which moves the fleet's norms by every partition's reports at once."""
        tick = int(now // PEEK_S) * PEEK_S
        if tick <= self._norms_s:
            return
        self._norms_s = tick
        shared = [d for d in self._request_detectors if shares_norms(d)]
        reports = {d.name: d.report_norms(tick) for d in shared}
        if any(reports.values()):
            out.norms.append(NormTick(partition=self.partition, tick_s=tick, reports=reports))
        self._report_spend(tick, out)

    def _report_spend(self, tick: float, out: StepOutput) -> None:
        """Hand the fleet stage the spend totals that changed, at the same ticks as the norms
        (:mod:`pipeline.budgets`: the fleet stage judges budgets on every partition's)."""
        entries = self.ledger.report()
        if entries:
            out.spend.append(SpendTick(partition=self.partition, tick_s=tick, entries=entries))

    def _to_fleet(self, out: StepOutput, clock_s: float) -> None:
        """Alone: hand the parts and norms so far to the engine's own fleet stage, with the
        event time the engine has passed, and take the norms it moved."""
        if self.fleet is None:
            return
        clocks = {self.partition: clock_s}
        out.alerts.extend(self.fleet.add(out.parts, clocks, out.norms, out.spend))
        out.parts, out.norms, out.spend = [], [], []
        self.take_norms(self.fleet.merged_norms())

    def _judge(self, minute: int, end_s: float, out: StepOutput) -> None:
        """Hand ``minute`` as far as ``end_s`` (its end when closed, else a peek) to the fleet
        stage: its groups' sums and each key's sums of its requests' scores."""
        closed = end_s >= minute + WINDOW_S
        detectors = self._request_detectors
        part = MinutePart(
            partition=self.partition,
            minute=minute,
            end_s=float(end_s),
            groups=groups_of(self.aggregator.open_groups(minute)),
            key_minutes={d.name: d.hand_over(minute, closed=closed) for d in detectors},
        )
        out.parts.append(part)

    def take_norms(self, fleet: FleetNorms | None) -> None:
        """Take the fleet's context norms (from :meth:`FleetStage.merged_norms`)."""
        if fleet is None:
            return
        for detector in self._request_detectors:
            if shares_norms(detector) and detector.name in fleet.by_detector:
                detector.take_norms(fleet.by_detector[detector.name], fleet.through_s)

    def end_step(self, out: StepOutput) -> None:
        """Score every minute that is complete in event time, then close ripe windows."""
        if self.next_minute is None:
            return
        self._score_through(self.aggregator.max_event_s - DETECTION_GRACE_S - WINDOW_S, out)
        self._to_fleet(out, self.clock_s)
        out.metrics.extend(self.aggregator.close_ready(rows=self.metric_rows))

    def _score_through(self, last_start: float, out: StepOutput) -> None:
        """Score the minutes from ``next_minute`` to the one starting at ``last_start``, in order.

        Minutes without events are skipped: an empty minute is a no-op for every detector, and
        a jump in event time (an idle partition, a replay across a gap) must not cost one step
        per minute of the gap.
        """
        assert self.next_minute is not None
        if self.next_minute > last_start:
            return
        for minute in self.aggregator.open_windows():
            if self.next_minute <= minute <= last_start:
                self._judge(minute, minute + WINDOW_S, out)
        self.next_minute = window_of(last_start) + WINDOW_S


def _from_format_0(engine: Engine, state: dict[str, Any], settings: Settings) -> None:
    """Fill ``engine`` from a snapshot saved before formats were numbered: a field it predates
    gets its default, and an engine from before the fleet stage hands its detectors and cooldown
    gate to one of its own. Those from before :mod:`pipeline.records` name held messages
    ``pipeline.engine.Message``, which this module's import of :class:`Message` still answers."""
    engine.__dict__.update(
        held=[], _norms_s=-math.inf,
        _due_s=-math.inf,  # from before the open minute was peeked at
        _peeked_s=-math.inf,  # from before quiet ticks were peeked at
        ledger=SpendLedger(),  # from before budgets: spend counts from the restore on
        metric_rows=True,
    )  # fmt: skip
    engine.__dict__.update(state)
    if "fleet" not in state:  # from before the fleet's detectors had a stage
        fields = vars(engine)
        detectors = fields.pop("detectors")
        engine._request_detectors = request_detectors(detectors)
        engine.fleet = FleetStage(settings, detectors, 1)
        engine.fleet.gate = fields.pop("gate")
        engine.partition, engine.clock_s = 0, engine.aggregator.max_event_s
        fields.pop("_peekers", None)
    engine.aggregator.upgrade()


def parse_messages(
    messages: Sequence[Message], max_bytes: int, out: StepOutput
) -> Iterator[tuple[Message, AllocationEvent]]:
    """Each valid message with its event, in order; a reject is added to ``out`` as a dead
    letter when the iteration passes it, so it keeps its place among the step's dead letters."""
    parsed = parse_events([message.value for message in messages], max_bytes=max_bytes)
    for message, event in zip(messages, parsed, strict=True):
        if isinstance(event, InvalidEvent):
            out.dead_letters.append(_dead_letter(message, event))
        else:
            yield message, event


def count_step(counters: dict[str, int], out: StepOutput, messages: int) -> None:
    """Add one step of ``messages`` wire messages to the running ``counters``."""
    counters["events"] += messages
    counters["valid"] += len(out.events)
    counters["dead_letters"] += len(out.dead_letters)
    counters["duplicates"] += out.duplicates
    counters["alerts"] += len(out.alerts)


def _as_in(group: tuple[int, str, str, str, str, str], event: AllocationEvent) -> AllocationEvent:
    """The event under the ids of the overflow group it was counted in (bounded state)."""
    _, tenant, api_key, model, route, server = group
    return msgspec.structs.replace(
        event, tenant_id=tenant, api_key_id=api_key, model=model, route=route, server_id=server
    )


def _unstorable(event: AllocationEvent, cost: float) -> str | None:
    """Why storage cannot hold ``event`` (its cost, its time), or None."""
    if cost >= COST_LIMIT_USD:
        return (
            f"out_of_range: cost_usd ({cost:.6g} USD for one request; storage holds less "
            f"than {COST_LIMIT_USD:.0e})"
        )
    if not EARLIEST_TS <= event.ts < LATEST_TS:
        rule = "past_timestamp" if event.ts < EARLIEST_TS else "future_timestamp"
        return (
            f"{rule}: ts {event.ts.isoformat()} is outside the storable range "
            f"[{EARLIEST_TS.isoformat()}, {LATEST_TS.isoformat()})"
        )
    return None


def _reject(out: StepOutput, event: AllocationEvent, message: Message | None, reason: str) -> None:
    """Dead-letter a valid event (one that came already parsed is encoded for its payload)."""
    source = message or Message(encode_event(event))
    out.dead_letters.append(_dead_letter(source, InvalidEvent(reason)))


def _dead_letter(message: Message, exc: InvalidEvent) -> DeadLetter:
    return DeadLetter(
        reason=exc.reason,
        rule=exc.rule,
        payload=message.value,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
    )
