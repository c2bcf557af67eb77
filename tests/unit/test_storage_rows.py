"""The columns the sink builds: exact decimals, the same tokens, every table's Arrow shape."""

from __future__ import annotations

import decimal
import hashlib
import math

import hypothesis.strategies as st
import pytest
from hypothesis import example, given

from pipeline.events import example_event
from pipeline.records import DeadLetter
from pipeline.storage import rows as R


def clickhouse_connect_units(value: float) -> int:
    """What clickhouse-connect sent for a Decimal(18, 9) column: ``str(x)`` truncated to 9
    places, in scaled units."""
    with decimal.localcontext() as context:
        context.prec = 18
        return int(decimal.Decimal(str(value)) * 10**9)


def units(values: list[float]) -> list[int]:
    return [int(d.scaleb(9)) for d in R.decimal_array(values).to_pylist()]


COSTS = st.floats(min_value=-1e6, max_value=9e8, allow_nan=False)


@given(st.lists(COSTS | COSTS.map(lambda x: round(x, 9)) | st.integers(0, 10**15).map(
    lambda k: k / 1e9), max_size=50))  # fmt: skip
@example([0.0, -0.0, 3e-9, 2.9999999999999996e-09, 0.1, 1.0000000005, 8713521.13832, -3e-9])
@example([math.nextafter(k / 1e9, d) for k in (1, 123_456_789, 10**14) for d in (0, math.inf)])
def test_decimal_array_is_exactly_what_clickhouse_connect_sent(values: list[float]) -> None:
    assert units(values) == [clickhouse_connect_units(v) for v in values]


def test_decimal_array_refuses_what_decimal_refuses() -> None:
    with pytest.raises(ValueError):
        R.decimal_array([0.5, math.nan])


def test_the_events_token_is_the_hash_of_the_ids_as_before() -> None:
    """Same ids, same token (whatever else changed), built as the row-by-row hash was."""
    events = [example_event(event_id=f"00000000-0000-4000-8000-00000000000{i}") for i in range(3)]
    digest = hashlib.blake2b(digest_size=16)
    digest.update(b"events")
    for event in events:
        digest.update(b"\x1f" + event.event_id.encode())
    items = [(e, 0.1, R.INGESTED) for e in events]
    token = R.batch_token("events", 3, R.event_identity(items))
    assert token == f"events-3-{digest.hexdigest()}"


def test_every_table_builds_its_columns_in_order() -> None:
    letter = DeadLetter(reason="r", rule="x", payload=b"\xff" * 3000, topic="t", partition=1,
                        offset=2)  # fmt: skip
    table = R.dead_letters_table([(letter, R.INGESTED)])
    assert table.column_names == list(R.DEAD_LETTER_COLUMNS)
    assert table.column("payload_bytes").to_pylist() == [3000]
    assert len(table.column("payload_sample")[0].as_py()) == R.SAMPLE_BYTES
    assert R.events_table([(example_event(), 0.5, R.INGESTED)]).column_names == list(
        R.EVENT_COLUMNS
    )
