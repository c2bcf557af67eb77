"""A failure seam for tests and drills: a client whose inserts fail on demand.

``FlakyClient(client, fail_inserts=2)`` raises on the next two inserts (``insert`` or
``insert_arrow``, what the sink and the store use) *before* sending them;
``lose_responses=1`` performs the next insert and then raises as if the response was lost
(the case insert deduplication tokens exist for). Everything else is delegated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clickhouse_connect.driver.exceptions import OperationalError

__all__ = ["FlakyClient", "InjectedFailure"]


class InjectedFailure(OperationalError):
    """The failure a :class:`FlakyClient` raises (a subclass of clickhouse-connect's own)."""


class FlakyClient:
    """Wraps a clickhouse-connect client; counts inserts and fails the ones it was told to."""

    def __init__(self, client: Any, *, fail_inserts: int = 0, lose_responses: int = 0) -> None:
        self._client = client
        self.fail_inserts = fail_inserts
        self.lose_responses = lose_responses
        self.insert_calls = 0
        self.tokens: list[str | None] = []

    def insert(self, table: str, data: Any, *args: Any, **kwargs: Any) -> Any:
        return self._insert(self._client.insert, table, data, *args, **kwargs)

    def insert_arrow(self, table: str, arrow_table: Any, *args: Any, **kwargs: Any) -> Any:
        return self._insert(self._client.insert_arrow, table, arrow_table, *args, **kwargs)

    def _insert(
        self, method: Callable[..., Any], table: str, data: Any, *args: Any, **kwargs: Any
    ) -> Any:
        self.insert_calls += 1
        self.tokens.append((kwargs.get("settings") or {}).get("insert_deduplication_token"))
        if self.fail_inserts > 0:
            self.fail_inserts -= 1
            raise InjectedFailure(f"injected failure before insert into {table}")
        result = method(table, data, *args, **kwargs)
        if self.lose_responses > 0:
            self.lose_responses -= 1
            raise InjectedFailure(f"injected lost response after insert into {table}")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
