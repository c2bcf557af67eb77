"""Column-wise formatting of simulated requests as contract v1 values, and fast JSONL encoding.

UUIDs and timestamps are formatted for a whole block at once with numpy; each line is then one
small msgspec Struct in contract field order, encoded by ``Encoder.encode_lines``.

>>> import numpy as np
>>> format_uuids(np.zeros((1, 16), dtype=np.uint8))
['00000000-0000-4000-8000-000000000000']
>>> format_timestamps(np.array([1772409600251]))
['2026-03-02T00:00:00.251Z']
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from pipeline.events import SCHEMA_VERSION, STATUSES
from pipeline.simulate.fleet import Fleet, FloatArray, IntArray
from pipeline.simulate.router import Router
from pipeline.simulate.workload import Block

_HEX: Final = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_DIGITS: Final = np.r_[0:8, 9:13, 14:18, 19:23, 24:36]


class WireEvent(msgspec.Struct, gc=False):
    """Contract v1 fields in the order of DESIGN.md, for encoding only."""

    schema_version: str
    event_id: str
    ts: str
    tenant_id: str
    api_key_id: str
    model: str
    server_id: str
    route: str
    difficulty: float | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    passes: int
    budget_tokens: int | None
    gpu_ms: float
    latency_ms: float
    ttft_ms: float | None
    confidence: float | None
    status: str
    gpu_type: str | None
    region: str | None


FIELDS: Final = WireEvent.__struct_fields__
_encoder: Final = msgspec.json.Encoder()


def format_uuids(raw: NDArray[np.uint8]) -> list[str]:
    """Canonical lowercase version-4 UUID strings from ``(n, 16)`` random bytes."""
    b = raw.copy()
    b[:, 6] = (b[:, 6] & 0x0F) | 0x40
    b[:, 8] = (b[:, 8] & 0x3F) | 0x80
    nibbles = np.empty((len(b), 32), dtype=np.uint8)
    nibbles[:, 0::2] = b >> 4
    nibbles[:, 1::2] = b & 0x0F
    chars = np.full((len(b), 36), ord("-"), dtype=np.uint8)
    chars[:, _UUID_DIGITS] = _HEX[nibbles]
    out: list[str] = chars.view("S36").ravel().astype("U36").tolist()
    return out


def format_timestamps(ts_ms: IntArray) -> list[str]:
    """RFC 3339 UTC timestamps with milliseconds and ``Z`` from epoch milliseconds."""
    text = np.datetime_as_string(ts_ms.astype("datetime64[ms]"), unit="ms", timezone="UTC")
    out: list[str] = text.tolist()
    return out


def _nullable(values: FloatArray, decimals: int) -> list[float | None]:
    out = np.round(values, decimals).astype(object)
    out[np.isnan(values)] = None
    result: list[float | None] = out.tolist()
    return result


def _names(names: list[str], index: IntArray) -> list[str]:
    out: list[str] = np.array(names, dtype=object)[index].tolist()
    return out


def wire_columns(block: Block, fleet: Fleet, router: Router) -> dict[str, list[Any]]:
    """The block as contract v1 columns of JSON-ready values (``None`` for null)."""
    n = len(block)
    servers = fleet.servers
    return {
        "schema_version": [SCHEMA_VERSION] * n,
        "event_id": format_uuids(block.uid),
        "ts": format_timestamps(block.ts),
        "tenant_id": _names([t.id for t in fleet.tenants], block.tenant),
        "api_key_id": _names([k.id for k in fleet.keys], block.key),
        "model": _names([m.name for m in fleet.models], block.model),
        "server_id": _names([s.id for s in servers], block.server),
        "route": _names(list(router.names), block.route),
        "difficulty": _nullable(block.difficulty, 3),
        "prompt_tokens": block.prompt.tolist(),
        "completion_tokens": block.completion.astype(np.int64).tolist(),
        "reasoning_tokens": block.reasoning.astype(np.int64).tolist(),
        "passes": block.passes.tolist(),
        "budget_tokens": block.budget.tolist(),
        "gpu_ms": np.round(block.gpu_ms, 1).tolist(),
        "latency_ms": np.round(block.latency, 1).tolist(),
        "ttft_ms": _nullable(block.ttft, 1),
        "confidence": _nullable(block.confidence, 3),
        "status": _names(list(STATUSES), block.status),
        "gpu_type": _names([s.gpu_type for s in servers], block.server),
        "region": _names([s.region for s in servers], block.server),
    }


def encode_jsonl(columns: dict[str, list[Any]]) -> bytes:
    """One JSON object per line (each ending in a newline) from :func:`wire_columns`."""
    rows = [WireEvent(*row) for row in zip(*(columns[f] for f in FIELDS), strict=True)]
    return _encoder.encode_lines(rows)
