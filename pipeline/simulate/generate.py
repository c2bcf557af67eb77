"""Fast-forward generation: the fleet's traffic, chunk by chunk, with scenarios applied.

Each chunk of ``config.chunk_seconds`` draws arrivals from an arrival model (by default Poisson
per api key under its daily cycle; bursty or trace-driven in :mod:`pipeline.simulate.arrivals`),
lets scenarios add or thin arrivals, realises all requests column-wise, and sorts them by event
time. Randomness comes only from ``config.seed``: chunk ``c`` uses the stream ``[seed, 1, c]``
and a scenario its own stream ``[seed, 2, c, tag]``, so the same config and scenarios give the
same bytes, and a scenario leaves the traffic it does not touch unchanged.

>>> config = FleetConfig(tenants=4, rate=5.0, hours=0.1, seed=3)
>>> batches = list(simulate(config))
>>> sum(len(b) for b in batches) > 0
True
>>> from pipeline.events import parse_event
>>> first = batches[0].to_jsonl().splitlines()[0]
>>> parse_event(first).schema_version
'1'
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from pipeline.events import AllocationEvent
from pipeline.simulate.arrivals import ArrivalModel, PoissonArrivals
from pipeline.simulate.encode import FIELDS, encode_jsonl, wire_columns
from pipeline.simulate.fleet import Fleet, FleetConfig, build_fleet
from pipeline.simulate.router import Router
from pipeline.simulate.scenarios import Context, Scenario
from pipeline.simulate.workload import Block, Stage, draw_block, realise

_event_decoder = msgspec.json.Decoder(AllocationEvent)


class EventBatch:
    """The requests of one time chunk, sorted by event time (unless jittered), column-wise."""

    __slots__ = ("block", "fleet", "router")

    def __init__(self, block: Block, fleet: Fleet, router: Router) -> None:
        self.block = block
        self.fleet = fleet
        self.router = router

    def __len__(self) -> int:
        return len(self.block)

    def columns(self) -> dict[str, list[Any]]:
        """Contract v1 columns of JSON-ready values (``None`` for null)."""
        return wire_columns(self.block, self.fleet, self.router)

    def to_jsonl(self) -> bytes:
        """Contract v1 JSON lines, each ending in a newline."""
        return encode_jsonl(self.columns())

    def to_dicts(self) -> list[dict[str, Any]]:
        """One contract v1 dict per event."""
        cols = self.columns()
        rows = zip(*(cols[f] for f in FIELDS), strict=True)
        return [dict(zip(FIELDS, row, strict=True)) for row in rows]

    def to_events(self) -> list[AllocationEvent]:
        """Typed events (validated by the contract model)."""
        return _event_decoder.decode_lines(self.to_jsonl())

    def arrays(self) -> dict[str, np.ndarray]:
        """Contract v1 columns as numpy arrays (strings as ``str`` arrays, null as NaN)."""
        cols = self.columns()
        out = {f: np.asarray(cols[f]) for f in FIELDS if f not in ("ttft_ms", "confidence")}
        out["ttft_ms"], out["confidence"] = self.block.ttft, np.round(self.block.confidence, 3)
        out["ts_ms"] = self.block.ts
        return out


def simulate(
    config: FleetConfig,
    scenarios: Sequence[Scenario] = (),
    *,
    fleet: Fleet | None = None,
    router: Router | None = None,
    arrivals: ArrivalModel | None = None,
) -> Iterator[EventBatch]:
    """Fast-forward ``config.hours`` of fleet traffic with ``scenarios``, one batch per chunk.

    Parameters
    ----------
    config
        Fleet shape, rate, period and seed.
    scenarios
        Scenarios to apply (any number, composed in order); they name entities of ``fleet``.
    fleet, router
        Default to ``build_fleet(config)`` and ``Router()``.
    arrivals
        When requests arrive (default :class:`PoissonArrivals`).

    Returns
    -------
    Iterator[EventBatch]
        One non-empty batch per ``config.chunk_seconds`` of event time, in time order.

    Examples
    --------
    >>> config = FleetConfig(tenants=3, rate=2.0, hours=0.02, seed=1)  # 72 s: two chunks
    >>> batches = list(simulate(config))
    >>> len(batches), sum(len(b) for b in batches) > 50
    (2, True)
    """
    fleet = fleet or build_fleet(config)
    router = router or Router()
    arrivals = arrivals or PoissonArrivals()
    step = config.chunk_seconds * 1000
    for chunk, t0 in enumerate(range(config.start_ms, config.end_ms, step)):
        t1 = min(t0 + step, config.end_ms)
        block = _chunk(config, fleet, router, arrivals, scenarios, chunk, (t0, t1))
        if len(block):
            yield EventBatch(block, fleet, router)


def _stream(seed: int, *words: int) -> np.random.Generator:
    return np.random.default_rng([seed, *words])


def _tag(scenario: Scenario) -> int:
    """A stable id for a scenario's random stream (its parameters, not its list position)."""
    return zlib.crc32(repr(scenario).encode())


def _chunk(
    config: FleetConfig,
    fleet: Fleet,
    router: Router,
    arrivals: ArrivalModel,
    scenarios: Sequence[Scenario],
    chunk: int,
    span: tuple[int, int],
) -> Block:
    t0, t1 = span
    rng = _stream(config.seed, 1, chunk)
    active = [
        (s, Context(fleet, router, _stream(config.seed, 2, chunk, _tag(s))))
        for s in scenarios
        if s.affects(t0, t1)
    ]
    drawn = arrivals.draw(rng, fleet, t0, t1)
    blocks = [draw_block(rng, drawn.keys, drawn.ts, fleet, (drawn.prompt, drawn.completion))]
    for scenario, ctx in active:
        extra_keys, extra_ts = scenario.extra_arrivals(ctx, t0, t1)
        if len(extra_keys):
            blocks.append(draw_block(ctx.rng, extra_keys, extra_ts, fleet))
    block = Block.concat(blocks)
    for scenario, ctx in active:
        keep = scenario.keep(block, ctx)
        if keep is not None:
            block = block.take(keep)

    def hook(stage: Stage, b: Block) -> None:
        for scenario, ctx in active:
            scenario.apply(stage, b, ctx)

    realise(block, fleet, router, hook)
    order_key = block.ts.astype(np.float64)
    if config.jitter_ms > 0:
        order_key = order_key + _stream(config.seed, 3, chunk).exponential(
            config.jitter_ms, len(block)
        )
    return block.take(np.argsort(order_key, kind="stable"))


def iter_events(
    config: FleetConfig, scenarios: Sequence[Scenario] = (), *, fleet: Fleet | None = None
) -> Iterator[dict[str, Any]]:
    """The simulated events one at a time, as contract v1 dicts (for producers and pacing)."""
    for batch in simulate(config, scenarios, fleet=fleet):
        yield from batch.to_dicts()


def write_jsonl(path: str | Path, batches: Iterable[EventBatch]) -> int:
    """Write ``batches`` to ``path`` as JSON lines; return the number of events written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = pathlib.Path(tmp) / "events.jsonl"
    ...     n = write_jsonl(path, simulate(FleetConfig(tenants=3, rate=2.0, hours=0.02)))
    ...     n == len(path.read_bytes().splitlines())
    True
    """
    count = 0
    with Path(path).open("wb") as out:
        for batch in batches:
            out.write(batch.to_jsonl())
            count += len(batch)
    return count


def collect(batches: Iterable[EventBatch]) -> dict[str, np.ndarray]:
    """All batches' :meth:`EventBatch.arrays` concatenated (for analysis and tests)."""
    parts = [b.arrays() for b in batches]
    if not parts:
        return {}
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
