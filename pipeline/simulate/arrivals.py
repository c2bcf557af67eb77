"""When requests arrive and for which api key: smooth, bursty, or replayed from a real trace.

An arrival model draws the requests of one chunk of event time ``[t0, t1)`` as an
:class:`Arrivals`: an api key index and an epoch-ms time per request, and, when the source
knows them, the request's prompt and completion tokens (NaN: the request model draws them).

* :class:`PoissonArrivals` — each key's Poisson rate under its tenant's daily cycle (the
  simulator's original traffic: smooth, variance equal to the mean).
* :class:`BurstyArrivals` — some tenants send in bursts (batch jobs, CI runs, agents fanning
  out): per-minute gamma-distributed load (negative-binomial counts) and bursts of 2–5× lasting
  1–5 minutes, some at the same minutes of every hour and some at random.
* :class:`TraceArrivals` — a recorded trace's arrival times and token counts, looped to the
  simulated period: tenants are split into services, each service's arrivals are the trace's
  (each service from another point of it), scaled to the service's rate.

>>> import numpy as np
>>> from pipeline.simulate.fleet import FleetConfig, build_fleet
>>> fleet = build_fleet(FleetConfig(tenants=4, rate=5.0))
>>> trace = Trace.of([0, 500, 61_000], [100, 200, 300], [10, 20, 30])
>>> round(trace.rate, 4), trace.span_ms
(0.0492, 61001)
>>> model = TraceArrivals(trace, fleet, services=1)
>>> t0 = fleet.config.start_ms
>>> got = model.draw(np.random.default_rng(0), fleet, t0, t0 + 60_000)
>>> len(got.keys) > 0, set(got.prompt.tolist()) <= {100.0, 200.0}
(True, True)
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

import numpy as np

from pipeline.simulate.fleet import Fleet, FloatArray, IntArray

BUILTIN_TRACE: Final = Path(__file__).with_name("traces") / "mooncake_conversation_trace.jsonl"
"""Mooncake's FAST'25 conversation trace (one hour of a production chat service, Apache-2.0)."""


@dataclass(frozen=True, slots=True)
class Arrivals:
    """Requests of one chunk: key index and epoch-ms per request, tokens where known (NaN)."""

    keys: IntArray
    ts: IntArray
    prompt: FloatArray
    completion: FloatArray

    @classmethod
    def drawn(cls, keys: IntArray, ts: IntArray) -> Arrivals:
        """Arrivals whose token counts the request model draws."""
        unknown = np.full(len(keys), np.nan)
        return cls(keys, ts, unknown, unknown.copy())


class ArrivalModel(Protocol):
    def draw(self, rng: np.random.Generator, fleet: Fleet, t0: int, t1: int) -> Arrivals:
        """The requests arriving in ``[t0, t1)`` (epoch ms), drawn from ``rng`` only."""
        ...


def _spread(rng: np.random.Generator, counts: IntArray, t0: int, t1: int) -> Arrivals:
    keys = np.repeat(np.arange(len(counts)), counts)
    ts = t0 + np.floor(rng.random(len(keys)) * (t1 - t0)).astype(np.int64)
    return Arrivals.drawn(keys, ts)


class PoissonArrivals:
    """Each key's Poisson arrivals at its rate at the chunk's midpoint (its tenant's day)."""

    def draw(self, rng: np.random.Generator, fleet: Fleet, t0: int, t1: int) -> Arrivals:
        counts = rng.poisson(fleet.key_rates((t0 + t1) / 2) * (t1 - t0) / 1000.0)
        return _spread(rng, counts, t0, t1)


@dataclass(frozen=True, slots=True)
class BurstyTenant:
    """How one bursty tenant's load moves minute by minute.

    ``shape`` is the gamma shape of its per-minute load (smaller: rougher); ``slots`` the
    minutes of the hour at which its recurring bursts start; ``random_per_hour`` how many
    bursts per hour start at random; ``amplitude`` and ``minutes`` their size and length.
    """

    shape: float
    slots: tuple[int, ...]
    random_per_hour: float
    amplitude: float
    minutes: int


MIN_SHAPE: Final = 2.0
"""The roughest per-minute load a bursty tenant gets (gamma shape 2: minutes vary by ±70 %)."""


class BurstyArrivals:
    """A share ``bursty_share`` of tenants (one of the three largest among them) send in bursts.

    A bursty tenant's rate in a minute is its daily-cycle rate × a gamma draw of mean 1 (its
    per-minute counts are negative binomial: variance 20–200× the mean at its size, for a small
    tenant as rough as a gamma shape of :data:`MIN_SHAPE` allows) × a burst factor of 2–5 while
    a burst lasts. The burst schedule is fixed by the fleet's seed, so the
    same minutes of every hour carry a tenant's recurring bursts.

    >>> import numpy as np
    >>> from pipeline.simulate.fleet import FleetConfig, build_fleet
    >>> fleet = build_fleet(FleetConfig(tenants=20, rate=25.0, seed=1))
    >>> model = BurstyArrivals(fleet)
    >>> len(model.tenants) >= 8, 0 in model.tenants or 1 in model.tenants or 2 in model.tenants
    (True, True)
    """

    def __init__(self, fleet: Fleet, bursty_share: float = 0.4) -> None:
        self.start_ms = fleet.config.start_ms
        rng = np.random.default_rng([fleet.config.seed, 5])
        n = len(fleet.tenants)
        chosen = {int(rng.integers(min(3, n)))}
        others = [i for i in range(n) if i not in chosen]
        extra = max(0, round(bursty_share * n) - 1)
        chosen.update(int(i) for i in rng.choice(others, min(extra, len(others)), replace=False))
        self.seed = fleet.config.seed
        self.tenants: dict[int, BurstyTenant] = {}
        for i in sorted(chosen):
            rpm = 60 * fleet.config.rate * fleet.tenants[i].share
            ratio = float(rng.uniform(20.0, 200.0))  # target variance / mean per minute
            recurring = int(rng.integers(0, 3))
            self.tenants[i] = BurstyTenant(
                shape=float(np.clip(rpm / (ratio - 1.0), MIN_SHAPE, 50.0)),
                slots=tuple(int(s) for s in rng.choice(60, recurring, replace=False)),
                random_per_hour=float(rng.uniform(0.3, 1.5)),
                amplitude=float(rng.uniform(2.0, 5.0)),
                minutes=int(rng.integers(1, 6)),
            )
        self._key_tenant = fleet.arrays.key_tenant

    def factor(self, tenant: int, minute: int) -> float:
        """The burst factor of ``tenant`` in minute ``minute`` since the start (1 outside)."""
        spec = self.tenants.get(tenant)
        if spec is None:
            return 1.0
        for back in range(spec.minutes):
            m = minute - back
            if m < 0:
                break
            if m % 60 in spec.slots or m in self._random_starts(tenant, m // 60, spec):
                return spec.amplitude
        return 1.0

    def _random_starts(self, tenant: int, hour: int, spec: BurstyTenant) -> set[int]:
        rng = np.random.default_rng([self.seed, 6, tenant, hour])
        count = int(rng.poisson(spec.random_per_hour))
        return {hour * 60 + int(m) for m in rng.integers(0, 60, count)}

    def draw(self, rng: np.random.Generator, fleet: Fleet, t0: int, t1: int) -> Arrivals:
        rates = fleet.key_rates((t0 + t1) / 2)
        minute = (t0 - self.start_ms) // 60_000
        load = np.ones(len(fleet.tenants))
        for i, spec in self.tenants.items():
            load[i] = rng.gamma(spec.shape, 1.0 / spec.shape) * self.factor(i, minute)
        counts = rng.poisson(rates * load[self._key_tenant] * (t1 - t0) / 1000.0)
        return _spread(rng, counts, t0, t1)


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Trace:
    """Arrival offsets (ms from the first request, sorted) and token counts of a recording."""

    offset_ms: IntArray
    prompt: IntArray
    completion: IntArray

    @classmethod
    def of(cls, offset_ms: list[int], prompt: list[int], completion: list[int]) -> Trace:
        t = np.asarray(offset_ms, dtype=np.int64)
        order = np.argsort(t, kind="stable")
        return cls(
            t[order] - t[order][0],
            np.asarray(prompt, dtype=np.int64)[order],
            np.asarray(completion, dtype=np.int64)[order],
        )

    def __len__(self) -> int:
        return int(self.offset_ms.shape[0])

    @property
    def span_ms(self) -> int:
        """How long one pass of the trace lasts (its loop length)."""
        return int(self.offset_ms[-1]) + 1

    @property
    def rate(self) -> float:
        """Mean requests per second over one pass."""
        return len(self) / (self.span_ms / 1000.0)

    def window(self, a_ms: int, b_ms: int) -> tuple[IntArray, IntArray]:
        """Indices and looped offsets of the requests in ``[a_ms, b_ms)`` of the looped trace."""
        idx, at = [], []
        span = self.span_ms
        for loop in range(a_ms // span, (b_ms - 1) // span + 1):
            base = loop * span
            lo = np.searchsorted(self.offset_ms, a_ms - base, side="left")
            hi = np.searchsorted(self.offset_ms, b_ms - base, side="left")
            idx.append(np.arange(lo, hi))
            at.append(self.offset_ms[lo:hi] + base)
        return np.concatenate(idx), np.concatenate(at)


def load_trace(path: Path) -> Trace:
    """Read a trace: Mooncake's JSON lines (``timestamp`` in ms, ``input_length``,
    ``output_length``) or CSV with a header ``timestamp,prompt_tokens,completion_tokens``
    (timestamps ISO 8601 or seconds; Azure's ``TIMESTAMP,ContextTokens,GeneratedTokens`` too).

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     p = pathlib.Path(tmp) / "t.csv"
    ...     _ = p.write_text("timestamp,prompt_tokens,completion_tokens\\n"
    ...                      "2024-05-10 00:00:01.5,900,120\\n2024-05-10T00:00:00Z,50,7\\n")
    ...     trace = load_trace(p)
    >>> trace.offset_ms.tolist(), trace.prompt.tolist()
    ([0, 1500], [50, 900])
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"cannot read trace {path}: {exc}") from None
    first = text.lstrip()[:1]
    rows = _json_rows(path, text) if first == "{" else _csv_rows(path, text)
    if len(rows) < 2:
        raise TraceError(f"trace {path} holds {len(rows)} request(s); at least 2 are needed")
    offsets, prompt, completion = (list(c) for c in zip(*rows, strict=True))
    return Trace.of(offsets, prompt, completion)


Row = tuple[int, int, int]


def _count(value: object, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TraceError(f"{where}: {what} must be a number, not {value!r}")
    if value < 0:
        raise TraceError(f"{where}: {what} must be >= 0, not {value!r}")
    return int(value)


def _json_rows(path: Path, text: str) -> list[Row]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            item = json.loads(line)
            ts, p, c = item["timestamp"], item["input_length"], item["output_length"]
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise TraceError(
                f"{where}: not a Mooncake trace line (timestamp, input_length, output_length): "
                f"{exc}"
            ) from None
        rows.append((_count(ts, "timestamp", where), _count(p, "input_length", where),
                     _count(c, "output_length", where)))  # fmt: skip
    return rows


_CSV_COLUMNS: Final = (
    ("timestamp", "prompt_tokens", "completion_tokens"),
    ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
)


def _csv_rows(path: Path, text: str) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text))
    header = tuple(name.strip() for name in reader.fieldnames or ())
    names = next((c for c in _CSV_COLUMNS if set(c) <= set(header)), None)
    if names is None:
        raise TraceError(
            f"{path}: a CSV trace needs the columns timestamp,prompt_tokens,completion_tokens "
            f"(found {','.join(header) or 'no header'})"
        )
    reader.fieldnames = list(header)
    rows = []
    for n, record in enumerate(reader, 2):
        where = f"{path}:{n}"
        ts, p, c = (str(record.get(name) or "").strip() for name in names)
        rows.append((_time_ms(ts, where), _count(_number(p, where), "prompt_tokens", where),
                     _count(_number(c, where), "completion_tokens", where)))  # fmt: skip
    return rows


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise TraceError(f"{where}: {text!r} is not a number") from None


def _time_ms(text: str, where: str) -> int:
    """Seconds (a number) or ISO 8601 (naive means UTC) as milliseconds."""
    try:
        return round(float(text) * 1000)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TraceError(f"{where}: timestamp {text!r} is neither seconds nor ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


class TraceArrivals:
    """Arrivals replayed from ``trace``, looped, for ``services`` groups of tenants.

    Tenants are dealt to services by size (largest to service 0, next to 1, ...). Service ``s``
    replays the trace from ``s / services`` of the way through it, so services burst at
    different times; each of its requests is copied a Poisson number of times with mean
    (the service's rate under the fleet's daily cycle) / (the trace's rate), then given to one
    of the service's keys in proportion to their rates. Copies keep the request's arrival
    time (within a second) and its prompt and completion tokens.
    """

    def __init__(self, trace: Trace, fleet: Fleet, services: int = 3) -> None:
        self.trace = trace
        self.start_ms = fleet.config.start_ms
        n = len(fleet.tenants)
        self.services = max(1, min(services, n))
        service_of_tenant = np.arange(n) % self.services
        self.service_of_key = service_of_tenant[fleet.arrays.key_tenant]
        self.shift_ms = [s * trace.span_ms // self.services for s in range(self.services)]

    def draw(self, rng: np.random.Generator, fleet: Fleet, t0: int, t1: int) -> Arrivals:
        rates = fleet.key_rates((t0 + t1) / 2)
        parts: list[tuple[IntArray, IntArray, IntArray]] = []
        for s in range(self.services):
            keys = np.flatnonzero(self.service_of_key == s)
            weights = rates[keys]
            if weights.sum() <= 0:
                continue
            a = t0 - self.start_ms + self.shift_ms[s]
            idx, at = self.trace.window(a, a + (t1 - t0))
            copies = rng.poisson(weights.sum() / self.trace.rate, len(idx))
            idx, at = np.repeat(idx, copies), np.repeat(at, copies)
            ts = np.minimum(t0 + (at - a) + rng.integers(0, 1000, len(at)), t1 - 1)
            chosen = rng.choice(keys, len(idx), p=weights / weights.sum())
            parts.append((chosen.astype(np.int64), ts.astype(np.int64), idx))
        if not parts:
            return Arrivals.drawn(np.empty(0, np.int64), np.empty(0, np.int64))
        keys_, ts_, idx_ = (np.concatenate(c) for c in zip(*parts, strict=True))
        return Arrivals(
            keys_, ts_, self.trace.prompt[idx_].astype(float),
            self.trace.completion[idx_].astype(float),
        )  # fmt: skip
