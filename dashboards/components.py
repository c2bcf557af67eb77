"""Small UI pieces shared by the pages: auto-refresh, the time window picker, empty states,
rows of numbers and number formats.

>>> bucket_seconds(timedelta(hours=24))
900
>>> money(Decimal("1234.565"))
'$1,234.57'
>>> percent(0.01234), percent(None), duration(87_252.4), duration(850.0)
('1.23%', '–', '87.3 s', '850 ms')
>>> latency_unit(45_400.0)
('s', 1000.0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from data import StoreStatus

NO_DATA: Final = (
    "**No data yet.** Start the simulated fleet with `computewatch demo`, or load recorded "
    "events with `computewatch replay --events FILE --store`; this page fills in as events "
    "arrive."
)
REFRESH_CHOICES: Final = (10, 30, 60, 300)
DEFAULT_REFRESH_S: Final = 30
PRESETS: Final[dict[str, timedelta]] = {
    "Last hour": timedelta(hours=1),
    "Last 6 hours": timedelta(hours=6),
    "Last 24 hours": timedelta(hours=24),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
}
CUSTOM: Final = "Custom dates"
_BUCKETS: Final = ((timedelta(hours=2), 60), (timedelta(hours=12), 300),
                   (timedelta(days=2), 900), (timedelta(days=14), 3600))
DASH: Final = "–"
WRAPPED_ROW_PX: Final = 72
"""Table row height that lets long text (an alert's summary) wrap onto three lines."""
LIVE_LAG: Final = timedelta(minutes=5)
"""Stored events older than this (event time) at the time they are stored are history."""
INGESTING: Final = timedelta(minutes=2)


# -- refresh ------------------------------------------------------------------------------------

def refresh_controls() -> None:
    """Sidebar controls for auto-refresh (on by default, every 30 s)."""
    with st.sidebar:
        st.toggle("Auto-refresh", value=True, key="auto_refresh",
                  help="Re-read the data periodically without reloading the page.")
        st.selectbox("Every", REFRESH_CHOICES, index=REFRESH_CHOICES.index(DEFAULT_REFRESH_S),
                     format_func=lambda s: f"{s} s" if s < 60 else f"{s // 60} min",
                     key="refresh_s", disabled=not st.session_state.get("auto_refresh", True))


def refresh_every() -> timedelta | None:
    """The auto-refresh interval chosen in the sidebar, or None when switched off."""
    if not st.session_state.get("auto_refresh", True):
        return None
    return timedelta(seconds=int(st.session_state.get("refresh_s", DEFAULT_REFRESH_S)))


def live(body: Callable[[], None]) -> None:
    """Run ``body`` as a fragment that reruns on the auto-refresh interval."""
    st.fragment(body, run_every=refresh_every())()


# -- data availability --------------------------------------------------------------------------

def data_available(status: StoreStatus) -> bool:
    """Show why there is nothing to see (no store, no schema, no events) and return False."""
    if status.problem is not None:
        st.warning(f"Cannot read ClickHouse at `{status.target}` (database `{status.database}`):"
                   f" {status.problem}")
        st.info(NO_DATA)
        return False
    if not status.has_events:
        st.info(NO_DATA)
        return False
    return True


def history_loading(status: StoreStatus, now: datetime) -> bool:
    """True while history is being loaded: events are being stored (the last one under
    :data:`INGESTING` ago) whose event time is more than :data:`LIVE_LAG` behind the time
    they were stored (a replay, or the demo fast-forwarding before it goes live)."""
    stored, newest = status.last_ingested_at, status.last_event_ts
    if stored is None or newest is None:
        return False
    return now - stored < INGESTING and stored - newest > LIVE_LAG


def loading_note(status: StoreStatus) -> str:
    """What to tell a reader while history is being loaded."""
    return (f"**Loading history:** events up to {moment(status.last_event_ts)} UTC are stored "
            "so far. The pictures fill in as it arrives; live traffic follows.")


def nothing_in(what: str) -> None:
    """An empty state for a filter or window that matches nothing."""
    st.info(f"No {what}. Widen the time window or clear some filters.")


# -- time ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time window [start, end) and the chart bucket that suits its length."""

    start: datetime
    end: datetime
    label: str

    @property
    def bucket_s(self) -> int:
        """Seconds per chart bucket (about 60 to 150 points per chart)."""
        return bucket_seconds(self.end - self.start)


def bucket_seconds(span: timedelta) -> int:
    """A chart bucket for a window of length ``span``."""
    for limit, seconds in _BUCKETS:
        if span <= limit:
            return seconds
    return 6 * 3600 if span <= timedelta(days=60) else 86_400


def data_end(status: StoreStatus) -> datetime:
    """The end of the newest minute with events: windows end here, so recorded traffic
    (replays) shows the same way as live traffic."""
    newest = status.last_event_ts or datetime.now(UTC)
    return newest.replace(second=0, microsecond=0) + timedelta(minutes=1)


def window_picker(key: str, status: StoreStatus, default: str = "Last 24 hours") -> Window:
    """A time window: a preset ending at the newest event, or whole custom days (UTC)."""
    end = data_end(status)
    options = [*PRESETS, CUSTOM]
    choice = st.selectbox("Time window", options, index=options.index(default), key=f"{key}_win",
                          help=f"Presets end at the newest event ({end:%Y-%m-%d %H:%M} UTC).")
    if choice != CUSTOM:
        return Window(end - PRESETS[choice], end, f"{choice.lower()} of data")
    last_day = (end - timedelta(microseconds=1)).date()
    picked = st.date_input("Days (UTC)", value=(last_day, last_day), key=f"{key}_days")
    first, last = (picked[0], picked[-1]) if picked else (last_day, last_day)
    return Window(midnight(first), midnight(last) + timedelta(days=1), f"{first} to {last}")


def midnight(day: date) -> datetime:
    """The start of ``day`` in UTC."""
    return datetime.combine(day, time(0), tzinfo=UTC)


# -- rows of numbers ----------------------------------------------------------------------------

def metric_row() -> DeltaGenerator:
    """A row for ``metric(..., width="content")`` cells that wraps onto another line when the
    page is narrow, where fixed columns would cut the numbers and their labels short."""
    return st.container(horizontal=True, gap="large")


# -- formats ------------------------------------------------------------------------------------

def number(value: float | None, digits: int = 0) -> str:
    """``1,234`` style, or a dash for no value."""
    return DASH if value is None else f"{value:,.{digits}f}"


def percent(value: float | None) -> str:
    """A share as ``1.23%``, or a dash for no value."""
    return DASH if value is None else f"{value:.2%}"


def latency_unit(ms: float | None) -> tuple[str, float]:
    """The unit that suits a duration in milliseconds, and its size in milliseconds: ``ms``
    below a second, ``s`` below 10 minutes, else ``min``. A page's latency number and its
    charts use the same one."""
    if ms is None or ms < 1000:
        return "ms", 1.0
    return ("s", 1000.0) if ms < 600_000 else ("min", 60_000.0)


def duration(ms: float | None) -> str:
    """Milliseconds as ``850 ms``, ``87.3 s`` (below 10 min) or ``12.5 min``; a dash for none."""
    if ms is None:
        return DASH
    unit, size = latency_unit(ms)
    return f"{ms / size:.{0 if unit == 'ms' else 1}f} {unit}"


def money(value: Decimal) -> str:
    """US dollars rounded half-up to the cent: ``$1,234.57``."""
    cents = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"${cents:,.2f}"


def moment(value: datetime | None) -> str:
    """A (UTC) time to the second, or a dash."""
    return DASH if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def age(value: datetime | None, now: datetime) -> str:
    """How long ago ``value`` was, in the largest sensible unit."""
    if value is None:
        return DASH
    seconds = max(0.0, (now - value).total_seconds())
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"
