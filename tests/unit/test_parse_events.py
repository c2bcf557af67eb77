"""A batch parsed by :func:`parse_events` gives exactly what :func:`parse_event` gives for each of
its messages: the same events (ids lowercased, offsets kept) and the same reasons, whether the
batch is all valid (checked and decoded in passes over the batch) or holds a reject (parsed
message by message); and the engine keeps each reject's place among a step's dead letters.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Final

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config import Settings
from pipeline.engine import Engine
from pipeline.events import (
    PARSE_SLICE,
    InvalidEvent,
    encode_event,
    example_event,
    parse_event,
    parse_events,
)
from pipeline.records import Message
from tests.unit.test_event_contract import (
    FAST,
    ISSUE_3_CASES,
    VALID_EDGES,
    example_wire,
    valid_events,
    wire,
)
from tests.unit.test_fuzz_engine import FUZZ, any_message, near_events

MAX_BYTES: Final = 4096
REJECTS: Final = {
    **{name: raw for name, (raw, _) in ISSUE_3_CASES.items()},
    "space for T": example_wire(ts="2026-03-02 06:00:00Z"),
    "offset without colon": example_wire(ts="2026-03-02T06:00:00+0000"),
    "bad ts in an extra field": example_wire(meta={"ts": "2026-03-02 06:00:00Z"}),
    "invalid utf-8 in an extra field": example_wire()[:-1] + b',"note":"caf\xe9"}',
    "a cut UTF-8 sequence in an extra field": example_wire()[:-1] + b',"note":"\xc3"}',
    "oversized": example_wire(padding="x" * MAX_BYTES),
    "deep nesting": b'{"x":' + b"[" * 100_000 + b"}",
    "empty": b"",
}


def _verdicts(raws: Sequence[bytes], max_bytes: int | None) -> list[bytes | str]:
    """What :func:`parse_event` makes of each message: the event as JSON, or the reason."""
    verdicts: list[bytes | str] = []
    for raw in raws:
        try:
            verdicts.append(encode_event(parse_event(raw, max_bytes=max_bytes)))
        except InvalidEvent as exc:
            verdicts.append(exc.reason)
    return verdicts


def _batch_verdicts(raws: Sequence[bytes], max_bytes: int | None) -> list[bytes | str]:
    return [
        e.reason if isinstance(e, InvalidEvent) else encode_event(e)
        for e in parse_events(raws, max_bytes=max_bytes)
    ]


@FUZZ
@given(raws=st.lists(any_message, max_size=30), max_bytes=st.sampled_from([None, MAX_BYTES]))
def test_a_batch_parses_as_its_messages_one_by_one(
    raws: list[bytes], max_bytes: int | None
) -> None:
    assert _batch_verdicts(raws, max_bytes) == _verdicts(raws, max_bytes)


@FAST
@given(
    raws=st.lists(valid_events.flatmap(wire) | near_events(), min_size=1, max_size=30),
    max_bytes=st.sampled_from([None, MAX_BYTES]),
)
def test_a_batch_of_valid_messages_parses_as_one_by_one(
    raws: list[bytes], max_bytes: int | None
) -> None:
    assert _batch_verdicts(raws, max_bytes) == _verdicts(raws, max_bytes)


def test_the_edges_of_the_contract_in_one_batch_are_events_as_one_by_one() -> None:
    raws = list(VALID_EDGES.values())
    verdicts = _batch_verdicts(raws, MAX_BYTES)
    assert verdicts == _verdicts(raws, MAX_BYTES)
    assert all(isinstance(v, bytes) and b"5b0e2a4c-1f3e-4c65-9f0a" in v for v in verdicts)


def test_one_reject_among_valid_messages_keeps_its_exact_reason() -> None:
    good = encode_event(example_event())
    for name, reject in REJECTS.items():
        raws = [good, reject, example_wire(event_id="5B0E2A4C-1F3E-4C65-9F0A-2F6E4A1B7C12")]
        verdicts = _batch_verdicts(raws, MAX_BYTES)
        assert verdicts == _verdicts(raws, MAX_BYTES), name
        assert isinstance(verdicts[1], str) and isinstance(verdicts[2], bytes), name


def test_rejects_at_the_edges_of_slices_in_a_long_batch_keep_their_places() -> None:
    raws = [example_wire(event_id=str(uuid.UUID(int=i))) for i in range(3 * PARSE_SLICE + 7)]
    for at in (0, PARSE_SLICE - 1, PARSE_SLICE, 3 * PARSE_SLICE + 6):
        raws[at] = REJECTS["space for T"]
    verdicts = _batch_verdicts(raws, MAX_BYTES)
    assert verdicts == _verdicts(raws, MAX_BYTES)
    assert sum(isinstance(v, str) for v in verdicts) == 4


def test_messages_that_join_into_a_json_array_are_each_rejected() -> None:
    """Lines that are not JSON on their own can join into a valid array of as many events
    (an open list closed by the next line, two objects on one line): each is a reject."""
    good = encode_event(example_event())
    raws = [good[:-1] + b',"x":[0', b"1]}", good + b"," + good]
    joined = msgspec.json.decode(b"[" + b",".join(raws) + b"]")
    assert len(joined) == len(raws)
    verdicts = _batch_verdicts(raws, MAX_BYTES)
    assert verdicts == _verdicts(raws, MAX_BYTES)
    assert all(isinstance(v, str) and v.startswith("invalid_json") for v in verdicts)


def test_rejects_keep_their_place_among_a_steps_dead_letters() -> None:
    """Parse rejects and rejects of valid events (a time storage cannot hold) come out in the
    order of their messages."""
    raws = [
        encode_event(example_event()),
        b"{",
        example_wire(ts="2300-01-01T00:00:00Z"),
        b"[1]",
        example_wire(ts="1900-01-01T00:00:00Z"),
    ]
    out = Engine(Settings()).process(Message(raw, offset=i) for i, raw in enumerate(raws))
    assert [(d.offset, d.rule) for d in out.dead_letters] == [
        (1, "invalid_json"),
        (2, "future_timestamp"),
        (3, "not_an_object"),
        (4, "past_timestamp"),
    ]
