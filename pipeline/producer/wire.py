"""Events from serving code to contract-v1 bytes: obvious conversions, then validation."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pipeline.events import AllocationEvent, InvalidEvent, encode_event, parse_event


def _rfc3339(value: datetime, name: str) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEvent(f"bad_timestamp: {name} (naive datetime; give it a timezone, e.g. UTC)")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _plain(event: Mapping[str, Any]) -> dict[str, Any]:
    """Obvious conversions for dict events: aware datetime -> RFC 3339 UTC, UUID -> str."""
    out: dict[str, Any] = {}
    for name, value in event.items():
        if isinstance(value, datetime):
            value = _rfc3339(value, name)
        elif isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidEvent(f"non_finite: {name} ({value!r})")
        out[name] = value
    return out


def to_wire(event: AllocationEvent | Mapping[str, Any]) -> tuple[AllocationEvent, bytes]:
    """Validate ``event`` against contract v1; return it parsed, with its canonical wire bytes.

    Raises :class:`~pipeline.events.InvalidEvent` naming the field and the rule.
    """
    if isinstance(event, AllocationEvent):
        candidate: Any = event
    elif isinstance(event, Mapping):
        candidate = _plain(event)
    else:
        raise InvalidEvent(f"not_an_object: expected AllocationEvent or dict, not {type(event)}")
    try:
        raw = encode_event(candidate)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"wrong_type: {exc}") from None
    parsed = parse_event(raw)
    return parsed, encode_event(parsed)
