"""Volume spikes (leaked keys, denial of wallet): an entity's traffic against its *own* normal.

Each api key's and tenant's *share of fleet traffic* is learned online. The share is what
makes the baseline seasonal without a calendar: the daily peak lifts every entity alike and
leaves shares unchanged, while a leaked key's share jumps.

Real traffic is not Poisson: batch jobs, CI runs and agents send in bursts, and some of those
come back at the same minutes of every hour. So each entity is judged against its own
variability, learned from its own history:

* **spread** — per horizon (1, 2 and 5 minutes, an exponentially weighted ~15 minutes, and the
  last 15 minutes without their highest third), the mean and standard deviation of
  ``log((count + 1) / (expected + 1))`` over its own past minutes, leaving out windows 3 of its
  spreads out. In log space a heavy-tailed burst is
  compressed, so the same z-score works for a smooth key (a 3x minute is far out) and for a
  bursty tenant (whose 3x bursts are inside its normal, while a lasting 3x still stands out
  over 15 minutes). Longer horizons learn more slowly (their windows overlap), so a rise that
  takes ten minutes to show over 15 is not learned as normal on the way;
* **one minute is one minute** — a window of several minutes counts its highest minute at most
  as many times its expected as its next highest: those windows are for rises that last, and a
  bursty key's single giant minute, judged by the 1-minute horizon against its single minutes,
  would otherwise stand out more over 5 or 15 minutes than it does over one;
* **a peek judges a whole minute** — the open minute so far is judged completed as if the
  rest of it were usual (its share of the fleet's pace so far): a horizon's spread is learned
  from whole minutes, and a quarter of a minute of clumpy traffic runs twice as wide as a
  minute of it, so the part is judged by what the minute would at least show;
* **tail** — how often its windows do go 3 spreads out, learned from each excursion once it is
  over. An entity that goes there more often than a Gaussian would is judged on a spread
  widened until it would (its random bursts, which no minute of the hour predicts), while a
  lasting rise cannot widen the spread it is judged by while it lasts;
* **recurring bursts** — a sparse memory of the minutes of the hour at which it runs above its
  share (learned per hour, ±1 minute), which raise what is expected there once they came back
  in two hours;
* **its tenant** — a key is expected to rise with the rest of its tenant (a batch job lifts a
  tenant's keys together; a leaked key rises on its own);
* **its level** follows its minutes that do not alarm; once the entity has been seen for two
  hours, only those that no horizon finds 3 of its spreads out, each counted for at most
  ``min_ratio`` times the level and a fifth as fast: a new tenant's ramp is learned rather
  than paged, while a spike of an established entity barely moves the level it is measured
  against;
* **how long its rises last** — a rise is its minutes at ``min_ratio`` times what is expected
  or more, a single minute below tolerated. One that lasts longer than the long horizons and
  than twice the longest of the entity's own rises so far (those that were not paged) is paged
  once its total is beyond counting noise: a bursty key's bursts, however high, end within
  minutes, and a rise at their level that does not end is not one of them (a mature entity's;
  scored by how many times that bar it has lasted).
* **a sustained rise, added up** — a mature entity's closed minutes also feed a one-sided
  sequential test (:class:`_Cusum`): each adds its z-score under its own 1-minute spread, at
  most :data:`SEQ_CLIP`, less :data:`SEQ_K`, judged against its usual as it was when the run
  started (for at most :data:`SEQ_RUN_MINUTES`). A 2.5x rise of a clumpy key shows below
  ``min_ratio`` in many of its minutes, so its rise keeps breaking, while each minute stands
  about one of its spreads up and they add up; a burst, however high, adds at most 1.5 a
  minute and ends within minutes. It pages at the entity's own *dispersion* (how far its
  ordinary walk wanders) times ``ln(entities followed x 14,400)``, which such a walk passes by
  chance about once in ten days on one entity or another, once the run has lasted as long as
  a rise must (longer than the long horizons and twice the entity's longest own rise) and its
  total is :data:`STILL_ELEVATED` times what is expected and beyond counting noise. A rise that
  ends during a run is learned as the entity's own once the run is over without a page.

A window's score is the smaller of its surprise under the entity's own spread (a Gaussian tail
in log space, in decades) and under counting noise (a Poisson tail bound); it alarms past the
adaptive threshold, at least ``min_ratio`` times what is expected, with GPU-ms up too (for a long
horizon, whose memory averages a rise with the quiet minutes before it, that size is also
reached when the last 5 minutes reach it: a lasting doubling is sure over 15 minutes well before
their average has doubled). A long
horizon alarms only while the last 5 minutes are still :data:`STILL_ELEVATED` times what is
expected: its memory outlasts an incident, and a page would then be about what has stopped; and
a minute that alarmed counts as usual in the long horizons (it was paged once, and is not paged
again from their memory after the rise). The exponentially weighted 15 minutes alarms only for
a rise that lasts: while the 15 minutes without their highest third are :data:`STILL_ELEVATED`
times what is expected as well. A bursty key's burst of a few minutes, however dense, is judged
by the short horizons against its own spread of them; over 15 minutes, where its bursts seldom
weigh this much, it would stand out as a lasting rise it is not.
The fleet total a share is taken of is winsorised by tenant (:func:`robust_fleet`): each tenant
counts for at most ``TENANT_CAP`` times the median tenant, so one tenant flooding the stream
cannot dilute every other entity's share, hide their spikes while it lasts and page on them when
it stops.

>>> from datetime import UTC, datetime, timedelta
>>> from pipeline.detectors.base import EntityMinute, MinuteView
>>> det = VolumeDetector(entity_types=("api_key",))
>>> t0 = datetime(2026, 3, 2, tzinfo=UTC)
>>> def minute(i, key_requests):
...     key = EntityMinute(requests=key_requests, gpu_ms=100.0 * key_requests)
...     fleet = EntityMinute(requests=1000 + key_requests, gpu_ms=1e5 + 100.0 * key_requests)
...     start = t0 + timedelta(minutes=i)
...     return MinuteView(start, start + timedelta(minutes=1), {"api_key": {"k": key}}, fleet)
>>> any(det.observe_minute(minute(i, 20)) for i in range(90))
False
>>> det.observe_minute(minute(90, 200))[0].kind
'volume_spike'

A key whose traffic always comes in bursts is judged against them:

>>> import random
>>> rng = random.Random(42)
>>> bursty = VolumeDetector(entity_types=("api_key",))
>>> counts = [round(20 * rng.gammavariate(1.0, 1.0)) for _ in range(240)]
>>> sum(bool(bursty.observe_minute(minute(i, c))) for i, c in enumerate(counts))
0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from operator import itemgetter
from statistics import median
from typing import Any, Final

from pipeline.detectors.base import (
    AdaptiveThreshold,
    BoundedStore,
    EntityMinute,
    Finding,
    Horizon,
    MinuteView,
    poisson_surprise,
)
from pipeline.detectors.baseline import EWBaseline
from pipeline.detectors.tails import GAUSSIAN_TAIL, SUSPECT_Z, learn_excursion, widening

TENANT_CAP: Final = 3.0  # in the fleet total, a tenant counts for at most 3x the median tenant
LONG_MINUTES: Final = 15  # the two long horizons (VolumeDetector._windows)
SPREAD_FADING: Final = 0.02  # a 1-minute horizon's spread follows about its last 50 minutes; a
# longer horizon's windows overlap, so it learns sqrt(minutes) times slower (the 15-minute one over
# about its last 3 hours)
MATURE_LEVEL_PACE: Final = 0.2  # a mature entity's level moves a fifth as fast as a young one's
SPREAD_PRIOR: Final = (1.0, 30)  # the spread starts at 1 (a factor e), fading out over 30 min
# of learning for a 1-minute horizon, 30 * sqrt(minutes) for longer ones (which need longer to see
# an entity's bursts come and go)
MIN_SPREAD: Final = 0.05
YOUNG_MINUTES: Final = 120  # an entity seen for less than this follows its own ramp
SLOT_MIN_EXCESS: Final = math.log(1.5)  # a minute this far above share feeds the burst memory
SLOT_MIN_SURPRISE: Final = 2.0  # ... and this surprising to counting noise (decades)
SLOT_LEARN: Final = 0.5  # how fast the memory of a minute of the hour follows (per hour)
SLOT_MAX: Final = 20  # minutes of the hour remembered per entity at most
# A long horizon alarms only while the entity's last few minutes are still this far above what
# is expected: its memory (an exponentially weighted 15 minutes) outlasts an incident by up to
# half an hour, and a page then would be about what has stopped.
STILL_ELEVATED: Final = 1.5
# A rise outlasting every horizon: a mature entity's minutes at min_ratio times what is expected
# or more (a single minute below tolerated), for longer than the long horizons and than twice
# the longest of its own rises so far, is paged once the rise's total is sure (_Rise).
RISE_QUIET_MINUTES: Final = 2  # minutes below (or without requests) that end a rise
# The sequential test of a mature entity's minutes (_Cusum): each adds its z-score under the
# entity's own 1-minute spread, at most SEQ_CLIP, less SEQ_K; it pages at its dispersion times
# ln(entities followed x SEQ_ONCE_IN), the height such a walk passes by chance about once in
# SEQ_ONCE_IN minutes on one entity or another.
SEQ_K: Final = 0.5  # half a spread: a rise worth finding lifts its minutes by about one
SEQ_CLIP: Final = 2.0  # a minute counts for at most 2 spreads: a burst adds at most 1.5 a minute
SEQ_ONCE_IN: Final = 14_400  # minutes (ten days)
SEQ_DISPERSION_PACE: Final = 0.1  # per block of LONG_MINUTES minutes: about its last 2.5 hours
# A run not at its bar within this many minutes starts over, against the usual as learned by
# then (the usual of a calm hour, held longer, would judge a burstier one that follows)
SEQ_RUN_MINUTES: Final = 2 * LONG_MINUTES

# What a young entity holds for its horizons' spreads and its burst memory until its level is
# warm: one empty list and dict shared by all of them, never written (_ShareState.learn_spreads
# puts its own in their place before anything is learned into them).
_UNLEARNED: Final[list[Any]] = []
_NO_BURSTS: Final[dict[int, tuple[float, int, int]]] = {}
# One minute: (requests, GPU-ms, fleet requests, fleet GPU-ms, seasonal factor)
Sums = tuple[float, float, float, float, float]
# A window: observed and expected requests, observed and expected GPU-ms, fleet GPU-ms, minutes
Window = tuple[float, float, float, float, float, int]


class _Rise:
    """An entity's minutes at ``min_ratio`` times what is expected or more, under way: its
    first and latest such minute, and the sums of its minutes (those below between them
    included) as a :data:`Window`'s observed and expected requests and GPU-ms, fleet GPU-ms."""

    __slots__ = ("last", "paged", "start", "sums")

    def __init__(self, start: datetime) -> None:
        self.start = self.last = start
        self.paged = False  # it alarmed: not learned as one of the entity's own rises
        self.sums = [0.0] * 5

    @property
    def minutes(self) -> int:
        return int((self.last - self.start).total_seconds()) // 60 + 1


class _Cusum:
    """A one-sided sequential test (CUSUM) of a mature entity's closed minutes against its own
    variability: ``S <- max(0, S + min(z, SEQ_CLIP) - SEQ_K)``, ``z`` the minute's log excess
    less the usual one, in its 1-minute spread (both as they were when the run of ``S`` started:
    a lasting rise does not teach the usual it is judged by while it lasts; a run not at its bar
    within :data:`SEQ_RUN_MINUTES` starts over). A minute without requests counts as a usual one
    (``-SEQ_K``).

    A sustained moderate rise adds up; a burst, however high, adds at most ``SEQ_CLIP - SEQ_K``
    a minute and ends within minutes. How far the entity's ordinary walk wanders is its own:
    its *dispersion* is the variance per minute of its steps summed over blocks of
    :data:`LONG_MINUTES` (about 1 for independent minutes, more when its minutes come in
    bursts that last), learned once a run of ``S`` is over without a page. A walk of
    dispersion ``D`` and drift ``-SEQ_K`` reaches ``h`` in about ``exp(-2 SEQ_K h / D)`` of
    its starts (Brownian approximation), so ``h = D ln(n x SEQ_ONCE_IN)`` is passed by chance
    about once in :data:`SEQ_ONCE_IN` minutes over ``n`` entities.

    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 3, 2, tzinfo=UTC)
    >>> def walk(test, excesses):
    ...     for i, x in enumerate(excesses):
    ...         test.step(x, 0.0, 1.0, (1.0, 1.0, 1.0, 1.0, 1.0, 1), t0 + timedelta(minutes=i))
    ...     return test.s
    >>> walk(_Cusum(), [9.0] * 5)  # five minutes nine spreads out: bounded
    7.5
    >>> walk(_Cusum(), [1.5] * 15)  # fifteen minutes at one and a half
    15.0
    """

    __slots__ = (
        "block", "dispersion", "held_rise", "last", "pending", "ref", "s", "start", "sums", "usual",
    )  # fmt: skip

    def __init__(self) -> None:
        self.s = 0.0
        self.ref = (0.0, 1.0)  # the usual log excess and spread the run is judged against
        self.start: datetime | None = None  # the run's first minute
        self.last: datetime | None = None  # the latest minute stepped
        self.sums = [0.0] * 5  # the run's minutes as a Window's first five sums
        self.usual = -SEQ_K  # the mean step against the usual as it is learned
        self.block = (0.0, 0)  # the block under way: its steps' excess over usual, minutes
        self.dispersion = 1.0
        self.pending: list[float] = []  # blocks ended during the run, learned once it is over
        self.held_rise = 0  # the longest rise that ended during the run, learned once it is over

    def step(
        self, excess: float, mean: float, spread: float, minute: Window, now: datetime
    ) -> None:
        """Add a closed minute: its log excess, the entity's usual one and 1-minute spread as
        learned so far, and its 1-minute :data:`Window`."""
        if self.last is not None:  # minutes without requests
            missed = int((now - self.last).total_seconds()) // 60 - 1
            self.s = max(0.0, self.s - missed * SEQ_K)
        self.last = now
        step = min(max((excess - mean) / spread, -SEQ_CLIP), SEQ_CLIP) - SEQ_K
        total, minutes = self.block[0] + step - self.usual, self.block[1] + 1
        self.usual += SPREAD_FADING * (step - self.usual)
        if minutes == LONG_MINUTES:
            self.pending.append(total * total / LONG_MINUTES)
            total, minutes = 0.0, 0
        self.block = (total, minutes)
        if self.start is not None and now - self.start >= timedelta(minutes=SEQ_RUN_MINUTES):
            self.s = 0.0
        if self.s == 0.0:  # a run starts: what the last one saw is ordinary
            for variance in self.pending:
                self.dispersion += SEQ_DISPERSION_PACE * (variance - self.dispersion)
            self.pending = []
            self.ref, self.start, self.sums = (mean, spread), now, [0.0] * 5
        z = (excess - self.ref[0]) / self.ref[1]
        self.s = max(0.0, self.s + min(max(z, -SEQ_CLIP), SEQ_CLIP) - SEQ_K)
        for i in range(5):
            self.sums[i] += minute[i]

    def bar(self, entities: int, longest_rise: int) -> float:
        """Where a walk of this entity's dispersion reaches by chance about once in
        :data:`SEQ_ONCE_IN` minutes on one of ``entities``; never under what a burst twice as
        long as the entity's ``longest_rise`` adds at the clip (a burst as long as its own,
        however high, is not a sustained rise).

        >>> _Cusum().bar(1, 0), _Cusum().bar(1, 14)  # ln(14,400); 2 x 14 minutes x 1.5
        (9.574983485564092, 42.0)
        """
        chance = max(1.0, self.dispersion) * math.log(max(entities, 1) * SEQ_ONCE_IN)
        return max(chance, 2 * longest_rise * (SEQ_CLIP - SEQ_K))

    def minutes(self, now: datetime) -> int:
        """How long the run has lasted, the minute starting ``now`` included."""
        start = self.start or now
        return int((now - start).total_seconds()) // 60 + 1

    def restart(self) -> None:
        """After a page: a new run, the paged one's blocks and rises not learned."""
        self.s, self.pending, self.held_rise = 0.0, [], 0


class _ShareState:
    __slots__ = (
        "age", "cusum", "fades", "gpu_share", "horizon", "long", "longest_rise", "mean", "paces",
        "paged", "rise", "run", "seen", "share", "slots", "tail", "var",
    )  # fmt: skip

    def __init__(
        self, minutes: int, warm_up: int, fades: tuple[float, ...], paces: tuple[float, ...]
    ) -> None:
        self.fades = fades  # minutes of learning over which each horizon's prior fades
        self.paces = paces  # each horizon's learning rate (shared by all entities)
        self.horizon = Horizon[Sums](max(minutes, LONG_MINUTES))
        self.share = EWBaseline(fading=0.05, min_sd=1e-6, warm_up=warm_up)
        self.gpu_share = EWBaseline(fading=0.05, min_sd=1e-6, warm_up=warm_up)
        # Per horizon, once its level is warm (learn_spreads; until then no window is judged,
        # and the many young keys of a large fleet do not carry five lists each): its log
        # excess's mean and variance, its own tail (the share of its windows SUSPECT_Z spreads
        # out, at first a Gaussian's) and the windows so far of the excursion under way; and
        # the EW sums of requests, expected, GPU-ms, expected, fleet GPU-ms.
        self.mean: list[float] = _UNLEARNED
        self.var: list[float] = _UNLEARNED
        self.tail: list[float] = _UNLEARNED
        self.run: list[int] = _UNLEARNED
        self.long: list[float] = _UNLEARNED
        self.seen = 0  # minutes of spread learned
        self.age = 0  # minutes in which the entity was seen
        # its minutes that alarmed, within the long horizons (replaced, never appended to)
        self.paged: list[datetime] = _UNLEARNED
        self.rise: _Rise | None = None  # its rise under way, if any
        self.longest_rise = 0  # minutes: the longest of its rises that did not alarm
        self.cusum: _Cusum | None = None  # its sequential test, once it is mature
        # minute of the hour -> (usual log excess, the hour it was last learned in, the hours
        # in which it burst there)
        self.slots = _NO_BURSTS
        if self.share.warm:
            self.learn_spreads()

    def learn_spreads(self) -> None:
        """Start learning its horizons' spreads (once its level is warm)."""
        if not self.mean:
            horizons = len(self.fades)  # the short ones, then the two long ones
            self.mean, self.var = [0.0] * horizons, [0.0] * horizons
            self.tail, self.run = [GAUSSIAN_TAIL] * horizons, [0] * horizons
            self.long = [0.0] * 5
            self.slots = {}

    def __setstate__(self, state: tuple[None, dict[str, object]]) -> None:
        slots = state[1]
        if "mean" not in slots:  # a snapshot from before the own-spread model: start its spread
            self.__init__(5, 30, *_learning((1, 2, 5)))  # type: ignore[misc]  # afresh, keep level
            self.share, self.gpu_share = slots["share"], slots["gpu_share"]  # type: ignore[assignment]
            self.horizon.minutes = slots["horizon"].minutes  # type: ignore[attr-defined]
            if self.share.warm:
                self.learn_spreads()
            return
        self.paged = []  # absent from snapshots taken before them
        self.rise, self.longest_rise = None, 0
        self.cusum = None
        for name, value in slots.items():
            setattr(self, name, value)
        self.horizon.minutes = max(self.horizon.minutes, LONG_MINUTES)
        if "paces" not in slots:  # before the tail, the slower pace and the kept window
            self.fades, self.paces = _learning((1, 2, 5))
            self.mean, self.var = [*self.mean, 0.0], [*self.var, 0.0]
            self.tail = [GAUSSIAN_TAIL] * len(self.mean)
            self.run = [0] * len(self.mean)
            self.slots = {m: (v, h, 1) for m, (v, h) in self.slots.items()}  # type: ignore[misc]

    @property
    def lasting(self) -> int:
        """Minutes a rise must outlast to be a lasting one: the long horizons, and twice the
        longest of its own rises so far."""
        return max(LONG_MINUTES, 2 * self.longest_rise)

    def spread(self, index: int) -> float:
        """The learned standard deviation of a horizon's log excess, plus
        :data:`SPREAD_PRIOR` fading out while it is young."""
        # an exponentially weighted variance started at 0 is low by (1 - pace)^seen: undo that
        unlearned = (1.0 - self.paces[index]) ** self.seen
        learned = math.sqrt(max(self.var[index], 0.0) / max(1.0 - unlearned, 1e-9))
        prior = SPREAD_PRIOR[0] * max(0.0, 1.0 - self.seen / self.fades[index])
        return max(MIN_SPREAD, learned + prior)

    def usual_high(self, index: int) -> float:
        """How many times its expected a horizon's window usually reaches at most (two of its
        spreads above its usual log excess)."""
        return math.exp(self.mean[index] + 2 * self.spread(index))

    def z(self, index: int, observed: float, expected: float) -> float:
        """How many of its own spreads this window's log excess is above its usual one."""
        excess = math.log((observed + 1.0) / (expected + 1.0))
        return (excess - self.mean[index]) / self.spread(index)

    def surprise(self, index: int, z: float) -> float:
        """Decades of surprise of a window ``z`` of its spreads out: a Gaussian tail, widened
        when the entity's windows go SUSPECT_Z spreads out more often than a Gaussian's would
        (to the width at which they would be that frequent)."""
        if z <= 0:
            return 0.0
        if z > SUSPECT_Z:
            z /= widening(self.tail[index])
        return z * z / 2 / math.log(10)

    def learn_tail(self, index: int, z: float) -> None:
        """Follow excursions past SUSPECT_Z spreads; learn each one's windows once it is over,
        back within a spread of usual (so that a lasting rise, flapping about SUSPECT_Z as it
        sets in, does not widen the tail it is judged by while it lasts)."""
        self.tail[index], self.run[index] = learn_excursion(self.tail[index], self.run[index], z)

    def season(self, start: datetime) -> float:
        """How many times its share the entity usually sends at this minute of the hour, from
        the bursts of earlier hours (±1 minute) that came back in at least two of them: one
        burst is not a habit."""
        slots = self.slots
        if not slots:
            return 1.0
        hour = _hour(start)
        excess, hours = 0.0, 0
        for d in (-1, 0, 1):
            value, learned, bursts = slots.get((start.minute + d) % 60, (0.0, hour, 0))
            if learned < hour:
                excess, hours = max(excess, value), hours + bursts
        return math.exp(excess) if hours >= 2 else 1.0


class VolumeDetector:
    sequential = True  # (a detector restored from a snapshot taken before the test has it on)

    def __init__(
        self,
        entity_types: tuple[str, ...] = ("api_key", "tenant"),
        horizons_min: tuple[int, ...] = (1, 2, 5),
        warm_up: int = 30,
        score_floor: float = 8.0,
        min_ratio: float = 2.0,
        max_entities: int = 200_000,
        *,
        sequential: bool = True,
    ) -> None:
        """``sequential``: whether mature entities' minutes also feed the sequential test of a
        sustained rise (:class:`_Cusum`)."""
        self.name = "volume_spike"
        self.sequential = sequential
        self.entity_types = entity_types
        self.horizons_min = tuple(sorted(horizons_min))
        self.warm_up = warm_up
        self.min_ratio = min_ratio
        self.threshold = AdaptiveThreshold(score_floor)
        self.states: BoundedStore[str, _ShareState] = BoundedStore(max_entities)
        self._learning = _learning(horizons_min)

    def entity_stores(self) -> list[BoundedStore[Any, Any]]:
        return [self.states]

    def observe_minute(self, view: MinuteView) -> list[Finding]:
        return self._judge(view, peek=False)

    def peek_minute(self, view: MinuteView) -> list[Finding]:
        """The open minute so far against the fleet's same part of it; nothing is learned.

        Shares need no scaling to the elapsed time: the key's requests and the fleet's come
        from the same seconds.
        """
        return self._judge(view, peek=True)

    def _judge(self, view: MinuteView, *, peek: bool) -> list[Finding]:
        if not view.fleet.requests:
            return []
        findings: list[Finding] = []
        fleet = robust_fleet(view)
        tenants: dict[str, list[Window]] = {}
        spiking: dict[str, float] = {}  # tenant -> the most excess one of its keys sends
        for entity_type in self.entity_types:
            # A tenant whose key already alerted is the same incident: name the key only.
            covered = {view.tenant_of_key.get(f.entity_id) for f in findings}
            for entity_id, minute in view.entities(entity_type).items():
                if entity_type == "tenant" and entity_id in covered:
                    continue
                tenant = view.tenant_of_key.get(entity_id) if entity_type == "api_key" else None
                finding = self._observe(
                    entity_type, entity_id, minute, view, fleet, peek, tenant, tenants, spiking
                )
                if finding is not None and not (
                    entity_type == "tenant" and self._one_key(entity_id, tenants, spiking)
                ):
                    findings.append(finding)
        return findings

    def _one_key(
        self, tenant: str, tenants: dict[str, list[Window]], spiking: dict[str, float]
    ) -> bool:
        """Whether one key of ``tenant``, itself at ``min_ratio`` times its expected or more,
        sends at least half the tenant's excess over the longest short horizon: the tenant's
        rise is that key's incident (paged on the key, even in a minute its own score falls
        short of the threshold)."""
        windows = tenants.get(tenant)
        if not windows or tenant not in spiking:
            return False
        observed, expected = windows[len(self.horizons_min) - 1][:2]
        return spiking[tenant] >= 0.5 * (observed - expected)

    def _tenant_windows(
        self,
        tenant: str | None,
        view: MinuteView,
        fleet: EntityMinute,
        peek: bool,
        built: dict[str, list[Window]],
    ) -> list[Window]:
        """The tenant's windows ending with this minute, as :meth:`_observe` builds them, once
        a minute per tenant (kept in ``built``); none without a warm tenant to judge by."""
        if tenant is None or "tenant" not in self.entity_types:
            return []
        if tenant in built:
            return built[tenant]
        state = self.states.get(f"tenant:{tenant}")
        minute = view.entities("tenant").get(tenant)
        windows: list[Window] = []
        if state is not None and minute is not None and state.share.warm:
            sums = _sums(minute, fleet, state.season(view.start))
            if peek:
                sums = _completed(sums, state, view)[0]
            recent = [*state.horizon.recent, (view.start, sums)]
            windows = self._windows(state, recent, view.start, None if peek else sums)
        built[tenant] = windows
        return windows

    def _observe(
        self,
        entity_type: str,
        entity_id: str,
        minute: EntityMinute,
        view: MinuteView,
        fleet: EntityMinute,
        peek: bool,
        tenant: str | None,
        tenants: dict[str, list[Window]],
        spiking: dict[str, float],
    ) -> Finding | None:
        """Judge one entity's minute (learning from it unless ``peek``). A key's expected
        traffic rises with the rest of its ``tenant``'s (whose windows are built once a minute
        into ``tenants``): a tenant's batch job lifts its keys together, while a leaked key
        rises on its own. A key at ``min_ratio`` times its expected or more over the longest
        short horizon notes its excess there in ``spiking`` (by tenant)."""
        name = f"{entity_type}:{entity_id}"
        rest = (0.0, 0.0, 0.0)  # what a peek's open minute is completed with (_completed)
        if peek:
            found = self.states.get(name)
            if found is None or not found.share.warm:
                return None
            state = found
            sums, rest = _completed(_sums(minute, fleet, state.season(view.start)), state, view)
            recent = [*state.horizon.recent[-self.horizons_min[-1] :], (view.start, sums)]
        else:
            state = self.states.get_or_create(
                name,
                lambda: _ShareState(max(self.horizons_min), self.warm_up, *self._learning),
            )
            sums = _sums(minute, fleet, state.season(view.start))
            state.horizon.push(view.start, sums)
            recent = list(state.horizon.recent)
            if not state.share.warm:
                self._learn(state, sums, [], view.start, alarming=False)
                return None
        # A tenant's windows were built already if one of its keys was judged this minute
        # (_tenant_windows): from the same state, sums and minutes (its keys come first, and
        # judging a key changes nothing of its tenant's state), so they are the same windows.
        cached = tenants.get(entity_id) if entity_type == "tenant" else None
        floor = self.min_ratio if peek else None  # a peek judges only what could alarm
        windows = cached or self._windows(
            state, recent, view.start, None if peek else sums, floor=floor
        )
        if peek and not any(w[0] >= self.min_ratio * w[1] for w in windows):
            return None  # no window could alarm (what its tenant adds only raises expected)
        tenant_windows = self._tenant_windows(tenant, view, fleet, peek, tenants)
        rise = (
            [_rest_rise(w, t) for w, t in zip(windows, tenant_windows, strict=True)]
            if tenant_windows
            else [1.0] * len(windows)
        )
        judged = [
            (w[0], w[1] * r, w[2], w[3] * r, w[4], w[5]) for w, r in zip(windows, rise, strict=True)
        ]
        short = len(self.horizons_min)
        now = judged[short - 1]  # the longest short horizon: what the entity sends now
        ongoing = _elevated(now)
        # the exponentially weighted 15 minutes only for a rise that lasts (module docstring)
        lasting = len(judged) > short + 1 and _elevated(judged[short + 1])
        if tenant is not None and now[0] >= self.min_ratio * now[1]:
            spiking[tenant] = max(spiking.get(tenant, 0.0), now[0] - now[1])
        scored = [
            (self._score(state, i, w), i, w)
            for i, w in enumerate(judged)
            if i < short or (ongoing and (i > short or lasting))
        ]
        score, index, window = max(scored, key=lambda s: s[0])
        observed, expected, observed_gpu, expected_gpu, fleet_gpu, minutes = window
        ratio, gpu_ratio = _ratio(observed, expected), _ratio(observed_gpu, expected_gpu)
        if not peek:
            self.threshold.update(score, (entity_type, entity_id))
        threshold = self.threshold.value
        size, gpu_size = ratio, gpu_ratio
        if index >= short:  # a long horizon's memory dilutes a rise with the minutes before it
            size = max(ratio, _ratio(now[0], now[1]))
            gpu_size = max(gpu_ratio, _ratio(now[2], now[3]))
        alarming = (
            score >= threshold and size >= self.min_ratio and gpu_size >= self.min_ratio / 2
        )
        outlasting, under_way, sustained = None, None, None
        if not peek:
            under_way = self._follow_rise(state, judged[0], view.start)
            if under_way is not None and not alarming:
                outlasting = self._outlasting(state, under_way, view.start, threshold)
                alarming = outlasting is not None
            sustained = self._sustained(state, judged[0], view.start, threshold, paged=alarming)
            alarming = alarming or sustained is not None
            if alarming and under_way is not None:
                under_way.paged = True
            self._learn(state, sums, windows, view.start, alarming=alarming)
        if not alarming:
            return None
        if outlasting is not None and under_way is not None:
            return self._rise_finding(entity_type, entity_id, state, under_way, outlasting, view)
        if sustained is not None and state.cusum is not None:
            return self._sustained_finding(
                entity_type, entity_id, state, state.cusum, sustained, view
            )
        label = entity_type.replace("_", " ")
        usual_high = state.usual_high(index)
        usual = f"its traffic usually reaches {usual_high:.1f}x over {minutes} min"
        if rise[index] > 1.0:
            usual += f"; the rest of its tenant's rise of {rise[index]:.1f}x counted in"
        if peek:  # what it sent so far, not what the rest of the minute was assumed to add
            (added, added_gpu, added_fleet_gpu), r = rest, rise[index]
            observed, expected = observed - added, expected - added * r
            observed_gpu, expected_gpu = observed_gpu - added_gpu, expected_gpu - added_gpu * r
            fleet_gpu -= added_fleet_gpu
            ratio, gpu_ratio = _ratio(observed, expected), _ratio(observed_gpu, expected_gpu)
        span = _span(minutes, view) if peek else f"{minutes} min"
        sent = (
            f"sent {observed:,.0f} requests using {observed_gpu / 1000:,.0f} GPU-s in {span}, "
            f"{ratio:.1f}x its usual share of fleet traffic"
            if index <= short
            else f"kept sending {ratio:.1f}x its usual share of fleet traffic through two thirds "
            f"of the last {minutes} min ({observed:,.0f} requests using "
            f"{observed_gpu / 1000:,.0f} GPU-s in those minutes)"
        )
        summary = (
            f"{label} {entity_id} {sent} ({expected:,.0f} requests expected; {usual}; GPU-ms "
            f"{gpu_ratio:.1f}x)"
        )
        start = next(t for t, _ in recent if (view.start - t).total_seconds() < minutes * 60)
        return Finding(
            kind="volume_spike",
            entity_type=entity_type,
            entity_id=entity_id,
            window_start=start,
            window_end=view.end,
            score=score,
            threshold=threshold,
            summary=summary,
            evidence={
                "requests": (observed, expected),
                "gpu_ms": (observed_gpu, expected_gpu),
            },
            event_count=round(observed),
            magnitude=ratio / usual_high,
            stake=_gpu_stake(observed_gpu, expected_gpu, fleet_gpu),
        )

    def _follow_rise(self, state: _ShareState, minute: Window, now: datetime) -> _Rise | None:
        """Add a closed minute (its 1-minute window, as judged) to the entity's rise and return
        the rise if one is under way: a minute at ``min_ratio`` times its expected or more
        starts one or carries it on; :data:`RISE_QUIET_MINUTES` minutes below it (or without
        requests) end it, and its length is learned unless it alarmed (during a run of the
        sequential test, once that run is over without a page: a sustained rise's own broken
        rises do not teach the bar it is judged by)."""
        rise = state.rise
        elevated = minute[0] >= self.min_ratio * minute[1]
        # ended: as many minutes below since its latest one up (this one counted unless up)
        if rise is not None and (now - rise.last).total_seconds() // 60 - elevated >= (
            RISE_QUIET_MINUTES
        ):
            cusum = state.cusum
            if not rise.paged and cusum is not None and cusum.s > 0:
                cusum.held_rise = max(cusum.held_rise, rise.minutes)
            elif not rise.paged:
                state.longest_rise = max(state.longest_rise, rise.minutes)
            rise = state.rise = None
        if rise is None:
            if not elevated:
                return None
            rise = state.rise = _Rise(now)
        if elevated:
            rise.last = now
        for i in range(5):
            rise.sums[i] += minute[i]
        return rise

    def _outlasting(
        self, state: _ShareState, rise: _Rise, now: datetime, threshold: float
    ) -> float | None:
        """The score of a rise that has outlasted every horizon and twice the longest of the
        mature entity's own (in a minute ``now`` still at ``min_ratio`` or more), when its
        total is at ``min_ratio`` times what is expected (GPU-ms too, at half that) and
        counting noise cannot explain it (a Poisson tail past the threshold); else None. The
        score is the threshold times how many times the bar the rise has lasted: how unusual
        it is for the entity is how much longer than its own rises it lasts."""
        if rise.last != now or state.age < YOUNG_MINUTES:
            return None
        bar = state.lasting
        if rise.minutes <= bar:
            return None
        observed, expected, gpu_ms, expected_gpu = rise.sums[:4]
        if observed < self.min_ratio * expected or gpu_ms < self.min_ratio / 2 * expected_gpu:
            return None
        if poisson_surprise(observed, expected) < threshold:
            return None
        return threshold * rise.minutes / bar  # as sure as it is longer than the bar

    def _rise_finding(
        self,
        entity_type: str,
        entity_id: str,
        state: _ShareState,
        rise: _Rise,
        score: float,
        view: MinuteView,
    ) -> Finding:
        own = (
            f"its own rises have lasted {state.longest_rise} min at most"
            if state.longest_rise
            else "it has not risen this far for a minute before"
        )
        return self._run_finding(
            entity_type, entity_id, state, (rise.sums, rise.start, rise.minutes), score, view,
            f"longer than every horizon, and {own}",
            {"rise_minutes": (float(rise.minutes), float(state.longest_rise))},
        )  # fmt: skip

    def _sustained(
        self, state: _ShareState, minute: Window, now: datetime, threshold: float, *, paged: bool
    ) -> tuple[float, float, float] | None:
        """Step a mature entity's sequential test (:class:`_Cusum`) with a closed minute (its
        1-minute window, as judged; a minute ``paged`` by another test starts it over). Its
        score, ``S`` and bar once ``S`` is at the bar, the run has lasted longer than a lasting
        rise must (:attr:`_ShareState.lasting`: a sustained rise outlasts the horizons and the
        entity's own bursts) and its total is at
        :data:`STILL_ELEVATED` times what is expected (GPU-ms at ``min_ratio / 2``) and beyond
        counting noise (a Poisson tail past the threshold); else None. The score is the
        threshold times how many times its bar ``S`` is."""
        if not self.sequential or state.age < YOUNG_MINUTES or not state.mean:
            return None
        cusum = state.cusum = state.cusum or _Cusum()
        excess = math.log((minute[0] + 1.0) / (minute[1] + 1.0))
        cusum.step(excess, state.mean[0], state.spread(0), minute, now)
        if cusum.s == 0.0 and cusum.held_rise:  # the run is over: its rises were the entity's
            state.longest_rise = max(state.longest_rise, cusum.held_rise)
            cusum.held_rise = 0
        if paged:
            cusum.restart()
            return None
        bar = cusum.bar(len(self.states), state.longest_rise)
        observed, expected, gpu_ms, expected_gpu = cusum.sums[:4]
        if (
            cusum.s < bar
            or cusum.minutes(now) <= state.lasting
            or observed < STILL_ELEVATED * expected
            or gpu_ms < self.min_ratio / 2 * expected_gpu
            or poisson_surprise(observed, expected) < threshold
        ):
            return None
        s = cusum.s
        cusum.restart()
        return threshold * s / bar, s, bar

    def _sustained_finding(
        self,
        entity_type: str,
        entity_id: str,
        state: _ShareState,
        cusum: _Cusum,
        sustained: tuple[float, float, float],
        view: MinuteView,
    ) -> Finding:
        score, s, bar = sustained
        run = (cusum.sums, cusum.start or view.start, cusum.minutes(view.start))
        return self._run_finding(
            entity_type, entity_id, state, run, score, view,
            f"a sustained rise: its minutes add up to {s:.1f} of its own spreads above its "
            f"usual, where its traffic wanders to {bar:.1f} by chance about once in ten days "
            "across the fleet",
            {"sequential": (s, bar)},
        )  # fmt: skip

    def _run_finding(
        self,
        entity_type: str,
        entity_id: str,
        state: _ShareState,
        run: tuple[list[float], datetime, int],
        score: float,
        view: MinuteView,
        why: str,
        evidence: dict[str, tuple[float, float]],
    ) -> Finding:
        """A finding about a run of minutes (its sums as a :data:`Window`'s first five, its
        first minute and length): what it sent, then ``why`` it is unusual."""
        (observed, expected, gpu_ms, expected_gpu, fleet_gpu), start, minutes = run
        ratio, gpu_ratio = _ratio(observed, expected), _ratio(gpu_ms, expected_gpu)
        usual_high = state.usual_high(len(state.mean) - 1)  # of the 15 min without their top third
        summary = (
            f"{entity_type.replace('_', ' ')} {entity_id} has sent {ratio:.1f}x its usual share "
            f"of fleet traffic for {minutes} min ({observed:,.0f} requests, {expected:,.0f} "
            f"expected; GPU-ms {gpu_ratio:.1f}x): {why}"
        )
        return Finding(
            kind="volume_spike",
            entity_type=entity_type,
            entity_id=entity_id,
            window_start=start,
            window_end=view.end,
            score=score,
            threshold=self.threshold.value,
            summary=summary,
            evidence={
                "requests": (observed, expected),
                "gpu_ms": (gpu_ms, expected_gpu),
                **evidence,
            },
            event_count=round(observed),
            magnitude=ratio / usual_high,
            stake=_gpu_stake(gpu_ms, expected_gpu, fleet_gpu),
        )

    def _windows(
        self,
        state: _ShareState,
        horizon: list[tuple[datetime, Sums]],
        now: datetime,
        closed: Sums | None,
        floor: float | None = None,
    ) -> list[Window]:
        """Observed and expected requests and GPU-ms (seasonal) over each short horizon ending
        with the minute starting ``now``, then, for a ``closed`` minute, the two long ones.
        ``horizon`` holds the entity's latest minutes, oldest first, this one included. No
        windows at all when none of the short ones reaches ``floor`` times its expected before
        its top minute is capped (capping only lowers a window)."""
        share, gpu_share = state.share.level, state.gpu_share.level
        limit = (LONG_MINUTES if closed is not None else self.horizons_min[-1]) * 60
        minutes = []  # newest first: observed, expected, their GPU-ms, fleet GPU-ms, age
        for t, s in reversed(horizon):
            age = (now - t).total_seconds()
            if age >= limit:
                break
            minutes.append((s[0], share * s[2] * s[4], s[1], gpu_share * s[3] * s[4], s[3], age))
        windows: list[Window] = []
        o = e = g = eg = f = 0.0
        inside = 0
        for span in self.horizons_min:
            while inside < len(minutes) and minutes[inside][5] < span * 60:
                m = minutes[inside]
                o, e, g, eg, f = o + m[0], e + m[1], g + m[2], eg + m[3], f + m[4]
                inside += 1
            windows.append((o, e, g, eg, f, inside))
        if floor is not None and not any(w[0] >= floor * w[1] for w in windows):
            return []
        windows = [w if w[5] < 2 else _top_minute_capped(w, minutes[: w[5]]) for w in windows]
        if closed is not None:
            if state.paged:  # minutes that alarmed count as usual in the long horizons
                ages = {(now - t).total_seconds() for t in state.paged}
                minutes = [(m[1], m[1], m[3], m[3], m[4], m[5]) if m[5] in ages else m
                           for m in minutes]  # fmt: skip
            ew = self._ew_window(state, closed)
            windows.append(_top_minute_capped(ew, minutes, fading=1.0 - 1.0 / LONG_MINUTES))
            minutes.sort(key=lambda m: (m[0] + 1.0) / (m[1] + 1.0))
            kept = minutes[: len(minutes) - len(minutes) // 3]
            # each sum over the same values in the same order, without a generator's frames
            kept_sums = [sum(map(itemgetter(i), kept)) for i in range(5)]
            windows.append((*kept_sums, LONG_MINUTES))
        return windows

    @staticmethod
    def _ew_window(state: _ShareState, sums: Sums, *, paged: bool = False) -> Window:
        """The exponentially weighted ~15 minutes up to this one; a ``paged`` minute (one
        that alarmed) counted as its expected."""
        keep = 1.0 - 1.0 / LONG_MINUTES
        requests, gpu_ms, fleet_requests, fleet_gpu_ms, season = sums
        expected = state.share.level * fleet_requests * season
        expected_gpu = state.gpu_share.level * fleet_gpu_ms * season
        long = state.long
        return (
            keep * long[0] + (expected if paged else requests),
            keep * long[1] + expected,
            keep * long[2] + (expected_gpu if paged else gpu_ms),
            keep * long[3] + expected_gpu,
            keep * long[4] + fleet_gpu_ms,
            LONG_MINUTES,
        )

    @staticmethod
    def _score(state: _ShareState, index: int, window: Window) -> float:
        """Decades of surprise of the window's count: the smaller of the entity's own spread
        (a Gaussian tail of its log excess) and counting noise (a Poisson tail)."""
        observed, expected = window[0], window[1]
        z = state.z(index, observed, expected)
        if z <= 0:
            return 0.0
        return min(state.surprise(index, z), poisson_surprise(observed, expected))

    def _learn(
        self,
        state: _ShareState,
        sums: Sums,
        windows: list[Window],
        now: datetime,
        *,
        alarming: bool,
    ) -> None:
        """Learn the minute just closed: the burst memory always (recurring bursts must be
        remembered even when they alarmed); each horizon's spread from its windows that are not
        suspect; the level from minutes that no horizon finds suspect (a young entity's level
        from every minute that does not alarm). ``windows`` are the minute's, as scored (each
        short horizon, then the long ones; none during the warm-up)."""
        requests, gpu_ms, fleet_requests, fleet_gpu_ms, season = sums
        if fleet_requests <= 0:
            return
        share = state.share
        state.age += 1
        if share.warm:
            plain = share.level * fleet_requests  # expected without the burst memory
            self._remember_burst(state, now, requests, plain)
            zs = [state.z(i, w[0], w[1]) for i, w in enumerate(windows)]
            learned = False
            for i, (observed, expected, *_) in enumerate(windows):
                state.learn_tail(i, zs[i])
                # each horizon learns from its own ordinary windows: a burst that stands out
                # over one minute is still part of the entity's usual 15 minutes
                if not alarming and zs[i] < SUSPECT_Z:
                    delta = math.log((observed + 1.0) / (expected + 1.0)) - state.mean[i]
                    pace = state.paces[i]
                    state.mean[i] += pace * delta
                    state.var[i] = (1 - pace) * (state.var[i] + pace * delta**2)
                    learned = True
            state.seen += learned
            suspect = alarming or max(zs) >= SUSPECT_Z
            # a minute that alarmed was paged: the long horizons remember it as usual, so that
            # their memory (the EW window's outlasts the minutes it covers) does not page it
            # again once the rise is over
            state.long = list(self._ew_window(state, sums, paged=alarming)[:5])
            if alarming or state.paged:  # those older than the long horizons are dropped
                since = now - timedelta(minutes=LONG_MINUTES)
                state.paged = [t for t in state.paged if t > since] + ([now] if alarming else [])
            young = state.age < YOUNG_MINUTES
            if alarming or (suspect and not young):
                return
        # a mature entity's minute counts for at most min_ratio times its level: a burst does
        # not teach the level it is measured against, and cannot drag it down either
        # and moves more slowly than a young one's
        young = state.age < YOUNG_MINUTES or not share.warm
        cap, pace = (math.inf, 1.0) if young else (self.min_ratio, MATURE_LEVEL_PACE)
        _learn_level(share, requests / fleet_requests / season, cap, pace)
        if fleet_gpu_ms > 0:
            _learn_level(state.gpu_share, gpu_ms / fleet_gpu_ms / season, cap, pace)
        if share.warm:
            state.learn_spreads()

    @staticmethod
    def _remember_burst(state: _ShareState, now: datetime, requests: float, plain: float) -> None:
        slots, slot, hour = state.slots, now.minute, _hour(now)
        value, learned, bursts = slots.get(slot, (0.0, hour, 0))
        excess = math.log((requests + 1.0) / (plain + 1.0))
        if excess >= SLOT_MIN_EXCESS and poisson_surprise(requests, plain) >= SLOT_MIN_SURPRISE:
            if slot in slots or len(slots) < SLOT_MAX:
                bursts += learned < hour or not bursts
                slots[slot] = (value + SLOT_LEARN * (excess - value), hour, bursts)
        elif slot in slots:
            if value * (1.0 - SLOT_LEARN) < 0.1:
                del slots[slot]
            else:
                slots[slot] = (value * (1.0 - SLOT_LEARN), hour, bursts)


def _learning(horizons_min: tuple[int, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per horizon (the two long ones last): the minutes of learning over which its spread
    prior fades, and the pace at which its mean and spread learn."""
    minutes = (*horizons_min, LONG_MINUTES, LONG_MINUTES)
    return (
        tuple(SPREAD_PRIOR[1] * math.sqrt(m) for m in minutes),
        tuple(SPREAD_FADING / math.sqrt(m) for m in minutes),
    )


def _learn_level(level: EWBaseline, share: float, cap: float, pace: float) -> None:
    """Learn ``share``, at most ``cap`` times the level, moved ``pace`` of the way from it."""
    now = level.level
    level.learn_one(now + pace * (min(share, cap * now) - now) if level.warm else share)


def _top_minute_capped(
    window: Window, minutes: Sequence[tuple[float, ...]], fading: float = 1.0
) -> Window:
    """A window of several ``minutes`` (newest first, each: observed and expected requests and
    GPU-ms, fleet GPU-ms, age), with the minute that adds the most excess to it counted at
    most as many times its expected as the next highest minute. A window of several minutes
    is for rises that last, whose minutes run alike; a single giant minute is the 1-minute
    horizon's to judge (a bursty key's would otherwise stand out more over 5 or 15 minutes than
    it does over one). With ``fading`` the window is exponentially weighted by minute the
    entity was seen in.

    >>> ordinary = [(10.0, 10.0, 1.0, 1.0, 1.0, 60.0 * i) for i in range(1, 5)]
    >>> giant = [(180.0, 10.0, 18.0, 1.0, 1.0, 0.0), *ordinary]
    >>> _top_minute_capped((220.0, 50.0, 22.0, 5.0, 5.0, 5), giant)[:3]
    (50.0, 50.0, 5.0)
    """
    if len(minutes) < 2:
        return window
    # one pass (this runs for every entity at every peek): the minute adding the most excess
    # (the first of equals), and the two highest ratios with the minute of the highest
    top, top_excess = 0, -math.inf
    best, second, best_at = -math.inf, -math.inf, -1
    for i, m in enumerate(minutes):
        excess = m[0] - m[1] if fading == 1.0 else fading**i * (m[0] - m[1])
        if excess > top_excess:
            top, top_excess = i, excess
        ratio = (m[0] + 1.0) / (m[1] + 1.0)
        if ratio > best:
            best, second, best_at = ratio, best, i
        elif ratio > second:
            second = ratio
    o, e, g = minutes[top][0], minutes[top][1], minutes[top][2]
    next_ratio = second if best_at == top else best
    capped = min(o, max(next_ratio * (e + 1.0) - 1.0, 0.0))
    if capped >= o:
        return window
    cut = (o - capped) if fading == 1.0 else fading**top * (o - capped)
    # (clipped at 0: the window's sums start at the end of the warm-up, its minutes before it)
    return (max(window[0] - cut, 0.0), window[1], max(window[2] - cut * g / o, 0.0), *window[3:])


def _gpu_stake(gpu_ms: float, expected_gpu: float, fleet_gpu: float) -> float:
    """The share of the fleet's GPU-ms that an entity's excess over its expected GPU-ms is."""
    return max(gpu_ms - expected_gpu, 0.0) / fleet_gpu if fleet_gpu > 0 else 0.0


def _ratio(observed: float, expected: float) -> float:
    """``observed`` over ``expected`` (infinite when nothing was expected)."""
    return observed / expected if expected > 0 else float("inf")


def _elevated(window: Window) -> bool:
    """Whether a window holds :data:`STILL_ELEVATED` times its expected requests or more."""
    return (window[0] + 1.0) / (window[1] + 1.0) >= STILL_ELEVATED


def _rest_rise(key: Window, tenant: Window) -> float:
    """How many times its usual share the rest of a key's tenant sends (at least 1)."""
    return max(1.0, (tenant[0] - key[0] + 1.0) / (max(tenant[1] - key[1], 0.0) + 1.0))


def _completed(
    sums: Sums, state: _ShareState, view: MinuteView
) -> tuple[Sums, tuple[float, float, float]]:
    """A peek's open minute completed as if the rest of it were usual: the fleet's requests
    and GPU-ms at their pace so far, the entity's plus its share of the rest; and what was
    added to its requests, its GPU-ms and the fleet's GPU-ms."""
    so_far = (view.end - view.start).total_seconds() / 60.0
    left = 1.0 / so_far - 1.0 if 0.0 < so_far < 1.0 else 0.0  # the rest of the minute per so far
    requests, gpu_ms, fleet_requests, fleet_gpu_ms, season = sums
    added = state.share.level * fleet_requests * season * left
    added_gpu = state.gpu_share.level * fleet_gpu_ms * season * left
    added_fleet = fleet_requests * left, fleet_gpu_ms * left
    completed = (requests + added, gpu_ms + added_gpu, fleet_requests + added_fleet[0],
                 fleet_gpu_ms + added_fleet[1], season)  # fmt: skip
    return completed, (added, added_gpu, added_fleet[1])


def _span(minutes: int, view: MinuteView) -> str:
    """A peek's window: its whole minutes and the seconds of the open one so far."""
    seconds = round((view.end - view.start).total_seconds())
    return f"{minutes - 1} min {seconds} s" if minutes > 1 else f"{seconds} s"


def _hour(start: datetime) -> int:
    return int(start.timestamp()) // 3600


def _sums(minute: EntityMinute, fleet: EntityMinute, season: float) -> Sums:
    return (float(minute.requests), minute.gpu_ms, float(fleet.requests), fleet.gpu_ms, season)


def robust_fleet(view: MinuteView) -> EntityMinute:
    """The minute's fleet requests and GPU-ms, each tenant capped at ``TENANT_CAP`` times the
    median tenant (the whole fleet when there are fewer than three tenants to compare).

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 3, 2, tzinfo=UTC)
    >>> sizes = {"a": 100, "b": 80, "c": 60, "flood": 10_000}
    >>> tenants = {k: EntityMinute(requests=n, gpu_ms=10.0 * n) for k, n in sizes.items()}
    >>> fleet = EntityMinute(requests=sum(sizes.values()))
    >>> robust_fleet(MinuteView(t, t, {"tenant": tenants}, fleet)).requests  # 100+80+60+270
    510
    """
    tenants = list(view.entities("tenant").values())
    if len(tenants) < 3:
        return view.fleet
    cap_requests = TENANT_CAP * median(t.requests for t in tenants)
    cap_gpu_ms = TENANT_CAP * median(t.gpu_ms for t in tenants)
    return EntityMinute(
        requests=round(sum(min(t.requests, cap_requests) for t in tenants)),
        gpu_ms=sum(min(t.gpu_ms, cap_gpu_ms) for t in tenants),
    )
