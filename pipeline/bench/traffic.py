"""Simulated fleet traffic as wire messages for the bench: Kafka key, JSON value, event time.

>>> import json
>>> wire = fleet_wire(throughput_fleet(tenants=3, rate=5.0, events=40), limit=40)
>>> len(wire), wire.keys[0].startswith(b"tenant-"), int(wire.ts_ms[0]) <= int(wire.ts_ms[-1])
(40, True, True)
>>> rows = many_keys_lines(throughput_fleet(tenants=3, rate=5.0, events=40), keys=7, limit=40)
>>> len({json.loads(line)["api_key_id"] for line in rows})
7
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from pipeline.simulate import FleetConfig, Scenario, simulate
from pipeline.simulate.encode import encode_jsonl

T0 = datetime(2026, 3, 2, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Wire:
    """Messages in production order: ``keys[i]`` (tenant id), ``values[i]`` (JSON), ``ts_ms[i]``."""

    keys: list[bytes]
    values: list[bytes]
    ts_ms: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.values)


def throughput_fleet(
    *, tenants: int, rate: float, events: int, seed: int = 0, start: datetime = T0
) -> FleetConfig:
    """A fleet config whose period surely holds ``events`` events (callers stop at the count).

    The daily cycle can lower the rate to ``1 - amplitude`` of its mean; the period allows
    for that and a margin.
    """
    base = FleetConfig(tenants=tenants, rate=rate, seed=seed, start=start)
    hours = events / (rate * 3600.0) / (1.0 - base.diurnal_amplitude) * 1.2 + 0.05
    return replace(base, hours=hours)


def _batches(
    config: FleetConfig, scenarios: Sequence[Scenario], limit: int | None
) -> Iterator[tuple[dict[str, list[object]], NDArray[np.int64]]]:
    """Columns and event times of the simulated batches, cut at ``limit`` events in total."""
    left = limit if limit is not None else -1
    for batch in simulate(config, scenarios):
        columns = batch.columns()
        ts: NDArray[np.int64] = batch.block.ts
        if 0 <= left < len(ts):
            columns = {name: values[:left] for name, values in columns.items()}
            ts = ts[:left]
        yield columns, ts
        left -= len(ts)
        if left == 0:
            return


def fleet_wire(
    config: FleetConfig,
    scenarios: Sequence[Scenario] = (),
    *,
    limit: int | None = None,
    message_key: str = "tenant_id",
) -> Wire:
    """The fleet's events (with ``scenarios``) as wire messages keyed by ``message_key`` (as
    ``COMPUTEWATCH_KAFKA_MESSAGE_KEY`` says producers do), at most ``limit``."""
    keys: list[bytes] = []
    values: list[bytes] = []
    times: list[NDArray[np.int64]] = []
    for columns, ts in _batches(config, scenarios, limit):
        keys.extend(str(k).encode() for k in columns[message_key])
        values.extend(encode_jsonl(columns).splitlines())
        times.append(ts)
    ts_ms = np.concatenate(times) if times else np.empty(0, dtype=np.int64)
    return Wire(keys, values, ts_ms.astype(np.int64))


def write_events(path: Path, config: FleetConfig, events: int) -> int:
    """Write exactly ``events`` events of ``config`` (fewer if its period is short) as JSONL."""
    count = 0
    with path.open("wb") as out:
        for columns, ts in _batches(config, (), events):
            out.write(encode_jsonl(columns))
            count += len(ts)
    return count


def many_keys_lines(
    config: FleetConfig, *, keys: int, limit: int, seed: int = 0
) -> Iterator[bytes]:
    """``limit`` events of ``config`` re-keyed over exactly ``keys`` api keys (one JSON line each).

    Event ``i`` goes to key ``perm[i] % keys`` for a seeded permutation, so every key is used
    (when ``limit >= keys``) and keys are spread over the whole period; key ``k`` belongs to
    tenant ``k % tenants``, so keys never change tenant.
    """
    rng = np.random.default_rng([seed, 99])
    assignment = rng.permutation(limit) % keys
    done = 0
    for columns, ts in _batches(config, (), limit):
        index = assignment[done : done + len(ts)]
        columns["api_key_id"] = [f"ak-bench-{k:06d}" for k in index.tolist()]
        columns["tenant_id"] = [f"tenant-{k % config.tenants + 1:02d}" for k in index.tolist()]
        done += len(ts)
        yield from encode_jsonl(columns).splitlines()
