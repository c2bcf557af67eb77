"""The budgets that go with a planted budget burn: set from the simulated fleet's own spend.

``computewatch simulate --budget-burn --budgets-out FILE`` plants
:class:`~pipeline.simulate.scenarios.BudgetBurn`, writes the events, then reads them back
(:func:`planted_budgets`): each tenant gets a weekly USD budget of its mean daily spend before
the burn × 7 × a margin (1.2 for the burning tenant, 1.25 for the others, who stay on track),
and the burn's label gets its budget and the event time its spend reached it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Final

import msgspec

from pipeline.budgets import Budget, period_bounds
from pipeline.events import InvalidEvent, parse_event
from pipeline.pricing import COST_DECIMALS, PriceTable, cost_units
from pipeline.simulate import labels

BURN_MARGIN: Final = Decimal("1.2")
ON_TRACK_MARGIN: Final = Decimal("1.25")
PERIOD: Final = "week"
_CENT: Final = Decimal("0.01")


def planted_budgets(
    events: Path, incidents: Sequence[labels.Incident], prices: PriceTable
) -> tuple[list[labels.Incident], list[Budget]]:
    """The labels with the burn's budget and exhaustion filled in, and every tenant's budget."""
    burn = next(i for i in incidents if i.kind == "budget_burn")
    daily: dict[str, dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    burner: list[tuple[datetime, int]] = []  # the burning tenant's costs in the burn's week
    week_start, week_end = period_bounds(PERIOD, burn.start)
    first: datetime | None = None
    with events.open("rb") as lines:
        for line in lines:
            try:
                event = parse_event(line)
            except InvalidEvent:
                continue
            units = cost_units(prices.event_cost(event))
            first = event.ts if first is None else min(first, event.ts)
            day = datetime(event.ts.year, event.ts.month, event.ts.day, tzinfo=UTC)
            daily[event.tenant_id][day] += units
            if event.tenant_id == burn.entity_id and week_start <= event.ts < week_end:
                burner.append((event.ts, units))
    assert first is not None, "no events"
    # whole days before the burn (a first day whose traffic starts in its first hour counts)
    since = _day(first) + timedelta(days=first.hour >= 1)
    whole = (burn.start - since).days
    budgets = []
    for tenant, by_day in sorted(daily.items()):
        before = sum(u for d, u in by_day.items() if since <= d < burn.start)
        if whole <= 0 or not before:
            continue
        mean = Decimal(before) / whole / 10**COST_DECIMALS
        margin = BURN_MARGIN if tenant == burn.entity_id else ON_TRACK_MARGIN
        amount = (mean * 7 * margin).quantize(_CENT, rounding=ROUND_DOWN)
        budgets.append(Budget(entity_type="tenant", entity_id=tenant, period=PERIOD, unit="usd",
                              amount=amount))  # fmt: skip
    planted = next(b for b in budgets if b.entity_id == burn.entity_id)
    limit = planted.amount * 10**COST_DECIMALS
    spent, exhausted = 0, None
    for ts, units in sorted(burner):
        spent += units
        if spent >= limit:
            exhausted = ts
            break
    label = msgspec.structs.replace(
        burn, budget=labels.Budget(period=PERIOD, usd=float(planted.amount)),
        exhausted_at=exhausted,
    )  # fmt: skip
    return [label if i is burn else i for i in incidents], budgets


def _day(ts: datetime) -> datetime:
    return datetime(ts.year, ts.month, ts.day, tzinfo=UTC)
