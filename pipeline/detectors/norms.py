"""Context norms that learn per tick, the same from one partition's requests or sixty-four's.

A request is judged against the norm of its context (model x route x difficulty band), and that
norm is the fleet's: learned from every tenant's requests. Between two ticks (every 15 s of
event time) a norm stands still: each request is scored against it, and what the request
teaches is added to the norm's :class:`Learned` sums. At each tick every partition reports its
sums (:class:`NormReport`), the fleet stage pools every partition's reports of that tick and
moves each norm once (:func:`learn`), and every partition takes the result. Sums do not care
how the requests were split, so one engine and sixty-four score every request against the same
norm, and detect the same.

>>> norm = NormState(mean=5.0, var=0.04, n=1_000, peer_z=0.0)
>>> one, two = Learned(), Learned()
>>> for x in (5.1, 5.3):
...     one.add_value(x)
>>> two.add_value(5.2)
>>> pooled = Learned()
>>> for part in (one, two):
...     pooled.add(part)
>>> alone = Learned()
>>> for x in (5.1, 5.3, 5.2):
...     alone.add_value(x)
>>> learn(norm, pooled) == learn(norm, alone), round(learn(norm, alone).mean, 4)
(True, 5.0059)
"""

from __future__ import annotations

from typing import Protocol, TypeGuard, runtime_checkable

import msgspec

NORM_FADING = 0.01  # how fast a context's norm follows its requests (per request)
OUTLIER_FADING = 0.0005  # how fast its outlier rate follows its scored requests (per request)
PEER_FADING = 0.05  # how fast a context's recent mean z (what its requests scored) follows
# how fast its rate of truncated and timed-out requests follows its scored requests: slowly
# (~10,000), as a context's own rate, which one runaway key's requests barely move
RUNAWAY_FADING = 0.0001
Context = tuple[str, str, int]  # (model, route, difficulty band)
MAX_UNMERGED = 64  # ticks a partition re-learns on top of a late fleet norm (16 minutes)


class NormState(msgspec.Struct, frozen=True, array_like=True):
    """A context norm's learned state, as the fleet stage hands it to the partitions; with
    exponentially weighted counts of its scored requests and of those that were outliers
    (their ratio is the context's own outlier rate), and, over a longer memory, of its scored
    requests and of those truncated or timed out (the context's own runaway rate)."""

    mean: float
    var: float
    n: int
    peer_z: float
    outliers: float = 0.0
    scored: float = 0.0
    runaway: float = 0.0
    runaway_scored: float = 0.0


class Learned(msgspec.Struct, array_like=True):
    """What a context's requests taught since the last tick: how many there were, the sums of
    their (winsorised, log) values and of their squares; for the requests that feed the
    sequential test, how many and the sum of their clipped z-scores; and how many requests
    were scored against a warm norm, and how many of those were outliers and how many
    truncated or timed out (counted only by a detector that learns runaway rates)."""

    n: int = 0
    x_sum: float = 0.0
    x_sq: float = 0.0
    peer_n: int = 0
    peer_sum: float = 0.0
    scored: int = 0
    outliers: int = 0
    runaway: int = 0

    def add_value(self, x: float) -> None:
        self.n += 1
        self.x_sum += x
        self.x_sq += x * x

    def add(self, other: Learned) -> None:
        self.n += other.n
        self.x_sum += other.x_sum
        self.x_sq += other.x_sq
        self.peer_n += other.peer_n
        self.peer_sum += other.peer_sum
        self.scored += other.scored
        self.outliers += other.outliers
        self.runaway += other.runaway


class NormReport(msgspec.Struct, frozen=True, array_like=True):
    """What one partition's requests of a context taught in one tick."""

    context: Context
    learned: Learned


class NormTick(msgspec.Struct, frozen=True, kw_only=True):
    """One partition's reports of a tick (every request it took before ``tick_s``, since its
    previous tick), per detector."""

    partition: int
    tick_s: float
    reports: dict[str, list[NormReport]]
    chunk: int = 0  # a tick with too many reports for one message travels in pieces


def learn(norm: NormState | None, learned: Learned) -> NormState:
    """``norm`` moved by a tick's requests at once: as an exponentially weighted mean and
    variance move over that many requests, towards their mean and their spread about the norm.
    A context's first requests make its norm (their mean and variance).

    >>> taught = Learned()
    >>> for x in (4.0, 6.0):
    ...     taught.add_value(x)
    >>> first = learn(None, taught)
    >>> first.mean, first.var, first.n, first.scored
    (5.0, 1.0, 2, 0)
    >>> learn(NormState(mean=5.0, var=1.0, n=2, peer_z=0.0), Learned()).n
    2
    """
    if learned.n == 0:
        return norm if norm is not None else NormState(mean=0.0, var=0.0, n=0, peer_z=0.0)
    x_mean = learned.x_sum / learned.n
    peer_mean = learned.peer_sum / learned.peer_n if learned.peer_n else 0.0
    if norm is None or norm.n == 0:
        return NormState(
            mean=x_mean,
            var=max(0.0, learned.x_sq / learned.n - x_mean * x_mean),
            n=learned.n,
            peer_z=peer_mean,
            outliers=learned.outliers,
            scored=learned.scored,
            runaway=learned.runaway,
            runaway_scored=learned.scored,
        )
    keep = (1.0 - NORM_FADING) ** learned.n
    spread = learned.x_sq / learned.n - 2.0 * norm.mean * x_mean + norm.mean * norm.mean
    peer_keep = (1.0 - PEER_FADING) ** learned.peer_n
    outlier_keep = (1.0 - OUTLIER_FADING) ** learned.scored
    runaway_keep = (1.0 - RUNAWAY_FADING) ** learned.scored
    return NormState(
        mean=keep * norm.mean + (1.0 - keep) * x_mean,
        var=keep * norm.var + (1.0 - keep) * (1.0 - NORM_FADING) * max(0.0, spread),
        n=norm.n + learned.n,
        peer_z=peer_keep * norm.peer_z + (1.0 - peer_keep) * peer_mean,
        outliers=outlier_keep * norm.outliers + learned.outliers,
        scored=outlier_keep * norm.scored + learned.scored,
        runaway=runaway_keep * norm.runaway + learned.runaway,
        runaway_scored=runaway_keep * norm.runaway_scored + learned.scored,
    )


class FleetNorms(msgspec.Struct, frozen=True, kw_only=True):
    """Context norms the fleet stage moved, per detector, with every tick up to ``through_s``
    learned (a partition re-learns what it reported after that, :meth:`ContextNorm.take`)."""

    through_s: float
    by_detector: dict[str, list[tuple[Context, NormState]]]


@runtime_checkable
class SharesNorms(Protocol):
    """A detector whose context norms partitions learn together through the fleet stage."""

    name: str

    def report_norms(self, tick_s: float) -> list[NormReport]: ...

    def take_norms(self, fleet: list[tuple[Context, NormState]], through_s: float) -> None: ...


_SHARING: dict[type, bool] = {}  # per detector class, whether it shares norms


def shares_norms(detector: object) -> TypeGuard[SharesNorms]:
    """``isinstance(detector, SharesNorms)``, checked once per detector class: a runtime
    protocol check walks the protocol's members on every call, and partitions ask at every
    tick (1.5 % of a replay)."""
    cls = type(detector)
    known = _SHARING.get(cls)
    if known is None:
        known = _SHARING[cls] = isinstance(detector, SharesNorms)
    return known
