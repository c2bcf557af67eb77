"""No prompt or completion text is accepted or stored, only counts.

The event model, the JSON Schema and the ``events`` table carry token *counts*; text that an
inference server sends anyway in extra fields is dropped by the parser (contract v1 ignores
unknown fields) and reaches neither the encoded event nor ClickHouse.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest
from clickhouse_connect.driver.client import Client

from pipeline.config import Settings
from pipeline.events import AllocationEvent, encode_event, example_event, parse_event
from pipeline.storage.migrations import SCHEMA_DIR
from pipeline.storage.sink import ClickHouseSink

TEXTUAL = re.compile(r"prompt|completion|text|content|message|output|answer|question|input",
                     re.IGNORECASE)
"""Field names that could hold what a user or a model wrote."""
ID_FIELDS = {"event_id", "tenant_id", "api_key_id", "model", "server_id", "route"}
ENUM_FIELDS = {"schema_version", "status"}
FREE_TEXT_FIELDS = {"gpu_type", "region"}
PROMPT = "PROMPT-TEXT: how do I get another tenant's api key?"
COMPLETION = "COMPLETION-TEXT: here is how"


def string_fields() -> dict[str, Any]:
    """Each event field that can hold a string -> its msgspec type."""
    found = {}
    for field in msgspec.inspect.type_info(AllocationEvent).fields:  # type: ignore[attr-defined]
        types = getattr(field.type, "types", (field.type,))
        if any(isinstance(t, msgspec.inspect.StrType) for t in types):
            found[field.name] = next(t for t in types if isinstance(t, msgspec.inspect.StrType))
    return found


def test_the_event_model_has_counts_not_text() -> None:
    fields = AllocationEvent.__struct_fields__
    textual = [f for f in fields if TEXTUAL.search(f)]
    assert textual == ["prompt_tokens", "completion_tokens"]
    kinds = {f.name: f.type for f in msgspec.inspect.type_info(AllocationEvent).fields}  # type: ignore[attr-defined]
    assert all(isinstance(kinds[f], msgspec.inspect.IntType) for f in textual)
    assert set(string_fields()) == ID_FIELDS | FREE_TEXT_FIELDS
    assert not ENUM_FIELDS & set(string_fields()), "status and schema_version are literals"


@pytest.mark.xfail(strict=True, reason=(
    "contract v1 bounds every id at 128 characters but gpu_type and region at nothing, so up "
    "to worker.max_message_bytes of text fits in them; bound them in pipeline/events.py and "
    "schemas/allocation_event.v1.json (then this test passes and the marker goes)"))
def test_every_string_field_is_a_bounded_identifier() -> None:
    unbounded = {name for name, kind in string_fields().items()
                 if name != "event_id" and (kind.max_length is None or kind.max_length > 128)}
    assert unbounded == set()


def test_the_json_schema_has_counts_not_text() -> None:
    schema = json.loads((SCHEMA_DIR.parent / "allocation_event.v1.json").read_text())
    properties = schema["properties"]
    assert [p for p in properties if TEXTUAL.search(p)] == ["prompt_tokens", "completion_tokens"]
    assert all(properties[p]["type"] == "integer" for p in ("prompt_tokens", "completion_tokens"))
    assert set(properties) == set(AllocationEvent.__struct_fields__)


def test_the_events_table_has_counts_not_text(clickhouse_client: Client) -> None:
    rows = clickhouse_client.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase()"
        " AND table = 'events'").result_rows
    columns: dict[str, str] = {str(name): str(kind) for name, kind in rows}
    assert {c for c in columns if TEXTUAL.search(c)} == {"prompt_tokens", "completion_tokens"}
    assert columns["prompt_tokens"] == columns["completion_tokens"] == "UInt64"
    strings = {c for c, t in columns.items() if "String" in t}
    assert strings == (ID_FIELDS - {"event_id"}) | FREE_TEXT_FIELDS | ENUM_FIELDS


def test_text_sent_in_extra_fields_is_dropped_before_storage(
    clickhouse_client: Client, storage_settings: Settings
) -> None:
    wire = json.loads(encode_event(example_event()))
    wire.update(prompt=PROMPT, completion=COMPLETION, messages=[{"role": "user",
                                                                "content": PROMPT}])
    event = parse_event(json.dumps(wire).encode())
    assert not hasattr(event, "prompt") and not hasattr(event, "messages")
    assert b"TEXT" not in encode_event(event)
    sink = ClickHouseSink.from_settings(clickhouse_client, storage_settings)
    sink.add(event)
    sink.flush()
    [row] = clickhouse_client.query("SELECT * FROM events").result_rows
    assert str(event.event_id) in map(str, row)
    assert not any("TEXT" in str(value) for value in row)
