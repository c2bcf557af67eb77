"""Hostile and broken input through :func:`parse_event` and :meth:`Engine.process` (issue 9).

Every message ends as exactly one of: an event, a duplicate (an event_id seen before), or a dead
letter whose reason starts with a known rule; ``Engine.process`` never raises. The rules for
messages that are valid by the contract but hostile:

- ids are opaque strings of 1..128 characters: control characters, bidi overrides, emoji and
  private-use characters are accepted as they are (JSON escapes them on the way out; a lone
  surrogate is not a character and is ``invalid_json``); the same UUID in another case is the
  same event_id (a duplicate);
- counts up to 2**63-1 and any finite number are events; what ClickHouse cannot hold is not
  written: a request whose cost does not fit ``Decimal(18, 9)`` is a dead letter
  (``out_of_range: cost_usd``), a window's sums saturate at the column's maximum, latencies past
  1e300 ms count as 1e300 ms in the latency sketch;
- event time: a ``ts`` before 1970 or from 2106 on is a dead letter (``past_timestamp`` /
  ``future_timestamp``: the DateTime columns cannot hold it); an event more than
  ``worker.future_horizon_s`` ahead of the latest event time waits in ``Engine.held`` until the
  stream contradicts it (a dead letter ``future_timestamp``) or confirms it (``FUTURE_CONFIRM``
  such events in a row, or the end of a replay); an event behind the open windows is still an
  event (counted ``too_late``: stored and billed, not in the 1-minute metrics).

The parser's agreement with the JSON Schema is tested in ``test_event_contract.py``; this file
drives the engine, the way the worker does, with the mixes an attacker or a broken server sends.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import pickle
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.alerts import encode_alert
from pipeline.config import Settings
from pipeline.engine import EARLIEST_TS, FUTURE_CONFIRM, LATEST_TS, Engine, SeenIds
from pipeline.events import MAX_INT, InvalidEvent, encode_event, example_event, parse_event, to_dict
from pipeline.records import DeadLetter, Message, StepOutput
from pipeline.storage.sink import ClickHouseSink, RetryPolicy
from tests.unit import streams
from tests.unit.test_event_contract import (
    BREAKAGES,
    MISSING,
    Raw,
    broken_messages,
    encode_fields,
    junk,
    valid_events,
    wire,
)

PARSER_RULES: Final = frozenset(
    {
        "oversized",
        "invalid_json",
        "not_an_object",
        "missing_field",
        "wrong_type",
        "non_finite",
        "unsupported_version",
        "unknown_value",
        "bad_length",
        "bad_timestamp",
        "bad_format",
        "out_of_range",
    }
)
ENGINE_RULES: Final = frozenset({"past_timestamp", "future_timestamp", "out_of_range"})
UINT64_MAX: Final = 2**64 - 1
COST_LIMIT_USD: Final = 1e9  # Decimal(18, 9)
PRICES: Final = {
    "reasoner-large": {"gpu_hour_usd": 3.2, "per_1k_prompt_usd": 0.001, "per_1k_output_usd": 0.01}
}
FUZZ: Final = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
T0: Final = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def engine(**worker: Any) -> Engine:
    return Engine(settings_of(**worker))


def settings_of(**worker: Any) -> Settings:
    return Settings(prices=PRICES, worker=worker)


def wire_of(**changes: Any) -> bytes:
    """The example event on the wire with fields replaced (JSON values, Raw literals, MISSING)."""
    fields = {**to_dict(example_event(event_id=str(uuid.uuid4()))), **changes}
    return encode_fields(fields)


def rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- bookkeeping: every message accounted for, every output well formed ------------------------


@dataclass
class Ledger:
    """What an engine made of a sequence of messages, checked as it goes."""

    messages: list[bytes] = field(default_factory=list)
    steps: list[StepOutput] = field(default_factory=list)

    def run(self, eng: Engine, batch: Sequence[bytes]) -> StepOutput:
        start = len(self.messages)
        self.messages.extend(batch)
        out = eng.process(
            Message(raw, topic="fuzz", partition=0, offset=start + i) for i, raw in enumerate(batch)
        )
        self._record(eng, out)
        return out

    def finish(self, eng: Engine) -> StepOutput:
        out = eng.finish()
        self._record(eng, out)
        assert eng.held == []
        return out

    def _record(self, eng: Engine, out: StepOutput) -> None:
        self.steps.append(out)
        check_output(out, self.messages)
        settled = self.events + self.dead_letters + self.duplicates
        assert settled + len(eng.held) == len(self.messages), (settled, len(eng.held))
        offsets = [d.offset for s in self.steps for d in s.dead_letters]
        assert len(offsets) == len(set(offsets)), "a message was dead-lettered twice"

    @property
    def events(self) -> int:
        return sum(len(s.events) for s in self.steps)

    @property
    def dead_letters(self) -> int:
        return sum(len(s.dead_letters) for s in self.steps)

    @property
    def duplicates(self) -> int:
        return sum(s.duplicates for s in self.steps)

    def rules(self) -> list[str]:
        return [d.rule for s in self.steps for d in s.dead_letters]


def check_output(out: StepOutput, messages: Sequence[bytes]) -> None:
    assert len(out.events) == len(out.costs)
    for dead in out.dead_letters:
        check_dead_letter(dead, messages)
    ids = [e.event_id for e in out.events]
    assert len(ids) == len(set(ids)), "an event_id came out twice"
    for event, cost in zip(out.events, out.costs, strict=True):
        assert EARLIEST_TS <= event.ts < LATEST_TS
        assert math.isfinite(cost) and 0 <= cost < COST_LIMIT_USD
        assert parse_event(encode_event(event)) == event  # it survives being written out
        for text in (event.tenant_id, event.api_key_id, event.model, event.server_id):
            text.encode("utf-8")
    for row in out.metrics:
        assert EARLIEST_TS <= row.window_start < LATEST_TS
        counts = (
            row.requests,
            row.prompt_tokens,
            row.completion_tokens,
            row.reasoning_tokens,
            row.passes,
            row.budget_tokens,
            row.budgeted_generated_tokens,
        )
        assert all(0 <= n <= UINT64_MAX for n in counts), counts
        assert 0 <= row.cost_usd < COST_LIMIT_USD
        assert not any(math.isnan(q) for q in (row.latency_p50_ms, row.latency_p99_ms))
    for alert in out.alerts:
        json.loads(encode_alert(alert))


def check_dead_letter(dead: DeadLetter, messages: Sequence[bytes]) -> None:
    assert dead.reason.startswith(dead.rule + ":"), dead.reason
    assert dead.rule in PARSER_RULES | ENGINE_RULES, dead.reason
    if dead.rule in ENGINE_RULES - {"out_of_range"}:
        parse_event(dead.payload)  # valid by the contract, refused by an engine rule
    assert dead.topic == "fuzz" and messages[dead.offset] == dead.payload


# --- strategies: the hostile mixes -------------------------------------------------------------

HUGE_NUMBERS: Final = [
    "1e308",
    "1.7976931348623157e308",
    "1e400",
    "-1e400",
    "4.9e-324",
    "-0.0",
    "0",
    "-0",
    str(MAX_INT),
    str(MAX_INT + 1),
    str(2**64),
    "-1",
    "9" * 5000,
    "1" + "0" * 400,
    "NaN",
    "Infinity",
    "-Infinity",
    "nan",
    "1E+2",
    "0.5",
    "1.0",
]
NUMBER_FIELDS: Final = (
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "passes",
    "budget_tokens",
    "gpu_ms",
    "latency_ms",
    "ttft_ms",
    "difficulty",
    "confidence",
)
ODD_TEXT: Final = st.text(
    alphabet=st.characters(
        codec="utf-8", categories=("Cc", "Cf", "Co", "Mn", "Zs", "Zl", "So", "Lo", "Nd")
    ),
    min_size=0,
    max_size=140,
)
ID_FIELDS: Final = ("tenant_id", "api_key_id", "model", "server_id", "route")
VERSIONS: Final = ["2", "1.0", "01", " 1", "", "v1", "１", 1, 1.0, None, ["1"]]

timestamps_anywhere = st.datetimes(
    min_value=datetime(1, 1, 2),  # noqa: DTZ001 (hypothesis wants naive bounds)
    max_value=datetime(9999, 12, 30),  # noqa: DTZ001
    timezones=st.just(UTC),
)
timestamps_near = st.integers(-7_200, 7 * 86_400).map(lambda s: T0 + timedelta(seconds=s))
extreme_timestamps = st.sampled_from(
    [
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999999Z",
        "1970-01-01T00:00:00Z",
        "2105-12-31T23:59:59.999999Z",
        "2106-01-01T00:00:00Z",
        "2106-02-07T06:28:16Z",
        "2299-12-31T23:59:59Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59.999999-23:59",
        "0001-01-01T00:00:00+23:59",
    ]
)


@st.composite
def near_events(draw: st.DrawFn) -> bytes:
    """A plausible event within a week of T0, from a small fleet (so windows and detectors
    see repeat entities)."""
    key = draw(st.sampled_from(list(streams.KEYS)))
    server = draw(st.sampled_from(list(streams.SERVERS)))
    fields = to_dict(
        example_event(
            event_id=str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))),
            ts=draw(timestamps_near),
            tenant_id=streams.KEYS[key],
            api_key_id=key,
            server_id=server,
            model=streams.SERVERS[server],
            reasoning_tokens=draw(st.integers(0, 20_000)),
            passes=draw(st.integers(1, 8)),
            gpu_ms=draw(st.floats(0, 1e5)),
            status=draw(st.sampled_from(["ok", "ok", "ok", "truncated", "timeout", "error"])),
        )
    )
    return encode_fields(fields)


@st.composite
def hostile_events(draw: st.DrawFn) -> bytes:
    """A plausible event with one to three fields made hostile."""
    fields: dict[str, Any] = json.loads(draw(near_events()))
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["number", "id", "ts", "version", "missing", "extra"]))
        if what == "number":
            fields[draw(st.sampled_from(NUMBER_FIELDS))] = Raw(draw(st.sampled_from(HUGE_NUMBERS)))
        elif what == "id":
            fields[draw(st.sampled_from(ID_FIELDS))] = draw(
                ODD_TEXT | st.sampled_from([Raw('"\\ud800"'), Raw('"a\\u0000b"'), "‮evil"])
            )
        elif what == "ts":
            fields["ts"] = draw(
                extreme_timestamps | timestamps_anywhere.map(rfc3339) | st.text(max_size=30)
            )
        elif what == "version":
            fields["schema_version"] = draw(st.sampled_from(VERSIONS))
        elif what == "missing":
            fields[draw(st.sampled_from(sorted(fields)))] = MISSING
        else:
            fields[draw(st.text(max_size=10))] = draw(
                st.recursive(
                    st.none() | st.integers() | st.text(max_size=5), st.lists, max_leaves=8
                )
            )
    return encode_fields(fields, ascii_only=draw(st.booleans()))


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(1, 5_000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    inner = opener * depth + b"1" + closer * draw(st.integers(0, depth))
    return b'{"x":' + inner + b"}" if draw(st.booleans()) else inner


def contract_messages() -> st.SearchStrategy[bytes]:
    valid = valid_events.flatmap(wire)
    broken = st.sampled_from(sorted(BREAKAGES)).flatmap(broken_messages).map(lambda p: p[0])
    return valid | broken | junk()


any_message = st.one_of(
    near_events(),
    hostile_events(),
    contract_messages(),
    st.binary(max_size=200),
    nested(),
)


@st.composite
def mixes(draw: st.DrawFn) -> list[list[bytes]]:
    """Batches of messages, some of them re-sent (duplicates) or re-cased (the same UUID)."""
    messages = draw(st.lists(any_message, min_size=1, max_size=40))
    for _ in range(draw(st.integers(0, 6))):
        messages.append(draw(st.sampled_from(messages)))
    if draw(st.booleans()):
        messages = [
            m.upper() if m.startswith(b'{"schema') and i % 5 == 0 else m
            for i, m in enumerate(messages)
        ]
    messages = draw(st.permutations(messages))
    cuts = sorted(draw(st.lists(st.integers(0, len(messages)), max_size=4)))
    bounds = [0, *cuts, len(messages)]
    return [messages[a:b] for a, b in itertools.pairwise(bounds)]


# --- properties --------------------------------------------------------------------------------


@FUZZ
@given(raw=any_message)
def test_parse_event_returns_an_event_or_raises_invalid_event(raw: bytes) -> None:
    try:
        event = parse_event(raw, max_bytes=64 * 1024)
    except InvalidEvent as exc:
        assert exc.rule in PARSER_RULES and exc.reason.startswith(exc.rule + ":"), exc.reason
    else:
        assert parse_event(encode_event(event)) == event


@FUZZ
@given(batches=mixes())
def test_every_message_is_an_event_a_duplicate_or_a_dead_letter(batches: list[list[bytes]]) -> None:
    eng, ledger = engine(), Ledger()
    for batch in batches:
        ledger.run(eng, batch)
    ledger.finish(eng)
    assert ledger.events + ledger.dead_letters + ledger.duplicates == len(ledger.messages)


@FUZZ
@given(batches=mixes(), cut=st.integers(0, 3))
def test_a_restored_engine_goes_on_exactly_like_the_original(
    batches: list[list[bytes]], cut: int
) -> None:
    eng, ledger = engine(), Ledger()
    for batch in batches[:cut]:
        ledger.run(eng, batch)
    restored = Engine.restore(eng.snapshot(), settings_of())
    for batch in batches[cut:]:
        messages = [Message(raw) for raw in batch]
        a, b = eng.process(messages), restored.process(messages)
        assert (a.events, a.dead_letters, a.metrics, a.alerts) == (
            b.events,
            b.dead_letters,
            b.metrics,
            b.alerts,
        )
    assert eng.finish().metrics == restored.finish().metrics


# --- the cases issue 9 names, one by one -------------------------------------------------------


def test_random_bytes_and_deep_nesting_are_dead_letters() -> None:
    rng = random.Random(9)
    messages = [rng.randbytes(rng.randint(0, 2_000)) for _ in range(300)]
    messages += [b"[" * 100_000, b'{"a":' * 50_000, b"[" * 30_000 + b"]" * 30_000, b"", b"\xff"]
    eng, ledger = engine(max_message_bytes=1024 * 1024), Ledger()
    ledger.run(eng, messages)
    assert ledger.dead_letters == len(messages)
    assert set(ledger.rules()) <= {"invalid_json", "not_an_object"}


def test_a_10_mb_message_is_oversized_and_costs_no_parsing() -> None:
    event = to_dict(example_event())
    huge = encode_fields({**event, "padding": "x" * 10_000_000})
    deep = b"[" * 10_000_000
    eng, ledger = engine(), Ledger()
    started = time.perf_counter()
    out = ledger.run(eng, [huge, deep, encode_event(example_event())])
    assert time.perf_counter() - started < 1.0
    assert [d.rule for d in out.dead_letters] == ["oversized", "oversized"]
    assert out.dead_letters[0].reason == f"oversized: {len(huge)} bytes > limit 65536"
    assert len(out.events) == 1
    # Without the size limit the padding is an unknown field (ignored) and nesting is refused.
    assert parse_event(huge).event_id == event["event_id"]
    with pytest.raises(InvalidEvent, match="invalid_json"):
        parse_event(deep)


HOSTILE_NUMBERS: Final = {
    "NaN": (wire_of(gpu_ms=Raw("NaN")), "non_finite"),
    "Infinity": (wire_of(latency_ms=Raw("Infinity")), "non_finite"),
    "overflow to infinity": (wire_of(ttft_ms=Raw("1e400")), "non_finite: ttft_ms"),
    "negative count": (wire_of(reasoning_tokens=-1), "out_of_range: reasoning_tokens"),
    "count past int64": (wire_of(prompt_tokens=2**63), "out_of_range: prompt_tokens"),
    "count past uint64": (wire_of(passes=2**64), "out_of_range: passes"),
    "5000-digit count": (wire_of(completion_tokens=Raw("9" * 5000)), "out_of_range"),
    "negative zero passes": (wire_of(passes=Raw("-0")), "out_of_range: passes"),
    "float count": (wire_of(passes=Raw("1e0")), "wrong_type: passes"),
    "cost past Decimal(18, 9)": (wire_of(prompt_tokens=MAX_INT), "out_of_range: cost_usd"),
    "gpu-ms worth a billion": (wire_of(gpu_ms=1.2e15), "out_of_range: cost_usd"),
}


@pytest.mark.parametrize(("raw", "reason"), HOSTILE_NUMBERS.values(), ids=HOSTILE_NUMBERS.keys())
def test_hostile_numbers_are_dead_letters_naming_rule_and_field(raw: bytes, reason: str) -> None:
    eng, ledger = engine(), Ledger()
    out = ledger.run(eng, [raw])
    assert [d.reason.startswith(reason) for d in out.dead_letters] == [True], out.dead_letters


EXTREME_BUT_STORABLE: Final = {
    "largest counts, no token prices": wire_of(
        model="free",
        prompt_tokens=MAX_INT,
        completion_tokens=MAX_INT,
        reasoning_tokens=MAX_INT,
        passes=MAX_INT,
        budget_tokens=MAX_INT,
    ),
    "largest float latency": wire_of(latency_ms=1.7976931348623157e308, ttft_ms=1e308),
    "smallest float": wire_of(gpu_ms=5e-324, latency_ms=0, difficulty=5e-324),
    "cost near the limit": wire_of(gpu_ms=450_000_000_000_000, latency_ms=10**300),
    "first storable instant": wire_of(ts="1970-01-01T00:00:00Z"),
    "last storable instant": wire_of(ts="2105-12-31T23:59:59.999999Z"),
}


def extreme_steps(repeat: int = 3) -> tuple[Engine, Ledger]:
    """Each extreme event ``repeat`` times (new event_ids), so window sums overflow too."""
    eng, ledger = engine(), Ledger()
    for raw in EXTREME_BUT_STORABLE.values():
        fields = json.loads(raw)
        ledger.run(
            eng, [wire_of(**{**fields, "event_id": str(uuid.uuid4())}) for _ in range(repeat)]
        )
    ledger.finish(eng)
    return eng, ledger


def test_extreme_values_the_contract_allows_are_events_and_do_not_crash_windows() -> None:
    _, ledger = extreme_steps()
    assert ledger.dead_letters == 0 and ledger.events == 3 * len(EXTREME_BUT_STORABLE)
    rows = [row for step in ledger.steps for row in step.metrics]
    assert max(row.prompt_tokens for row in rows) == UINT64_MAX  # saturated, not wrapped
    assert max(row.latency_p99_ms for row in rows) >= 1e300
    assert max(row.cost_usd for row in rows) == pytest.approx(COST_LIMIT_USD, rel=1e-9)


def test_what_the_engine_emits_for_extreme_values_is_storable(clickhouse_client: Client) -> None:
    _, ledger = extreme_steps()
    sink = ClickHouseSink.from_settings(
        clickhouse_client, Settings(prices=PRICES), retry=RetryPolicy(attempts=1)
    )
    for step in ledger.steps:
        sink.add_step(step)
    sink.flush()  # a value ClickHouse cannot take raises here (and would be retried forever)
    written = sink.stats.rows_written
    assert written["events"] == ledger.events
    assert written["metrics_1m"] == sum(len(s.metrics) for s in ledger.steps)
    [[requests]] = clickhouse_client.query("SELECT sum(requests) FROM usage_hourly").result_rows
    assert requests == ledger.events  # (the raw rows of 1970 are past the events TTL)


@pytest.mark.parametrize(
    "ts",
    [
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999999Z",
        "2106-01-01T00:00:00Z",
        "2299-12-31T23:59:59Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59.999999-23:59",
    ],
)
def test_times_storage_cannot_hold_are_dead_letters(ts: str) -> None:
    eng, ledger = engine(), Ledger()
    out = ledger.run(eng, [wire_of(ts=ts)])
    [dead] = out.dead_letters
    assert dead.rule == ("past_timestamp" if ts < "1970" else "future_timestamp"), dead.reason
    assert "outside the storable range" in dead.reason


ODD_IDS: Final = [
    "a\u0000b",
    "\u202eevil",
    "\u200b",
    "\t\n\r",
    "\U0001f600" * 128,
    "\ue000",
    "e\u0301",
    "'; DROP TABLE events; --",
    "\x7f\x1b[31m",
    "\ufeff",
    "\U0010fffd",
]


@pytest.mark.parametrize("value", ODD_IDS, ids=[ascii(v)[:20] for v in ODD_IDS])
def test_control_characters_and_odd_unicode_in_ids_are_kept_as_they_are(value: str) -> None:
    eng, ledger = engine(), Ledger()
    out = ledger.run(eng, [wire_of(tenant_id=value, api_key_id=value, server_id=value)])
    [event] = out.events
    assert (event.tenant_id, event.api_key_id, event.server_id) == (value, value, value)


def test_a_lone_surrogate_in_an_id_is_invalid_json() -> None:
    eng, ledger = engine(), Ledger()
    out = ledger.run(eng, [wire_of(tenant_id=Raw('"\\ud800"'))])
    assert [d.rule for d in out.dead_letters] == ["invalid_json"]


def test_duplicate_event_ids_count_once_whatever_their_case_or_batch() -> None:
    event_id = "5b0e2a4c-1f3e-4c65-9f0a-2f6e4a1b7c11"
    first = wire_of(event_id=event_id)
    upper = wire_of(event_id=event_id.upper(), reasoning_tokens=9)  # a different body
    eng, ledger = engine(), Ledger()
    ledger.run(eng, [first, first, upper])
    ledger.run(eng, [first])
    assert (ledger.events, ledger.duplicates) == (1, 3)


@pytest.mark.parametrize("version", VERSIONS, ids=[repr(v) for v in VERSIONS])
def test_unknown_schema_versions_are_dead_letters(version: object) -> None:
    eng, ledger = engine(), Ledger()
    out = ledger.run(eng, [wire_of(schema_version=version)])
    assert [d.rule for d in out.dead_letters] in (["unsupported_version"], ["wrong_type"])


# --- event time: one bad clock must not close every window or stall detection ------------------


def volume_attack() -> list[bytes]:
    """The tiny fleet for 3 h; from minute 120 key k0 sends 6x its traffic (a blatant spike)."""
    change = streams.on_key("k0", lambda r: [r] * 6)
    return [encode_event(e) for e in streams.stream(seed=1, change=change)]


def replay(messages: list[bytes], batch: int = 500) -> tuple[Engine, Ledger]:
    eng, ledger = engine(), Ledger()
    for i in range(0, len(messages), batch):
        ledger.run(eng, messages[i : i + batch])
    ledger.finish(eng)
    return eng, ledger


def insert_at(messages: list[bytes], minute: int, extra: Iterable[bytes]) -> list[bytes]:
    """``extra`` put into the stream where its event time reaches ``minute``."""
    at = next(
        i
        for i, raw in enumerate(messages)
        if parse_event(raw).ts >= streams.T0 + timedelta(minutes=minute)
    )
    return [*messages[:at], *extra, *messages[at:]]


def alerts_of(ledger: Ledger) -> list[tuple[str, str, str, datetime]]:
    return [
        (a.kind, a.entity_type, a.entity_id, a.detected_at)
        for step in ledger.steps
        for a in step.alerts
    ]


def metrics_of(ledger: Ledger) -> list[Any]:
    return sorted(
        (row for step in ledger.steps for row in step.metrics),
        key=lambda r: (r.window_start, r.api_key_id, r.server_id, r.route),
    )


def test_events_far_in_the_future_do_not_close_windows_or_stall_detection() -> None:
    clean = volume_attack()
    _, baseline = replay(clean)
    assert ("volume_spike", "api_key", "k0") in {a[:3] for a in alerts_of(baseline)}
    bad_clock = streams.T0 + timedelta(days=365)
    poisoned = insert_at(
        clean,
        60,
        [
            wire_of(ts="9999-12-31T23:59:59Z", tenant_id="t0"),  # storage cannot hold it
            wire_of(ts="2100-01-01T00:00:00Z", tenant_id="t0"),  # a wildly wrong clock
        ],
    )
    poisoned = insert_at(
        poisoned,
        100,
        [  # a server a year ahead, a few requests in a row
            wire_of(ts=rfc3339(bad_clock + timedelta(seconds=i)), tenant_id="t1")
            for i in range(FUTURE_CONFIRM - 1)
        ],
    )
    started = time.perf_counter()
    _, ledger = replay(poisoned)
    assert time.perf_counter() - started < 30
    assert alerts_of(ledger) == alerts_of(baseline), "a bad clock changed what was detected"
    assert metrics_of(ledger) == metrics_of(baseline), "a bad clock changed the windows"
    assert sorted(ledger.rules()) == ["future_timestamp"] * (FUTURE_CONFIRM + 1)
    assert ledger.events == baseline.events and ledger.steps[-1].too_late == 0


def test_one_far_future_event_costs_no_time() -> None:
    # Before the fix, scoring walked every minute up to the bad event: a year took seconds,
    # year 2100 (or 9999) hung the worker; and every later event was too late for its window.
    messages = [encode_event(e) for e in streams.stream(seed=3, minutes=30)]
    poisoned = insert_at(messages, 10, [wire_of(ts="2105-01-01T00:00:00Z")])
    eng, ledger = engine(), Ledger()
    started = time.perf_counter()
    for i in range(0, len(poisoned), 200):
        ledger.run(eng, poisoned[i : i + 200])
    assert time.perf_counter() - started < 10
    assert eng.aggregator.too_late == 0 and ledger.rules() == ["future_timestamp"]


def test_an_idle_partition_resuming_a_day_later_loses_nothing() -> None:
    day1 = [encode_event(e) for e in streams.stream(seed=4, minutes=40)]
    day2 = [
        encode_event(msgspec.structs.replace(e, ts=e.ts + timedelta(days=1)))
        for e in streams.stream(seed=5, minutes=40)
    ]
    started = time.perf_counter()
    eng, ledger = replay(day1 + day2, batch=7)  # small batches: the jump spans steps
    assert time.perf_counter() - started < 30
    assert ledger.dead_letters == 0 and ledger.events == len(day1) + len(day2)
    assert eng.aggregator.too_late == 0
    windows = {row.window_start for row in metrics_of(ledger)}
    assert len(windows) == 80


def test_a_stale_first_event_does_not_turn_the_live_stream_away() -> None:
    live = [encode_event(e) for e in streams.stream(seed=6, minutes=20)]
    stale = wire_of(ts="2020-05-01T00:00:00Z")
    _, ledger = replay([stale, *live])
    assert ledger.dead_letters == 0 and ledger.events == len(live) + 1
    assert len({row.window_start for row in metrics_of(ledger)}) == 21


def test_far_ahead_events_wait_then_are_dead_letters_or_events() -> None:
    ahead = [wire_of(ts=rfc3339(T0 + timedelta(hours=5, seconds=i))) for i in range(3)]
    eng, ledger = engine(), Ledger()
    ledger.run(eng, [wire_of(ts=rfc3339(T0))])
    ledger.run(eng, ahead)
    assert len(eng.held) == 3 and ledger.events == 1
    ledger.run(eng, [wire_of(ts=rfc3339(T0 + timedelta(seconds=30)))])  # the clock goes on
    assert eng.held == [] and ledger.rules() == ["future_timestamp"] * 3
    assert "ahead of the latest event time 2026-03-02T06:00:00+00:00" in (
        ledger.steps[-1].dead_letters[0].reason
    )
    ledger.run(eng, ahead[:2])  # held again (the same events, not duplicates: none were events)
    assert ledger.finish(eng).events == [parse_event(a) for a in ahead[:2]]  # end of a replay


def test_the_future_horizon_is_a_worker_setting() -> None:
    eng, ledger = engine(future_horizon_s=60), Ledger()
    ledger.run(eng, [wire_of(ts=rfc3339(T0)), wire_of(ts=rfc3339(T0 + timedelta(minutes=2)))])
    assert len(eng.held) == 1
    assert Settings(worker={"future_horizon_s": 60}).worker.future_horizon_s == 60.0


def test_a_snapshot_from_before_these_rules_restores() -> None:
    eng = engine()
    eng.process([Message(wire_of())])
    state = eng.__dict__.copy()
    del state["held"], state["future_horizon_s"]
    for name in ("max_groups", "max_keys_per_tenant", "_keys"):
        delattr(state["aggregator"], name)
    restored = Engine.restore(pickle.dumps(state), settings_of())
    assert restored.held == [] and restored.future_horizon_s == 3600.0
    assert restored.aggregator.max_groups == 800_000
    assert restored.process([Message(wire_of(ts="2030-01-01T00:00:00Z"))]).events == []
    assert len(restored.process([Message(wire_of(api_key_id="k-new"))]).events) == 1


def test_a_snapshot_from_before_the_records_module_restores() -> None:
    """Messages held for their far-ahead time were pickled as ``pipeline.engine.Message``
    before the records moved to ``pipeline.records``."""
    eng = engine()
    eng.process([Message(wire_of(ts=rfc3339(T0)))])
    eng.process([Message(wire_of(ts=rfc3339(T0 + timedelta(days=2))))])
    blob = pickle.dumps(eng.__dict__, protocol=2)  # classes by name, unframed
    assert len(eng.held) == 1 and b"pipeline.records\nMessage" in blob
    old = blob.replace(b"pipeline.records\nMessage", b"pipeline.engine\nMessage")
    restored = Engine.restore(old, settings_of())
    assert restored.held == eng.held


@dataclass
class OldShape:
    """Pickles as an instance of ``cls`` whose state is ``state`` (a shape from before)."""

    cls: type
    state: dict[str, Any]

    def __reduce__(self) -> tuple[Any, ...]:
        return (object.__new__, (self.cls,), self.state)


def test_seen_ids_survive_a_snapshot() -> None:
    seen = SeenIds(max_ids=6)
    for n in range(5):
        seen.add(f"id-{n}")
    restored = pickle.loads(pickle.dumps(seen))
    assert [restored.add(f"id-{n}") for n in range(6)] == [False] * 5 + [True]
    assert len(restored) == 6 - 3  # id-0..id-2 rotated out with id-5: generations of 3


def test_seen_ids_snapshot_after_snapshot_keep_every_id() -> None:
    """Snapshot after snapshot, each holds every id seen so far."""
    seen = SeenIds(max_ids=8)
    blobs = []
    for n in range(7):
        seen.add(f"id-{n}")
        blobs.append(pickle.dumps(seen))
    restored = [pickle.loads(blob) for blob in blobs]
    assert [len(r) for r in restored] == [1, 2, 3, 4, 5, 6, 7]
    assert [restored[-1].add(f"id-{n}") for n in range(8)] == [False] * 7 + [True]
    assert sorted(seen.__getstate__()) == ["current", "generation", "max_ids", "previous"]


def test_seen_ids_are_left_out_of_garbage_collection() -> None:
    """A million ids in a tracked container would cost every full collection ~80 ms."""
    seen = SeenIds(max_ids=6)
    for n in range(5):
        seen.add(f"id-{n}")
    restored = pickle.loads(pickle.dumps(seen))
    generations = [g for s in (seen, restored) for g in (s._current, s._previous)]
    assert not any(gc.is_tracked(g.ids) for g in generations)


def test_a_snapshot_with_ids_in_one_ordered_map_and_groups_in_one_dict_restores() -> None:
    """Snapshots of the first release kept seen ids in an OrderedDict and every window's open
    groups in one dict; they restore into generations and per-window groups."""
    eng, message = engine(), Message(wire_of())
    first = eng.process([message]).events[0]
    old_seen = OldShape(SeenIds, {"max_ids": 10, "_ids": OrderedDict({first.event_id: None})})
    aggregator = eng.aggregator
    windows = vars(aggregator).pop("_windows")
    flat = {key: acc for groups in windows.values() for key, acc in groups.items()}
    del vars(aggregator)["_groups"]
    vars(aggregator)["_open"] = flat
    state = eng.__dict__ | {"seen": old_seen}

    restored = Engine.restore(pickle.dumps(state), settings_of())

    assert restored.process([message]).duplicates == 1
    assert restored.aggregator.open_group_count == 1
    [row] = restored.finish().metrics
    assert row.requests == 1 and row.api_key_id == first.api_key_id
