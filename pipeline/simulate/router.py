"""The compute router: a difficulty estimate picks a route, which grants a budget and passes.

Routes are ordered by the difficulty they accept; a request goes to the first route whose
``max_difficulty`` is above its estimate. Within a route, harder requests get more passes, up to
the route's ``max_passes``.

>>> import numpy as np
>>> router = Router()
>>> [router.routes[i].name for i in router.route(np.array([0.1, 0.5, 0.9]))]
['fast', 'standard', 'deep']
>>> router.budget[router.route(np.array([0.9]))].tolist()
[16384]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class Route:
    """A compute policy: requests with difficulty below ``max_difficulty`` get this budget."""

    name: str
    max_difficulty: float
    budget_tokens: int
    min_passes: int
    max_passes: int


DEFAULT_ROUTES: Final = (
    Route("fast", 0.35, 2048, 1, 1),
    Route("standard", 0.70, 4096, 1, 2),
    Route("deep", 1.01, 16384, 2, 4),
)
MAX_EXTRA_PASSES: Final = 3
"""Width of the uniform draws :meth:`Router.passes` needs per request."""


class Router:
    """Vectorised routing over arrays of difficulty estimates."""

    def __init__(self, routes: tuple[Route, ...] = DEFAULT_ROUTES) -> None:
        if not routes or any(
            r.max_passes - r.min_passes > MAX_EXTRA_PASSES or r.min_passes < 1 for r in routes
        ):
            raise ValueError(f"routes need 1 <= min_passes, max - min <= {MAX_EXTRA_PASSES}")
        self.routes = routes
        self.names = tuple(r.name for r in routes)
        self.thresholds = np.array([r.max_difficulty for r in routes])
        self.budget = np.array([r.budget_tokens for r in routes], dtype=np.int64)
        self.min_passes = np.array([r.min_passes for r in routes], dtype=np.int64)
        self.max_passes = np.array([r.max_passes for r in routes], dtype=np.int64)

    def route(self, difficulty: NDArray[np.float64]) -> NDArray[np.int64]:
        """Route index for each difficulty estimate."""
        idx = np.searchsorted(self.thresholds, difficulty, side="right")
        return np.minimum(idx, len(self.routes) - 1).astype(np.int64)

    def passes(
        self,
        route: NDArray[np.int64],
        difficulty: NDArray[np.float64],
        uniforms: NDArray[np.float64],
    ) -> NDArray[np.int64]:
        """Passes per request: the route's minimum plus one per extra slot the request earns.

        ``uniforms`` has shape ``(MAX_EXTRA_PASSES, n)``; each extra pass allowed by the route is
        taken with probability ``difficulty``, so passes never exceed the route's maximum.

        >>> import numpy as np
        >>> r = Router()
        >>> u = np.full((3, 2), 0.5)
        >>> r.passes(np.array([2, 2]), np.array([0.9, 0.2]), u).tolist()
        [4, 2]
        """
        span = self.max_passes[route] - self.min_passes[route]
        slot = np.arange(MAX_EXTRA_PASSES)[:, None]
        earned = (uniforms < difficulty) & (slot < span)
        out: NDArray[np.int64] = self.min_passes[route] + earned.sum(axis=0)
        return out
