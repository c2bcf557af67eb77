"""A mergeable latency sketch: log-spaced buckets with bounded relative error (DDSketch-style).

Buckets are a plain ``{index: count}`` map, so sketches merge by adding counts, in Python
(:meth:`LatencySketch.merge`) and in ClickHouse (``sumMap`` over a ``Map(UInt16, UInt64)``).

>>> s = LatencySketch()
>>> for ms in range(1, 1001):
...     s.add(float(ms))
>>> abs(s.quantile(0.5) / 500 - 1) < 0.02, abs(s.quantile(0.99) / 990 - 1) < 0.02
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final

GAMMA: Final = 1.02  # relative error <= 1%
_LOG_GAMMA: Final = math.log(GAMMA)
MAX_INDEX: Final = 65_535


def bucket_of(value_ms: float) -> int:
    """Index of the bucket that holds ``value_ms`` (values below 1 ms share bucket 0)."""
    if value_ms <= 1.0:
        return 0
    return min(MAX_INDEX, math.ceil(math.log(value_ms) / _LOG_GAMMA))


def bucket_value(index: int) -> float:
    """Representative value of a bucket (its geometric midpoint)."""
    if index == 0:
        return 1.0
    return 2 * GAMMA**index / (GAMMA + 1)


def quantile_of(buckets: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile of a bucket map, or None when it is empty."""
    return quantiles_of(buckets, (q,))[0] if buckets else None


def quantiles_of(buckets: Mapping[int, int], qs: Sequence[float]) -> list[float]:
    """The quantiles ``qs`` (ascending) of a bucket map in one pass; 0.0 each when it is empty.

    >>> found = quantiles_of({10: 1, 20: 8, 30: 1}, (0.05, 0.5, 1.0))
    >>> found == [bucket_value(10), bucket_value(20), bucket_value(30)]
    True
    """
    if len(buckets) == 1:  # most groups of a minute: one request, or all in one bucket
        ((index, count),) = buckets.items()
        if count > 0:
            return [bucket_value(index)] * len(qs)
    total = sum(buckets.values())
    if total == 0:
        return [0.0] * len(qs)
    ranks = [q * (total - 1) for q in qs]
    found: list[float] = []
    seen = 0
    for index in sorted(buckets):
        seen += buckets[index]
        while len(found) < len(ranks) and seen > ranks[len(found)]:
            found.append(bucket_value(index))
        if len(found) == len(ranks):
            return found
    return found + [bucket_value(max(buckets))] * (len(ranks) - len(found))


class LatencySketch:
    __slots__ = ("buckets",)

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}

    def add(self, value_ms: float) -> None:
        index = bucket_of(value_ms)
        self.buckets[index] = self.buckets.get(index, 0) + 1

    def merge(self, other: LatencySketch) -> None:
        for index, count in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + count

    def quantile(self, q: float) -> float | None:
        return quantile_of(self.buckets, q)
