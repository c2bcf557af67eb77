"""How far a statistic's tail reaches, learned from its values past a threshold.

A bar meant to be passed by chance once in ``n`` judgements is read off a Gaussian only if the
statistic's far tail is Gaussian. Sums of a key's request residuals are not: on the simulator's
fleets their body is (past 3 standard deviations as often as a Gaussian), their far tail is not
(past 5 some 20 times as often), from the skew of a few requests and the clumps of a key's
sessions. So the tail is learned from the values themselves (peaks over a threshold): past
:data:`TAIL_FROM`, the excesses of a statistic with a light or exponential tail are close to
exponential (Pickands-Balkema-de Haan with shape 0; for a lighter tail, such as a Gaussian's,
that overstates how far it reaches), so the value passed once in ``n`` judgements is
``TAIL_FROM + beta * ln(n * share)``: ``share`` the judgements past :data:`TAIL_FROM`,
``beta`` their mean excess, taken at its upper bound of about 97.5 % (``beta (1 + 2 / sqrt(k))``
with ``k`` values past: an exponential's mean excess is known to ``beta / sqrt(k)``), so a tail
learned from few values gives a higher bar, which comes down as it learns. (A tail whose
farthest values come from a heavier part than those near :data:`TAIL_FROM` is understated; on
those fleets one exponential fits the counts past 3, 4, 4.5 and 4.9 alike.)

>>> import random
>>> rng = random.Random(3)
>>> tail = ExceedanceTail()
>>> for _ in range(50_000):  # past 3 once in 500, by 0.5 on average
...     tail.learn(3.0 + rng.expovariate(2.0) if rng.random() < 0.002 else rng.uniform(-3, 3))
>>> round(tail.once_in(1e7), 1)  # 3 + 0.5 ln(1e7 / 500) = 8.0 known for sure; Gaussian: 5.2
9.0
>>> ExceedanceTail().once_in(1e7) is None  # nothing learned yet
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

TAIL_FROM: Final = 3.0  # values past this are the tail's sample
TAIL_MEMORY: Final = 100_000  # judgements the shares fade over
MIN_EXCEEDANCES: Final = 10  # values past TAIL_FROM before the tail is read


@dataclass(slots=True)
class ExceedanceTail:
    """Exponentially weighted counts of judgements, of those past :data:`TAIL_FROM`, and of
    their excess over it."""

    judged: float = 0.0
    over: float = 0.0
    excess: float = 0.0

    def learn(self, value: float) -> None:
        keep = 1.0 - 1.0 / TAIL_MEMORY
        self.judged = keep * self.judged + 1.0
        self.over *= keep
        self.excess *= keep
        if value > TAIL_FROM:
            self.over += 1.0
            self.excess += value - TAIL_FROM

    def once_in(self, n: float) -> float | None:
        """The value passed about once in ``n`` judgements; None until :data:`MIN_EXCEEDANCES`
        values have passed :data:`TAIL_FROM`."""
        if self.over < MIN_EXCEEDANCES:
            return None
        mean_excess = self.excess / self.over * (1.0 + 2.0 / math.sqrt(self.over))
        return TAIL_FROM + mean_excess * max(0.0, math.log(n * self.over / self.judged))
