"""The allocation event, contract v1: a typed model, a fast parser and precise rejection reasons.

Every entry point (worker, replay, demo) turns wire bytes into :class:`AllocationEvent` with
:func:`parse_event` (a batch with :func:`parse_events`); anything that breaks the contract raises
:class:`InvalidEvent` whose ``reason`` names the field and the rule, and goes to the
dead-letter topic with its bytes.

>>> raw = encode_event(example_event())
>>> parse_event(raw).route
'standard'
>>> try:
...     parse_event(b'{"schema_version": "1"}')
... except InvalidEvent as exc:
...     print(exc.reason)
missing_field: event_id
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

SCHEMA_VERSION: Final = "1"
STATUSES: Final = ("ok", "truncated", "timeout", "error", "cancelled")
MAX_INT: Final = 2**63 - 1
PARSE_SLICE: Final = 500  # messages checked at once by parse_events (a reject re-parses them)
UUID_PATTERN: Final = (
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)

Id128 = Annotated[str, Meta(min_length=1, max_length=128)]
Count = Annotated[int, Meta(ge=0, le=MAX_INT)]
NonNegative = Annotated[float, Meta(ge=0)]
Unit = Annotated[float, Meta(ge=0, le=1)]
Status = Literal["ok", "truncated", "timeout", "error", "cancelled"]


class AllocationEvent(msgspec.Struct, frozen=True, gc=False):
    """One inference request's compute allocation (contract v1). Unknown wire fields are ignored."""

    schema_version: Literal["1"]
    event_id: Annotated[str, Meta(pattern=UUID_PATTERN)]
    ts: Annotated[datetime, Meta(tz=True)]
    tenant_id: Id128
    api_key_id: Id128
    model: Id128
    server_id: Id128
    route: Annotated[str, Meta(min_length=1, max_length=64)]
    difficulty: Unit | None
    prompt_tokens: Count
    completion_tokens: Count
    reasoning_tokens: Count
    passes: Annotated[int, Meta(ge=1, le=MAX_INT)]
    budget_tokens: Count | None
    gpu_ms: NonNegative
    latency_ms: NonNegative
    status: Status
    confidence: Unit | None
    ttft_ms: NonNegative | None = None
    gpu_type: str | None = None
    region: str | None = None

    @property
    def generated_tokens(self) -> int:
        """Tokens the model produced: visible completion plus hidden reasoning."""
        return self.completion_tokens + self.reasoning_tokens


class InvalidEvent(ValueError):
    """A message that breaks contract v1. ``reason`` is ``<rule>: <field or detail>``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def rule(self) -> str:
        """The rule part of the reason, used to count rejections (e.g. ``out_of_range``)."""
        return self.reason.split(":", 1)[0]


_decoder = msgspec.json.Decoder(AllocationEvent)
_encoder = msgspec.json.Encoder()
_FIELD_AT = re.compile(r"at `\$\.([A-Za-z_0-9]+)")
_BYTE_AT = re.compile(r"\(byte (\d+)\)")
_KEY_BEFORE = re.compile(rb'"([A-Za-z_0-9]+)"\s*:\s*$')
_NON_FINITE = re.compile(rb"-?(NaN|Infinity)")
# msgspec also takes a space for "T" and "+HHMM" offsets; RFC 3339 (and the schema) do not.
_TS_VALUES = re.compile(rb'"ts"\s*:\s*"([^"]*)"')
_RFC3339_TEXT = rb"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
_RFC3339 = re.compile(_RFC3339_TEXT + rb"\Z")
# Where a "ts" value is not RFC 3339: hits wherever _TS_VALUES finds one that _RFC3339 refuses
# (and perhaps elsewhere, which only sends a slice to the per-message parser).
_TS_NOT_RFC3339 = re.compile(rb'"ts"\s*:\s*"(?!' + _RFC3339_TEXT + rb'")')
_EVENT_ID = operator.attrgetter("event_id")


def parse_event(raw: bytes, *, max_bytes: int | None = None) -> AllocationEvent:
    """Decode and validate one wire message; raise :class:`InvalidEvent` with a reason."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise InvalidEvent(f"oversized: {len(raw)} bytes > limit {max_bytes}")
    try:
        if not raw.isascii():
            raw.decode("utf-8")  # msgspec skips unknown fields without checking their text
        event = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        _raise_if_malformed(raw)
        raise InvalidEvent(_reason_from(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(_malformed_reason(raw, str(exc))) from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise InvalidEvent(f"invalid_json: {type(exc).__name__}") from None
    for ts in _TS_VALUES.findall(raw):
        if not _RFC3339.match(ts):
            raise InvalidEvent("bad_timestamp: ts (not an RFC 3339 date-time)")
    if event.event_id != event.event_id.lower():
        event = msgspec.structs.replace(event, event_id=event.event_id.lower())
    return event


def parse_events(
    raws: Sequence[bytes], *, max_bytes: int | None = None
) -> list[AllocationEvent | InvalidEvent]:
    """:func:`parse_event` over a batch: for each message, in order, its event or the
    :class:`InvalidEvent` that :func:`parse_event` raises for it.

    Each slice of :data:`PARSE_SLICE` messages that are all valid is checked in passes over the
    slice and decoded message by message in C, without the parser's Python frame per message
    (one JSON array of the joined messages measured no faster, and messages that are not JSON
    on their own can join into a valid array); a slice with a reject is parsed message by
    message, so every reject keeps its exact reason and costs its slice a second parse.

    >>> good = encode_event(example_event())
    >>> [type(e).__name__ for e in parse_events([good, b"{", good])]
    ['AllocationEvent', 'InvalidEvent', 'AllocationEvent']
    """
    parsed: list[AllocationEvent | InvalidEvent] = []
    for start in range(0, len(raws), PARSE_SLICE):
        part = raws[start : start + PARSE_SLICE]
        events = _parse_valid(part, max_bytes)
        parsed.extend(events if events is not None else (_parsed(r, max_bytes) for r in part))
    return parsed


def _parse_valid(raws: Sequence[bytes], max_bytes: int | None) -> list[AllocationEvent] | None:
    """Every message's event when :func:`parse_event` takes them all (a non-empty slice), else
    None."""
    if max_bytes is not None and max(map(len, raws)) > max_bytes:
        return None
    try:
        if not all(map(bytes.isascii, raws)):
            for raw in raws:
                raw.decode("utf-8")
        events = [_decoder.decode(raw) for raw in raws]
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    if any(map(_TS_NOT_RFC3339.search, raws)):
        return None
    ids = "".join(map(_EVENT_ID, events))
    if ids != ids.lower():
        for i, event in enumerate(events):
            if event.event_id != event.event_id.lower():
                events[i] = msgspec.structs.replace(event, event_id=event.event_id.lower())
    return events


def _parsed(raw: bytes, max_bytes: int | None) -> AllocationEvent | InvalidEvent:
    try:
        return parse_event(raw, max_bytes=max_bytes)
    except InvalidEvent as exc:
        return exc


def _raise_if_malformed(raw: bytes) -> None:
    """A syntax error outranks a broken rule seen before it (only paid on rejects)."""
    try:
        msgspec.json.decode(raw)
    except msgspec.ValidationError:
        return  # well-formed JSON with an out-of-range number: the typed reason stands
    except msgspec.DecodeError as exc:
        raise InvalidEvent(_malformed_reason(raw, str(exc))) from None
    except RecursionError:
        raise InvalidEvent("invalid_json: RecursionError") from None


def _malformed_reason(raw: bytes, message: str) -> str:
    """``non_finite: <field>`` when the offending token is NaN/Infinity, else ``invalid_json``."""
    at = _BYTE_AT.search(message)
    if at is not None:
        offset = int(at.group(1))
        if _NON_FINITE.match(raw, offset):
            key = _KEY_BEFORE.search(raw[max(0, offset - 160) : offset])
            field = key.group(1).decode() if key else "$"
            return f"non_finite: {field} (NaN and Infinity are not JSON numbers)"
    return f"invalid_json: {message}"


def _reason_from(message: str) -> str:
    """Map msgspec's validation message to ``<rule>: <field> (<detail>)``."""
    if message.startswith("Object missing required field"):
        return "missing_field: " + message.split("`")[1]
    match = _FIELD_AT.search(message)
    field = match.group(1) if match else "$"
    detail = message.split(" - at ")[0]
    if field == "$" and detail.startswith("Expected `object`"):
        return f"not_an_object: {detail}"
    if "Number out of range" in detail:
        return f"non_finite: {field} ({detail})"
    if detail.startswith("Expected `") and ("got `" in detail):
        return f"wrong_type: {field} ({detail})"
    if field == "schema_version":
        return f"unsupported_version: {detail}"
    if detail.startswith("Invalid enum value"):
        return f"unknown_value: {field} ({detail})"
    if "length" in detail:
        return f"bad_length: {field} ({detail})"
    if field == "ts" or "datetime" in detail:
        return f"bad_timestamp: {field} ({detail})"
    if "matching regex" in detail:
        return f"bad_format: {field} ({detail})"
    return f"out_of_range: {field} ({detail})"


def encode_event(event: AllocationEvent | dict[str, Any]) -> bytes:
    """Encode an event (or a plain dict) as contract v1 JSON bytes."""
    return _encoder.encode(event)


def to_dict(event: AllocationEvent) -> dict[str, Any]:
    """The event as a plain dict of JSON-compatible values."""
    out: dict[str, Any] = msgspec.to_builtins(event)
    return out


def example_event(**overrides: Any) -> AllocationEvent:
    """A valid event for docs and tests; keyword arguments replace fields."""
    fields: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": "5b0e2a4c-1f3e-4c65-9f0a-2f6e4a1b7c11",
        "ts": datetime(2026, 3, 2, 6, 0, 0, 251000, tzinfo=UTC),
        "tenant_id": "acme",
        "api_key_id": "key-1",
        "model": "reasoner-large",
        "server_id": "gpu-01",
        "route": "standard",
        "difficulty": 0.4,
        "prompt_tokens": 512,
        "completion_tokens": 256,
        "reasoning_tokens": 1024,
        "passes": 1,
        "budget_tokens": 4096,
        "gpu_ms": 850.0,
        "latency_ms": 2100.0,
        "status": "ok",
        "confidence": 0.82,
        "ttft_ms": 240.0,
    }
    fields.update(overrides)
    return AllocationEvent(**fields)
