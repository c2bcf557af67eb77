"""Ground-truth labels: one :class:`Incident` per scenario, saved as a JSON list.

``kind`` is an alert kind of the alert contract (DESIGN.md) for attacks and faults, or the name of
a benign shift (``harder_problems``, ``new_tenant``, ``fleet_rollout``, ``daily_peak``) with
``benign`` true: alerts on a benign incident's entity inside its window are false alerts.
``entity_id`` ``"*"`` means fleet-wide (every entity, used by ``daily_peak``). ``start`` and
``end`` are RFC 3339 UTC; ``end`` is exclusive. ``tenant_id`` is set when the entity belongs to
one tenant (api keys, tenants).

``budget_burn`` (opt-in, never in the default suite, benign for the same reason) is a tenant
sending 3x its usual traffic from ``start``; its ``budget`` (``period``, ``usd``) is the one
planted for it and ``exhausted_at`` when its spend in that period reached the budget.

``misrouting`` (opt-in, never in the default suite) is a finding for the allocation advisor, not
for the detectors: it is labelled benign, so it leaves recall untouched, and it names the
difficulty ``band`` ``[low, high)`` of its model and the ``routes`` ``(from, to)`` it moved
requests between (both fields are left out of other labels).

>>> from datetime import UTC, datetime
>>> inc = Incident(kind="volume_spike", benign=False, entity_type="api_key", entity_id="ak-1",
...                tenant_id="tenant-01", start=datetime(2026, 3, 2, 6, tzinfo=UTC),
...                end=datetime(2026, 3, 2, 6, 30, tzinfo=UTC), intensity=8.0, variant="blatant")
>>> raw = encode_labels([inc])
>>> print(raw.decode()[:106])
[{"kind":"volume_spike","benign":false,"entity_type":"api_key","entity_id":"ak-1","tenant_id":"tenant-01",
>>> print(raw.decode()[106:])
"start":"2026-03-02T06:00:00Z","end":"2026-03-02T06:30:00Z","intensity":8.0,"variant":"blatant"}]
>>> decode_labels(raw) == [inc]
True
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

EntityType = Literal["api_key", "tenant", "server", "model"]
Variant = Literal["blatant", "subtle"]
ALL_ENTITIES: Final = "*"
BENIGN_KINDS: Final = ("harder_problems", "new_tenant", "fleet_rollout", "daily_peak")


class Budget(msgspec.Struct, frozen=True):
    """A planted budget: ``usd`` per UTC ``period`` (day, week, month)."""

    period: str
    usd: float


class Incident(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A labelled incident: what happened, to which entity, when, and how strongly."""

    kind: str
    benign: bool
    entity_type: EntityType
    entity_id: str
    tenant_id: str | None = None
    start: Annotated[datetime, Meta(tz=True)]
    end: Annotated[datetime, Meta(tz=True)]
    intensity: float
    variant: Variant
    band: tuple[float, float] | None = None
    routes: tuple[str, str] | None = None
    # budget_burn: the tenant's planted budget for the period that holds ``start``, and the
    # event time at which its spend reached it (computed from the events written)
    budget: Budget | None = None
    exhausted_at: Annotated[datetime, Meta(tz=True)] | None = None

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"incident {self.kind} on {self.entity_id}: end <= start")

    def covers(self, ts: datetime) -> bool:
        """Whether event time ``ts`` falls inside ``[start, end)``."""
        return self.start <= ts < self.end


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(list[Incident])


def encode_labels(incidents: Sequence[Incident]) -> bytes:
    """The labels as JSON bytes (a list, sorted by start as given)."""
    return _encoder.encode(list(incidents))


def decode_labels(raw: bytes) -> list[Incident]:
    """Parse labels JSON; raise ``ValueError`` with msgspec's reason when it is malformed."""
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise ValueError(f"invalid labels: {exc}") from None


def save_labels(path: str | Path, incidents: Sequence[Incident]) -> None:
    """Write ``incidents`` to ``path`` as a JSON list."""
    Path(path).write_bytes(encode_labels(incidents) + b"\n")


def load_labels(path: str | Path) -> list[Incident]:
    """Read a labels file written by :func:`save_labels`."""
    return decode_labels(Path(path).read_bytes())
