"""Context norms learned apart in each partition, merged into the fleet's by the fleet stage.

A request is judged against the norm of its context (model x route x difficulty band), and that
norm is the fleet's: learned from every tenant's requests. Split into partitions, each stage-1
engine learns its copy from its own tenants only, and a partition of two tenants would judge
them against each other. So with every part of a minute (each 15 s tick and each closed
minute) each partition reports what its copies
learned since they last took the fleet's norms (:class:`NormReport`); the fleet stage merges the
reports (:func:`merge_norms`) and every partition takes the result. With one partition the
merge is the identity, so one engine alone learns exactly as before.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec

NORM_FADING = 0.01  # how fast a context's norm follows its requests (per request)
PEER_FADING = 0.05  # how fast a context's recent mean z (what its requests scored) follows
Context = tuple[str, str, int]  # (model, route, difficulty band)


class NormState(msgspec.Struct, frozen=True, array_like=True):
    """A context norm's learned state, as partitions and the fleet stage exchange it."""

    mean: float
    var: float
    n: int
    peer_z: float


class NormReport(msgspec.Struct, frozen=True, array_like=True):
    """What one partition learned of a context since it last took the fleet's norm (``base``;
    None if it never did)."""

    context: Context
    base: NormState | None
    now: NormState


def merge_norms(fleet: NormState | None, reports: list[NormReport]) -> NormState:
    """The norm one engine would have learned from every partition's requests since ``fleet``.

    Each partition's norm moved from its base as an exponentially weighted mean of its ``k``
    requests does; the fleet's moves as if the partitions' requests had come interleaved, each
    partition's weighted by its share of them. One partition's report is taken as it is.

    >>> base = NormState(mean=5.0, var=0.04, n=100, peer_z=0.0)
    >>> one = NormReport(("m", "r", 1), base, NormState(mean=5.2, var=0.05, n=120, peer_z=0.1))
    >>> merge_norms(base, [one]) == one.now
    True
    >>> two = NormReport(("m", "r", 1), base, NormState(mean=5.0, var=0.04, n=120, peer_z=0.0))
    >>> 5.0 < merge_norms(base, [one, two]).mean < 5.2, merge_norms(base, [one, two]).n
    (True, 140)
    """
    if len(reports) == 1 and reports[0].base == fleet:
        return reports[0].now
    steps = [r.now.n - (r.base.n if r.base is not None else 0) for r in reports]
    total = sum(steps)
    if total <= 0:
        return fleet if fleet is not None else reports[0].now
    if fleet is None or fleet.n == 0:  # a context new to the fleet: the partitions' pooled
        weights = [(k / total, r.now) for k, r in zip(steps, reports, strict=True)]
        mean = sum(w * now.mean for w, now in weights)
        return NormState(
            mean=mean,
            var=sum(w * (now.var + (now.mean - mean) ** 2) for w, now in weights),
            n=total,
            peer_z=sum(w * now.peer_z for w, now in weights),
        )
    moved = [(k, r.base, r.now) for k, r in zip(steps, reports, strict=True) if k > 0]

    def moves(field: str) -> list[Move]:
        return [
            (k, None if base is None else getattr(base, field), getattr(now, field))
            for k, base, now in moved
        ]

    return NormState(
        mean=_ew_merge(fleet.mean, moves("mean"), NORM_FADING),
        var=_ew_merge_var(fleet.var, moves("var"), NORM_FADING),
        n=fleet.n + total,
        peer_z=_ew_merge(fleet.peer_z, moves("peer_z"), PEER_FADING),
    )


Move = tuple[int, float | None, float]  # (steps, where a partition's copy started, where it is)


def _ew_merge(start: float, moves: list[Move], alpha: float) -> float:
    """Where an exponentially weighted mean at ``start`` ends after every partition's steps,
    given where each partition's copy went from its base in its ``k`` steps (a copy without a
    base started afresh from its own first request: it is its requests' mean)."""
    total = sum(k for k, _, _ in moves)
    target = 0.0
    for k, base, now in moves:
        reach = 1.0 - (1.0 - alpha) ** k  # how much of the way to its requests' mean it went
        target += k / total * (now if base is None else base + (now - base) / reach)
    return start + (1.0 - (1.0 - alpha) ** total) * (target - start)


def _ew_merge_var(start: float, moves: list[Move], alpha: float) -> float:
    """:func:`_ew_merge` for an exponentially weighted variance, which decays as it learns."""
    total = sum(k for k, _, _ in moves)
    learned = 0.0
    for k, base, now in moves:
        keep = (1.0 - alpha) ** k
        learned += k / total * (now if base is None else (now - keep * base) / (1.0 - keep))
    keep = (1.0 - alpha) ** total
    return max(0.0, keep * start + (1.0 - keep) * learned)


@runtime_checkable
class SharesNorms(Protocol):
    """A detector whose context norms partitions share through the fleet stage."""

    name: str

    def report_norms(self) -> list[NormReport]: ...

    def take_norms(self, fleet: list[tuple[Context, NormState]]) -> None: ...
