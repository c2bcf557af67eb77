"""An entity's own tail: how often its values go far out, learned from its excursions.

Real traffic is heavier-tailed than a Gaussian: a bursty key's minutes, a server's cost over a
minute of a real token mix. A detector that judges a value by its z-score against a learned
mean and spread would page on that noise. So it also learns how often the entity's values go
:data:`SUSPECT_Z` spreads out (an exponentially weighted share of its windows, counted once each
excursion is over, so a lasting rise does not widen the spread it is judged by while it lasts),
and judges a z-score on a spread widened until a Gaussian's tail would be that frequent.

>>> tail, run = GAUSSIAN_TAIL, 0
>>> for minute in range(2000):  # one excursion of one minute every 40 minutes: 2.5 %
...     tail, run = learn_excursion(tail, run, 4.0 if minute % 40 == 0 else 0.0)
>>> round(tail, 3), round(widening(tail), 2)
(0.024, 1.51)
>>> widening(GAUSSIAN_TAIL)
1.0
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Final

SUSPECT_Z: Final = 3.0  # a value this many spreads out is an excursion
GAUSSIAN_TAIL: Final = 0.00135  # a Gaussian's share of values past SUSPECT_Z
TAIL_PACE: Final = 1 / 360  # the share follows about the last 360 windows (6 hours of minutes)
_STANDARD: Final = NormalDist()


def widening(tail: float) -> float:
    """How many times wider than its learned spread an entity's values run, judged by their
    tail: 1 for a Gaussian's tail or a lighter one; ``SUSPECT_Z / q`` where a Gaussian goes
    ``q`` spreads out as often as the entity goes ``SUSPECT_Z``; infinite when half or more of
    its values go that far (none of them is a surprise)."""
    if tail <= GAUSSIAN_TAIL:
        return 1.0
    quantile = _STANDARD.inv_cdf(1.0 - min(tail, 0.5))
    return SUSPECT_Z / quantile if quantile > 0 else math.inf


def learn_excursion(
    tail: float, run: int, z: float, max_run: int | None = None
) -> tuple[float, int]:
    """One more window of z-score ``z``: the new ``(tail, run)``. ``run`` counts the windows of
    the excursion under way; it is learned once the entity is back within a spread of usual (a
    lasting rise flapping about SUSPECT_Z as it sets in does not widen its own tail), as at
    most ``max_run`` windows when given (how often excursions *start* is the noise; how long a
    fault lasts is not)."""
    tail *= 1.0 - TAIL_PACE
    if z >= SUSPECT_Z:
        run += 1
    elif run and z < 1.0:
        tail += TAIL_PACE * (run if max_run is None else min(run, max_run))
        run = 0
    return tail, run
