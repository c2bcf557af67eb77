"""Budgets: spend per tenant or api key against a limit per UTC day, week or month.

Transport-free, in two halves that mirror the worker's two stages:

- :class:`SpendLedger` (stage 1, one per partition) adds up each valid event's cost and GPU
  time per entity and UTC day, in the integers ClickHouse stores (:func:`~pipeline.pricing.
  cost_units` of the event's cost, microseconds of GPU time rounded as the usage rollups
  round them), so any sum of them is what ``computewatch usage`` reports. At each 15 s tick it
  reports the entries that changed, as running totals (:class:`SpendTick`).
- :class:`BudgetBook` (the fleet stage, one for the whole fleet) keeps each partition's latest
  totals, so the fleet's spend is their sum however the stream is split, and a total sent again
  after a restart changes nothing. Once every partition's clock has passed a tick it checks the
  budgets of the entities that spent: ``budget_overrun`` when the period's spend crosses a
  threshold (default 50 / 80 / 100 %), and, at each hour of event time, a *forecast*
  ``budget_overrun`` when :func:`~pipeline.forecast.project` says the budget runs out before
  the period ends. Each fires once per budget, threshold (or forecast) and period: what has
  fired is part of the fleet stage's snapshot.

>>> from datetime import UTC, datetime
>>> from pipeline.events import example_event
>>> budget = Budget(entity_type="tenant", entity_id="acme", period="day", unit="usd",
...                 amount=Decimal("0.002"))
>>> ledger, book = SpendLedger(), BudgetBook([budget], thresholds=[0.5, 1.0], forecast=False)
>>> event = example_event()                          # tenant acme, on 2026-03-02
>>> ledger.add(event, 0.00125)
>>> book.take([SpendTick(partition=0, tick_s=0.0, entries=ledger.report())])
>>> [(a.kind, a.evidence["threshold"].value, a.evidence["spend"].value) for a in book.judge(0)]
[('budget_overrun', 0.5, 0.00125)]
>>> ledger.add(msgspec.structs.replace(event, event_id="x"), 0.00125)
>>> book.take([SpendTick(partition=0, tick_s=15.0, entries=ledger.report())])
>>> [a.summary for a in book.judge(15)]
['acme has spent $0.0025 of its $0.002 daily budget (125% on 2026-03-02), past 100% of it']
>>> book.take([SpendTick(partition=0, tick_s=30.0, entries=ledger.report())]); book.judge(30)
[]
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import msgspec
import numpy as np

from pipeline.alerts import alert_id_for
from pipeline.forecast import Projection, project
from pipeline.pricing import cost_units
from pipeline.records import Alert, Evidence, Severity

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.events import AllocationEvent

Period = Literal["day", "week", "month"]
Unit = Literal["usd", "gpu_hours"]
BudgetEntity = Literal["tenant", "api_key"]
PERIODS: Final = ("day", "week", "month")
UNITS: Final = ("usd", "gpu_hours")
# the ledger's integers per unit of a budget: nano-USD (Decimal(18, 9)), GPU microseconds
UNIT_SCALE: Final = {"usd": 10**9, "gpu_hours": 3_600_000_000}
DAY_S: Final = 86_400
HOUR_MS: Final = 3_600_000
HISTORY_H: Final = 35 * 24  # hours of history a forecast looks at
KEEP_DAYS: Final = 63  # days of totals kept: a month and the one before it
MAX_KEYS: Final = 20_000  # api keys a ledger tracks per day (a flood of fake keys is bounded)
MAX_HISTORY: Final = 2_000  # entities with an hourly history in the book
_ADJECTIVE: Final = {"day": "daily", "week": "weekly", "month": "monthly"}


class BudgetFileError(ValueError):
    """A budgets file that cannot be used; the message names the file and what to fix."""


class Budget(msgspec.Struct, frozen=True, kw_only=True):
    """A limit on one tenant's or api key's spend per UTC calendar ``period``, in USD or in
    GPU-hours."""

    entity_type: BudgetEntity
    entity_id: str
    period: Period
    unit: Unit
    amount: Decimal

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.entity_type, self.entity_id, self.period, self.unit)

    def describe(self) -> str:
        """The amount and period in words: ``$100.00 weekly``, ``40 GPU-hour monthly``."""
        return f"{format_amount(self.amount, self.unit)} {_ADJECTIVE[self.period]}"


def format_amount(value: Decimal | float, unit: str) -> str:
    """``$1,234.50``, ``$0.0025`` or ``12.5 GPU-hours``."""
    number = float(value)
    if unit == "usd":
        return f"${number:,.2f}" if abs(number) >= 1 else f"${number:.4g}"
    return f"{number:,.4g} GPU-hours"


def period_bounds(period: str, at: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar period (day; week from Monday; month) holding ``at``: [start, end).

    >>> [d.isoformat()[:10] for d in period_bounds("week", datetime(2026, 3, 4, 9, tzinfo=UTC))]
    ['2026-03-02', '2026-03-09']
    >>> [d.isoformat()[:10] for d in period_bounds("month", datetime(2026, 12, 31, tzinfo=UTC))]
    ['2026-12-01', '2027-01-01']
    """
    day = datetime(at.year, at.month, at.day, tzinfo=UTC)
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == "month":
        start = day.replace(day=1)
        end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
        return start, end
    raise ValueError(f"unknown period {period!r}; expected day, week or month")


def parse_budgets(text: str, source: str = "budgets") -> list[Budget]:
    """Budgets from TOML: one ``[[budget]]`` table each, with ``tenant`` or ``api_key``,
    ``period`` (day, week, month) and ``usd`` or ``gpu_hours``.

    >>> [(b.entity_id, b.period, b.unit, b.amount) for b in parse_budgets(
    ...     '[[budget]]\\ntenant = "acme"\\nperiod = "month"\\nusd = 250')]
    [('acme', 'month', 'usd', Decimal('250'))]
    >>> parse_budgets('[[budget]]\\ntenant = "acme"\\nperiod = "year"\\nusd = 1', "b.toml")
    Traceback (most recent call last):
    ...
    pipeline.budgets.BudgetFileError: b.toml: budget 1: period must be day, week or month, ...
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BudgetFileError(f"{source}: not valid TOML ({exc})") from None
    unknown = set(data) - {"budget"}
    if unknown:
        raise BudgetFileError(f"{source}: unknown table {sorted(unknown)[0]!r}; use [[budget]]")
    budgets: dict[tuple[str, str, str, str], Budget] = {}
    for number, table in enumerate(data.get("budget", []), start=1):
        budget = _budget(table, f"{source}: budget {number}")
        if budget.key in budgets:
            raise BudgetFileError(
                f"{source}: budget {number} repeats {budget.entity_type} {budget.entity_id!r} "
                f"per {budget.period} in {budget.unit}"
            )
        budgets[budget.key] = budget
    return list(budgets.values())


def _budget(table: object, where: str) -> Budget:
    if not isinstance(table, dict):
        raise BudgetFileError(f"{where}: expected a table")
    extra = set(table) - {"tenant", "api_key", "period", "usd", "gpu_hours"}
    if extra:
        raise BudgetFileError(f"{where}: unknown field {sorted(extra)[0]!r}")
    entities = [k for k in ("tenant", "api_key") if k in table]
    units = [k for k in UNITS if k in table]
    if len(entities) != 1 or len(units) != 1:
        raise BudgetFileError(
            f"{where}: give one of tenant or api_key, and one of usd or gpu_hours"
        )
    entity_id, period, raw = table[entities[0]], table.get("period"), table[units[0]]
    if not isinstance(entity_id, str) or not 1 <= len(entity_id) <= 128:
        raise BudgetFileError(f"{where}: {entities[0]} must be 1 to 128 characters")
    if period not in PERIODS:
        raise BudgetFileError(f"{where}: period must be day, week or month, not {period!r}")
    try:
        amount = Decimal(str(raw)) if isinstance(raw, (int, float)) else None
    except InvalidOperation:
        amount = None
    if amount is None or isinstance(raw, bool) or not amount.is_finite() or amount <= 0:
        raise BudgetFileError(f"{where}: {units[0]} must be a number above 0, not {raw!r}")
    return Budget(
        entity_type=entities[0],  # type: ignore[arg-type]
        entity_id=entity_id,
        period=period,
        unit=units[0],  # type: ignore[arg-type]
        amount=amount,
    )


def load_budgets(path: Path) -> list[Budget]:
    """:func:`parse_budgets` of a file; unreadable is a :class:`BudgetFileError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise BudgetFileError(f"COMPUTEWATCH_BUDGETS_FILE: cannot read {path}: {reason}") from None
    return parse_budgets(text, str(path))


def format_budgets(budgets: Sequence[Budget]) -> str:
    """Budgets as the TOML :func:`parse_budgets` reads.

    >>> b = Budget(entity_type="api_key", entity_id="k1", period="day", unit="gpu_hours",
    ...            amount=Decimal("2.5"))
    >>> print(format_budgets([b]), end="")
    [[budget]]
    api_key = "k1"
    period = "day"
    gpu_hours = 2.5
    >>> parse_budgets(format_budgets([b])) == [b]
    True
    """
    tables = [
        f"[[budget]]\n{b.entity_type} = {_toml_string(b.entity_id)}\nperiod = \"{b.period}\"\n"
        f"{b.unit} = {format(b.amount, 'f')}\n"
        for b in budgets
    ]
    return "\n".join(tables)


def _toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return msgspec.json.encode(text).decode()


def budgets_from_settings(settings: Settings) -> list[Budget]:
    """The budgets of ``COMPUTEWATCH_BUDGETS_FILE`` (none when it is unset)."""
    path = settings.budgets.file
    return [] if path is None else load_budgets(path)


def gpu_units(gpu_ms: float) -> int:
    """An event's GPU time in the integer microseconds the usage rollups sum
    (``round(gpu_ms * 1000)``, ties to even, as ClickHouse rounds a Float64)."""
    return round(gpu_ms * 1000)


class SpendEntry(msgspec.Struct, frozen=True, array_like=True):
    """One entity's running totals for one UTC day in one partition."""

    entity_type: str
    entity_id: str
    day: int  # epoch seconds of the day's start
    usd: int  # nano-USD
    gpu_us: int
    requests: int
    last_ms: int  # the latest event time counted, epoch milliseconds


class SpendTick(msgspec.Struct, frozen=True, kw_only=True):
    """What one partition's ledger changed by ``tick_s`` (running totals, not increments)."""

    partition: int
    tick_s: float
    entries: list[SpendEntry]


class SpendLedger:
    """Stage 1: exact spend per (tenant or api key, UTC day) of one partition's events.

    Each event is added to its (tenant, api key, day) since the last report; a report folds
    those into the tenants' and keys' running totals (one addition per key and tick rather
    than two per event)."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self.totals: dict[tuple[str, str, int], list[int]] = {}  # usd, gpu_us, requests, last
        self._keys: dict[int, set[str]] = {}  # per day, the api keys tracked
        # since the last report, per (tenant, api key, day): usd, gpu_us, requests, last
        self._pending: dict[tuple[str, str, int], list[int]] = {}
        self._unreported: set[tuple[str, str, int]] = set()  # (a snapshot's, see __setstate__)
        self.untracked = 0  # events of keys past max_keys (still counted for their tenant)

    def __setstate__(self, state: dict[str, object]) -> None:
        # from before the pending slots: the totals it had changed since its last report are
        # reported at the next one
        self.__dict__.update(_pending={}, _unreported=state.pop("_changed", set()))
        self.__dict__.update(state)

    def add(self, event: AllocationEvent, cost: float, epoch: float | None = None) -> None:
        """Count one valid, first-seen event with its cost (:meth:`PriceTable.event_cost`);
        ``epoch`` is its ``ts`` as a timestamp, when the caller has it."""
        ms = int((event.ts.timestamp() if epoch is None else epoch) * 1000)
        slot = (event.tenant_id, event.api_key_id, ms // 1000 // DAY_S * DAY_S)
        total = self._pending.get(slot)
        if total is None:
            self._pending[slot] = [cost_units(cost), gpu_units(event.gpu_ms), 1, ms]
        else:
            total[0] += cost_units(cost)
            total[1] += gpu_units(event.gpu_ms)
            total[2] += 1
            if ms > total[3]:
                total[3] = ms

    def report(self) -> list[SpendEntry]:
        """The totals that changed since the last report; days more than :data:`KEEP_DAYS`
        before the latest one are forgotten."""
        changed, self._unreported = self._unreported, set()
        pending, self._pending = self._pending, {}
        for (tenant, api_key, day), counted in pending.items():  # in the order first seen
            self._fold(("tenant", tenant, day), counted, changed)
            keys = self._keys.get(day)
            if keys is None:
                keys = self._keys[day] = set()
            if api_key in keys or len(keys) < self.max_keys:
                keys.add(api_key)
                self._fold(("api_key", api_key, day), counted, changed)
            else:
                self.untracked += counted[2]
        entries = [SpendEntry(*key, *self.totals[key]) for key in sorted(changed)]
        if self._keys:
            oldest = max(self._keys) - KEEP_DAYS * DAY_S
            if min(self._keys) < oldest:
                self.totals = {k: v for k, v in self.totals.items() if k[2] >= oldest}
                self._keys = {d: keys for d, keys in self._keys.items() if d >= oldest}
        return entries

    def _fold(
        self, key: tuple[str, str, int], counted: list[int], changed: set[tuple[str, str, int]]
    ) -> None:
        """Add a tick's counts to ``key``'s totals and note it as changed."""
        changed.add(key)
        total = self.totals.get(key)
        if total is None:
            self.totals[key] = counted.copy()
        else:
            total[0] += counted[0]
            total[1] += counted[1]
            total[2] += counted[2]
            if counted[3] > total[3]:
                total[3] = counted[3]


class BudgetBook:
    """The fleet stage's budgets: the fleet's spend from every partition's ledger, and the
    alerts it calls for (see the module docstring)."""

    def __init__(
        self,
        budgets: Iterable[Budget] = (),
        *,
        thresholds: Sequence[float] = (0.5, 0.8, 1.0),
        forecast: bool = True,
    ) -> None:
        self.thresholds = sorted(thresholds)
        self.forecast = forecast
        self.budgets: dict[tuple[str, str], list[Budget]] = {}
        self.set_budgets(budgets)
        # per entity, per day, per partition: usd, gpu_us, requests, last_ms (running totals)
        self.spent: dict[tuple[str, str], dict[int, dict[int, tuple[int, int, int, int]]]] = {}
        self.hourly: dict[tuple[str, str], dict[int, list[int]]] = {}  # hour -> usd, gpu_us
        self.fired: set[tuple[str, ...]] = set()
        self._pending: dict[float, list[SpendTick]] = {}
        self._hour = -1  # the last hour forecasts were made at
        self._latest_ms = 0

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "budgets": {}}  # configuration, set again on restore

    def set_budgets(self, budgets: Iterable[Budget]) -> None:
        """Replace the budgets (the worker re-reads them from ClickHouse)."""
        by_entity: dict[tuple[str, str], list[Budget]] = {}
        for budget in budgets:
            by_entity.setdefault((budget.entity_type, budget.entity_id), []).append(budget)
        self.budgets = by_entity

    def budgets_list(self) -> list[Budget]:
        """The budgets, as :meth:`set_budgets` takes them."""
        return [budget for budgets in self.budgets.values() for budget in budgets]

    def take(self, ticks: Iterable[SpendTick]) -> None:
        """Keep partitions' reports until every partition's clock has passed their tick."""
        for tick in ticks:
            self._pending.setdefault(tick.tick_s, []).append(tick)

    def judge(self, clock: float) -> list[Alert]:
        """Apply every report of a tick all partitions have passed, in order, and raise what
        the budgets call for."""
        alerts: list[Alert] = []
        for tick_s in sorted(t for t in self._pending if t <= clock):
            touched: set[tuple[str, str, int]] = set()
            for tick in self._pending.pop(tick_s):
                for entry in tick.entries:
                    if self._apply(tick.partition, entry):
                        touched.add((entry.entity_type, entry.entity_id, entry.day))
            for entity_type, entity_id, day in sorted(touched):
                for budget in self.budgets.get((entity_type, entity_id), []):
                    at = datetime.fromtimestamp(day, UTC)
                    alerts.extend(self._thresholds(budget, at))
            if self.forecast and math.isfinite(tick_s):
                hour = int(tick_s // 3600)
                if hour > self._hour:
                    self._hour = hour
                    alerts.extend(self._forecasts(hour))
        return alerts

    def _apply(self, partition: int, entry: SpendEntry) -> bool:
        entity = (entry.entity_type, entry.entity_id)
        by_day = self.spent.get(entity)  # (not setdefault: a dict made for every entry)
        if by_day is None:
            by_day = self.spent[entity] = {}
        parts = by_day.get(entry.day)
        if parts is None:
            parts = by_day[entry.day] = {}
        old = parts.get(partition)
        if old is not None and old[2] >= entry.requests:
            return False  # sent again (a restarted partition), or older
        parts[partition] = (entry.usd, entry.gpu_us, entry.requests, entry.last_ms)
        self._latest_ms = max(self._latest_ms, entry.last_ms)
        self._learn_hour(entity, entry, old)
        oldest = entry.day - KEEP_DAYS * DAY_S
        if min(by_day) < oldest:
            for day in [d for d in by_day if d < oldest]:
                del by_day[day]
        return True

    def _learn_hour(
        self, entity: tuple[str, str], entry: SpendEntry, old: tuple[int, int, int, int] | None
    ) -> None:
        """The increase since a partition's last report, booked to the hour of its latest
        event: an hourly history of tenants and budgeted keys for forecasts."""
        if entity[0] != "tenant" and entity not in self.budgets:
            return
        history = self.hourly.get(entity)
        if history is None:
            if len(self.hourly) >= MAX_HISTORY:
                return
            history = self.hourly[entity] = {}
        hour = entry.last_ms // HOUR_MS
        booked = history.setdefault(hour, [0, 0])
        booked[0] += entry.usd - (old[0] if old else 0)
        booked[1] += entry.gpu_us - (old[1] if old else 0)
        if len(history) > HISTORY_H + 48:
            for stale in sorted(history)[: len(history) - HISTORY_H]:
                del history[stale]

    def spend(self, budget: Budget, at: datetime) -> tuple[int, int, int, datetime, datetime]:
        """The fleet's spend for ``budget`` in the period holding ``at``: units
        (:data:`UNIT_SCALE`), requests, latest event time counted, and the period's start."""
        start, end = period_bounds(budget.period, at)
        units = requests = last = 0
        column = 0 if budget.unit == "usd" else 1
        by_day = self.spent.get((budget.entity_type, budget.entity_id), {})
        for day in range(int(start.timestamp()), int(end.timestamp()), DAY_S):
            for totals in by_day.get(day, {}).values():
                units += totals[column]
                requests += totals[2]
                last = max(last, totals[3])
        return units, requests, last, start, end

    def _thresholds(self, budget: Budget, at: datetime) -> list[Alert]:
        units, requests, last, start, end = self.spend(budget, at)
        limit = budget.amount * UNIT_SCALE[budget.unit]
        crossed = [t for t in self.thresholds if units >= Decimal(str(t)) * limit]
        alerts = []
        for threshold in crossed:
            key = (*budget.key, start.isoformat(), f"{threshold:g}")
            if key in self.fired:
                continue
            self.fired.add(key)
            spend = Decimal(units) / UNIT_SCALE[budget.unit]
            detected = datetime.fromtimestamp(last / 1000, UTC)
            alerts.append(_threshold_alert(budget, threshold, spend, requests, start, end,
                                           detected))  # fmt: skip
        return alerts

    def _forecasts(self, hour: int) -> list[Alert]:
        now = datetime.fromtimestamp(hour * 3600, UTC)
        alerts = []
        for entity, budgets in sorted(self.budgets.items()):
            history = self.hourly.get(entity)
            if not history:
                continue
            for budget in budgets:
                alert = self._forecast(budget, history, hour, now)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def _forecast(
        self, budget: Budget, history: dict[int, list[int]], hour: int, now: datetime
    ) -> Alert | None:
        units, requests, _, start, end = self.spend(budget, now - timedelta(microseconds=1))
        if now >= end:  # the hour that ended a period: judge the new one
            units, requests, _, start, end = self.spend(budget, now)
        key = (*budget.key, start.isoformat(), "forecast")
        scale = UNIT_SCALE[budget.unit]
        amount = float(budget.amount)
        if key in self.fired or units >= budget.amount * scale:
            return None
        first = max(min(history), hour - HISTORY_H)
        column = 0 if budget.unit == "usd" else 1
        series = np.array(
            [history.get(h, (0, 0))[column] / scale for h in range(first, hour)], dtype=float
        )
        hours_left = int((end - now).total_seconds() // 3600)
        projection = project(series, hours_left, units / scale, end_hour=hour)
        if projection is None or projection.low < amount:
            return None
        eta = projection.exhaustion_hours(amount)
        if eta is None:
            return None
        self.fired.add(key)
        return _forecast_alert(budget, projection, now, now + timedelta(hours=eta), start, end,
                               requests)  # fmt: skip


def _evidence(budget: Budget, spend: float, start: datetime, end: datetime) -> dict[str, Evidence]:
    amount = float(budget.amount)
    return {
        "budget": Evidence(value=amount, baseline=amount),
        "spend": Evidence(value=spend, baseline=amount),
        "period": Evidence(value=start.timestamp(), baseline=end.timestamp()),
    }


def _period_words(budget: Budget, start: datetime) -> str:
    if budget.period == "day":
        return f"on {start:%Y-%m-%d}"
    return f"in the {budget.period} from {start:%Y-%m-%d}"


def _threshold_alert(
    budget: Budget, threshold: float, spend: Decimal, requests: int, start: datetime,
    end: datetime, detected: datetime,
) -> Alert:  # fmt: skip
    share = float(spend / budget.amount)
    severity: Severity = "high" if threshold >= 1.0 else "medium" if threshold >= 0.8 else "low"
    evidence = _evidence(budget, float(spend), start, end)
    evidence["threshold"] = Evidence(value=threshold, baseline=threshold)
    summary = (
        f"{budget.entity_id} has spent {format_amount(spend, budget.unit)} of its "
        f"{budget.describe()} budget ({share:.0%} {_period_words(budget, start)}), past "
        f"{threshold:.0%} of it"
    )
    return Alert(
        alert_id=alert_id_for(
            f"budget_overrun|{budget.period}|{budget.unit}|{threshold:g}",
            budget.entity_type, budget.entity_id, detected,
        ),
        kind="budget_overrun", entity_type=budget.entity_type, entity_id=budget.entity_id,
        window_start=start, window_end=detected, detected_at=detected, score=round(share, 4),
        severity=severity, summary=summary, evidence=evidence, event_count=requests,
    )  # fmt: skip


def _forecast_alert(
    budget: Budget, projection: Projection, now: datetime, exhausted: datetime,
    start: datetime, end: datetime, requests: int,
) -> Alert:  # fmt: skip
    amount = float(budget.amount)
    evidence = _evidence(budget, projection.spend_to_date, start, end)
    evidence |= {
        "forecast": Evidence(value=1.0, baseline=0.0),
        "projected": Evidence(value=projection.total, baseline=amount),
        "projected_low": Evidence(value=projection.low, baseline=amount),
        "projected_high": Evidence(value=projection.high, baseline=amount),
        "exhausted_at": Evidence(value=exhausted.timestamp(), baseline=end.timestamp()),
        "burn_rate": Evidence(value=round(projection.rate, 4), baseline=1.0),
    }
    unit = budget.unit
    summary = (
        f"forecast: {budget.entity_id} will run out of its {budget.describe()} budget around "
        f"{exhausted:%Y-%m-%d %H:%M} UTC, before the {budget.period} ends on "
        f"{end:%Y-%m-%d %H:%M} (projected {format_amount(projection.total, unit)}, 80 % "
        f"interval {format_amount(projection.low, unit)} to "
        f"{format_amount(projection.high, unit)}; {format_amount(projection.spend_to_date, unit)}"
        f" spent so far, burning at {projection.rate:.1f}x its usual rate)"
    )
    within_day = (exhausted - now) <= timedelta(days=1)
    return Alert(
        alert_id=alert_id_for(
            f"budget_overrun|{budget.period}|{budget.unit}|forecast",
            budget.entity_type, budget.entity_id, now,
        ),
        kind="budget_overrun", entity_type=budget.entity_type, entity_id=budget.entity_id,
        window_start=start, window_end=now, detected_at=now,
        score=round(projection.total / amount, 4), severity="high" if within_day else "medium",
        summary=summary, evidence=evidence, event_count=requests,
    )  # fmt: skip
