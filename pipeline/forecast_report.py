"""``computewatch forecast`` as Markdown or JSON (one report, two renderings).

>>> from datetime import UTC, datetime
>>> from decimal import Decimal
>>> from pipeline.forecast import Projection
>>> from pipeline.storage.budgets import Forecast
>>> day = datetime(2026, 3, 2, tzinfo=UTC)
>>> p = Projection(spend_to_date=2.0, total=10.0, low=8.0, high=13.0, rate=1.5,
...                window_hours=12, history_hours=72, path=(1.0,) * 8)
>>> f = Forecast("tenant", "acme", "week", "usd", day, datetime(2026, 3, 9, tzinfo=UTC),
...              datetime(2026, 3, 4, tzinfo=UTC), Decimal("2.0"), 72, p, None)
>>> print(forecast_markdown(f), end="")
# Forecast: acme, week from 2026-03-02 to 2026-03-09 (exclusive)
<BLANKLINE>
As of 2026-03-04 00:00 UTC, from 72 h of its own history:
<BLANKLINE>
- spent so far: $2.00
- projected total: $10.00 (80 % interval $8.00 to $13.00)
- burn rate: 1.5x its usual over the last 12 h
- budget: none for this period
"""

from __future__ import annotations

from typing import Any

import msgspec

from pipeline.budgets import format_amount
from pipeline.storage.budgets import Forecast


def forecast_markdown(f: Forecast) -> str:
    p = f.projection
    assert p is not None, "a forecast without a projection is an error (NoHistory)"
    lines = [
        f"# Forecast: {f.entity_id}, {f.period} from {f.start:%Y-%m-%d} to {f.end:%Y-%m-%d} "
        "(exclusive)",
        "",
        f"As of {f.at:%Y-%m-%d %H:%M} UTC, from {p.history_hours} h of its own history:",
        "",
        f"- spent so far: {format_amount(f.spend_to_date, 'usd')}",
        f"- projected total: {format_amount(p.total, 'usd')} (80 % interval "
        f"{format_amount(p.low, 'usd')} to {format_amount(p.high, 'usd')})",
        f"- burn rate: {p.rate:.1f}x its usual over the last {p.window_hours} h",
    ]
    if f.budget is None:
        lines.append("- budget: none for this period")
    else:
        runs_out = f.exhausted_at
        when = (
            f"runs out around {runs_out:%Y-%m-%d %H:%M} UTC" if runs_out is not None
            else "not expected to run out this period"
        )  # fmt: skip
        lines.append(f"- budget: {f.budget.describe()}, {when}")
    return "\n".join(lines) + "\n"


def forecast_json(f: Forecast) -> str:
    p = f.projection
    assert p is not None, "a forecast without a projection is an error (NoHistory)"
    data: dict[str, Any] = {
        "tenant": f.entity_id, "period": f.period, "start": f.start, "end": f.end, "at": f.at,
        "spend_to_date_usd": msgspec.Raw(format(f.spend_to_date, "f").encode()),
        "projected_usd": round(p.total, 6), "low_usd": round(p.low, 6),
        "high_usd": round(p.high, 6), "interval": 0.8, "burn_rate": round(p.rate, 4),
        "window_hours": p.window_hours, "history_hours": p.history_hours,
        "budget_usd": float(f.budget.amount) if f.budget else None,
        "exhausted_at": f.exhausted_at,
    }  # fmt: skip
    return msgspec.json.encode(data).decode() + "\n"
