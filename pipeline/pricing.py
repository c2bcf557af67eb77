"""Cost of a request from the configurable per-model price table.

>>> from pipeline.config import PriceSettings
>>> table = PriceTable({"big": PriceSettings(gpu_hour_usd=3.6, per_1k_output_usd=0.01)})
>>> table.cost(model="big", gpu_ms=1000.0, prompt_tokens=0, generated_tokens=2000)
0.021
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pipeline.config import PriceSettings

if TYPE_CHECKING:
    from pipeline.events import AllocationEvent

MS_PER_HOUR = 3_600_000.0
COST_DECIMALS = 9  # ClickHouse stores cost as Decimal(18, 9); sums reconcile exactly.
_FAST_UNITS = 2.0**50  # below this, a cost on the 1e-9 grid times 1e9 rounds to its units


def cost_units(cost: float, scale: int = COST_DECIMALS) -> int:
    """The cost as the integer ClickHouse stores for it in a ``Decimal(18, scale)`` column:
    the shortest decimal that reads back as the float, truncated to ``scale`` digits (what
    clickhouse-connect sends, and :func:`pipeline.storage.rows.decimal_array` writes). Sums of
    these are the sums ``computewatch usage`` reports, in any order.

    >>> cost_units(0.0011805555555555556), cost_units(3e-9), cost_units(0.0), cost_units(1.5)
    (1180555, 3, 0, 1500000000)

    A cost rounded to ``scale`` digits (every :meth:`PriceTable.cost`) is the float nearest to
    its units / 10**scale, so the product rounds to them; other values take the exact path.
    """
    product = cost * 10**scale
    if 0.0 <= product < _FAST_UNITS and round(product) / 10**scale == cost:
        return round(product)
    with decimal.localcontext() as context:
        context.prec = 18
        return int(decimal.Decimal(str(cost)) * 10**scale)


class PriceTable:
    def __init__(
        self, prices: Mapping[str, PriceSettings], default: PriceSettings | None = None
    ) -> None:
        self._prices = dict(prices)
        self._default = default or PriceSettings()

    def cost(
        self, *, model: str, gpu_ms: float, prompt_tokens: int, generated_tokens: int
    ) -> float:
        """USD for one request, rounded to the precision ClickHouse keeps."""
        return _usd(self._prices.get(model, self._default), gpu_ms, prompt_tokens, generated_tokens)

    def event_cost(self, event: AllocationEvent) -> float:
        """:meth:`cost` of one event; its generated tokens are the completion and reasoning
        tokens."""
        # positional, not through cost()'s keywords: this runs for every event
        price = self._prices.get(event.model, self._default)
        return _usd(price, event.gpu_ms, event.prompt_tokens, event.generated_tokens)


def _usd(price: PriceSettings, gpu_ms: float, prompt_tokens: int, generated_tokens: int) -> float:
    usd = (
        gpu_ms / MS_PER_HOUR * price.gpu_hour_usd
        + prompt_tokens / 1000.0 * price.per_1k_prompt_usd
        + generated_tokens / 1000.0 * price.per_1k_output_usd
    )
    return round(usd, COST_DECIMALS)
